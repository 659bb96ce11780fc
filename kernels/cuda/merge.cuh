/* merge.cuh -- the merge of one (row, head) of numParts partials (merge_params.h,
 * cpclMergeParams_t), shared by merge.cu's kernel and the fused kernel's merge CTAs. Threads of
 * the CTA split the head dimension; the arithmetic is merge_state.cuh's, in base 2
 * (x_p = lse_p * log2 e unless lseBase2). SUM mode: out = sum_p o_p. */
#ifndef CPCL_CUDA_MERGE_CUH_
#define CPCL_CUDA_MERGE_CUH_

#include "common.cuh"
#include "merge_params.h"
#include "merge_state.cuh"

namespace cpcl {

template <typename T>
__device__ __forceinline__ void mergeOne(const cpclMergeParams_t& p, int t, int h) {
  const int D = p.headDim;
  const int64_t oOff = t * p.oTokenStride + (int64_t)h * D;
  T* out = static_cast<T*>(p.out);
  if (p.mode == CPCL_MERGE_SUM) {
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      float a = 0.f;
      for (int q = 0; q < p.numParts; q++) a += toF<T>(static_cast<const T*>(p.o[q])[oOff + d]);
      out[t * p.outTokenStride + (int64_t)h * D + d] = fromF<T>(a);
    }
    return;
  }
  const float toB2 = p.lseBase2 ? 1.f : kLog2e;
  const int64_t lOff = t * p.lseTokenStride + h;
  LseMerge st;
  for (int q = 0; q < p.numParts; q++) st.max(p.lse[q][lOff] * toB2);
  if (st.live())
    for (int q = 0; q < p.numParts; q++) st.add(p.lse[q][lOff] * toB2);
  const float lse2 = st.lse();
  if (out) {
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      float a = 0.f;
      if (st.nan) {
        a = NAN;
      } else if (lse2 != -INFINITY) {
        for (int q = 0; q < p.numParts; q++) {
          const float x = p.lse[q][lOff] * toB2;
          if (x == -INFINITY) continue; /* never read: its bytes may be NaN */
          a += lseWeight(x, lse2) * toF<T>(static_cast<const T*>(p.o[q])[oOff + d]);
        }
      }
      out[t * p.outTokenStride + (int64_t)h * D + d] = fromF<T>(a);
    }
  }
  if (threadIdx.x == 0 && p.outLse) p.outLse[t * p.outLseTokenStride + h] = p.lseBase2 ? lse2 : lse2 * kLn2;
}

}  // namespace cpcl

#endif /* CPCL_CUDA_MERGE_CUH_ */
