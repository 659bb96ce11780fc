/* tensor-core attention, bf16, head dimension 128 (attn_mma.cuh), alone and fused. */
#include "../attn_mma.cuh"

CPCL_INSTANTIATE_MMA(__nv_bfloat16, 128);
