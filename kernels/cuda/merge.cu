/*
 * merge.cu -- the CUDA twins of kernels/host/merge_host.c and kvstore_host.c.
 *
 * merge: grid (numTokens, numHeads), threads over headDim. Per (t, h), in base 2
 * (x_p = lse_p * log2 e unless lseBase2): m = max x_p; lse2 = m + log2 sum 2^(x_p - m);
 * out = sum_p 2^(x_p - lse2) o_p in part order, parts with x_p = -inf skipped (NaN-safe).
 * SUM mode: out = sum_p o_p. correct: o *= 2^(x - x_global), 0 where x = -inf.
 * kvStore: grid (numTokens), one row per block; owned tokens only (kv_layout.h).
 */
#include <cuda_runtime.h>
#include <math.h>

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

__global__ void kvStoreKernel(const cpclKvStoreParams_t p) {
  const int t = blockIdx.x;
  int s, r0, n;
  if (!rowOf(p.queryStart, p.seqLens, p.numSeqs, t, threadIdx.x == 0 ? p.errorFlag : nullptr, &s, &r0, &n)) return;
  const int64_t pos = (int64_t)p.seqLens[s] - n + (t - r0);
  if (cpclKvOwner(pos, p.cpSize, p.interleave) != p.cpRank) return;
  const int64_t li = cpclKvLocalIndex(pos, p.cpSize, p.interleave);
  if (li >= (int64_t)p.maxPagesPerSeq * p.pageSize) {
    if (threadIdx.x == 0) reportError(p.errorFlag, CPCL_KERR_CAPACITY, s, (int)li + 1, p.maxPagesPerSeq * p.pageSize);
    return;
  }
  const int32_t page = p.blockTable[(int64_t)s * p.maxPagesPerSeq + li / p.pageSize];
  if (page < 0) {
    if (threadIdx.x == 0) reportError(p.errorFlag, CPCL_KERR_PAGE, s, page, (int)(li / p.pageSize));
    return;
  }
  const int64_t slot = (int64_t)page * p.pageSize + li % p.pageSize;
  const size_t es = cpclKDtypeSize(p.kvType);
  const size_t kRow = (size_t)p.numKvHeads * p.headDimQk * es, vRow = (size_t)p.numKvHeads * p.headDimVo * es;
  /* rows are multiples of 16 bytes (head dims are multiples of 8): 16-byte copies */
  const uint4* ks = reinterpret_cast<const uint4*>(static_cast<const char*>(p.kNew) + t * kRow);
  uint4* kd = reinterpret_cast<uint4*>(static_cast<char*>(p.kCache) + slot * kRow);
  for (size_t i = threadIdx.x; i < kRow / 16; i += blockDim.x) kd[i] = ks[i];
  if (!p.latentKv) {
    const uint4* vs = reinterpret_cast<const uint4*>(static_cast<const char*>(p.vNew) + t * vRow);
    uint4* vd = reinterpret_cast<uint4*>(static_cast<char*>(p.vCache) + slot * vRow);
    for (size_t i = threadIdx.x; i < vRow / 16; i += blockDim.x) vd[i] = vs[i];
  }
}

}  // namespace cpcl

extern "C" int cpclCudaMerge(const cpclMergeParams_t* p, void* stream) {
  using namespace cpcl;
  if (p->numTokens == 0 || p->numHeads == 0) return 0;
  const dim3 grid(p->numTokens, p->numHeads);
  const int threads = p->headDim >= 128 ? 128 : 64;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  CPCL_DISPATCH_DTYPE(p->dtype, T, (mergeKernel<T><<<grid, threads, 0, s>>>(*p)));
  return (int)cudaGetLastError();
}

extern "C" int cpclCudaCorrect(const cpclCorrectParams_t* p, void* stream) {
  using namespace cpcl;
  if (p->numTokens == 0 || p->numHeads == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  CPCL_DISPATCH_DTYPE(p->dtype, T, (correctKernel<T><<<dim3(p->numTokens, p->numHeads), 128, 0, s>>>(*p)));
  return (int)cudaGetLastError();
}

extern "C" int cpclCudaKvStore(const cpclKvStoreParams_t* p, void* stream) {
  using namespace cpcl;
  if (p->numTokens == 0) return 0;
  kvStoreKernel<<<p->numTokens, 128, 0, static_cast<cudaStream_t>(stream)>>>(*p);
  return (int)cudaGetLastError();
}
