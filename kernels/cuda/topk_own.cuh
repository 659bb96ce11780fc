/*
 * topk_own.cuh -- the top-k filter's rule for one listed position (DESIGN.md §2, §4.3), shared by the
 * filter kernel (topk.cu) and the Hopper MLA body's own filter (mla_sm90.cuh, Split.topkRaw), so the two
 * keep exactly the same entries.
 */
#ifndef CPCL_CUDA_TOPK_OWN_CUH_
#define CPCL_CUDA_TOPK_OWN_CUH_

#include <stdint.h>

namespace cpcl {

/* owner(g) == rank and localIndex(g) of kv_layout.h for 0 <= g < 2^31, in 32-bit unsigned
 * arithmetic: g / (W I) == (g / I) / W and g % I == g - (g / I) I for g >= 0 */
__device__ __forceinline__ bool ownedLocal(uint32_t g, uint32_t W, uint32_t I, uint32_t rank, int32_t* local) {
  const uint32_t u = g / I, v = u / W;
  *local = (int32_t)(v * I + (g - u * I));
  return u - v * W == rank;
}

/* listed position g of a row at global position pos is kept: a position (>= 0), not past the row,
 * owned by this rank; *local is then its local index */
__device__ __forceinline__ bool topkKeep(int32_t g, int64_t pos, uint32_t W, uint32_t I, uint32_t rank,
                                         int32_t* local) {
  return g >= 0 && g <= pos && ownedLocal((uint32_t)g, W, I, rank, local);
}

/* the inclusive sum of v over lanes 0 .. lane of the warp (the compaction's scan) */
__device__ __forceinline__ int warpInclusiveSum(int v, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += u;
  }
  return v;
}

}  // namespace cpcl

#endif /* CPCL_CUDA_TOPK_OWN_CUH_ */
