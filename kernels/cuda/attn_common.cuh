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

/* Local token -> cache slot through the block table, in 32-bit arithmetic (a shard holds fewer
 * than 2^31 tokens), with shifts when pageSize is a power of two. */
struct PageMap {
  const int32_t* bt;
  int pg, shift;
  __device__ __forceinline__ PageMap(const int32_t* blockTable, int pageSize) : bt(blockTable), pg(pageSize), shift(-1) {
    if ((pageSize & (pageSize - 1)) == 0) shift = __ffs(pageSize) - 1;
  }
  __device__ __forceinline__ int64_t slot(int64_t key) const {
    const int k = (int)key;
    if (shift >= 0) return ((int64_t)bt[k >> shift] << shift) | (k & (pg - 1));
    const int q = k / pg;
    return (int64_t)bt[q] * pg + (k - q * pg);
  }
};

/* Split workspace: wsO [maxSplits][numTokens][numHeads][Dv] fp32, then wsLse [maxSplits][numTokens]
 * [numHeads] (base 2). Counters (p.splitCounters): one per (row, KV head, head chunk), zero
 * between calls. */
__device__ __forceinline__ float* wsLseOf(const cpclAttnParams_t& p) {
  return static_cast<float*>(p.workspace) + (int64_t)p.maxSplits * p.numTokens * p.numHeads * p.headDimVo;
}

/* Called by every thread of a CTA after it wrote its split's partials for heads [g0, g0 + nu) of
 * row t. The CTA that finishes last merges all splits of those heads (fp32, split order, so the
 * result does not depend on which CTA is last) and writes out/lse, then re-arms the counter. */
template <typename TQ>
__device__ void mergeSplitsIfLast(const cpclAttnParams_t& p, const RowSplit& rs, int t, int g0, int nu) {
  __shared__ int isLast;
  __threadfence();
  __syncthreads();
  unsigned* counter = p.splitCounters + (blockIdx.x * gridDim.y + blockIdx.y);
  if (threadIdx.x == 0) {
    const unsigned prev = atomicAdd(counter, 1u);
    isLast = prev == (unsigned)rs.n - 1;
    if (isLast) *counter = 0; /* every split has arrived: ready for the next call or graph replay */
  }
  __syncthreads();
  if (!isLast) return;
  __threadfence();
  const int T = p.numTokens, Dv = p.headDimVo, Hb = p.headsPerBlock;
  const float* wsO = static_cast<const float*>(p.workspace);
  const float* wsLse = wsLseOf(p);
  for (int i = threadIdx.x; i < nu * Dv; i += blockDim.x) {
    const int u = i / Dv, d = i % Dv, g = g0 + u, hi = g - p.headBegin;
    float mx = -INFINITY;
    for (int k = 0; k < rs.n; k++) mx = fmaxf(mx, __ldcg(wsLse + ((int64_t)k * T + t) * p.numHeads + hi));
    float sum = 0.f, acc = 0.f;
    if (mx != -INFINITY) {
#pragma unroll 4
      for (int k = 0; k < rs.n; k++) {
        const float x = __ldcg(wsLse + ((int64_t)k * T + t) * p.numHeads + hi);
        if (x == -INFINITY) continue; /* an empty split: its bytes are never read */
        const float w = exp2f(x - mx);
        sum += w;
        acc += w * __ldcg(wsO + (((int64_t)k * T + t) * p.numHeads + hi) * Dv + d);
      }
    }
    const float lse2 = sum > 0.f ? mx + log2f(sum) : -INFINITY;
    TQ* o = static_cast<TQ*>(p.out) + (g / Hb) * p.oBlockStride + t * p.oTokenStride + (int64_t)(g % Hb) * Dv;
    o[d] = fromF<TQ>(sum > 0.f ? acc / sum : 0.f);
    if (d == 0 && p.lse)
      p.lse[(g / Hb) * p.lseBlockStride + t * p.lseTokenStride + g % Hb] = p.lseBase2 ? lse2 : lse2 * kLn2;
  }
}

}  // namespace cpcl

#endif /* CPCL_CUDA_ATTN_COMMON_CUH_ */
