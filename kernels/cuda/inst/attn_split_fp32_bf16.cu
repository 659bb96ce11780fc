/* CUDA-core attention, queries fp32, KV cache bf16 (attn_split.cuh), alone and fused. */
#include "../attn_split.cuh"

CPCL_INSTANTIATE_SPLIT(float, __nv_bfloat16);
