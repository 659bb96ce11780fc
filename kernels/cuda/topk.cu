/*
 * topk.cu -- the top-k filter of sparse attention on the device (topk_params.h), the CUDA twin of
 * kernels/host/topk_host.c. One CTA of 256 threads per row: each round, thread i tests 8
 * consecutive entries of the row's list (their loads issued together: one memory latency a round,
 * 2048 entries a round), a block-wide exclusive scan of the kept counts gives each thread its
 * place after the kept entries before it, so the compacted list keeps the list (score) order
 * without a second pass. (One warp per row walking 32 entries at a time was a chain of 64 memory
 * latencies at K = 2048: 44 us for 64 rows on an H200.) Nothing is allocated, no host step:
 * capturable in a CUDA graph.
 */
#include <cuda_runtime.h>

#include "common.cuh"
#include "dispatch.cuh"
#include "kv_layout.h"
#include "topk_params.h"

namespace cpcl {

constexpr int kTopkThreads = 256, kTopkPer = 8, kTopkRound = kTopkThreads * kTopkPer;

__global__ void __launch_bounds__(kTopkThreads) topkFilterKernel(const cpclTopkFilterParams_t p) {
  __shared__ int sWarp[kTopkThreads / 32];
  __shared__ int sBase;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int t = blockIdx.x;
  int s, r0, n;
  int64_t pos = -1; /* a bad or padding row keeps nothing (its attention leaves it empty) */
  if (rowOf(p.queryStart, p.seqLens, p.numSeqs, t, tid == 0 ? p.errorFlag : nullptr, &s, &r0, &n))
    pos = (int64_t)p.seqLens[s] - n + (t - r0);
  const int64_t K = p.topk;
  const int32_t* in = p.topkIndices + t * K;
  int32_t* out = p.localIdx + t * K;
  if (tid == 0) sBase = 0;
  __syncthreads();
  for (int64_t k0 = 0; k0 < K && pos >= 0; k0 += kTopkRound) {
    const int64_t kb = k0 + (int64_t)tid * kTopkPer;
    int64_t g[kTopkPer];
#pragma unroll
    for (int e = 0; e < kTopkPer; e++) g[e] = kb + e < K ? (int64_t)__ldg(in + kb + e) : -1;
    unsigned keep = 0;
#pragma unroll
    for (int e = 0; e < kTopkPer; e++)
      if (g[e] >= 0 && g[e] <= pos && cpclKvOwner(g[e], p.cpSize, p.interleave) == p.cpRank) keep |= 1u << e;
    const int mine = __popc(keep);
    /* exclusive scan of the kept counts over the CTA, in thread (= list) order */
    int incl = mine;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, incl, d);
      if (lane >= d) incl += v;
    }
    if (lane == 31) sWarp[warp] = incl;
    __syncthreads();
    int before = sBase;
    for (int w = 0; w < warp; w++) before += sWarp[w];
    before += incl - mine;
    int c = before;
#pragma unroll
    for (int e = 0; e < kTopkPer; e++)
      if ((keep >> e) & 1u) out[c++] = (int32_t)cpclKvLocalIndex(g[e], p.cpSize, p.interleave);
    __syncthreads(); /* every thread has read sBase and sWarp */
    if (tid == kTopkThreads - 1) sBase = before + mine;
    __syncthreads();
  }
  if (tid == 0) p.count[t] = pos >= 0 ? sBase : 0;
}

}  // namespace cpcl

extern "C" int cpclCudaTopkFilter(const cpclTopkFilterParams_t* p, void* stream) {
  using namespace cpcl;
  clearErrorDetail();
  if (p->numTokens == 0) return 0;
  if (p->topk < 1 || p->topk > CPCL_MAX_TOPK)
    return invalidValue("topk = %d is outside 1 .. %d", p->topk, CPCL_MAX_TOPK);
  topkFilterKernel<<<p->numTokens, kTopkThreads, 0, static_cast<cudaStream_t>(stream)>>>(*p);
  return (int)cudaGetLastError();
}
