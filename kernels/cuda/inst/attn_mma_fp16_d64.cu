/* tensor-core attention, fp16, head dimension 64 (attn_mma.cuh), alone and fused. */
#include "../attn_mma.cuh"

CPCL_INSTANTIATE_MMA(__half, 64);
