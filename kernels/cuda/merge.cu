/*
 * merge.cu -- the CUDA twins of kernels/host/merge_host.c (merge_params.h).
 *
 * merge: grid (numTokens, numHeads), threads over headDim; per (t, h) the merge of
 * merge_state.cuh in base 2 (x_p = lse_p * log2 e unless lseBase2), parts in order.
 * SUM mode: out = sum_p o_p. correct: o *= 2^(x - x_global), 0 where x = -inf.
 */
#include <cuda_runtime.h>
#include <math.h>

#include "dispatch.cuh"
#include "merge.cuh"

namespace cpcl {

template <typename T>
__global__ void mergeKernel(const cpclMergeParams_t p) {
  mergeOne<T>(p, blockIdx.x, blockIdx.y);
}

/* The LSE merge with 16-byte accesses: lanesPerHead = headDim / 8 threads a (row, head), each
 * with 8 elements, several (row, head) a CTA. Every part's lse is loaded at once, then every live
 * part's 8 elements at once (a part with lse -inf is never read), so a merge costs two memory
 * latencies instead of a chain per part (kernel_perf's merge row: B64 H16 D128 N8). The
 * arithmetic is mergeOne's, in the same order, so the bits are the same. */
template <typename T, int kMaxParts>
__global__ void __launch_bounds__(128) mergeVecKernel(const cpclMergeParams_t p) {
  const int lph = p.headDim / 8, slot = threadIdx.x / lph, lane = threadIdx.x % lph;
  const int64_t u = (int64_t)blockIdx.x * (blockDim.x / lph) + slot;
  if (slot >= (int)(blockDim.x / lph) || u >= (int64_t)p.numTokens * p.numHeads) return;
  const int t = (int)(u / p.numHeads), h = (int)(u % p.numHeads);
  const float toB2 = p.lseBase2 ? 1.f : kLog2e;
  const int64_t lOff = t * p.lseTokenStride + h, oOff = t * p.oTokenStride + (int64_t)h * p.headDim + lane * 8;
  float x[kMaxParts];
#pragma unroll
  for (int q = 0; q < kMaxParts; q++) x[q] = q < p.numParts ? __ldg(p.lse[q] + lOff) * toB2 : -INFINITY;
  uint4 v[kMaxParts];
#pragma unroll
  for (int q = 0; q < kMaxParts; q++)
    v[q] = q < p.numParts && x[q] != -INFINITY
               ? __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(p.o[q]) + oOff))
               : make_uint4(0, 0, 0, 0);
  LseMerge st;
#pragma unroll
  for (int q = 0; q < kMaxParts; q++)
    if (q < p.numParts) st.max(x[q]);
  if (st.live())
#pragma unroll
    for (int q = 0; q < kMaxParts; q++)
      if (q < p.numParts) st.add(x[q]);
  const float lse2 = st.lse();
  float a[8];
#pragma unroll
  for (int e = 0; e < 8; e++) a[e] = st.nan ? NAN : 0.f;
  if (!st.nan && lse2 != -INFINITY) {
#pragma unroll
    for (int q = 0; q < kMaxParts; q++) {
      if (q >= p.numParts || x[q] == -INFINITY) continue;
      const T* e8 = reinterpret_cast<const T*>(&v[q]);
#pragma unroll
      for (int e = 0; e < 8; e++) a[e] += lseWeight(x[q], lse2) * toF<T>(e8[e]);
    }
  }
  uint4 r;
  T* r8 = reinterpret_cast<T*>(&r);
#pragma unroll
  for (int e = 0; e < 8; e++) r8[e] = fromF<T>(a[e]);
  *reinterpret_cast<uint4*>(static_cast<T*>(p.out) + t * p.outTokenStride + (int64_t)h * p.headDim + lane * 8) = r;
  if (lane == 0 && p.outLse) p.outLse[t * p.outLseTokenStride + h] = p.lseBase2 ? lse2 : lse2 * kLn2;
}

/* whether mergeVecKernel serves p: LSE mode with an output, 2-byte elements, rows of 8k elements
 * up to 1024, at most 16 parts, every base and stride 16-byte aligned */
static bool mergeVecFits(const cpclMergeParams_t& p) {
  if (p.mode != CPCL_MERGE_LSE || p.out == nullptr || (p.dtype != CPCL_K_BF16 && p.dtype != CPCL_K_FP16)) return false;
  if (p.headDim % 8 != 0 || p.headDim > 1024 || p.numParts < 1 || p.numParts > 16) return false;
  if ((p.oTokenStride * 2) % 16 != 0 || (p.outTokenStride * 2) % 16 != 0 || ((uintptr_t)p.out & 15) != 0) return false;
  for (int q = 0; q < p.numParts; q++)
    if (((uintptr_t)p.o[q] & 15) != 0) return false;
  return true;
}

/* the smallest instance whose part count covers p's */
template <typename T>
void launchMergeVec(const cpclMergeParams_t& p, unsigned ctas, cudaStream_t s) {
  if (p.numParts <= 4)
    mergeVecKernel<T, 4><<<ctas, 128, 0, s>>>(p);
  else if (p.numParts <= 8)
    mergeVecKernel<T, 8><<<ctas, 128, 0, s>>>(p);
  else
    mergeVecKernel<T, 16><<<ctas, 128, 0, s>>>(p);
}

template <typename T>
__global__ void correctKernel(const cpclCorrectParams_t p) {
  const int t = blockIdx.x, h = blockIdx.y;
  const float toB2 = p.lseBase2 ? 1.f : kLog2e;
  const float x = p.lse[t * p.lseTokenStride + h] * toB2;
  const float xg = p.lseGlobal[t * p.lseGlobalTokenStride + h] * toB2;
  const float w = x == -INFINITY ? 0.f : exp2f(x - xg);
  T* o = static_cast<T*>(p.o) + t * p.oTokenStride + (int64_t)h * p.headDim;
  for (int d = threadIdx.x; d < p.headDim; d += blockDim.x) o[d] = fromF<T>(x == -INFINITY ? 0.f : toF<T>(o[d]) * w);
}

}  // namespace cpcl

extern "C" int cpclCudaMerge(const cpclMergeParams_t* p, void* stream) {
  using namespace cpcl;
  clearErrorDetail();
  if (p->numTokens == 0 || p->numHeads == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (mergeVecFits(*p)) {
    const int perCta = 128 / (p->headDim / 8);
    const int64_t units = (int64_t)p->numTokens * p->numHeads, ctas = (units + perCta - 1) / perCta;
    if (ctas <= 0x7fffffffLL) {
      const unsigned g = (unsigned)ctas;
      if (p->dtype == CPCL_K_BF16)
        launchMergeVec<__nv_bfloat16>(*p, g, s);
      else
        launchMergeVec<__half>(*p, g, s);
      return (int)cudaGetLastError();
    }
  }
  const dim3 grid(p->numTokens, p->numHeads);
  const int threads = p->headDim >= 128 ? 128 : 64;
  CPCL_DISPATCH_DTYPE(p->dtype, T, (mergeKernel<T><<<grid, threads, 0, s>>>(*p)));
  return (int)cudaGetLastError();
}

extern "C" int cpclCudaCorrect(const cpclCorrectParams_t* p, void* stream) {
  using namespace cpcl;
  clearErrorDetail();
  if (p->numTokens == 0 || p->numHeads == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  CPCL_DISPATCH_DTYPE(p->dtype, T, (correctKernel<T><<<dim3(p->numTokens, p->numHeads), 128, 0, s>>>(*p)));
  return (int)cudaGetLastError();
}
