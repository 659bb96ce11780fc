/* CUDA-core attention, queries fp16, KV cache bf16 (attn_split.cuh), alone and fused. */
#include "../attn_split.cuh"

CPCL_INSTANTIATE_SPLIT(__half, __nv_bfloat16);
