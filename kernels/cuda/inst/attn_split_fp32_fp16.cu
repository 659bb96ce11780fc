/* CUDA-core attention, queries fp32, KV cache fp16 (attn_split.cuh), alone and fused. */
#include "../attn_split.cuh"

CPCL_INSTANTIATE_SPLIT(float, __half);
