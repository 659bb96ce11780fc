/* attn_common.cuh -- what the attention kernels share: the per-row KV split (batch-invariant)
 * and the merge of split partials. See attn.cu for the index math. */
#ifndef CPCL_CUDA_ATTN_COMMON_CUH_
#define CPCL_CUDA_ATTN_COMMON_CUH_

#include "common.cuh"

namespace cpcl {

constexpr int kBK = 32; /* split chunks are multiples of kBK keys */
constexpr int kChunkMin = 256;
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

struct RowSplit {
  int64_t len, chunk;
  int n;
};

__device__ __forceinline__ RowSplit rowSplit(const cpclAttnParams_t& p, int t, int* seqOut) {
  const int s = seqOfRow(p.queryStart, p.numSeqs, t);
  const int r0 = p.queryStart ? p.queryStart[s] : s;
  const int n = p.queryStart ? p.queryStart[s + 1] - r0 : 1;
  const int64_t pos = (int64_t)p.seqLens[s] - n + (t - r0);
  RowSplit r;
  r.len = pos < 0 ? 0 : cpclKvLocalLenOf(pos + 1, p.cpSize, p.cpRank, p.interleave);
  if (r.len == 0) {
    r.n = 1;
    r.chunk = 0;
  } else {
    int64_t ns = (r.len + kChunkMin - 1) / kChunkMin;
    ns = ns < p.maxSplits ? ns : p.maxSplits;
    r.chunk = ((r.len + ns - 1) / ns + kBK - 1) / kBK * kBK;
    r.n = (int)((r.len + r.chunk - 1) / r.chunk);
  }
  *seqOut = s;
  return r;
}

/* merges the splits of rows that have several; grid (numTokens, numHeads) */
template <typename TQ>
__global__ void splitMergeKernel(const cpclAttnParams_t p) {
  const int t = blockIdx.x, hi = blockIdx.y, g = p.headBegin + hi, T = p.numTokens, Dv = p.headDimVo;
  int s;
  const RowSplit rs = rowSplit(p, t, &s);
  if (rs.n == 1) return;
  const float* wsO = static_cast<const float*>(p.workspace);
  const float* wsLse = wsO + (int64_t)p.maxSplits * T * p.numHeads * Dv;
  float mx = -INFINITY;
  for (int k = 0; k < rs.n; k++) mx = fmaxf(mx, wsLse[((int64_t)k * T + t) * p.numHeads + hi]);
  float sum = 0.f;
  for (int k = 0; k < rs.n; k++) {
    const float x = wsLse[((int64_t)k * T + t) * p.numHeads + hi];
    if (x != -INFINITY) sum += exp2f(x - mx);
  }
  const float lse2 = mx == -INFINITY ? -INFINITY : mx + log2f(sum);
  const int Hb = p.headsPerBlock;
  TQ* o = static_cast<TQ*>(p.out) + (g / Hb) * p.oBlockStride + t * p.oTokenStride + (int64_t)(g % Hb) * Dv;
  for (int d = threadIdx.x; d < Dv; d += blockDim.x) {
    float a = 0.f;
    for (int k = 0; k < rs.n; k++) {
      const float x = wsLse[((int64_t)k * T + t) * p.numHeads + hi];
      if (x == -INFINITY) continue;
      a += exp2f(x - lse2) * wsO[(((int64_t)k * T + t) * p.numHeads + hi) * Dv + d];
    }
    o[d] = fromF<TQ>(a);
  }
  if (threadIdx.x == 0 && p.lse)
    p.lse[(g / Hb) * p.lseBlockStride + t * p.lseTokenStride + g % Hb] = p.lseBase2 ? lse2 : lse2 * kLn2;
}

}  // namespace cpcl

#endif /* CPCL_CUDA_ATTN_COMMON_CUH_ */
