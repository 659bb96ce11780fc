/* the tensor-core prefill body (prefill.cuh), fp16, Dqk 64 / Dvo 64 */
#include "../prefill.cuh"

CPCL_INSTANTIATE_PREFILL_MMA(__half, 64, 64);
