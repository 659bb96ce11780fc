/*
 * gqa_sm90.cuh -- GQA paged decode attention for Hopper (sm_90a): a producer warp streams K/V
 * tiles into kStages-deep shared memory completing on mbarriers, four consumer warps run
 * mma.sync m16n8k16 (fp32 accumulate), and the KV splits of one row live in one thread-block
 * cluster whose CTAs merge through distributed shared memory (no global workspace, no atomics,
 * no second kernel).
 *
 * Shapes: q [rows][H][D], kCache/vCache [pages][pageSize][Hkv][D], out [rows][H][D] (normalised),
 * lse [rows][H] fp32 (natural log; base 2 with lseBase2), T = bf16 or fp16 for q, KV and out,
 * D = 64 or 128. Group G = H / Hkv: head g reads KV head g / G. Row t of sequence s (n rows, from
 * queryStart) sits at global position seqLens[s] - n + j and attends to the local prefix
 * [0, localLen(cpRank, pos + 1)) (DESIGN.md §2, kv_layout.h); seqLens[s] == 0 is padding.
 *
 * Grid (CL * rows, headBlocks * nKv, 1), cluster (CL, 1, 1): cluster = one (row, KV head, head
 * block), CTA rank = split index; nKv = the KV heads heads [headBegin, headBegin + numHeads) touch,
 * headBlocks = ceil(min(G, numHeads) / HC). A CTA holds HC = 16 HB heads (HB = 1, 2, 4: G <= 16, 32, 64;
 * larger G takes ceil(G / 64) head blocks, each reading the KV once). 160 threads, 2 CTAs an SM:
 *   warp 4 (producer), per 64-key tile, block-table entries read one tile ahead, then (kMode)
 *     2: TMA tensor boxes of min(pageSize, 64) keys x 64 dims (SWIZZLE_128B), D / 64 per page
 *        for K and V, one expect_tx arrive on full[stage]; the fastest (gqa_sm90_notes.md).
 *     0: 16-byte cp.async per lane, rows padded by 16 bytes, keys past the end zero-filled,
 *        cp.async.mbarrier.arrive per lane; any page size (1 too).
 *     1: one cp.async.bulk per K/V row: issue-bound (~5 GB/s a CTA), kept only to measure.
 *     A stage is refilled after the 4 consumer warps arrive on empty[stage].
 *   warps 0-3 (consumers): warp w takes head block w % HB (16 heads as mma's M) and key group
 *     w / HB (64 HB / 4 keys of each tile): S = Q K^T, online softmax in base 2, O += P V
 *     (fragment layouts as attn_mma.cu). Keys past the split's end: S = -inf by select, and
 *     their V rows are zero (cp.async zero-fill; with TMA the consumers zero them in the last
 *     tile, fence.proxy.async, named barrier), so P = 0 never meets stale or NaN bytes. Key
 *     groups of one head block merge through shared memory.
 * Splits (batch-invariant: the row's own length L and plan constants CL, chunkMin only):
 *   ns = min(CL, max(1, ceil(L / chunkMin))), chunk = roundup(ceil(L / ns), 64), ns = ceil(L / chunk).
 * Bad batch data (params_common.h): a row rowOf rejects, or one longer than its block-table row,
 * is empty and recorded; each CTA checks the page ids of its own split (the lines its producer
 * reads next), and a negative one empties the whole row (the merge reads every split's mark).
 * Each CTA leaves its normalised fp32 partial and base-2 LSE in its shared memory; after a
 * cluster barrier CTA r merges every CL-th float4 of the outputs over splits 0..ns-1 in order
 * (DESIGN.md §1: exact, -inf partials skipped, all -inf gives o = 0, lse = -inf), then a second
 * barrier keeps every CTA's shared memory alive until all reads are done. ns == 1 skips both.
 * Workspace merge (p.wsO set; the bench's variant S, the library's form 1): no cluster, CL up to
 * kMaxWsSplits, the same split rule; a split past the row's count exits at once, a CTA of a row
 * with ns > 1 stores its partial and base-2 LSE (NaN after a bad page) to the workspace, and
 * gqaMergeKernel, launched as a programmatic dependent, merges them (the tail of this file).
 * Tail merge (p.wsCount set too; variant F, form 2): the same stores, then an arrival count per
 * (row, KV head, head block) = (t, blockIdx.y); the last of the row's ns splits to arrive merges
 * its nh heads with the merge kernel's weight, accumulation and store arithmetic (tailMerge), and
 * re-arms the count: one kernel, the same bits.
 */
#ifndef CPCL_CUDA_GQA_SM90_CUH_
#define CPCL_CUDA_GQA_SM90_CUH_

#include <cooperative_groups.h>
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include <atomic>
#include <type_traits>

#include "mma_sync.cuh"
#include "sm90_ptx.cuh"
#include "../kv_layout.h"
#include "common.cuh"
#include "fused_params.h"
#include "gqa_sm90.h"

namespace cpcl {
namespace gqa90 {

using namespace ::cpcl::sm90; /* the Hopper PTX wrappers */

namespace cg = cooperative_groups;

constexpr int kTile = 64, kConsumerWarps = 4, kThreads = 32 * (kConsumerWarps + 1), kMaxCluster = 16;
/* the workspace merge (p.wsO set): most splits a row, warps (one a (row, head)) of a merge CTA at
 * most, and the partials a lane loads before it adds any (the loads in flight together:
 * kMergeBatch in the tail merge and in gqaMergeKernel, kMergeSpreadBatch in its spread form). Up to
 * kMergeSpreadUnits (row, head) units, gqa_sm90.cu launches the spread form: one warp a CTA, so a
 * B = 1 step's 16 units run on 16 SMs, 32 loads in flight (its 64 splits in two round trips), and
 * the row's batch data read before the grid-dependency wait (docs/GQA_SM90.md, "Session 11") */
constexpr int kMaxWsSplits = 64, kMergeWarps = 4, kMergeBatch = 16, kMergeSpreadBatch = 32;
constexpr int64_t kMergeSpreadUnits = 1024;
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

/* A stage holds kTile K rows, then kTile V rows.
 *   cp.async / per-row bulk: rows of D * 2 + 16 bytes (the pad makes ldmatrix conflict-free).
 *   TMA tensor boxes: D / 64 column halves of [kTile rows][128 bytes], 128-byte swizzled (chunk
 *     c of row r at r * 128 + ((c ^ (r % 8)) * 16)), each half 1024-byte aligned. */
template <int D, bool kTma>
struct Layout {
  static constexpr int kRowB = kTma ? 128 : D * 2 + 16;
  static constexpr int kHalfB = kTile * 128;
  static constexpr int kVOff = kTma ? (D / 64) * kHalfB : kTile * kRowB;
  static constexpr int kStageB = 2 * kVOff;
  static constexpr int kOStride = D + 4; /* fp32 rows of the key-group merge */
  /* shared-memory address of 16-byte chunk `chunk` (0 .. D / 8 - 1) of row r */
  static __device__ __forceinline__ uint32_t addr(uint32_t base, int r, int chunk) {
    if (kTma) return base + (chunk >> 3) * kHalfB + r * 128 + (((chunk & 7) ^ (r & 7)) << 4);
    return base + r * kRowB + chunk * 16;
  }
};
/* the tail (merge scratch) reuses the stages: key-group states, then the CTA's partial */
template <int D, int HB>
struct Tail {
  static constexpr int HC = 16 * HB;
  static constexpr size_t kMW = 0;                                  /* [4 warps][16] */
  static constexpr size_t kLW = kMW + 4 * 16 * 4;                   /* [4 warps][16] */
  static constexpr size_t kOW = kLW + 4 * 16 * 4;                   /* [4][16][D + 4] */
  static constexpr size_t kPO = kOW + (size_t)4 * 16 * (D + 4) * 4; /* [HC][D] */
  static constexpr size_t kPL = kPO + (size_t)HC * D * 4;           /* [HC] */
  static constexpr size_t kEnd = kPL + HC * 4;
};
/* full[16], empty[16], the split's bad-page mark (+256), the tail merge's last-arrival flag (+260) */
constexpr int kBarBytes = 16 * 2 * 8 + 16;
/* CPCL_GQA_RACECHECK_SCRATCH, a build for compute-sanitizer's racecheck only (docs/GQA_SM90.md
 * "Session 19"): the tail's scratch (Tail, and the tail merge's weights) past the stages
 * instead of over them, so no byte the TMA writes is ever written or read by threads too; racecheck
 * reports hazards across the epilogue's __syncthreads that no model of the code explains, and this
 * build tells whether the async proxy's earlier writes of the same bytes are what it mis-orders.
 * One CTA an SM at 3 stages (D 128, HB 4: 96 + 67 KB); never the library's build. */
#ifdef CPCL_GQA_RACECHECK_SCRATCH
constexpr bool kScratchApart = true;
#else
constexpr bool kScratchApart = false;
#endif
/* where the scratch starts in the body, and the body's bytes */
template <int D, int HB, bool kTma>
__host__ __device__ constexpr size_t scratchOff(int stages) {
  return kScratchApart ? (size_t)stages * Layout<D, kTma>::kStageB : 0;
}
template <int D, int HB, bool kTma>
__host__ __device__ constexpr size_t bodyBytes(int stages) {
  const size_t st = (size_t)stages * Layout<D, kTma>::kStageB, tail = Tail<D, HB>::kEnd;
  return kScratchApart ? st + tail : st > tail ? st : tail;
}
/* + 1024: the body starts at the first 1024-byte boundary (the swizzle atoms) */
template <int D, int HB, bool kTma>
__host__ __device__ constexpr size_t smemBytes(int stages) {
  return 1024 + bodyBytes<D, HB, kTma>(stages) + kBarBytes;
}

/* ---- PTX wrappers of this body only (the shared ones: sm90_ptx.cuh) ---- */

/* 16 bytes global -> shared, or 16 zero bytes (nothing read) when !valid */
__device__ __forceinline__ void cpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}

/* ---- wgmma (the kWg consumers: one warpgroup of 64 heads) ---- */
#include "gqa_sm90_wgmma.inc"

/* The diagnostic timeline (docs/GQA_SM90.md "Session 15"): with CPCL_GQA_TRACE defined (the bench's
 * traced build only; the library's code stays as measured), GQA90_MARK(slot, m) stores the global
 * timer (ns) at mark m of CTA slot (the table of gqa_sm90.h); cpclGqaSm90TraceRead (gqa_sm90.cu)
 * copies it out. */
constexpr int kTraceSlots = CPCL_GQA_TRACE_SLOTS, kTraceMerge = CPCL_GQA_TRACE_MERGE,
              kTraceMarks = CPCL_GQA_TRACE_MARKS;
#ifdef CPCL_GQA_TRACE
__device__ unsigned long long gqaTrace[kTraceSlots][kTraceMarks];
__device__ __forceinline__ void gqaMark(int slot, int m) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  if (slot >= 0 && slot < kTraceSlots) gqaTrace[slot][m] = t;
}
#define GQA90_MARK(slot, m) gqaMark(slot, m)
#else
#define GQA90_MARK(slot, m) ((void)0)
#endif
template <typename T, int D>
struct WgOp;
template <>
struct WgOp<__nv_bfloat16, 64> {
  static __device__ __forceinline__ void s(float (&d)[32], const uint32_t (&a)[4], uint64_t b, int sc) {
    wgRSBf16_n64t0(d, a, b, sc);
  }
  static __device__ __forceinline__ void pv(float (&d)[32], const uint32_t (&a)[4], uint64_t b) {
    wgRSBf16_n64t1(d, a, b, 1);
  }
};
template <>
struct WgOp<__nv_bfloat16, 128> {
  static __device__ __forceinline__ void s(float (&d)[32], const uint32_t (&a)[4], uint64_t b, int sc) {
    wgRSBf16_n64t0(d, a, b, sc);
  }
  static __device__ __forceinline__ void pv(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
    wgRSBf16_n128t1(d, a, b, 1);
  }
};
template <>
struct WgOp<__half, 64> {
  static __device__ __forceinline__ void s(float (&d)[32], const uint32_t (&a)[4], uint64_t b, int sc) {
    wgRSF16_n64t0(d, a, b, sc);
  }
  static __device__ __forceinline__ void pv(float (&d)[32], const uint32_t (&a)[4], uint64_t b) {
    wgRSF16_n64t1(d, a, b, 1);
  }
};
template <>
struct WgOp<__half, 128> {
  static __device__ __forceinline__ void s(float (&d)[32], const uint32_t (&a)[4], uint64_t b, int sc) {
    wgRSF16_n64t0(d, a, b, sc);
  }
  static __device__ __forceinline__ void pv(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
    wgRSF16_n128t1(d, a, b, 1);
  }
};

/* Which keys a query row attends to: L = 0 for padding and for bad rows (recorded). */
struct RowWork {
  int s;     /* sequence */
  int64_t L; /* local prefix length */
};
__device__ __forceinline__ RowWork rowWork(const GqaParams& p, int t) {
  RowWork r;
  int r0, n, len;
  r.L = 0;
  if (rowOf(p.queryStart, p.seqLens, p.numSeqs, t, p.errorFlag, &r.s, &r0, &n, p.numTokens, &len)) {
    r.L = cpclKvLocalLenOf((int64_t)len - n + (t - r0) + 1, p.cpSize, p.cpRank, p.interleave);
    const int64_t cap = (int64_t)p.maxPagesPerSeq * p.pageSize;
    if (r.L > cap) { /* the block-table row cannot hold it: never read past it */
      reportError(p.errorFlag, CPCL_KERR_CAPACITY, r.s, (int)min(r.L, (int64_t)INT32_MAX), (int)cap);
      r.L = 0;
    }
  }
  return r;
}

/* element offset of head g, row t in the block layout (gqa_sm90.h) */
__device__ __forceinline__ int64_t headOff(int g, int t, int Hb, int64_t blockStride, int64_t tokenStride, int width) {
  return (int64_t)(g / Hb) * blockStride + (int64_t)t * tokenStride + (int64_t)(g % Hb) * width;
}

/* the row's split count and chunk: its own length and the plan's constants only */
__host__ __device__ __forceinline__ void splitOf(int64_t L, int CL, int chunkMin, int* ns, int64_t* chunk) {
  if (L <= 0) {
    *ns = 1;
    *chunk = 0;
    return;
  }
  int64_t n = (L + chunkMin - 1) / chunkMin;
  if (n > CL) n = CL;
  if (n < 1) n = 1;
  int64_t c = (L + n - 1) / n;
  c = (c + kTile - 1) / kTile * kTile;
  *chunk = c;
  *ns = (int)((L + c - 1) / c);
}

/* Where a CTA's queries come from and its outputs go, and what runs once it knows it has work:
 * StandaloneCta for gqaDecodeKernel (p's strided layout: q, out, lse with their block strides),
 * FusedCta (gqa_sm90_fused.cuh) inside the fused decode kernel (fused_params.h: the per-block bases
 * qBlock / outBlock / lseBlock of its cpclAttnParams_t, and the query put and the owners' wait
 * before the first query read). */
struct StandaloneCta {
  static constexpr bool kFused = false;
  __device__ __forceinline__ void work(int, int) const {}
  template <typename T, int D>
  __device__ __forceinline__ const T* q(const GqaParams& p, int g, int t) const {
    return static_cast<const T*>(p.q) + headOff(g, t, p.headsPerBlock, p.qBlockStride, p.qTokenStride, D);
  }
  template <typename T, int D>
  __device__ __forceinline__ T* out(const GqaParams& p, int g, int t) const {
    return static_cast<T*>(p.out) + headOff(g, t, p.headsPerBlock, p.oBlockStride, p.oTokenStride, D);
  }
  /* nullptr: no LSE asked for */
  __device__ __forceinline__ float* lse(const GqaParams& p, int g, int t) const {
    return p.lse ? p.lse + headOff(g, t, p.headsPerBlock, p.lseBlockStride, p.lseTokenStride, 1) : nullptr;
  }
};

template <typename T, int D, int HC, class Cta>
__device__ __forceinline__ void tailMerge(const GqaParams& p, const Cta& cta, unsigned char* smem, int64_t u0, int t,
                                          int h0, int nh, int ns);

/* One CTA of the body: grid cell (bx, by) of a grid gy cells tall (gqaDecodeKernel's blockIdx,
 * gridDim.y). Returns whether this CTA wrote the final out / lse of its heads [*ctaG0, *ctaG0 +
 * *ctaNh) of its row (one split, the tail merge's last arrival, or its part of a cluster's). */
template <typename T, int D, int HB, int kMode, bool kWg, bool kTail, class Cta>
__device__ __forceinline__ bool gqaCta(const CUtensorMap& kMap, const CUtensorMap& vMap, const GqaParams& p,
                                       const Cta& cta, unsigned bx, unsigned by, unsigned gy, int* ctaG0, int* ctaNh) {
  constexpr bool kTma = kMode == 2;
  static_assert(!Cta::kFused || kTail, "the fused kernel merges a row's splits in the last one's tail");
  static_assert(!kWg || (HB == 4 && kTma), "the wgmma consumers take 64 heads (one warpgroup) and swizzled stages");
  using Lay = Layout<D, kTma>;
  using Tl = Tail<D, HB>;
  constexpr int kStageB = Lay::kStageB, kVOff = Lay::kVOff, KS = D / 16, NT = D / 8, HC = 16 * HB;
  constexpr int NKG = kConsumerWarps / HB; /* key groups per head block */
  constexpr int KPW = kTile / NKG;         /* keys per warp per tile */
  constexpr int N = KPW / 8;               /* n-tiles of 8 keys per warp */
  extern __shared__ __align__(1024) unsigned char smemRaw[];
  const int stages = p.stages;
  const uint32_t rawAddr = smemAddr(smemRaw);
  const uint32_t sBase = (rawAddr + 1023u) & ~1023u;
  unsigned char* smem = smemRaw + (sBase - rawAddr);
  const uint32_t barBase = sBase + (uint32_t)bodyBytes<D, HB, kTma>(stages);
  /* full[i] at barBase + 8 i, empty[i] at barBase + 128 + 8 i */

  const int G = p.groupSize, headEnd = p.headBegin + p.numHeads;
  const int headBlocks = (min(G, p.numHeads) + HC - 1) / HC;
  const int trSlot = (int)(by * (unsigned)(p.clusterSplits * p.numTokens) + bx); /* the trace's (GQA90_MARK) */
  (void)trSlot;
  if (threadIdx.x == 0) GQA90_MARK(trSlot, 0);
  const int CL = p.clusterSplits, split = bx % CL, t = bx / CL;
  const int kh = p.headBegin / G + by / headBlocks, hb = by % headBlocks;
  /* this CTA's heads g0 .. g0 + nh - 1: the same for every CTA of the cluster, so a cluster
   * with none leaves as a whole */
  const int g0 = max(p.headBegin, kh * G) + hb * HC, nh = min(HC, min(headEnd, (kh + 1) * G) - g0);
  *ctaG0 = g0;
  *ctaNh = nh;
  if (nh <= 0) return false;
  /* launched as a programmatic dependent (p.pdl): the prologue above overlapped the previous
   * kernel's tail; nothing it wrote is read before this (a no-op on a plain launch) */
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  if (threadIdx.x == 0) GQA90_MARK(trSlot, 1);
  const RowWork rw = rowWork(p, t);
  if (threadIdx.x == 0) GQA90_MARK(trSlot, 2);
  int ns;
  int64_t chunk;
  splitOf(rw.L, CL, p.chunkMin, &ns, &chunk);
  /* workspace merge: no cluster to take part in, so a split past the row's count has nothing to do */
  const bool ws = Cta::kFused || p.wsO != nullptr;
  if (ws && split >= ns) return false;
  cta.work(g0, nh); /* the fused kernel's put and wait, before anything reads the queries */
  const int64_t kBeg = split < ns ? (int64_t)split * chunk : 0;
  int64_t kEnd = split < ns ? min(rw.L, kBeg + chunk) : 0;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  /* page ids of this split, checked before anything is read through them (attn_common.cuh) */
  /* in the dynamic block (a static one would cost 1 KB of alignment a CTA) */
  int& splitBad = *reinterpret_cast<int*>(smem + bodyBytes<D, HB, kTma>(stages) + 256);
  if (kEnd > kBeg) {
    const int32_t* bt = p.blockTable + (int64_t)rw.s * p.maxPagesPerSeq;
    const int pBeg = (int)(kBeg / p.pageSize), pEnd = (int)((kEnd - 1) / p.pageSize) + 1;
    int badPage = -1;
    for (int i = pBeg + tid; i < pEnd && badPage < 0; i += kThreads)
      if (bt[i] < 0) badPage = i;
    if (__syncthreads_or(badPage >= 0)) {
      if (badPage >= 0) reportError(p.errorFlag, CPCL_KERR_PAGE, rw.s, bt[badPage], badPage);
      kEnd = kBeg;
    }
  }
  const bool bad = split < ns && kEnd == kBeg && rw.L > 0;
  if (tid == 0) splitBad = bad;
  if (tid == 0) GQA90_MARK(trSlot, 3);
  const int nTiles = kEnd > kBeg ? (int)((kEnd - kBeg + kTile - 1) / kTile) : 0;

  if (tid == 0) {
    for (int i = 0; i < stages; i++) {
      mbarInit(barBase + 8 * i, kMode == 0 ? 32 : 1);
      mbarInit(barBase + 128 + 8 * i, kConsumerWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();
  if (tid == 0) GQA90_MARK(trSlot, 4);

  const int gr = lane >> 2, cq = (lane & 3) * 2;
  const int hbW = warp % HB, kg = warp / HB; /* consumer: head block and key group */
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[NT][4];

  if (warp == kConsumerWarps) {
    /* ---- producer ---- */
    const T* kc = static_cast<const T*>(p.kCache);
    const T* vc = static_cast<const T*>(p.vCache);
    const int32_t* bt = p.blockTable + (int64_t)rw.s * p.maxPagesPerSeq;
    const int ps = p.pageSize, hkv = p.numKvHeads;
    if (kMode == 2) {
      /* boxes of bk = min(ps, 64) keys x 64 dims: lane j < 64 / bk owns box j of each tile (its
       * page looked up one tile ahead), D / 64 halves each of K and V */
      const int bk = ps < kTile ? ps : kTile, nBox = kTile / bk;
      auto pageOf = [&](int it) -> int {
        const int key = (int)(kBeg + (int64_t)it * kTile) + lane * bk;
        return (it < nTiles && lane < nBox && key < kEnd) ? bt[key / ps] : -1;
      };
      int pgNext = pageOf(0);
      for (int it = 0; it < nTiles; it++) {
        const int st = it % stages;
        const uint32_t full = barBase + 8 * st, empty = barBase + 128 + 8 * st;
        const int key = (int)(kBeg + (int64_t)it * kTile) + lane * bk;
        const int pg = pgNext;
        pgNext = pageOf(it + 1);
        const bool valid = pg >= 0;
        const int nValid = __popc(__ballot_sync(0xffffffffu, valid));
        if (it >= stages) mbarWait(empty, ((it / stages) - 1) & 1);
        if (lane == 0) mbarExpectTx(full, (uint32_t)nValid * (uint32_t)(bk * 128 * (D / 64) * 2));
        __syncwarp();
        if (valid) {
          const int slot = pg * ps + key % ps;
          const uint32_t sK = sBase + st * kStageB + lane * bk * 128;
          if (p.l2Hint) {
            const uint64_t pol = l2EvictFirst();
#pragma unroll
            for (int h = 0; h < D / 64; h++) {
              tmaLoad3dHint(sK + h * Lay::kHalfB, &kMap, h * 64, kh, slot, full, pol);
              tmaLoad3dHint(sK + kVOff + h * Lay::kHalfB, &vMap, h * 64, kh, slot, full, pol);
            }
          } else {
#pragma unroll
            for (int h = 0; h < D / 64; h++) {
              tmaLoad3d(sK + h * Lay::kHalfB, &kMap, h * 64, kh, slot, full);
              tmaLoad3d(sK + kVOff + h * Lay::kHalfB, &vMap, h * 64, kh, slot, full);
            }
          }
        }
        if (lane == 0 && it == 0) GQA90_MARK(trSlot, 5);
      }
      if (lane == 0) GQA90_MARK(trSlot, 6);
    } else {
      constexpr int kChunks = D / 8, kRowsPer = 32 / kChunks, kIters = kTile / kRowsPer;
      const int chunk16 = lane % kChunks, r0 = lane / kChunks;
      /* element offset of the K/V row of keys k0 + lane + 32 i, or -1 past kEnd; the page ids
       * are loaded one tile ahead, so the block-table latency hides behind the copies */
      auto pagesOf = [&](int it, int(&pg)[2]) {
#pragma unroll
        for (int i = 0; i < 2; i++) {
          const int key = (int)(kBeg + (int64_t)it * kTile) + lane + 32 * i;
          pg[i] = (it < nTiles && key < kEnd) ? bt[key / ps] : -1;
        }
      };
      int pgNext[2];
      pagesOf(0, pgNext);
      for (int it = 0; it < nTiles; it++) {
        const int st = it % stages;
        const uint32_t full = barBase + 8 * st, empty = barBase + 128 + 8 * st;
        const int k0 = (int)(kBeg + (int64_t)it * kTile);
        const int pg[2] = {pgNext[0], pgNext[1]};
        pagesOf(it + 1, pgNext);
        int64_t off[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
          const int key = k0 + lane + 32 * i;
          off[i] = pg[i] >= 0 ? (((int64_t)pg[i] * ps + key % ps) * hkv + kh) * D : -1;
        }
        if (it >= stages) mbarWait(empty, ((it / stages) - 1) & 1);
        const uint32_t sK = sBase + st * kStageB, sV = sK + kVOff;
        if (kMode == 1) {
          /* one bulk copy per row: issue-bound at ~5 GB/s a CTA on the H200 (run 1), kept to measure */
#pragma unroll
          for (int i = 0; i < 2; i++)
            if (off[i] < 0) {
              uint4* z = reinterpret_cast<uint4*>(smem + st * kStageB + kVOff + (lane + 32 * i) * Lay::kRowB);
#pragma unroll
              for (int c = 0; c < D / 8; c++) z[c] = make_uint4(0u, 0u, 0u, 0u);
            }
          const int nValid =
              __popc(__ballot_sync(0xffffffffu, off[0] >= 0)) + __popc(__ballot_sync(0xffffffffu, off[1] >= 0));
          __syncwarp();
          if (lane == 0) mbarExpectTx(full, (uint32_t)nValid * 2u * (uint32_t)(D * 2));
          __syncwarp();
#pragma unroll
          for (int i = 0; i < 2; i++)
            if (off[i] >= 0) {
              const uint32_t r = (uint32_t)(lane + 32 * i) * Lay::kRowB;
              bulkG2S(sK + r, kc + off[i], D * 2, full);
              bulkG2S(sV + r, vc + off[i], D * 2, full);
            }
        } else {
          /* 16-byte cp.async, consecutive lanes on consecutive chunks of a row; rows past kEnd are
           * zero-filled (nothing read), so P = 0 never meets stale bytes. Each lane's arrive on
           * full[st] fires once its copies have landed. */
#pragma unroll
          for (int r = 0; r < kIters; r++) {
            const int row = r * kRowsPer + r0;
            const int64_t o = __shfl_sync(0xffffffffu, r * kRowsPer >= 32 ? off[1] : off[0], row & 31);
            const bool v = o >= 0;
            const int64_t src = v ? o + chunk16 * 8 : 0;
            const uint32_t dst = row * Lay::kRowB + chunk16 * 16;
            cpAsync16(sK + dst, kc + src, v);
            cpAsync16(sV + dst, vc + src, v);
          }
          asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(full) : "memory");
        }
      }
    }
  } else {
    /* ---- consumers ---- */
    const int nW = max(0, min(16, nh - hbW * 16)); /* this warp's valid heads */
    const int gw = g0 + hbW * 16;
    uint32_t qa[KS][4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int row = gr + (i & 1) * 8;
      const T* qr = cta.template q<T, D>(p, gw + min(row, max(nW - 1, 0)), t);
#pragma unroll
      for (int ks = 0; ks < KS; ks++)
        qa[ks][i] = row < nW ? *reinterpret_cast<const uint32_t*>(qr + ks * 16 + cq + (i >> 1) * 8) : 0u;
    }
#pragma unroll
    for (int n = 0; n < NT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    const float c = p.smScale * kLog2e;
    const int j8 = lane >> 3;
    for (int it = 0; it < nTiles; it++) {
      const int st = it % stages;
      mbarWait(barBase + 8 * st, (it / stages) & 1);
      if (tid == 0 && it == 0) GQA90_MARK(trSlot, 7);
      const uint32_t sK = sBase + st * kStageB, sV = sK + kVOff;
      const int64_t tile0 = kBeg + (int64_t)it * kTile;
      if (kTma && kEnd - tile0 < kTile) {
        /* TMA copies whole boxes (and none past the last page): zero the V rows past kEnd, so
         * P = 0 never meets stale or NaN bytes; the async proxy rewrites them later */
        const int v0 = (int)(kEnd - tile0);
        for (int u = tid; u < (kTile - v0) * (D / 8); u += kConsumerWarps * 32) {
          const int r = v0 + u / (D / 8), ch = u % (D / 8);
          *reinterpret_cast<uint4*>(smem + (Lay::addr(sV, r, ch) - sBase)) = make_uint4(0u, 0u, 0u, 0u);
        }
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        namedBarrier(1, kConsumerWarps * 32);
      }
      if constexpr (kWg) {
        /* one warpgroup: S = Q K^T as 64 x 64 (Q from registers, K read once from the swizzled
         * stage), then O += P V as 64 x D (P from registers, V MN-major): warp w's rows are heads
         * 16 w .. 16 w + 15, in mma.sync's fragment layout, so the softmax below is the same */
        float s[32];
        wgmmaFence();
#pragma unroll
        for (int ks = 0; ks < KS; ks++)
          WgOp<T, D>::s(s, qa[ks], sw128Desc(sK + (ks >> 2) * Lay::kHalfB + (ks & 3) * 32, 16, 1024), ks > 0);
        wgmmaCommit();
        wgmmaWait<0>();
        fenceRegs(s);
        /* the same online softmax: s is the fragment of 8 n-tiles of 8 keys */
        onlineSoftmax<8, NT>(*reinterpret_cast<float(*)[8][4]>(s), tile0, kEnd, c, cq, m, l, o);
        uint32_t pa[4][4];
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
          pa[kk][0] = Mma<T>::pack(s[8 * kk + 0], s[8 * kk + 1]);
          pa[kk][1] = Mma<T>::pack(s[8 * kk + 2], s[8 * kk + 3]);
          pa[kk][2] = Mma<T>::pack(s[8 * kk + 4], s[8 * kk + 5]);
          pa[kk][3] = Mma<T>::pack(s[8 * kk + 6], s[8 * kk + 7]);
        }
        float(&of)[NT * 4] = reinterpret_cast<float(&)[NT * 4]>(o);
        fenceRegs(of);
        wgmmaFence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) WgOp<T, D>::pv(of, pa[kk], sw128Desc(sV + kk * 16 * 128, Lay::kHalfB, 1024));
        wgmmaCommit();
        wgmmaWait<0>();
        fenceRegs(of);
      } else {
        const int kw = kg * KPW;
        float sc[N][4];
#pragma unroll
        for (int n = 0; n < N; n++) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
          /* S = Q K^T over this warp's KPW keys */
#pragma unroll
        for (int kb = 0; kb < N / 2; kb++) {
          const int kr = kw + kb * 16 + (j8 >> 1) * 8 + (lane & 7);
#pragma unroll
          for (int k = 0; k < KS; k++) {
            uint32_t kf[4];
            ldsm4(kf, Lay::addr(sK, kr, k * 2 + (j8 & 1)));
            Mma<T>::run(sc[2 * kb], qa[k], kf);
            Mma<T>::run(sc[2 * kb + 1], qa[k], kf + 2);
          }
        }
        /* online softmax (base 2), keys past kEnd masked by select */
        onlineSoftmax<N, NT>(sc, tile0 + kw, kEnd, c, cq, m, l, o);
        /* O += P V */
#pragma unroll
        for (int kb = 0; kb < N / 2; kb++) {
          uint32_t pa[4];
          pa[0] = Mma<T>::pack(sc[2 * kb][0], sc[2 * kb][1]);
          pa[1] = Mma<T>::pack(sc[2 * kb][2], sc[2 * kb][3]);
          pa[2] = Mma<T>::pack(sc[2 * kb + 1][0], sc[2 * kb + 1][1]);
          pa[3] = Mma<T>::pack(sc[2 * kb + 1][2], sc[2 * kb + 1][3]);
          const int vr = kw + kb * 16 + (j8 & 1) * 8 + (lane & 7);
#pragma unroll
          for (int nb = 0; nb < NT; nb += 2) {
            uint32_t vb[4];
            ldsm4T(vb, Lay::addr(sV, vr, nb + (j8 >> 1)));
            Mma<T>::run(o[nb], pa, vb);
            Mma<T>::run(o[nb + 1], pa, vb + 2);
          }
        }
      }
      __syncwarp();
      if (lane == 0) mbarArrive(barBase + 128 + 8 * st);
    }
    if (tid == 0) GQA90_MARK(trSlot, 8);
#pragma unroll
    for (int r = 0; r < 2; r++) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
  }
  __syncthreads(); /* every tile consumed and landed: the stages become merge scratch */
  if (tid == 0) GQA90_MARK(trSlot, 9);
  /* the next kernel may start its prologue (it waits for this grid's completion before reading
   * anything): in the last wave only, since every CTA must trigger or exit first */
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");

  unsigned char* scratch = smem + scratchOff<D, HB, kTma>(stages); /* the stages, or past them */
  float* mW = reinterpret_cast<float*>(scratch + Tl::kMW);
  float* lW = reinterpret_cast<float*>(scratch + Tl::kLW);
  float* oW = reinterpret_cast<float*>(scratch + Tl::kOW);
  float* pO = reinterpret_cast<float*>(scratch + Tl::kPO);
  float* pL = reinterpret_cast<float*>(scratch + Tl::kPL);
  if (NKG == 1) {
    if (warp < kConsumerWarps) {
#pragma unroll
      for (int r = 0; r < 2; r++) {
        const int row = hbW * 16 + gr + r * 8;
        const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
#pragma unroll
        for (int n = 0; n < NT; n++) {
          *reinterpret_cast<float2*>(pO + row * D + n * 8 + cq) = make_float2(o[n][r * 2] * inv, o[n][r * 2 + 1] * inv);
        }
        if ((lane & 3) == 0) pL[row] = l[r] > 0.f ? m[r] + log2f(l[r]) : -INFINITY;
      }
    }
    __syncthreads();
  } else {
    /* key groups of a head block: warps hbW + HB kg, kg = 0 .. NKG - 1 */
    if (warp < kConsumerWarps) {
#pragma unroll
      for (int r = 0; r < 2; r++) {
        if ((lane & 3) == 0) {
          mW[warp * 16 + gr + r * 8] = m[r];
          lW[warp * 16 + gr + r * 8] = l[r];
        }
#pragma unroll
        for (int n = 0; n < NT; n++)
          *reinterpret_cast<float2*>(oW + (warp * 16 + gr + r * 8) * (D + 4) + n * 8 + cq) =
              make_float2(o[n][r * 2], o[n][r * 2 + 1]);
      }
    }
    __syncthreads();
    if (tid < HC) { /* row tid: head block tid / 16, row tid % 16 within it */
      const int b = tid / 16, rr = tid % 16;
      float mg = -INFINITY, lsum = 0.f;
#pragma unroll
      for (int k = 0; k < NKG; k++) mg = fmaxf(mg, mW[(b + HB * k) * 16 + rr]);
#pragma unroll
      for (int k = 0; k < NKG; k++) {
        const float mw = mW[(b + HB * k) * 16 + rr];
        const float sc = (mg == -INFINITY || mw == -INFINITY) ? 0.f : exp2f(mw - mg);
        mW[(b + HB * k) * 16 + rr] = sc;
        lsum += sc * lW[(b + HB * k) * 16 + rr];
      }
#pragma unroll
      for (int k = 0; k < NKG; k++) mW[(b + HB * k) * 16 + rr] = lsum > 0.f ? mW[(b + HB * k) * 16 + rr] / lsum : 0.f;
      pL[tid] = lsum > 0.f ? mg + log2f(lsum) : -INFINITY;
    }
    __syncthreads();
    for (int idx = tid; idx < HC * D; idx += kThreads) {
      const int row = idx / D, d = idx % D, b = row / 16, rr = row % 16;
      float v = 0.f;
#pragma unroll
      for (int k = 0; k < NKG; k++) {
        const int w = b + HB * k;
        const float sc = mW[w * 16 + rr];
        if (sc != 0.f) v += sc * oW[(w * 16 + rr) * (D + 4) + d];
      }
      pO[row * D + d] = v;
    }
    __syncthreads();
  }

  const float lseScale = p.lseBase2 ? 1.f : kLn2;
  if (ns == 1) {
    if (split != 0) return false;
    for (int u = tid; u < nh * (D / 4); u += kThreads) {
      const int row = u / (D / 4), col = (u % (D / 4)) * 4;
      const float4 v = *reinterpret_cast<const float4*>(pO + row * D + col);
      *reinterpret_cast<uint2*>(cta.template out<T, D>(p, g0 + row, t) + col) =
          make_uint2(Mma<T>::pack(v.x, v.y), Mma<T>::pack(v.z, v.w));
      if (col == 0)
        if (float* l = cta.lse(p, g0 + row, t)) *l = pL[row] * lseScale;
    }
    return true;
  }
  if (ws) {
    /* this split's partial for the merge kernel (gqaMergeKernel); a split that met a bad page
     * leaves NaN as its LSE, which empties the whole row there */
    const int64_t u0 = (int64_t)t * p.numHeads + (g0 - p.headBegin);
    for (int u = tid; u < nh * (D / 4); u += kThreads) {
      const int row = u / (D / 4), col = (u % (D / 4)) * 4;
      const int64_t w = (u0 + row) * CL + split;
      __stcg(reinterpret_cast<float4*>(p.wsO + w * D + col), *reinterpret_cast<const float4*>(pO + row * D + col));
      if (col == 0) p.wsLse[w] = bad ? __int_as_float(0x7fc00000) : pL[row];
    }
    if (tid == 0) GQA90_MARK(trSlot, 10);
    if constexpr (kTail) {
      /* form 2, the tail merge: count this split in; the ns-th arrival (whichever split it is) merges
       * the unit's partials, in split order, as the merge kernel would. Release: every thread fences
       * its partial stores before the barrier that precedes the count (the threadfence-reduction
       * pattern of attn_common.cuh's mergeSplitsIfLast); acquire: the last CTA fences after it reads
       * the count and loads the partials from L2 (__ldcg), never from a stale L1 line. No CTA waits
       * for another, so nothing assumes the splits are resident together. */
      int& isLast = *reinterpret_cast<int*>(smem + bodyBytes<D, HB, kTma>(stages) + 260);
      __threadfence();
      __syncthreads();
      if (tid == 0) {
        unsigned* ctr = p.wsCount + (int64_t)t * gy + by;
        const unsigned prev = atomicAdd(ctr, 1u);
        isLast = prev == (unsigned)ns - 1;
        if (isLast) *ctr = 0; /* every split has arrived: zero for the next launch or graph replay */
        if constexpr (Cta::kFused)
          if (isLast && p.wsReady) { /* the fused kernel's split-merge warps merge, one a head */
            __threadfence();
            atomicExch(p.wsReady + ((int64_t)t * gy + by), (unsigned)nh);
          }
      }
      __syncthreads();
      if (!isLast) return false;
      if constexpr (Cta::kFused)
        if (p.wsReady) return false;
      __threadfence();
      tailMerge<T, D, HC>(p, cta, scratch, u0, t, g0 - p.headBegin, nh, ns);
      if (tid == 0) GQA90_MARK(trSlot, 11);
      return true;
    }
    return false; /* form 1: gqaMergeKernel merges */
  }
  if constexpr (Cta::kFused) return false; /* never clustered */
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  /* a split that met a negative page id empties the row: the same result whichever split it is */
  bool rowBad = false;
  for (int j = 0; j < ns; j++) rowBad |= *cluster.map_shared_rank(&splitBad, j) != 0;
  for (int u = split * kThreads + tid; u < nh * (D / 4); u += CL * kThreads) {
    const int row = u / (D / 4), col = (u % (D / 4)) * 4;
    float ls[kMaxCluster];
    float mg = -INFINITY;
#pragma unroll
    for (int j = 0; j < kMaxCluster; j++) {
      ls[j] = j < ns && !rowBad ? cluster.map_shared_rank(pL, j)[row] : -INFINITY;
      mg = fmaxf(mg, ls[j]);
    }
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    float lse2 = -INFINITY;
    if (mg != -INFINITY) {
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < kMaxCluster; j++)
        if (ls[j] != -INFINITY) sum += exp2f(ls[j] - mg);
      lse2 = mg + log2f(sum);
#pragma unroll
      for (int j = 0; j < kMaxCluster; j++)
        if (ls[j] != -INFINITY) { /* never a stored NaN times a zero weight */
          const float w = exp2f(ls[j] - lse2);
          const float4 v = *reinterpret_cast<const float4*>(cluster.map_shared_rank(pO, j) + row * D + col);
          acc.x += w * v.x;
          acc.y += w * v.y;
          acc.z += w * v.z;
          acc.w += w * v.w;
        }
    }
    *reinterpret_cast<uint2*>(cta.template out<T, D>(p, g0 + row, t) + col) =
        make_uint2(Mma<T>::pack(acc.x, acc.y), Mma<T>::pack(acc.z, acc.w));
    if (col == 0)
      if (float* l = cta.lse(p, g0 + row, t)) *l = lse2 * lseScale;
  }
  cluster.sync(); /* no CTA leaves while another still reads its shared memory */
  return true;
}

/* kMode: 0 cp.async rows, 1 one bulk copy per row, 2 TMA tensor boxes (kMap / vMap). kTail: the
 * tail merge's own instantiation (launched only with p.wsCount set), so the merge code never shares
 * a function with form 1's, whose registers and predicates it changed (docs/GQA_SM90.md "Session 4b") */
template <typename T, int D, int HB, int kMode, bool kWg = false, bool kTail = false>
__global__ void __launch_bounds__(kThreads, 2)
    gqaDecodeKernel(const __grid_constant__ CUtensorMap kMap, const __grid_constant__ CUtensorMap vMap,
                    const GqaParams p) {
  int g0, nh;
  gqaCta<T, D, HB, kMode, kWg, kTail>(kMap, vMap, p, StandaloneCta{}, blockIdx.x, blockIdx.y, gridDim.y, &g0, &nh);
}

/* The merge's weights of one (row, head), warp-collective: lane k holds split k's base-2 LSE in x0
 * and split k + 32's in x1 (-inf past the row's ns splits); gives w0 / w1 = exp2(x - lse) (0 for an
 * empty split) and the merged base-2 LSE. A NaN anywhere (a split met a bad page) empties the row:
 * every weight 0, lse -inf. The max is exact in any order; the sum runs over the same butterfly as
 * gqaMergeKernel's, so the weights have the same bits wherever this runs. */
__device__ __forceinline__ void mergeWeights(float x0, float x1, float* w0, float* w1, float* lse2) {
  if (__any_sync(0xffffffffu, isnan(x0) || isnan(x1))) x0 = x1 = -INFINITY;
  float m = fmaxf(x0, x1);
#pragma unroll
  for (int k = 16; k > 0; k >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, k));
  *lse2 = -INFINITY;
  *w0 = *w1 = 0.f;
  if (m != -INFINITY) {
    float sum = (x0 == -INFINITY ? 0.f : exp2f(x0 - m)) + (x1 == -INFINITY ? 0.f : exp2f(x1 - m));
#pragma unroll
    for (int k = 16; k > 0; k >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, k);
    const float l2 = m + log2f(sum);
    *lse2 = l2;
    *w0 = x0 == -INFINITY ? 0.f : exp2f(x0 - l2);
    *w1 = x1 == -INFINITY ? 0.f : exp2f(x1 - l2);
  }
}

/* E consecutive elements of a split's partial (E = D / 32: a lane's share of one head), 0 when its
 * weight is 0 (an empty partial is never read) */
template <int E>
__device__ __forceinline__ void loadPart(float (&v)[E], const float* src, float w) {
  if (E == 4) {
    const float4 x = w != 0.f ? __ldcg(reinterpret_cast<const float4*>(src)) : make_float4(0.f, 0.f, 0.f, 0.f);
    v[0] = x.x, v[1 % E] = x.y, v[2 % E] = x.z, v[3 % E] = x.w;
  } else {
    const float2 x = w != 0.f ? __ldcg(reinterpret_cast<const float2*>(src)) : make_float2(0.f, 0.f);
    v[0] = x.x, v[1 % E] = x.y;
  }
}
/* acc += w v for a live split: gqaMergeKernel's accumulation step, splits in order from acc = 0.
 * fmaf is written out (the contraction the compiler makes of the merge kernel's acc += w v), so no
 * inlining context can round the two forms differently. */
template <int E>
__device__ __forceinline__ void accPart(float (&acc)[E], const float (&v)[E], float w) {
  if (w == 0.f) return;
#pragma unroll
  for (int e = 0; e < E; e++) acc[e] = fmaf(w, v[e], acc[e]);
}
/* a lane's E merged elements of head g (call's head h = g - headBegin) of row t, and the LSE from
 * lane 0 of the head */
template <typename T, int D, class Cta>
__device__ __forceinline__ void storeMerged(const GqaParams& p, const Cta& cta, int t, int h, int sub,
                                            const float (&acc)[D / 32], float lse2) {
  constexpr int E = D / 32;
  const int g = p.headBegin + h;
  T* dst = cta.template out<T, D>(p, g, t) + sub * E;
  if (E == 4)
    *reinterpret_cast<uint2*>(dst) = make_uint2(Mma<T>::pack(acc[0], acc[1 % E]), Mma<T>::pack(acc[2 % E], acc[3 % E]));
  else
    *reinterpret_cast<uint32_t*>(dst) = Mma<T>::pack(acc[0], acc[1 % E]);
  if (sub == 0)
    if (float* l = cta.lse(p, g, t)) *l = p.lseBase2 ? lse2 : lse2 * kLn2;
}

/* The tail merge (form 2): run by every thread of the CTA that counted in last for the unit of
 * heads h0 .. h0 + nh - 1 of row t (u0: the first one's index), after its partials and the other
 * splits' are visible. The same three steps per (row, head) as gqaMergeKernel, so the same bits: the
 * LSEs (all nh x ns in one round trip into the dead stages), mergeWeights by one warp a head (the
 * weights kept in shared memory), then accPart in split order and storeMerged. The loads differ
 * only in who issues them: warp w takes heads w, w + 5, ... and streams their (head, split) pairs
 * flat, kMergeBatch in flight a lane, so a unit of few splits (B64: 16 heads x 4) takes one round
 * trip rather than one a head. The cost (docs/GQA_SM90.md "Session 4"): nh x ns x D x 4 bytes from
 * L2 on one SM, ceil(ceil(nh / 5) x ns / kMergeBatch) batches after two round trips. */
template <typename T, int D, int HC, class Cta>
__device__ __forceinline__ void tailMerge(const GqaParams& p, const Cta& cta, unsigned char* smem, int64_t u0, int t,
                                          int h0, int nh, int ns) {
  constexpr int E = D / 32, NW = kThreads / 32, WS = kMaxWsSplits;
  float* wS = reinterpret_cast<float*>(smem); /* [HC][WS]: the LSEs, then the weights */
  float* lS = wS + HC * WS;                   /* [HC]: the merged LSE */
  const int S = p.clusterSplits, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  /* the stages are free: the caller's barriers after its partial stores passed */
  for (int i = tid; i < nh * ns; i += kThreads) {
    const int r = i / ns, k = i - r * ns;
    wS[r * WS + k] = __ldcg(p.wsLse + (u0 + r) * S + k);
  }
  __syncthreads();
  for (int r = warp; r < nh; r += NW) {
    const float x0 = lane < ns ? wS[r * WS + lane] : -INFINITY;
    const float x1 = lane + 32 < ns ? wS[r * WS + lane + 32] : -INFINITY;
    float w0, w1, lse2;
    mergeWeights(x0, x1, &w0, &w1, &lse2);
    if (lane < ns) wS[r * WS + lane] = w0; /* each lane rewrites only what it read */
    if (lane + 32 < ns) wS[r * WS + lane + 32] = w1;
    if (lane == 0) lS[r] = lse2;
  }
  __syncthreads();
  const int nj = warp < nh ? (nh - warp + NW - 1) / NW : 0, total = nj * ns; /* this warp's (head, split) pairs */
  float acc[E];
#pragma unroll
  for (int e = 0; e < E; e++) acc[e] = 0.f;
  for (int f0 = 0; f0 < total; f0 += kMergeBatch) {
    float v[kMergeBatch][E], wk[kMergeBatch];
#pragma unroll
    for (int i = 0; i < kMergeBatch; i++) {
      const int f = f0 + i, j = f / ns, k = f - j * ns, r = warp + NW * j;
      wk[i] = f < total ? wS[r * WS + k] : 0.f;
      loadPart<E>(v[i], p.wsO + ((u0 + r) * S + k) * D + lane * E, wk[i]);
    }
#pragma unroll
    for (int i = 0; i < kMergeBatch; i++) {
      const int f = f0 + i, j = f / ns, k = f - j * ns, r = warp + NW * j;
      if (f >= total) break;
      accPart<E>(acc, v[i], wk[i]);
      if (k == ns - 1) { /* head r's last split: its elements are final */
        storeMerged<T, D>(p, cta, t, h0 + r, lane, acc, lS[r]);
#pragma unroll
        for (int e = 0; e < E; e++) acc[e] = 0.f;
      }
    }
  }
}

/* The workspace merge: one warp per (row, head of the call), lane i owning dims i D/32 ..
 * (i + 1) D/32 - 1; CTAs of 1 or kMergeWarps warps (gqa_sm90.cu), launched as a programmatic
 * dependent of gqaDecodeKernel. As mla_sm90.cuh's mlaSm90Combine: fp32 weights exp2(lse_j - lse),
 * the sum in split order (its bits depend on the row's partials only, never on the grid), an
 * empty partial (weight 0) never read, a NaN LSE (a bad page in any split) empties the row. Form
 * 1's merge, kept apart from the tail merge's steps above (mergeWeights, loadPart, accPart,
 * storeMerged) so that its registers stay its own (docs/GQA_SM90.md "Session 4b"; since session 11
 * the unit index and the live test come before the grid-dependency wait, and kSpread reads the row's
 * batch data there too, so its SASS is no longer session 4's byte for byte); those are
 * the same operations in the same order (the same butterflies, acc += w v contracted to one fma a
 * split, in split order), and the GPU test compares the two forms bitwise (test_gpu_kernels runs
 * 6/7 and 1/8). */
template <typename T, int D, bool kSpread = false>
__global__ void __launch_bounds__(32 * kMergeWarps) gqaMergeKernel(const GqaParams p) {
  constexpr int E = D / 32, kBatch = kSpread ? kMergeSpreadBatch : kMergeBatch;
  const int lane = threadIdx.x & 31;
  const int64_t u = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const bool live = u < (int64_t)p.numTokens * p.numHeads;
  const int t = live ? (int)(u / p.numHeads) : 0, h = live ? (int)(u % p.numHeads) : 0;
  GqaParams q = p;
  q.errorFlag = nullptr; /* the attention recorded any bad datum already */
  /* Spread form: the row's batch data (query starts, sequence lengths) is read before the wait
   * when the attention was launched plainly (!p.pdl): it began after every earlier grid had
   * completed, so nothing the merge reads there is still being written; only the partials need the
   * wait. */
  RowWork rw = {};
  if (threadIdx.x == 0) GQA90_MARK(kTraceMerge + (int)blockIdx.x, 12);
  if (kSpread && live && !p.pdl) rw = rowWork(q, t);
  /* the attention grid has finished and its partials are visible after this */
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  if (threadIdx.x == 0) GQA90_MARK(kTraceMerge + (int)blockIdx.x, 13);
  /* the next step's attention (a programmatic dependent when p.pdl) may start its prologue; it
   * waits for this grid's completion before it writes the workspace or reads anything */
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  if (!live) return;
  if (!kSpread || p.pdl) rw = rowWork(q, t);
  int ns;
  int64_t chunk;
  splitOf(rw.L, p.clusterSplits, p.chunkMin, &ns, &chunk);
  if (ns <= 1) return; /* written by the attention itself */
  const int S = p.clusterSplits;
  const float* lse = p.wsLse + u * S;
  float x0 = lane < ns ? __ldcg(lse + lane) : -INFINITY;
  float x1 = lane + 32 < ns ? __ldcg(lse + lane + 32) : -INFINITY;
  if (__any_sync(0xffffffffu, isnan(x0) || isnan(x1))) x0 = x1 = -INFINITY;
  float m = fmaxf(x0, x1);
#pragma unroll
  for (int k = 16; k > 0; k >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, k));
  float outLse2 = -INFINITY, w0 = 0.f, w1 = 0.f;
  if (m != -INFINITY) {
    float sum = (x0 == -INFINITY ? 0.f : exp2f(x0 - m)) + (x1 == -INFINITY ? 0.f : exp2f(x1 - m));
#pragma unroll
    for (int k = 16; k > 0; k >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, k);
    outLse2 = m + log2f(sum);
    w0 = x0 == -INFINITY ? 0.f : exp2f(x0 - outLse2);
    w1 = x1 == -INFINITY ? 0.f : exp2f(x1 - outLse2);
  }
  float acc[E];
#pragma unroll
  for (int e = 0; e < E; e++) acc[e] = 0.f;
  const float* src = p.wsO + u * S * D + lane * E;
  for (int k0 = 0; k0 < ns; k0 += kBatch) {
    float v[kBatch][E], wk[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; i++) {
      const int k = k0 + i;
      const float wa = __shfl_sync(0xffffffffu, w0, k & 31), wb = __shfl_sync(0xffffffffu, w1, k & 31);
      wk[i] = k < ns ? (k < 32 ? wa : wb) : 0.f;
      if (E == 4) {
        const float4 x = wk[i] != 0.f ? __ldcg(reinterpret_cast<const float4*>(src + (int64_t)k * D))
                                      : make_float4(0.f, 0.f, 0.f, 0.f);
        v[i][0] = x.x, v[i][1] = x.y, v[i][2 % E] = x.z, v[i][3 % E] = x.w;
      } else {
        const float2 x =
            wk[i] != 0.f ? __ldcg(reinterpret_cast<const float2*>(src + (int64_t)k * D)) : make_float2(0.f, 0.f);
        v[i][0] = x.x, v[i][1 % E] = x.y;
      }
    }
#pragma unroll
    for (int i = 0; i < kBatch; i++) {
      if (wk[i] == 0.f) continue;
#pragma unroll
      for (int e = 0; e < E; e++) acc[e] += wk[i] * v[i][e];
    }
  }
  const int g = p.headBegin + h;
  T* dst = static_cast<T*>(p.out) + headOff(g, t, p.headsPerBlock, p.oBlockStride, p.oTokenStride, D) + lane * E;
  if (E == 4)
    *reinterpret_cast<uint2*>(dst) = make_uint2(Mma<T>::pack(acc[0], acc[1 % E]), Mma<T>::pack(acc[2 % E], acc[3 % E]));
  else
    *reinterpret_cast<uint32_t*>(dst) = Mma<T>::pack(acc[0], acc[1 % E]);
  if (lane == 0 && p.lse)
    p.lse[headOff(g, t, p.headsPerBlock, p.lseBlockStride, p.lseTokenStride, 1)] =
        p.lseBase2 ? outLse2 : outLse2 * kLn2;
  if (threadIdx.x == 0) GQA90_MARK(kTraceMerge + (int)blockIdx.x, 14);
}

/* ---- host side shared by gqa_sm90.cu and gqa_sm90_fused.cu ---- */

/* head-block width HB of a CTA for g heads of a group in the call */
inline int headBlockWidth(int g) { return g <= 16 ? 1 : g <= 32 ? 2 : 4; }
/* the launch's grid y: KV heads the call's heads touch x head blocks of each (p normalised) */
inline int64_t gridY(const GqaParams* p) {
  const int G = p->groupSize, nh = G < p->numHeads ? G : p->numHeads, hc = 16 * headBlockWidth(nh);
  const int nKv = (p->headBegin + p->numHeads - 1) / G - p->headBegin / G + 1;
  return (int64_t)((nh + hc - 1) / hc) * nKv;
}

constexpr int kMaxDevices = 64;
/* the current device, or -1 (none, or past kMaxDevices) */
inline int currentDevice() {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    cudaGetLastError();
    return -1;
  }
  return dev;
}
/* bit of (dtype, D, HB, mode) in a word of devRaised: 2 x 2 x 3 x 3 = 36, then the 4 wgmma ones */
template <typename T, int D, int HB, int kMode, bool kWg>
constexpr int instIndex() {
  return kWg ? 36 + std::is_same<T, __half>::value * 2 + (D == 128)
             : ((std::is_same<T, __half>::value * 2 + (D == 128)) * 3 + (HB == 1   ? 0
                                                                         : HB == 2 ? 1
                                                                                   : 2)) *
                       3 +
                   kMode;
}
/* per device, the instantiations whose launch attributes are raised (bit instIndex): word 0
 * gqaDecodeKernel, 1 its kTail form, 2 gqaFusedKernel (gqa_sm90.cu defines it) */
extern std::atomic<unsigned long long> devRaised[kMaxDevices][3];

/* The body inside the fused decode kernel (gqa_sm90_fused.cu, which instantiates it for kMode 0
 * and 2, the wgmma consumers with kMode 2): 0 or a cudaError_t; raiseOnly raises the kernel's
 * shared-memory attribute on the current device and returns 1 (-cudaError_t on failure). */
template <typename T, int D, int HB, int kMode, bool kWg>
int launchFused(const GqaParams* p, const GqaKvMaps* maps, const cpclFusedParams_t* f, cudaStream_t stream,
                bool raiseOnly);

}  // namespace gqa90
}  // namespace cpcl

#endif /* CPCL_CUDA_GQA_SM90_CUH_ */
