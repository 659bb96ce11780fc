/*
 * merge_state.cuh -- the LSE merge of partial attention states, written once for the CUDA
 * kernels (the C twin: kernels/host/merge_state.h). Used by the merge kernel and the fused
 * kernel's merge CTAs (merge.cuh) and by the split merge inside the attention kernels
 * (attn_common.cuh).
 *
 * Parts (o_k, x_k), x_k the base-2 LSE of part k, merged in fp32 and in part order, so the
 * result does not depend on which part arrived first:
 *   m = max_k x_k;  lse = m + log2 sum_k 2^(x_k - m);  out = sum_k 2^(x_k - lse) o_k
 * NaN-safe: a part with x = -inf contributes nothing whatever its o holds (its weight is 0 and
 * callers never read its o); all parts -inf give lse = -inf, out = 0; a NaN x is not hidden
 * (lse and out NaN). The attention kernels' own split LSEs are finite or -inf.
 * Two passes over the parts: max() of each, then, when live(), add() of each.
 */
#ifndef CPCL_CUDA_MERGE_STATE_CUH_
#define CPCL_CUDA_MERGE_STATE_CUH_

#include <math.h>

namespace cpcl {

struct LseMerge {
  float m = -INFINITY, sum = 0.f;
  bool nan = false;
  __device__ __forceinline__ void max(float x) {
    nan |= isnan(x);
    m = fmaxf(m, x);
  }
  /* whether any part contributes (and none is NaN): only then is the sum needed */
  __device__ __forceinline__ bool live() const { return !nan && m != -INFINITY; }
  __device__ __forceinline__ void add(float x) {
    if (x != -INFINITY) sum += exp2f(x - m);
  }
  __device__ __forceinline__ float lse() const { return nan ? NAN : m == -INFINITY ? -INFINITY : m + log2f(sum); }
  /* lse() for parts known to be finite or -inf (the attention kernels' own split LSEs), with
   * add() of every part: no NaN test */
  __device__ __forceinline__ float lseOfFinite() const { return sum > 0.f ? m + log2f(sum) : -INFINITY; }
};

/* the weight of part x in out, given the merged lse: 0 for a part that contributes nothing */
__device__ __forceinline__ float lseWeight(float x, float lse) { return x == -INFINITY ? 0.f : exp2f(x - lse); }

}  // namespace cpcl

#endif /* CPCL_CUDA_MERGE_STATE_CUH_ */
