/* attn_common.cuh -- what the attention kernels share: the per-row KV split (batch-invariant),
 * the grid, the addresses of queries and outputs, and the merge of split partials. See
 * attn_split.cuh for the index math. */
#ifndef CPCL_CUDA_ATTN_COMMON_CUH_
#define CPCL_CUDA_ATTN_COMMON_CUH_

#include "attn_params.h"
#include "common.cuh"
#include "merge_state.cuh"
#include "peer_sync.h"

namespace cpcl {

constexpr int kBK = 32; /* split chunks are multiples of kBK keys */
/* keys per split at least, unless p.splitChunkMin: measured on H100 (kernel_perf -x), 512 beat
 * 128 and 256 at batch 64-128 (fewer CTAs, less fixed cost each) and tied at batch 16 */
constexpr int kChunkMinDefault = 512;

struct RowSplit {
  int64_t len, chunk;
  int n;
};

__device__ __forceinline__ RowSplit rowSplit(const cpclAttnParams_t& p, int t, int* seqOut) {
  int s, r0, n, sl;
  RowSplit r;
  r.len = 0;
  if (rowOf(p.queryStart, p.seqLens, p.numSeqs, t, p.errorFlag, &s, &r0, &n, p.numTokens, &sl)) {
    const int64_t pos = (int64_t)sl - n + (t - r0);
    r.len = cpclKvLocalLenOf(pos + 1, p.cpSize, p.cpRank, p.interleave);
    const int64_t cap = (int64_t)p.maxPagesPerSeq * p.pageSize;
    if (r.len > cap) { /* the block-table row cannot hold it: never read past it */
      reportError(p.errorFlag, CPCL_KERR_CAPACITY, s, (int)min(r.len, (int64_t)INT32_MAX), (int)cap);
      r.len = 0;
    }
    /* sparse: the row's keys are its listed local indices (all inside the prefix checked above),
     * split like a prefix of that many keys */
    if (p.sparseIdx && r.len > 0) r.len = min((int64_t)max(p.sparseCount[t], 0), (int64_t)p.sparseStride);
  }
  if (r.len == 0) {
    r.n = 1;
    r.chunk = 0;
  } else {
    const int64_t cmin = p.splitChunkMin > 0 ? p.splitChunkMin : kChunkMinDefault;
    int64_t ns = (r.len + cmin - 1) / cmin;
    ns = ns < p.maxSplits ? ns : p.maxSplits;
    r.chunk = ((r.len + ns - 1) / ns + kBK - 1) / kBK * kBK;
    r.n = (int)((r.len + r.chunk - 1) / r.chunk);
  }
  *seqOut = s;
  return r;
}

/* Grid of the attention kernels: x = (row t, KV head kh) pairs, y = chunks of ctaHeads gathered
 * heads of one GQA group (16, or 64 for the wide tensor-core body), z = KV splits. */
constexpr int kCtaHeads = 16;  /* gathered heads a CTA serves (the M of the tensor-core tile) */
constexpr int kWideHeads = 64; /* the wide body: 4 warps of 16 heads over every key of a tile */

/* heads of one KV head this call covers: min(G, numHeads) */
__host__ __device__ inline int attnHeadsPerKv(const cpclAttnParams_t* p) {
  return p->groupSize < p->numHeads ? p->groupSize : p->numHeads;
}

inline dim3 attnGrid(const cpclAttnParams_t* p, int ctaHeads) {
  const int G = p->groupSize, headEnd = p->headBegin + p->numHeads;
  const int nKv = (headEnd - 1) / G - p->headBegin / G + 1;
  return dim3(p->numTokens * nKv, (attnHeadsPerKv(p) + ctaHeads - 1) / ctaHeads, p->maxSplits);
}

/* A CTA's place in the attention grid: blockIdx and gridDim.y for a plain launch, a ticket's
 * decoding inside the fused kernel (fused_kernel.cuh), which runs the same bodies. */
struct CtaIdx {
  int x, y, z;
};
__device__ __forceinline__ CtaIdx ctaFromBlock() { return CtaIdx{(int)blockIdx.x, (int)blockIdx.y, (int)blockIdx.z}; }

/* Query of gathered head g, row t: per-block bases (qBlock) or the strided layout. */
template <typename T>
__device__ __forceinline__ const T* attnQ(const cpclAttnParams_t& p, int g, int t) {
  const int Hb = p.headsPerBlock, j = g / Hb;
  const T* base = p.qBlock[0] ? static_cast<const T*>(p.qBlock[j]) : static_cast<const T*>(p.q) + j * p.qBlockStride;
  return base + t * p.qTokenStride + (int64_t)(g % Hb) * p.headDimQk;
}

/* Output addresses of gathered head g, row t: per-block bases (outBlock, the fused kernel's peer
 * slots) or the strided layout of attn_params.h. */
template <typename T>
__device__ __forceinline__ T* attnOut(const cpclAttnParams_t& p, int g, int t) {
  const int Hb = p.headsPerBlock, j = g / Hb;
  T* base = p.outBlock[0] ? static_cast<T*>(p.outBlock[j]) : static_cast<T*>(p.out) + j * p.oBlockStride;
  return base + t * p.oTokenStride + (int64_t)(g % Hb) * p.headDimVo;
}
__device__ __forceinline__ float* attnLse(const cpclAttnParams_t& p, int g, int t) {
  const int Hb = p.headsPerBlock, j = g / Hb;
  float* base = p.outBlock[0] ? p.lseBlock[j] : (p.lse ? p.lse + j * p.lseBlockStride : nullptr);
  return base ? base + t * p.lseTokenStride + g % Hb : nullptr;
}

/* Sparse attention: row t's compacted list of local keys (attn_params.h sparseIdx). */
__device__ __forceinline__ const int32_t* sparseRow(const cpclAttnParams_t& p, int t) {
  return p.sparseIdx + (int64_t)t * p.sparseStride;
}

/* What this CTA computes: heads [g0, g0 + nu) of row t (sequence s) on KV head kh, keys
 * [kBeg, kEnd) of split `split`. False when the CTA has nothing to do (uniform over the CTA). */
struct CtaWork {
  int t, kh, s, g0, nu, split;
  int bad; /* a negative page id among this split's pages: its keys are dropped, the row is empty */
  RowSplit rs;
  int64_t kBeg, kEnd;
};
__device__ __forceinline__ bool ctaWork(const cpclAttnParams_t& p, const CtaIdx& c, CtaWork& w,
                                        int ctaHeads = kCtaHeads) {
  const int G = p.groupSize, headEnd = p.headBegin + p.numHeads;
  const int khBegin = p.headBegin / G, nKv = (headEnd - 1) / G - khBegin + 1;
  w.t = c.x / nKv;
  w.kh = khBegin + c.x % nKv;
  const int gBegin = max(p.headBegin, w.kh * G), gEnd = min(headEnd, (w.kh + 1) * G);
  w.g0 = gBegin + c.y * ctaHeads;
  if (w.g0 >= gEnd) return false;
  w.nu = min(ctaHeads, gEnd - w.g0);
  w.rs = rowSplit(p, w.t, &w.s);
  w.split = c.z;
  if (w.split >= w.rs.n) return false;
  w.kBeg = w.split * w.rs.chunk;
  w.kEnd = min(w.rs.len, w.kBeg + w.rs.chunk);
  /* Page ids are checked where they are read: each split its own pages (the CTA agrees), so the
   * check costs a few loads of lines the body reads next. A bad split attends to nothing; with
   * one split the row is then empty, with several the last CTA sees the mark on the split
   * counter and writes the row empty (mergeSplitsIfLast). */
  w.bad = 0;
  if (w.kEnd > w.kBeg) {
    const int32_t* bt = p.blockTable + (int64_t)w.s * p.maxPagesPerSeq;
    int badPage = -1;
    if (p.sparseIdx) { /* the pages of the listed keys */
      const int32_t* idx = sparseRow(p, w.t);
      for (int64_t k = w.kBeg + threadIdx.x; k < w.kEnd && badPage < 0; k += blockDim.x) {
        const int pg = idx[k] / p.pageSize;
        if (bt[pg] < 0) badPage = pg;
      }
    } else {
      const int pBeg = (int)(w.kBeg / p.pageSize), pEnd = (int)((w.kEnd - 1) / p.pageSize) + 1;
      for (int i = pBeg + threadIdx.x; i < pEnd && badPage < 0; i += blockDim.x)
        if (bt[i] < 0) badPage = i;
    }
    if (__syncthreads_or(badPage >= 0)) {
      if (badPage >= 0) reportError(p.errorFlag, CPCL_KERR_PAGE, w.s, bt[badPage], badPage);
      w.bad = 1;
      w.kEnd = w.kBeg;
    }
  }
  return true;
}

/* The split counter of this CTA's (row, KV head, head chunk) (peer_sync.h): recomputed
 * from the work's own fields, so neither blockIdx nor a decoded ticket stays live through the
 * body (measured: a CtaIdx held in registers cost the MLA body 6% more instructions). */
__device__ __forceinline__ int counterIndex(const cpclAttnParams_t& p, const CtaWork& w, int ctaHeads) {
  const int G = p.groupSize, headEnd = p.headBegin + p.numHeads;
  const int khBegin = p.headBegin / G, nKv = (headEnd - 1) / G - khBegin + 1;
  const int gy = (attnHeadsPerKv(&p) + ctaHeads - 1) / ctaHeads;
  const int gBegin = max(p.headBegin, w.kh * G);
  return cpclSplitCounterIndex(w.t, w.kh - khBegin, nKv, (w.g0 - gBegin) / ctaHeads, gy);
}

/* Local token -> cache slot through the block table, in 32-bit arithmetic (a shard holds fewer
 * than 2^31 tokens), with shifts when pageSize is a power of two. */
struct PageMap {
  const int32_t* bt;
  int pg, shift;
  __device__ __forceinline__ PageMap(const int32_t* blockTable, int pageSize)
      : bt(blockTable), pg(pageSize), shift(-1) {
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
 * [numHeads] (base 2). Counters (p.splitCounters, peer_sync.h): one per (row, KV head, head
 * chunk), zero between calls. */
__device__ __forceinline__ float* wsLseOf(const cpclAttnParams_t& p) {
  return static_cast<float*>(p.workspace) + (int64_t)p.maxSplits * p.numTokens * p.numHeads * p.headDimVo;
}

/* Called by every thread of a CTA after it wrote its split's partials for heads [g0, g0 + nu)
 * (nu <= 16) of row t. The CTA that finishes last merges all splits of those heads (fp32, split
 * order, merge_state.cuh, so the result does not depend on which CTA is last) and writes out/lse, then re-arms
 * the counter (kMaxHeads: the CTA's head chunk, 16 or 64). Weights 2^(x_k - lse) go to shared memory once; the partials
 * are read as float4 with the splits unrolled, so many loads are in flight. Returns whether this CTA wrote out. */
template <typename TQ, int kMaxHeads = kCtaHeads>
__device__ bool mergeSplitsIfLast(const cpclAttnParams_t& p, const CtaWork& w) {
  const RowSplit& rs = w.rs;
  const int t = w.t, g0 = w.g0, nu = w.nu;
  constexpr int kMaxSplits = CPCL_CUDA_MAX_SPLITS;
  __shared__ int isLast;
  __shared__ float wts[kMaxHeads][kMaxSplits];
  __shared__ float lseOut[kMaxHeads];
  __threadfence();
  __syncthreads();
  unsigned* counter = p.splitCounters + counterIndex(p, w, kMaxHeads);
  /* arrivals count in the low bits, splits that met a bad page id add kBadSplit */
  constexpr unsigned kBadSplit = 1u << 16, kArrived = kBadSplit - 1;
  __shared__ int rowBad;
  if (threadIdx.x == 0) {
    const unsigned inc = w.bad ? 1u + kBadSplit : 1u;
    const unsigned prev = atomicAdd(counter, inc);
    isLast = (prev & kArrived) == (unsigned)rs.n - 1;
    rowBad = (prev + inc) >= kBadSplit;
    if (isLast) *counter = 0; /* every split has arrived: ready for the next call or graph replay */
  }
  __syncthreads();
  if (!isLast) return false;
  __threadfence();
  const int T = p.numTokens, Dv = p.headDimVo, n = rs.n;
  if (rowBad) { /* left empty, as a row with a bad page id is with one split */
    for (int i = threadIdx.x; i < nu * Dv; i += blockDim.x) {
      const int u = i / Dv, d = i - u * Dv;
      attnOut<TQ>(p, g0 + u, t)[d] = fromF<TQ>(0.f);
      float* lse = d == 0 ? attnLse(p, g0 + u, t) : nullptr;
      if (lse) *lse = -INFINITY;
    }
    return true;
  }
  const float* wsO = static_cast<const float*>(p.workspace);
  const float* wsLse = wsLseOf(p);
  for (int i = threadIdx.x; i < nu * n; i += blockDim.x) {
    const int u = i / n, k = i - u * n;
    wts[u][k] = __ldcg(wsLse + ((int64_t)k * T + t) * p.numHeads + (g0 + u - p.headBegin));
  }
  __syncthreads();
  for (int u = threadIdx.x; u < nu; u += blockDim.x) {
    LseMerge st; /* split LSEs are finite or -inf (merge_state.cuh) */
    for (int k = 0; k < n; k++) st.max(wts[u][k]);
    for (int k = 0; k < n; k++) st.add(wts[u][k]);
    const float lse2 = st.lseOfFinite();
    /* an empty split (x = -inf) weighs 0 and its partial is never used */
    for (int k = 0; k < n; k++) wts[u][k] = lseWeight(wts[u][k], lse2);
    lseOut[u] = lse2;
  }
  __syncthreads();
  const int dv4 = Dv / 4;
  for (int i = threadIdx.x; i < nu * dv4; i += blockDim.x) {
    const int u = i / dv4, d = (i - u * dv4) * 4, g = g0 + u, hi = g - p.headBegin;
    const float4* src = reinterpret_cast<const float4*>(wsO + ((int64_t)t * p.numHeads + hi) * Dv + d);
    const int64_t kStride = (int64_t)T * p.numHeads * Dv / 4;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 16
    for (int k = 0; k < n; k++) {
      const float w = wts[u][k];
      const float4 v = __ldcg(src + k * kStride);
      if (w != 0.f) {
        acc.x += w * v.x;
        acc.y += w * v.y;
        acc.z += w * v.z;
        acc.w += w * v.w;
      }
    }
    TQ* o = attnOut<TQ>(p, g, t) + d;
    o[0] = fromF<TQ>(acc.x);
    o[1] = fromF<TQ>(acc.y);
    o[2] = fromF<TQ>(acc.z);
    o[3] = fromF<TQ>(acc.w);
    float* lse = d == 0 ? attnLse(p, g, t) : nullptr;
    if (lse) *lse = p.lseBase2 ? lseOut[u] : lseOut[u] * kLn2;
  }
  return true;
}

}  // namespace cpcl

#endif /* CPCL_CUDA_ATTN_COMMON_CUH_ */
