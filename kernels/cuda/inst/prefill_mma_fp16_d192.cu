/* the tensor-core prefill body (prefill.cuh), fp16, Dqk 192 / Dvo 128 */
#include "../prefill.cuh"

CPCL_INSTANTIATE_PREFILL_MMA(__half, 192, 128);
