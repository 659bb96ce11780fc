/* CUDA-core attention, queries fp16, KV cache fp16 (attn_split.cuh), alone and fused. */
#include "../attn_split.cuh"

CPCL_INSTANTIATE_SPLIT(__half, __half);
