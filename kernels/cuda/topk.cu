/*
 * topk.cu -- the top-k filter of sparse attention on the device (topk_params.h), the CUDA twin of
 * kernels/host/topk_host.c. One warp per row: the warp reads 32 consecutive entries of the row's
 * list, each lane tests its entry (valid, causal, owned), and a ballot gives each kept lane its
 * place after the kept entries before it, so the compacted list keeps the list (score) order
 * without a second pass. Nothing is allocated, no host step: capturable in a CUDA graph.
 */
#include <cuda_runtime.h>

#include "common.cuh"
#include "dispatch.cuh"
#include "kv_layout.h"
#include "topk_params.h"

namespace cpcl {

constexpr int kTopkWarps = 4;

__global__ void __launch_bounds__(kTopkWarps * 32) topkFilterKernel(const cpclTopkFilterParams_t p) {
  const int lane = threadIdx.x & 31;
  const int t = blockIdx.x * kTopkWarps + (threadIdx.x >> 5);
  if (t >= p.numTokens) return;
  int s, r0, n;
  int64_t pos = -1; /* a bad or padding row keeps nothing (its attention leaves it empty) */
  if (rowOf(p.queryStart, p.seqLens, p.numSeqs, t, lane == 0 ? p.errorFlag : nullptr, &s, &r0, &n))
    pos = (int64_t)p.seqLens[s] - n + (t - r0);
  const int64_t K = p.topk;
  const int32_t* in = p.topkIndices + t * K;
  int32_t* out = p.localIdx + t * K;
  int c = 0;
  for (int64_t k0 = 0; k0 < K && pos >= 0; k0 += 32) {
    const int64_t k = k0 + lane;
    const int64_t g = k < K ? (int64_t)__ldg(in + k) : -1;
    const bool keep = g >= 0 && g <= pos && cpclKvOwner(g, p.cpSize, p.interleave) == p.cpRank;
    const unsigned mask = __ballot_sync(0xffffffffu, keep);
    if (keep) out[c + __popc(mask & ((1u << lane) - 1u))] = (int32_t)cpclKvLocalIndex(g, p.cpSize, p.interleave);
    c += __popc(mask);
  }
  if (lane == 0) p.count[t] = c;
}

}  // namespace cpcl

extern "C" int cpclCudaTopkFilter(const cpclTopkFilterParams_t* p, void* stream) {
  using namespace cpcl;
  clearErrorDetail();
  if (p->numTokens == 0) return 0;
  if (p->topk < 1 || p->topk > CPCL_MAX_TOPK)
    return invalidValue("topk = %d is outside 1 .. %d", p->topk, CPCL_MAX_TOPK);
  const int blocks = (p->numTokens + kTopkWarps - 1) / kTopkWarps;
  topkFilterKernel<<<blocks, kTopkWarps * 32, 0, static_cast<cudaStream_t>(stream)>>>(*p);
  return (int)cudaGetLastError();
}
