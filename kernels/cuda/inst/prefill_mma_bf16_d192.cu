/* the tensor-core prefill body (prefill.cuh), bf16, Dqk 192 / Dvo 128 */
#include "../prefill.cuh"

CPCL_INSTANTIATE_PREFILL_MMA(__nv_bfloat16, 192, 128);
