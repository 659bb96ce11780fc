/*
 * topk.cu -- the top-k filter of sparse attention on the device (topk_params.h), the CUDA twin of
 * kernels/host/topk_host.c. One CTA of 256 threads per row: each round, thread i tests 8
 * consecutive entries of the row's list (their loads issued together: one memory latency a round,
 * 2048 entries a round), a block-wide exclusive scan of the kept counts gives each thread its
 * place after the kept entries before it, so the compacted list keeps the list (score) order
 * without a second pass. (One warp per row walking 32 entries at a time was a chain of 64 memory
 * latencies at K = 2048: 44 us for 64 rows on an H200.) Nothing is allocated, no host step:
 * capturable in a CUDA graph.
 * Session 4 (docs/MLA_SM90.md): the owner and local index in 32-bit unsigned arithmetic (a listed
 * position is an int32 >= 0; the 64-bit divisions of kv_layout.h were four library calls an
 * entry), the first round's list loads issued before the row's lookup (its binary search over
 * queryStart is a chain of loads), and on compute capability 9.0+ a programmatic dependent launch
 * both ways: it waits (griddepcontrol.wait) before reading anything, and lets the attention after
 * it launch at once, so that the attention's CTAs are resident and set up while it runs; and the
 * attention's shared-memory carveout, so no SM is reconfigured between the two.
 */
#include <cuda_runtime.h>

#include <atomic>

#include "common.cuh"
#include "dispatch.cuh"
#include "kv_layout.h"
#include "pdl_launch.cuh"
#include "topk_own.cuh"
#include "topk_params.h"

namespace cpcl {

constexpr int kTopkThreads = 256, kTopkPer = 8, kTopkRound = kTopkThreads * kTopkPer;

__global__ void __launch_bounds__(kTopkThreads) topkFilterKernel(const cpclTopkFilterParams_t p) {
  __shared__ int sWarp[kTopkThreads / 32];
  __shared__ int sBase;
#if __CUDA_ARCH__ >= 900
  /* a programmatic dependent (cpclCudaTopkFilter): the grids before it may still run */
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  /* the sparse attention after it waits for this grid's completion before it reads anything */
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int t = blockIdx.x;
  const int64_t K = p.topk;
  const int32_t* in = p.topkIndices + t * K;
  int32_t* out = p.localIdx + t * K;
  /* the first round's entries, loaded before the row's lookup (independent of it) */
  int32_t g[kTopkPer];
  {
    const int64_t kb = (int64_t)tid * kTopkPer;
#pragma unroll
    for (int e = 0; e < kTopkPer; e++) g[e] = kb + e < K ? __ldg(in + kb + e) : -1;
  }
  int s, r0, n, sl;
  int64_t pos = -1; /* a bad or padding row keeps nothing (its attention leaves it empty) */
  if (rowOf(p.queryStart, p.seqLens, p.numSeqs, t, tid == 0 ? p.errorFlag : nullptr, &s, &r0, &n, p.numTokens, &sl))
    pos = (int64_t)sl - n + (t - r0);
  const uint32_t W = (uint32_t)p.cpSize, I = (uint32_t)p.interleave, rank = (uint32_t)p.cpRank;
  if (tid == 0) sBase = 0;
  __syncthreads();
  for (int64_t k0 = 0; k0 < K && pos >= 0; k0 += kTopkRound) {
    const int64_t kb = k0 + (int64_t)tid * kTopkPer;
    if (k0 > 0)
#pragma unroll
      for (int e = 0; e < kTopkPer; e++) g[e] = kb + e < K ? __ldg(in + kb + e) : -1;
    unsigned keep = 0;
    int32_t loc[kTopkPer];
#pragma unroll
    for (int e = 0; e < kTopkPer; e++)
      if (topkKeep(g[e], pos, W, I, rank, &loc[e])) keep |= 1u << e;
    const int mine = __popc(keep);
    /* exclusive scan of the kept counts over the CTA, in thread (= list) order */
    const int incl = warpInclusiveSum(mine, lane);
    if (lane == 31) sWarp[warp] = incl;
    __syncthreads();
    int before = sBase;
    for (int w = 0; w < warp; w++) before += sWarp[w];
    before += incl - mine;
    int c = before;
#pragma unroll
    for (int e = 0; e < kTopkPer; e++)
      if ((keep >> e) & 1u) out[c++] = loc[e];
    __syncthreads(); /* every thread has read sBase and sWarp */
    if (tid == kTopkThreads - 1) sBase = before + mine;
    __syncthreads();
  }
  if (tid == 0) p.count[t] = pos >= 0 ? sBase : 0;
}

/* per device: 1 when it takes programmatic dependent launches (compute capability 9.0+), 2 when
 * not, 0 not yet asked (racing threads store the same value) */
constexpr int kTopkDevices = 64;
std::atomic<int> topkPdl[kTopkDevices];
std::atomic<int> topkCarveout{0};

bool pdlOk() {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kTopkDevices) {
    cudaGetLastError();
    return false;
  }
  int v = topkPdl[dev].load(std::memory_order_acquire);
  if (v == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    v = major >= 9 ? 1 : 2;
    topkPdl[dev].store(v, std::memory_order_release);
  }
  return v == 1;
}

/* The filter asks for the largest shared-memory carveout, as the sparse attention after it (222 KB
 * a CTA) and its merge do, so the SMs are not reconfigured between the kernels of every step (a
 * preference, set once: a failure only costs that) */
void preferMaxShared() {
  if (topkCarveout.load(std::memory_order_acquire)) return;
  if (cudaFuncSetAttribute(topkFilterKernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                           cudaSharedmemCarveoutMaxShared) != cudaSuccess)
    cudaGetLastError();
  topkCarveout.store(1, std::memory_order_release);
}

}  // namespace cpcl

extern "C" int cpclCudaTopkFilter(const cpclTopkFilterParams_t* p, void* stream) {
  using namespace cpcl;
  clearErrorDetail();
  if (p->numTokens == 0) return 0;
  if (p->topk < 1 || p->topk > CPCL_MAX_TOPK)
    return invalidValue("topk = %d is outside 1 .. %d", p->topk, CPCL_MAX_TOPK);
  if (p->cpSize < 1 || p->interleave < 1 || p->cpRank < 0 || p->cpRank >= p->cpSize)
    return invalidValue("cpSize = %d, cpRank = %d, interleave = %d: cpSize, interleave >= 1 and 0 <= cpRank < cpSize",
                        p->cpSize, p->cpRank, p->interleave);
  preferMaxShared();
  const cudaError_t e = launchPdl(topkFilterKernel, dim3((unsigned)p->numTokens), dim3(kTopkThreads), 0,
                                  static_cast<cudaStream_t>(stream), pdlOk(), *p);
  if (e != cudaSuccess) cudaGetLastError();
  return (int)e;
}
