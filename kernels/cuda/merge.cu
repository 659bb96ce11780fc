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
  const dim3 grid(p->numTokens, p->numHeads);
  const int threads = p->headDim >= 128 ? 128 : 64;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
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
