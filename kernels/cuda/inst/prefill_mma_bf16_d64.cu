/* the tensor-core prefill body (prefill.cuh), bf16, Dqk 64 / Dvo 64 */
#include "../prefill.cuh"

CPCL_INSTANTIATE_PREFILL_MMA(__nv_bfloat16, 64, 64);
