/* CUDA-core attention, queries bf16, KV cache bf16 (attn_split.cuh), alone and fused. */
#include "../attn_split.cuh"

CPCL_INSTANTIATE_SPLIT(__nv_bfloat16, __nv_bfloat16);
