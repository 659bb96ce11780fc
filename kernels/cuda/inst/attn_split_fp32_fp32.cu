/* CUDA-core attention, queries fp32, KV cache fp32 (attn_split.cuh), alone and fused. */
#include "../attn_split.cuh"

CPCL_INSTANTIATE_SPLIT(float, float);
