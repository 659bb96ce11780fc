/* CUDA-core attention, queries fp16, KV cache fp32 (attn_split.cuh), alone and fused. */
#include "../attn_split.cuh"

CPCL_INSTANTIATE_SPLIT(__half, float);
