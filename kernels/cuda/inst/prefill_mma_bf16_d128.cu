/* the tensor-core prefill body (prefill.cuh), bf16, Dqk 128 / Dvo 128 */
#include "../prefill.cuh"

CPCL_INSTANTIATE_PREFILL_MMA(__nv_bfloat16, 128, 128);
