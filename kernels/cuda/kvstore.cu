/*
 * kvstore.cu -- the CUDA twin of kernels/host/kvstore_host.c (kvstore_params.h): this step's
 * new K/V rows into the local paged cache. Grid (numTokens), one row per block; owned tokens
 * only (kv_layout.h).
 */
#include <cuda_runtime.h>

#include "common.cuh"
#include "dispatch.cuh"
#include "kvstore_params.h"

namespace cpcl {

__global__ void kvStoreKernel(const cpclKvStoreParams_t p) {
  const int t = blockIdx.x;
  int s, r0, n, sl;
  if (!rowOf(p.queryStart, p.seqLens, p.numSeqs, t, threadIdx.x == 0 ? p.errorFlag : nullptr, &s, &r0, &n, p.numTokens,
             &sl))
    return;
  const int64_t pos = (int64_t)sl - n + (t - r0);
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

extern "C" int cpclCudaKvStore(const cpclKvStoreParams_t* p, void* stream) {
  using namespace cpcl;
  clearErrorDetail();
  if (p->numTokens == 0) return 0;
  kvStoreKernel<<<p->numTokens, 128, 0, static_cast<cudaStream_t>(stream)>>>(*p);
  return (int)cudaGetLastError();
}
