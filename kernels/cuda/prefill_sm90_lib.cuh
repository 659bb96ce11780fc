/*
 * prefill_sm90_lib.cuh -- the Hopper body of prefill_sm90.cuh over the library's prefill contract
 * (kernels/prefill_params.h), for the calls cpclCudaPrefill gives it (prefill_sm90.cu:
 * cpclPrefillSm90Fits): bf16 or fp16 Q and K/V of one type, (Dqk, Dvo) (128, 128) or (192, 128),
 * separate V, up to kLibMaxBlocks new K/V blocks and the paged cache shard.
 *
 * What differs from the standalone kernel (same pipeline, same ping-pong, same wgmma):
 *  - Grid (numHeads, tile slots): the slots are prefill.cuh's (sequence s owns slots
 *    s + queryStart[s] / 128 .., found by binary search), reversed so each sequence's last (most
 *    loaded) tiles start first; heads in x so the heads of one KV group run side by side (L2).
 *    Or persistent (kPersistent, CPCL_PREFILL_SM90_PERSISTENT): one CTA per SM taking the same
 *    (slot, head) items in the same order, the next item's K/V and Q loaded under the current
 *    one's last tiles and epilogue (the kernel's comment, docs/PREFILL_SM90.md "Persistent form").
 *  - Keys come in segments: the cache shard's local keys 0 .. (those at or before the tile's last
 *    query position: cpclKvLocalLenOf), then per block b its rows kv[b].rowStart[s] .. up to the
 *    first past that position (positions increase within a sequence; the bound is direct when the
 *    segment's positions are contiguous, else a 32-way search by one warp). Key tiles of 128 are
 *    cut from each segment's own start. A tile whose keys all sit at or before the tile's first
 *    query position needs no mask; the masked tiles of every segment come first (each segment's
 *    from its end down), then the unmasked ones, so the masked softmax never shares registers
 *    with an in-flight P V (a first version that masked inside the overlapped loop spilled): all
 *    masked tiles but the last run as non-overlapped steps, the last opens the overlapped loop.
 *  - A block's partial last tile is loaded as the 128 rows that end at the segment's end (start
 *    keyEnd - 128, negative coordinates zero-filled by TMA), so TMA never reads a row past the
 *    segment: the block's row count is device data the host cannot bound. Rows of such a tile
 *    outside the tile's own keys carry position INT32_MAX.
 *  - The cache shard's tiles are copied by producer warps 9-11 with cp.async, row by row through
 *    the block table, zero-filled past the segment and behind negative page ids (the slots past a
 *    sequence's length in its last page may hold anything, NaN included, and P = 0 does not
 *    cancel NaN). A cache segment with a blocked page among its unmasked tiles has none (a
 *    zero-filled key is only excluded by the mask).
 *  - The causal mask is by position: warps 9-11 write a masked tile's 128 key positions into
 *    shared memory and arrive on the stage's fullV with the V rows (fullK and fullV count the TMA
 *    lane and these 96 threads); the consumer's masked step waits for fullV before its softmax and
 *    turns the positions into a bit per key and row. Unmasked tiles run the standalone kernel's
 *    softmax and overlapped loop unchanged.
 *  - Q through cp.async by the consumer warpgroups (each its 64 rows) into the SW128 layout TMA
 *    would write, so any token and head-block strides (16-byte multiples) work; rows past the
 *    tile are zero.
 *  - A row may see no key (out 0, lse -inf): the masked softmax keeps m = -inf NaN-free.
 *  - out in bf16, fp16 or fp32 and the lse (base e or 2) at the library's head-block addresses.
 * Batch invariance: a key's row in its tile, the tile order and a row's arithmetic depend only on
 * its own sequence (the rows of other sequences a shifted tile holds meet P = 0 exactly).
 */
#ifndef CPCL_CUDA_PREFILL_SM90_LIB_CUH_
#define CPCL_CUDA_PREFILL_SM90_LIB_CUH_

#include <cuda_fp16.h>

#include "kv_layout.h"
#include "prefill_params.h"
#include "prefill_sm90.cuh"

namespace cpcl {
namespace pf90 {

constexpr int kLibMaxBlocks = 8; /* K/V blocks (their tensor maps travel as kernel parameters) */
constexpr int kBarQ0 = 3;        /* named barriers 3, 4: warpgroup w's Q rows landed */
constexpr int kCopyThreads = 96; /* producer warps 9-11: positions, and the cache shard's rows */

/* A diagnostic timeline (built only with -DCPCL_PF90_TRACE; prefill_sm90.cu then points pf90Trace
 * at a buffer when CPCL_PREFILL_SM90_TRACE names a file, and writes it there after each launch
 * outside a capture): the persistent form's CTA b, item k, mark m at
 * pf90Trace[(b * kTraceItems + k) * kTraceMarks + m], the SM's clock (PF90_MARK) or a value
 * (PF90_VAL). tools/kernel_bench/prefill_trace.py reads it and names the marks; docs/PREFILL_SM90.md,
 * "Session 8". Without the define the marks are empty statements. */
#ifdef CPCL_PF90_TRACE
constexpr int kTraceItems = 128, kTraceMarks = 20, kMaxTraceCtas = 132;
__device__ uint32_t* pf90Trace;
#define PF90_VAL(k, m, v)                                                                           \
  do {                                                                                              \
    uint32_t* tr_ = pf90Trace;                                                                      \
    if (kPersistent && tr_ != nullptr && (k) < (uint32_t)kTraceItems && blockIdx.x < kMaxTraceCtas) \
      tr_[((size_t)blockIdx.x * kTraceItems + (k)) * kTraceMarks + (m)] = (uint32_t)(v);            \
  } while (0)
#define PF90_MARK(k, m) PF90_VAL(k, m, clock64())
#else
#define PF90_VAL(k, m, v) \
  do {                    \
  } while (0)
#define PF90_MARK(k, m) PF90_VAL(k, m, 0)
#endif

struct LibMaps {
  CUtensorMap k[kLibMaxBlocks], v[kLibMaxBlocks];
};

/* The key segments of the CTA's query tile, written by producer warp 8 before the first sync.
 * Segment k: rows key0 .. keyEnd - 1 of block blk; its tiles j = 0 .. nT - 1 (128 keys from key0
 * on), of which j < nU hold only keys at or before the tile's first query position (no mask).
 * Iterations: first every segment's masked tiles (j = nT - 1 down to nU; from m0[k] on), then
 * every segment's unmasked ones (j = nU - 1 down to 0; from masked + u0[k] on). */
struct LibSegs {
  int n, tiles, masked;
  int s, t0, nRows, g; /* the query tile (the persistent form's hand-off; tiles < 0 there: no more work) */
  int m0[kLibMaxBlocks + 1], u0[kLibMaxBlocks + 1];
  int blk[kLibMaxBlocks], key0[kLibMaxBlocks], keyEnd[kLibMaxBlocks], nT[kLibMaxBlocks], nU[kLibMaxBlocks];
};

template <int kDqk, int kDv, int kStages>
struct LibShape {
  using B = Shape<kDqk, kDv, kStages>;
  static constexpr int kPosInts = kBN; /* a stage's key positions */
  static constexpr int kPosOff = B::kQBytes + kStages * (B::kKBytes + B::kVBytes);
  static constexpr int kSegOff = kPosOff + kStages * kPosInts * 4;
  static constexpr int kBarOff = (kSegOff + (int)sizeof(LibSegs) + 7) & ~7;
  /* fullK, fullV, emptyK, emptyV per stage; workFull, workEmpty (the persistent form); the TMA
   * lane's tile count (the fused store) */
  static constexpr int kSmemBytes = kBarOff + (4 * kStages + 3) * 8 + 1024;
  static_assert(kSmemBytes <= 232448, "shared memory of one CTA");
};

template <typename T>
struct LibElem;
template <>
struct LibElem<__nv_bfloat16> {
  static __device__ __forceinline__ void ss(float (&d)[64], uint64_t a, uint64_t b, int acc) {
    wgmmaSS_m64n128k16(d, a, b, acc);
  }
  static __device__ __forceinline__ void rs(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
    wgmmaRS_m64n128k16(d, a, b);
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) { return packBf16(lo, hi); }
};
template <>
struct LibElem<__half> {
  static __device__ __forceinline__ void ss(float (&d)[64], uint64_t a, uint64_t b, int acc) {
    wgmmaSS_m64n128k16_f16(d, a, b, acc);
  }
  static __device__ __forceinline__ void rs(float (&d)[64], const uint32_t (&a)[4], uint64_t b) {
    wgmmaRS_m64n128k16_f16(d, a, b);
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

__device__ __forceinline__ int libLds(uint32_t a) {
  int v;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(a) : "memory");
  return v;
}
__device__ __forceinline__ int2 libLds2(uint32_t a) {
  int2 v;
  asm volatile("ld.shared.v2.b32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(a) : "memory");
  return v;
}

__device__ __forceinline__ void libCpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}

/* The query tile of slot x (prefill.cuh's tileOf with 128-row tiles): false past the sequence. */
__device__ __forceinline__ bool libTileOf(const cpclPrefillParams_t& p, int x, int* s, int* t0, int* nRows) {
  const int32_t* qs = p.queryStart;
  int lo = 0, hi = p.numSeqs - 1; /* largest s with s + qs[s] / kBM <= x */
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (mid + __ldg(qs + mid) / kBM <= x)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int r0 = __ldg(qs + lo), r1 = min(__ldg(qs + lo + 1), p.numTokens), j = x - (lo + r0 / kBM);
  if (r0 < 0 || j < 0 || r0 + j * kBM >= r1) return false; /* also clips rows past numTokens */
  *s = lo;
  *t0 = r0 + j * kBM;
  *nRows = min(kBM, r1 - *t0);
  return true;
}

/* Work item x of heads * slots (both forms) -> its tile slot (counted from the last down) and
 * its head index in the call. band 0: slot by slot, heaviest first, a slot's heads next to each
 * other. band > 0: bands of that many slots, heaviest first; within a band the query heads of one
 * KV head (C of them, when the call's heads are whole groups) over the band's slots, then the
 * next KV head's, so the CTAs that run at once read one KV head's K/V tiles (L2 hits instead of
 * HBM reads). Any order gives the same bits: an item's result depends only on the item. */
/* the heads a band takes at a time (libItemOf; the host's band rule too): one KV head's query
 * heads when the call's heads are whole groups, else 1 */
__host__ __device__ __forceinline__ int libBandChunk(const cpclPrefillParams_t& p) {
  const int G = p.groupSize;
  return G > 1 && p.headBegin % G == 0 && p.numHeads % G == 0 ? G : 1;
}
__device__ __forceinline__ void libItemOf(const cpclPrefillParams_t& p, int x, int slots, int band, int* slot,
                                          int* head) {
  const int heads = p.numHeads;
  if (band <= 0) {
    *slot = slots - 1 - x / heads;
    *head = x % heads;
    return;
  }
  const int C = libBandChunk(p);
  const int b = x / (heads * band), r = x - b * heads * band, b0 = b * band, bw = min(band, slots - b0);
  const int c = r / (C * bw), r2 = r - c * C * bw;
  *slot = slots - 1 - (b0 + r2 / C);
  *head = c * C + r2 % C;
}

/* The first row in [lo, hi) whose position is past q (hi if none), positions increasing; the
 * whole warp calls it and gets the same answer. p0, p1: the positions of rows lo and hi - 1.
 * Contiguous positions need no search. */
__device__ __forceinline__ int libFirstAfter(const int32_t* pos, int lo, int hi, int p0, int p1, int q, int lane) {
  if (hi <= lo) return lo;
  if ((int64_t)p1 - p0 == (int64_t)(hi - 1 - lo)) {
    const int64_t n = (int64_t)q - p0 + 1;
    return lo + (int)(n < 0 ? 0 : n > hi - lo ? hi - lo : n);
  }
  if (p1 <= q) return hi;
  if (p0 > q) return lo;
  /* rows before lo are at or before q, rows from hi on past it: 32 probes narrow [lo, hi] */
  while (hi - lo > 32) {
    const int step = (hi - lo + 31) >> 5, idx = lo + (lane + 1) * step - 1;
    const unsigned past = __ballot_sync(0xffffffffu, idx >= hi || __ldg(pos + idx) > q);
    if (past == 0) return hi;
    const int f = __ffs(past) - 1;
    hi = min(hi, lo + (f + 1) * step - 1);
    lo += f * step;
  }
  const unsigned past = __ballot_sync(0xffffffffu, lo + lane >= hi || __ldg(pos + lo + lane) > q);
  return past ? lo + __ffs(past) - 1 : hi;
}

__device__ __forceinline__ void libBuildSegs(const cpclPrefillParams_t& p, int s, int qmin, int qmax, LibSegs& sg,
                                             int lane) {
  int n = 0, masked = 0, unmasked = 0;
  if (p.cacheLens != nullptr) {
    /* the shard's local keys 0 .. e - 1 (the cache segment, block -1): those at or before qmax;
     * the unmasked ones, at or before qmin, unless a page among theirs is blocked (its keys are
     * read as nothing, which only the mask expresses) */
    const int W = p.cpSize, r = p.cpRank, I = p.interleave, ps = p.pageSize;
    int64_t e = cpclKvLocalLenOf(__ldg(p.cacheLens + s), W, r, I);
    e = min(e, cpclKvLocalLenOf((int64_t)qmax + 1, W, r, I));
    e = min(e, (int64_t)p.maxPagesPerSeq * ps); /* the table's row: no entry past it is read */
    if (e > 0) {
      const int64_t u = min(e, cpclKvLocalLenOf((int64_t)qmin + 1, W, r, I));
      int nU = (int)(u / kBN);
      const int32_t* bt = p.blockTable + (int64_t)s * p.maxPagesPerSeq;
      const int np = (int)(((int64_t)nU * kBN + ps - 1) / ps);
      bool blocked = false;
      for (int i0 = 0; i0 < np; i0 += 32 * 8) {
#pragma unroll
        for (int k = 0; k < 8; k++) {
          const int i = i0 + 32 * k + lane;
          if (i < np) blocked |= __ldg(bt + i) < 0;
        }
      }
      if (__any_sync(0xffffffffu, blocked)) nU = 0;
      const int nT = (int)((e + kBN - 1) / kBN);
      if (lane == 0) {
        sg.m0[0] = 0;
        sg.u0[0] = 0;
        sg.blk[0] = -1;
        sg.key0[0] = 0;
        sg.keyEnd[0] = (int)e;
        sg.nT[0] = nT;
        sg.nU[0] = nU;
      }
      masked = nT - nU;
      unmasked = nU;
      n = 1;
    }
  }
  for (int b = 0; b < p.numKvBlocks; b++) {
    const int32_t* rs = p.kv[b].rowStart;
    const int32_t* pos = p.kv[b].pos;
    const int k0 = __ldg(rs + s), k1 = max(k0, __ldg(rs + s + 1));
    if (k0 < 0 || k1 == k0) continue; /* a negative row start reads nothing */
    const int p0 = __ldg(pos + k0), p1 = __ldg(pos + k1 - 1);
    const int e = libFirstAfter(pos, k0, k1, p0, p1, qmax, lane);
    if (e == k0) continue;
    /* contiguous positions: the last visible row's is known without a load */
    const bool contig = (int64_t)p1 - p0 == (int64_t)(k1 - 1 - k0);
    const int u = libFirstAfter(pos, k0, e, p0, contig ? p0 + (e - 1 - k0) : __ldg(pos + e - 1), qmin, lane);
    const int nT = (e - k0 + kBN - 1) / kBN, nU = (u - k0) / kBN;
    if (lane == 0) {
      sg.m0[n] = masked;
      sg.u0[n] = unmasked;
      sg.blk[n] = b;
      sg.key0[n] = k0;
      sg.keyEnd[n] = e;
      sg.nT[n] = nT;
      sg.nU[n] = nU;
    }
    masked += nT - nU;
    unmasked += nU;
    n++;
  }
  if (lane == 0) {
    sg.m0[n] = masked;
    sg.u0[n] = unmasked;
    sg.n = n;
    sg.masked = masked;
    sg.tiles = masked + unmasked;
  }
}

/* The store of the call's new K/V rows (p.storeK, prefill_params.h) by claimed rows: row x of
 * the blocks' concatenated rows, stored by the store kernel's rule (prefill.cu,
 * prefillStoreKernel): rows this rank owns, at their local slot; a page id < 0 stores nothing. */
struct LibKvRow {
  int b, j;     /* block, row in it */
  int64_t slot; /* cache slot */
};
constexpr int kStoreChunk = 64; /* 16-byte chunks a copy warp moves a step: 2 a lane in flight */
/* the rest kernel's step: 8 loads a lane in flight. With 2 (session 5, call 1: ncu, MHA B4 4k) it
 * moved 168 MB in 81 us, 2 TB/s: 1 KB a warp in flight over a ~1 us round trip is what its 2112
 * warps could move, latency-bound */
constexpr int kRestChunk = 256;
/* the next owned row with a page, claimed from ctr (the whole warp; lane 0 claims); false when
 * every row is claimed */
__device__ __forceinline__ bool libKvClaim(const cpclPrefillParams_t& p, unsigned int* ctr, int lane, LibKvRow& r) {
  for (;;) {
    unsigned x = 0;
    if (lane == 0) x = atomicAdd(ctr, 1u);
    x = __shfl_sync(0xffffffffu, x, 0);
    int b = 0;
    int64_t first = 0;
    for (; b < p.numKvBlocks; b++) {
      const int n = __ldg(p.kv[b].rowStart + p.numSeqs);
      if ((int64_t)x < first + n) break;
      first += n;
    }
    if (b == p.numKvBlocks) return false;
    const int j = (int)((int64_t)x - first);
    const int64_t pos = __ldg(p.kv[b].pos + j);
    if (cpclKvOwner(pos, p.cpSize, p.interleave) != p.cpRank) continue;
    const int sq = seqOfRow(p.kv[b].rowStart, p.numSeqs, j);
    const int64_t li = cpclKvLocalIndex(pos, p.cpSize, p.interleave);
    const int page = __ldg(p.blockTable + (int64_t)sq * p.maxPagesPerSeq + li / p.pageSize);
    if (page < 0) continue;
    r.b = b;
    r.j = j;
    r.slot = (int64_t)page * p.pageSize + li % p.pageSize;
    return true;
  }
}
/* chunks off .. off + kChunk (of n16) of part (0 K, 1 V) of row r: loads first, then stores */
template <int kChunk = kStoreChunk>
__device__ __forceinline__ void libKvCopy(const cpclPrefillParams_t& p, const LibKvRow& r, int part, int off, int n16,
                                          int lane) {
  const uint4* src = static_cast<const uint4*>(part ? p.kv[r.b].v : p.kv[r.b].k) + (int64_t)r.j * n16 + off;
  uint4* dst = static_cast<uint4*>(part ? p.storeV : p.storeK) + r.slot * n16 + off;
  const int left = n16 - off;
  uint4 v[kChunk / 32];
#pragma unroll
  for (int u = 0; u < kChunk / 32; u++)
    if (lane + 32 * u < left) v[u] = __ldg(src + lane + 32 * u);
#pragma unroll
  for (int u = 0; u < kChunk / 32; u++)
    if (lane + 32 * u < left) dst[lane + 32 * u] = v[u];
}

/* Key tile i: its block (-1: the cache shard), the first row loaded (start), and its own keys
 * [lo, end). Only a block's partial tile is shifted: the shard's rows are copied one by one. */
struct LibTile {
  int blk, start, lo, end;
};
__device__ __forceinline__ LibTile libTile(const LibSegs& sg, int i) {
  const bool m = i < sg.masked;
  const int* first = m ? sg.m0 : sg.u0;
  const int k = m ? i : i - sg.masked;
  int seg = 0;
  while (seg + 1 < sg.n && first[seg + 1] <= k) seg++;
  const int j = (m ? sg.nT[seg] : sg.nU[seg]) - 1 - (k - first[seg]), kEnd = sg.keyEnd[seg];
  LibTile t;
  t.blk = sg.blk[seg];
  t.lo = sg.key0[seg] + j * kBN;
  t.end = min(kEnd, t.lo + kBN);
  t.start = t.blk >= 0 && t.lo + kBN > kEnd ? kEnd - kBN : t.lo;
  return t;
}

/* Rows lo .. lo + 127 of the cache shard (local keys) into a stage, 64-dim tiles SW128-swizzled
 * as TMA writes them, by the copy threads (cid 0 .. 95) with cp.async; keys at or past end and
 * behind a negative page id are zero-filled and read nothing (rows past the sequence's length in
 * its last page may hold anything, NaN included: P = 0 would not cancel them). */
template <typename T, int kD>
__device__ __forceinline__ void libCopyCacheRows(uint32_t dst, const void* cache, const int32_t* bt,
                                                 const cpclPrefillParams_t& p, int kh, int lo, int end, int cid) {
  /* a thread keeps one 16-byte column c of every kCopyThreads / kc-th row: one page lookup per
   * row, no division per chunk (the producer warps have 56 registers) */
  constexpr int kc = kD / 8, kTile = kBN * 128, kRowsPerPass = kCopyThreads / kc;
  static_assert(kCopyThreads % kc == 0, "whole rows per pass");
  const int ps = p.pageSize, c = cid % kc, cx = c & 7;
  const int64_t rowStride = (int64_t)p.numKvHeads * kD;
  const T* base = static_cast<const T*>(cache) + (int64_t)kh * kD + c * 8;
  const uint32_t dc = dst + (c >> 3) * kTile;
  for (int r = cid / kc; r < kBN; r += kRowsPerPass) {
    const int key = lo + r;
    const int page = key < end ? __ldg(bt + key / ps) : -1;
    const bool valid = page >= 0;
    const T* src = valid ? base + ((int64_t)page * ps + key % ps) * rowStride : base;
    libCpAsync16(dc + r * 128 + ((cx ^ (r & 7)) << 4), src, valid);
  }
}

/* the online softmax steps of prefill_sm90.cuh with the mask as a bit per key (bit 2j + e' of bA
 * / bB: key 8j + cq + e' visible to row A / B); a row may see no key yet, so m stays -inf and
 * the factors stay finite */
template <bool kMask>
__device__ __forceinline__ void libTileMax(const float (&s)[64], uint32_t bA, uint32_t bB, float scale2, float& mA,
                                           float& mB, float& cA, float& cB) {
  float xA = -INFINITY, xB = -INFINITY;
#pragma unroll
  for (int j = 0; j < 16; j++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const bool ok = !kMask || (((e < 2 ? bA : bB) >> (2 * j + (e & 1))) & 1u);
      if (e < 2)
        xA = fmaxf(xA, ok ? s[4 * j + e] : -INFINITY);
      else
        xB = fmaxf(xB, ok ? s[4 * j + e] : -INFINITY);
    }
  }
  xA = fmaxf(xA, __shfl_xor_sync(0xffffffffu, xA, 1));
  xA = fmaxf(xA, __shfl_xor_sync(0xffffffffu, xA, 2));
  xB = fmaxf(xB, __shfl_xor_sync(0xffffffffu, xB, 1));
  xB = fmaxf(xB, __shfl_xor_sync(0xffffffffu, xB, 2));
  const float nA = fmaxf(mA, xA * scale2), nB = fmaxf(mB, xB * scale2);
  if (kMask) {
    cA = nA == -INFINITY ? 1.f : fastExp2(mA - nA);
    cB = nB == -INFINITY ? 1.f : fastExp2(mB - nB);
  } else { /* every key visible to every row: the new maxima are finite */
    cA = fastExp2(mA - nA);
    cB = fastExp2(mB - nB);
  }
  mA = nA;
  mB = nB;
}
template <bool kMask>
__device__ __forceinline__ void libTileExp(float (&s)[64], uint32_t bA, uint32_t bB, float scale2, float mA, float mB,
                                           float& sumA, float& sumB) {
  const float oA = kMask && mA == -INFINITY ? 0.f : mA, oB = kMask && mB == -INFINITY ? 0.f : mB;
  sumA = 0.f;
  sumB = 0.f;
#pragma unroll
  for (int j = 0; j < 16; j++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const bool ok = !kMask || (((e < 2 ? bA : bB) >> (2 * j + (e & 1))) & 1u);
      const float x = fastExp2(fmaf(s[4 * j + e], scale2, -(e < 2 ? oA : oB)));
      s[4 * j + e] = ok ? x : 0.f;
    }
    sumA += s[4 * j] + s[4 * j + 1];
    sumB += s[4 * j + 2] + s[4 * j + 3];
  }
}
template <typename T>
__device__ __forceinline__ void libPackP(const float (&s)[64], uint32_t (&pf)[8][4]) {
#pragma unroll
  for (int j = 0; j < 16; j++) {
    pf[j >> 1][(j & 1) * 2 + 0] = LibElem<T>::pack(s[4 * j], s[4 * j + 1]);
    pf[j >> 1][(j & 1) * 2 + 1] = LibElem<T>::pack(s[4 * j + 2], s[4 * j + 3]);
  }
}

/* A 4 x 4 transpose of 32-bit words within each quad of lanes (q = lane & 3): in, w[j] is word j
 * of lane q; out, v[e] is word q of lane e. Two butterfly rounds (xor 1, xor 2), 4 SHFL and 16
 * SEL, so that each lane stores 16 contiguous bytes instead of 4 words 16 bytes apart. */
__device__ __forceinline__ void libQuadTranspose(const uint32_t (&w)[4], uint32_t (&v)[4], int lane) {
  const bool b0 = lane & 1, b1 = lane & 2;
  /* round 1: keep the words j with j & 1 == q & 1, trade the others with lane q ^ 1 */
  const uint32_t r0 = __shfl_xor_sync(0xffffffffu, b0 ? w[0] : w[1], 1);
  const uint32_t r1 = __shfl_xor_sync(0xffffffffu, b0 ? w[2] : w[3], 1);
  const uint32_t own0 = b0 ? w[1] : w[0], own1 = b0 ? w[3] : w[2];
  /* P[c][s]: word j = (q & 1) + 2c of the lane whose bit 0 is s (q's or q ^ 1's) */
  const uint32_t p00 = b0 ? r0 : own0, p01 = b0 ? own0 : r0, p10 = b0 ? r1 : own1, p11 = b0 ? own1 : r1;
  /* round 2: keep the pair c = q >> 1 (word j = q), trade the other with lane q ^ 2 */
  const uint32_t u0 = __shfl_xor_sync(0xffffffffu, b1 ? p00 : p10, 2);
  const uint32_t u1 = __shfl_xor_sync(0xffffffffu, b1 ? p01 : p11, 2);
  const uint32_t k0 = b1 ? p10 : p00, k1 = b1 ? p11 : p01;
  v[0] = b1 ? u0 : k0;
  v[1] = b1 ? u1 : k1;
  v[2] = b1 ? k0 : u0;
  v[3] = b1 ? k1 : u1;
}

/* Rows A (kHalf 0) and B (1) of this thread: out normalised, and the lse; a row without keys gets
 * out 0, lse -inf (the merge's neutral partial); a row past the tile (validA / validB false)
 * stores nothing. Head g is in head block gb = g / headsPerBlock at gr = g % headsPerBlock,
 * computed once an item. 16-bit out goes in 16-byte chunks of the quad's row (libQuadTranspose;
 * libShapeFits asks for 8-element strides). The quad's shuffles run on every lane whatever the
 * rows' validity, outside any data-dependent branch: under `if (row < nRows || all)` ptxas could
 * not prove the warp converged and gave the shuffles divergence checks (BRA.DIV, 19 where there
 * are 11) with collective fallbacks out of line (69 ENDCOLLECTIVE, 1056 more instructions in the
 * persistent D128 kernel), and the GQA rows ran 5-7% slower (session 9, call 2; which part of the
 * change cost the time was not isolated). */
template <int kDv>
__device__ __forceinline__ void libStoreRows(const cpclPrefillParams_t& p, int gb, int gr, int tA, int tB,
                                             const float (&o)[kDv / 2], float mA, float lA, float mB, float lB, int cq,
                                             int lane, bool validA, bool validB) {
  const float invA = lA > 0.f ? 1.f / lA : 0.f, invB = lB > 0.f ? 1.f / lB : 0.f;
  const int64_t obA = (int64_t)gb * p.oBlockStride + (int64_t)tA * p.oTokenStride + (int64_t)gr * kDv;
  const int64_t obB = obA + (int64_t)(tB - tA) * p.oTokenStride;
  if (p.outType == CPCL_K_FP32) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
      float2* dst = reinterpret_cast<float2*>(static_cast<float*>(p.out) + (h ? obB : obA));
      const float inv = h ? invB : invA;
      if (h ? validB : validA) {
#pragma unroll
        for (int jj = 0; jj < kDv / 8; jj++)
          dst[(8 * jj + cq) / 2] = make_float2(o[4 * jj + 2 * h] * inv, o[4 * jj + 2 * h + 1] * inv);
      }
    }
  } else {
    const bool bf = p.outType == CPCL_K_BF16;
#pragma unroll
    for (int h = 0; h < 2; h++) {
      uint4* dst = reinterpret_cast<uint4*>(static_cast<uint16_t*>(p.out) + (h ? obB : obA));
      const float inv = h ? invB : invA;
      const bool valid = h ? validB : validA;
#pragma unroll
      for (int G = 0; G < kDv / 32; G++) {
        uint32_t w[4], v[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
          const int jj = 4 * G + j;
          const float a = o[4 * jj + 2 * h] * inv, b = o[4 * jj + 2 * h + 1] * inv;
          w[j] = bf ? LibElem<__nv_bfloat16>::pack(a, b) : LibElem<__half>::pack(a, b);
        }
        libQuadTranspose(w, v, lane);
        if (valid) dst[4 * G + (lane & 3)] = make_uint4(v[0], v[1], v[2], v[3]);
      }
    }
  }
  if (p.lse != nullptr && (lane & 3) == 0) {
    const float lse2A = lA > 0.f ? mA + log2f(lA) : -INFINITY, lse2B = lB > 0.f ? mB + log2f(lB) : -INFINITY;
    float* lse = p.lse + (int64_t)gb * p.lseBlockStride + gr;
    if (validA) lse[(int64_t)tA * p.lseTokenStride] = p.lseBase2 ? lse2A : lse2A * kLn2;
    if (validB) lse[(int64_t)tB * p.lseTokenStride] = p.lseBase2 ? lse2B : lse2B * kLn2;
  }
}

/* The kernel in two forms (kPersistent):
 *  - the grid form: one CTA per (tile slot, head), libItemOf of its linear block index (band 0:
 *    the slot in y reversed, the heaviest causal tiles of each sequence first, and the head in
 *    x); every CTA does its prologue (barriers, the
 *    segments, Q) and epilogue (O, lse) alone;
 *  - the persistent form: one CTA per SM, each looping over work items x = 0 .. heads x slots - 1
 *    in the grid form's dispatch order (libItemOf: the slot rank and the head, slot by slot or
 *    in bands of one KV head's query heads), taken from
 *    a counter in global memory (work != nullptr: atomicAdd, so the CTA that finishes first takes
 *    the next heaviest item) or statically (x = blockIdx.x + k gridDim.x). Producer warp 8 finds
 *    the next item's tile and segments as soon as it has issued the current one's last K/V, posts
 *    them in sg (workFull; sg has one copy: warp 8 rewrites it after workEmpty, when the consumers
 *    have read the descriptor and warps 9-11 are done with its tiles), and the TMA lane streams
 *    the next item's K/V into the stages as the consumers free them: the stage index and the
 *    barrier parities run on across items (key tile i of the CTA's whole sequence). Each consumer
 *    warpgroup loads its 64 Q rows of the next item as soon as its last S of the current one is
 *    done, while its last P V runs, then stores O and the lse; warpgroup 1 opens the next item's
 *    turns there too, so warpgroup 0 starts it meanwhile. A tile's arithmetic is the grid
 *    form's, whichever CTA takes it: every form gives the same bits. */
template <typename T, int kDqk, int kDv, int kStages, bool kOverlap, bool kPersistent>
__global__ void __launch_bounds__(kThreads, 1)
    prefillSm90LibKernel(const __grid_constant__ LibMaps maps, const __grid_constant__ cpclPrefillParams_t p,
                         unsigned int* work, unsigned int* rows, int band) {
  using S = Shape<kDqk, kDv, kStages>;
  using L = LibShape<kDqk, kDv, kStages>;
  using E = LibElem<T>;
  constexpr int kQTile = kBM * 128, kKTile = kBN * 128; /* bytes of one 64-dim tile */
  extern __shared__ unsigned char smemRaw[];
  /* the first 1024-byte boundary, as an offset from smemRaw: the pointer keeps the shared state space,
   * so its loads and stores compile to LDS / STS (through an integer cast they were generic LD / ST) */
  unsigned char* smem = smemRaw + ((1024u - (smemAddr(smemRaw) & 1023u)) & 1023u);
  const uint32_t sQ = smemAddr(smem), sK = sQ + S::kQBytes, sV = sK + kStages * S::kKBytes;
  int* sPos = reinterpret_cast<int*>(smem + L::kPosOff);
  LibSegs& sg = *reinterpret_cast<LibSegs*>(smem + L::kSegOff);
  const uint32_t fullK = smemAddr(smem + L::kBarOff), fullV = fullK + 8 * kStages, emptyK = fullV + 8 * kStages,
                 emptyV = emptyK + 8 * kStages, workFull = emptyV + 8 * kStages, workEmpty = workFull + 8,
                 issuedAt = workEmpty + 8; /* int: the key tiles the TMA lane has issued (with the store) */
  const int tid = threadIdx.x, lane = tid & 31;

  /* this warpgroup's 64 Q rows of tile (t0, nRows, head g), 16-byte chunks XOR-swizzled as TMA's
   * SW128 (consumer threads only) */
  auto issueQ = [&](int t0, int nRows, int g) {
    constexpr int kc = kDqk / 8;
    const int w = tid >> 7;
    const T* qb = static_cast<const T*>(p.q) + (int64_t)(g / p.headsPerBlock) * p.qBlockStride +
                  (int64_t)(g % p.headsPerBlock) * kDqk;
    for (int i = tid & 127; i < 64 * kc; i += 128) {
      const int r = 64 * w + i / kc, c = i % kc;
      const bool valid = r < nRows;
      libCpAsync16(sQ + (c >> 3) * kQTile + r * 128 + (((c & 7) ^ (r & 7)) << 4),
                   qb + (int64_t)(t0 + (valid ? r : 0)) * p.qTokenStride + c * 8, valid);
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  };

  int s = 0, t0 = 0, nRows = 0, g = 0, nIter = 0;
  /* the persistent form: its CTAs are all resident at once, so the store's rest kernel behind it
   * (prefill_sm90.cu) may be launched now; it takes the SMs as the last CTAs leave them */
  if (kPersistent && tid == 0) asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  if constexpr (!kPersistent) {
    /* the fused store's rest (prefillSm90StoreRest) may start once every CTA is resident */
    if (rows != nullptr && tid == 0) asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    int slot, hi;
    libItemOf(p, (int)(blockIdx.y * gridDim.x + blockIdx.x), (int)gridDim.y, band, &slot, &hi);
    if (!libTileOf(p, slot, &s, &t0, &nRows)) return; /* the whole CTA */
    g = p.headBegin + hi;
  }
  if (tid == 0) {
    asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(issuedAt), "r"(0) : "memory");
    for (int i = 0; i < kStages; i++) {
      mbarInit(fullK + 8 * i, 1 + kCopyThreads); /* the TMA lane (expect_tx or not) and the copy threads */
      mbarInit(fullV + 8 * i, 1 + kCopyThreads);
      mbarInit(emptyK + 8 * i, 8); /* lane 0 of each consumer warp */
      /* every consumer thread: a masked tile's positions are read by every lane (generic proxy),
       * and racecheck follows a thread's own arrival, not a __syncwarp before lane 0's */
      mbarInit(emptyV + 8 * i, 256);
    }
    if (kPersistent) {
      mbarInit(workFull, 1);                   /* warp 8's lane 0: sg holds the next item */
      mbarInit(workEmpty, 256 + kCopyThreads); /* every consumer and copy thread: done reading sg */
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  if constexpr (!kPersistent) {
    if (tid >= 256 && tid < 288)
      libBuildSegs(p, s, __ldg(p.queryPos + t0), __ldg(p.queryPos + t0 + nRows - 1), sg, lane);
    if (tid < 256) issueQ(t0, nRows, g);
  }
  __syncthreads(); /* barriers initialised (the grid form: segments written) */
  if constexpr (!kPersistent) nIter = __shfl_sync(0xffffffffu, sg.tiles, 0);

  if (tid >= 256) { /* ---- producer warpgroup ---- */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 56;\n" ::: "memory");
    /* the K/V tiles of one item, its key tiles i = 0 .. n - 1 being the CTA's base + i (stage and
     * parity); TMA lane only */
    auto produceTma = [&](int base, int n, int kh) {
      for (int i = 0; i < n; i++) {
        const int gi = base + i, st = gi % kStages;
        const uint32_t par = ((gi / kStages) - 1) & 1;
        const LibTile tl = libTile(sg, i);
        /* with the fused store (rows): a block's unmasked tile needs nothing of the copy
         * threads, so this lane arrives for them too and they store rows instead */
        const bool forCopy = rows != nullptr && tl.blk >= 0 && i >= sg.masked;
        /* a cache tile is the copy threads': this lane only keeps the barriers' count */
        if (gi >= kStages) mbarWaitIdle(emptyK + 8 * st, par);
        if (tl.blk >= 0) {
          mbarExpectTx(fullK + 8 * st, S::kKBytes);
#pragma unroll
          for (int c = 0; c < kDqk / 64; c++)
            tmaLoad3d(sK + st * S::kKBytes + c * kKTile, &maps.k[tl.blk], c * 64, kh, tl.start, fullK + 8 * st);
          if (forCopy) mbarArriveCount(fullK + 8 * st, kCopyThreads);
        } else {
          mbarArrive(fullK + 8 * st);
        }
        if (gi >= kStages) mbarWaitIdle(emptyV + 8 * st, par);
        if (tl.blk >= 0) {
          mbarExpectTx(fullV + 8 * st, S::kVBytes);
#pragma unroll
          for (int c = 0; c < kDv / 64; c++)
            tmaLoad3d(sV + st * S::kVBytes + c * kKTile, &maps.v[tl.blk], c * 64, kh, tl.start, fullV + 8 * st);
          if (forCopy) mbarArriveCount(fullV + 8 * st, kCopyThreads);
        } else {
          mbarArrive(fullV + 8 * st);
        }
        /* the copy warps' measure of the consumers' progress: they are at most here (gi + 1
         * tiles issued). A shared-memory atomic, read with one: a plain or volatile access races
         * with the copy warps' reads as racecheck sees it, and the count orders nothing else */
        if (rows != nullptr) asm volatile("red.shared.add.u32 [%0], 1;\n" ::"r"(issuedAt) : "memory");
      }
    };
    /* The fused store (p.storeK; `rows` is its row counter): each copy warp claims
     * a new K/V row at a time and stores it in 1 KB steps, taken only while the stage it waits
     * for is still in use (the copy warps run kStages tiles ahead of the consumers: the steps fill
     * time they spend waiting; steps taken after each tile's arrivals, 4 of them, made the copy
     * warps late and the consumers wait); after its last tile a warp finishes the row it holds
     * and claims no more, so no CTA holds its SM for the store. What the CTAs leave, prefillSm90StoreRest
     * (launched behind this kernel as a programmatic dependent, so under its last wave) claims
     * from the same counter. The CTAs with the most tiles store the most rows. */
    LibKvRow sr{0, 0, 0};
    /* 16-byte chunks left of part stPart (0 K, 1 V, 2 done) of row sr */
    int stLeft = 0, stPart = rows == nullptr ? 2 : 1;
    /* a step of the row held, or a new row if claim (false between rows without claim: the warp
     * holds none, and may claim again later, as the persistent form's next item does) */
    auto storeStep = [&](bool claim) -> bool {
      if (stPart == 2) return false;
      if (stLeft == 0 && stPart == 0) {
        stPart = 1;
        stLeft = p.numKvHeads * (kDv / 8);
      } else if (stLeft == 0) {
        if (!claim) return false;
        if (!libKvClaim(p, rows, lane, sr)) {
          stPart = 2; /* every row is claimed */
          return false;
        }
        stPart = 0;
        stLeft = p.numKvHeads * (kDqk / 8);
      }
      const int n16 = p.numKvHeads * (stPart ? kDv / 8 : kDqk / 8);
      libKvCopy(p, sr, stPart, n16 - stLeft, n16, lane);
      stLeft = stLeft > kStoreChunk ? stLeft - kStoreChunk : 0;
      return true;
    };
    /* the TMA lane's count of issued key tiles, to the whole warp (lane 0 reads it) */
    auto issuedCount = [&]() -> int {
      int v = 0;
      if (lane == 0) asm volatile("atom.shared.add.u32 %0, [%1], 0;\n" : "=r"(v) : "r"(issuedAt) : "memory");
      return __shfl_sync(0xffffffffu, v, 0);
    };
    /* With the store: rows while the consumers still have tiles to run up to the CTA's key tile
     * end (the TMA lane took the copy threads' arrivals on the plain tiles, so nothing waits for
     * them). A new row only while the TMA lane has more tiles to issue than about half the steps
     * of a row (a tile takes ~2 us, a step ~1 us; the consumers are never past the lane): the row
     * a warp holds is then done before the consumers are done with tile end - 1, since a CTA waits
     * for its copy warps (and its SM with it), and in the persistent form the next item's masked
     * tiles wait for them. The lane's count, not a barrier's parity: a parity test cannot tell
     * phases two apart, and the consumers can run that far ahead of a warp whose claim skips
     * rows. Ends between rows. */
    auto storeRows = [&](int end) {
      const int nkh = p.numKvHeads, steps = (nkh * (kDqk / 8) + kStoreChunk - 1) / kStoreChunk +
                                            (nkh * (kDv / 8) + kStoreChunk - 1) / kStoreChunk;
      const int margin = (steps + 1) / 2 + 1;
      while (storeStep(end - issuedCount() >= margin)) {
      }
    };
    /* warps 9-11 over one item: the key positions of masked tiles, the cache rows */
    auto produceCopy = [&](int base, int n, int nMask, int sq, int kh) {
      const int cid = tid - 288;
      const int32_t* btItem = p.cacheLens != nullptr ? p.blockTable + (int64_t)sq * p.maxPagesPerSeq : nullptr;
      const int64_t WI = (int64_t)p.cpSize * p.interleave, rI = (int64_t)p.cpRank * p.interleave;
      for (int i = 0; i < n; i++) {
        const int gi = base + i, st = gi % kStages;
        const uint32_t par = ((gi / kStages) - 1) & 1;
        const LibTile tl = libTile(sg, i);
        /* the persistent form reads the item's sequence and head from sg on every tile: with
         * the loop's base, holding them would take the producer warps past their 56 registers */
        const int32_t* bt = kPersistent && p.cacheLens != nullptr
                                ? p.blockTable + (int64_t)libLds(smemAddr(&sg.s)) * p.maxPagesPerSeq
                                : btItem;
        if constexpr (kPersistent) kh = libLds(smemAddr(&sg.g)) / p.groupSize;
        const bool cache = tl.blk < 0, masked = i < (kPersistent ? libLds(smemAddr(&sg.masked)) : nMask);
        /* with the fused store: the TMA lane arrived for this tile (produceTma) */
        if (rows != nullptr && !cache && !masked) continue;
        /* An arrival must not reach a barrier's previous phase: wait for it to complete. Writes
         * into the stage wait for the consumers to be done with what they replace: the cache
         * tile's K after emptyK; its V and a masked tile's positions (read in the softmax, before
         * the P V) after emptyV. A block's unmasked tile waits for neither, so its K is never held
         * up behind the stage's previous P V (with two stages that would end the ping-pong). */
        if (gi >= kStages) {
          /* the store's steps fill the wait for the stage's previous phase (a step is ~1 us of
           * latency, so at most that late); none once it has completed */
          /* Braces: nvcc 13.0 drops the statement after a discarded, braceless `if constexpr`
           * whose body is a loop, inside a lambda. Written without them, the persistent
           * instantiations lost the mbarWait below: the copy threads could arrive on a fullK
           * phase still waiting for its TMA bytes (pending count underflow: "Warp Illegal
           * Instruction", the intermittent launch failure of sessions 4-6; docs/PREFILL_SM90.md,
           * "Session 6"). tools/lint_kernels.py rejects the pattern. */
          if constexpr (!kPersistent) {
            if (rows != nullptr) { /* without the store, no test: the loop as it was */
              while (!__any_sync(0xffffffffu, mbarTest(fullK + 8 * st, par)) && storeStep(true)) {
              }
            }
          }
          /* With the store these threads skip the TMA lane's tiles, so in the persistent form the
           * stage's earlier tiles (gi - kStages, gi - 2 kStages) can be an earlier item's plain
           * ones, never arrived on here. The parity test below still sees the right phase: warp 8
           * posts an item only after its TMA lane has issued every tile of the one before, so the
           * lane has issued gi - kStages (or it is this item's, so one of these threads' own), and
           * with it seen the consumers done with gi - 2 kStages: that phase is complete. */
          mbarWaitIdle(fullK + 8 * st, par);
          if (cache) mbarWaitIdle(emptyK + 8 * st, par);
        }
        if (cache) {
          libCopyCacheRows<T, kDqk>(sK + st * S::kKBytes, p.kCache, bt, p, kh, tl.lo, tl.end, cid);
          asm volatile("cp.async.wait_all;\n" ::: "memory");
          fenceProxyAsync(); /* generic-proxy writes, read by wgmma */
        }
        mbarArrive(fullK + 8 * st);
        if (gi >= kStages) {
          mbarWaitIdle(fullV + 8 * st, par);
          if (cache || masked) mbarWaitIdle(emptyV + 8 * st, par);
        }
        if (cache) libCopyCacheRows<T, kDv>(sV + st * S::kVBytes, p.vCache, bt, p, kh, tl.lo, tl.end, cid);
        if (masked) {
          int* dst = sPos + st * L::kPosInts;
          for (int r = cid; r < kBN; r += kCopyThreads) {
            const int key = tl.start + r;
            int ps = INT32_MAX; /* never visible */
            if (cache) {
              if (key < tl.end && __ldg(bt + key / p.pageSize) >= 0) {
                if constexpr (kPersistent) /* from the parameters where used: fewer live registers */
                  ps = (int)((key / p.interleave) * ((int64_t)p.cpSize * p.interleave) +
                             (int64_t)p.cpRank * p.interleave + key % p.interleave);
                else
                  ps = (int)((key / p.interleave) * WI + rI + key % p.interleave);
              }
            } else if (key >= tl.lo && key < tl.end) {
              ps = __ldg(p.kv[tl.blk].pos + key);
            }
            dst[r] = ps;
          }
        }
        if (cache) {
          asm volatile("cp.async.wait_all;\n" ::: "memory");
          fenceProxyAsync();
        }
        mbarArrive(fullV + 8 * st);
      }
    };
    if (tid < 288) { /* warp 8 */
      if constexpr (!kPersistent) {
        if (tid == 256) {
          for (int b = 0; b < p.numKvBlocks; b++) {
            prefetchMap(&maps.k[b]);
            prefetchMap(&maps.v[b]);
          }
          produceTma(0, nIter, g / p.groupSize);
        }
      } else {
        if (lane == 0)
          for (int b = 0; b < p.numKvBlocks; b++) {
            prefetchMap(&maps.k[b]);
            prefetchMap(&maps.v[b]);
          }
        /* items: libItemOf maps x to (slot, head), in the grid form's order for the same band */
        const int heads = p.numHeads, slots = p.numSeqs + p.numTokens / kBM + 1, total = heads * slots;
        int k = 0, base = 0;
        /* the next item x from the counter (lane `from` claims, the lanes of `mask` get it) */
        auto fetch = [&](unsigned mask = 0xffffffffu, int from = 0) {
          int x = (int)blockIdx.x + k * (int)gridDim.x;
          if (work != nullptr) {
            if (lane == from) x = (int)atomicAdd(work, 1u);
            x = __shfl_sync(mask, x, from);
          }
          k++;
          return x;
        };
        int slot = 0, hi = 0;
        auto tileOf = [&](int x) {
          libItemOf(p, x, slots, band, &slot, &hi);
          return libTileOf(p, slot, &s, &t0, &nRows);
        };
        /* The next item is claimed (the counter, the slot search: ~4 dependent L2 loads) by lanes
         * 1-31 while lane 0 streams the current one's K/V (a divergent branch: the claim needs no
         * warp collective but the 31 lanes' shuffle), so the TMA lane is never held for it (branch
         * pclaim held it, and an item's tiles took ~10% longer) and the descriptor needs only its
         * segments once the current one's last K/V are issued (claimed then too, the next item came
         * ~600 cycles after the consumers wanted it: session 8, the PF90_MARK timeline). Whether
         * the warp runs the two paths interleaved is the scheduler's: the timeline tells. */
        int x = fetch();
        while (x < total && !tileOf(x)) x = fetch();
        for (uint32_t item = 0;; item++) {
          if (item > 0) mbarWaitIdle(workEmpty, (item - 1) & 1); /* everyone is done with sg */
          if (x >= total) {
            if (lane == 0) sg.tiles = -1; /* no more work */
            __syncwarp();
            mbarArriveLane0(workFull, lane);
            break;
          }
          g = p.headBegin + hi;
          libBuildSegs(p, s, __ldg(p.queryPos + t0), __ldg(p.queryPos + t0 + nRows - 1), sg, lane);
          if (lane == 0) {
            sg.s = s;
            sg.t0 = t0;
            sg.nRows = nRows;
            sg.g = g;
          }
          __syncwarp();
          mbarArriveLane0(workFull, lane);
          if (lane == 0) nIter = sg.tiles;
          nIter = __shfl_sync(0xffffffffu, nIter, 0);
          if (lane == 0) {
            PF90_MARK(item, 10);
            PF90_VAL(item, 15, nIter);
            produceTma(base, nIter, g / p.groupSize);
            PF90_MARK(item, 11);
          } else {
            x = fetch(0xfffffffeu, 1);
            while (x < total && !tileOf(x)) x = fetch(0xfffffffeu, 1);
            if (lane == 1) PF90_MARK(item, 18);
          }
          __syncwarp();
          /* lane 0 takes the claim from lane 1 */
          x = __shfl_sync(0xffffffffu, x, 1);
          s = __shfl_sync(0xffffffffu, s, 1);
          t0 = __shfl_sync(0xffffffffu, t0, 1);
          nRows = __shfl_sync(0xffffffffu, nRows, 1);
          hi = __shfl_sync(0xffffffffu, hi, 1);
          k = __shfl_sync(0xffffffffu, k, 1);
          base += nIter;
        }
      }
    } else { /* warps 9-11 */
      if constexpr (!kPersistent) {
        produceCopy(0, nIter, sg.masked, s, g / p.groupSize);
        if (rows != nullptr) storeRows(nIter); /* it also ends the row the waits' steps began */
      } else {
        int base = 0;
        for (uint32_t item = 0;; item++) {
          mbarWaitIdle(workFull, item & 1);
          nIter = sg.tiles;
          if (nIter < 0) break;
          if (tid == 288) PF90_MARK(item, 12);
          produceCopy(base, nIter, sg.masked, 0, 0);
          mbarArrive(workEmpty); /* this thread's reads of sg are done */
          if (tid == 288) PF90_MARK(item, 13);
          if (rows != nullptr) storeRows(base + nIter); /* then this item's share of the store */
          if (tid == 288) PF90_MARK(item, 14);
          base += nIter;
        }
      }
    }
    return;
  }

  /* ---- consumers ---- */
  asm volatile("setmaxnreg.inc.sync.aligned.u32 224;\n" ::: "memory");
  const int w = __shfl_sync(0xffffffffu, tid >> 7, 0), warp = (tid & 127) >> 5;
  const int rA = warp * 16 + (lane >> 2); /* this thread's rows: rA and rA + 8 of the warpgroup's 64 */
  const int cq = (lane & 3) * 2;          /* its column pair in each 8-column group */
  const int rowA = 64 * w + rA, rowB = rowA + 8;
  const float scale2 = p.smScale * kLog2e;
  const uint32_t qBase = sQ + w * 64 * 128; /* this warpgroup's 64 rows of each Q tile */
  int nMask = 0;
  if constexpr (!kPersistent) {
    nMask = __shfl_sync(0xffffffffu, sg.masked, 0);
  } else { /* the first item */
    mbarWait(workFull, 0);
    nIter = __shfl_sync(0xffffffffu, sg.tiles, 0);
    if (nIter < 0) return; /* no work for this CTA */
    nMask = __shfl_sync(0xffffffffu, sg.masked, 0);
    t0 = __shfl_sync(0xffffffffu, sg.t0, 0);
    nRows = __shfl_sync(0xffffffffu, sg.nRows, 0);
    g = __shfl_sync(0xffffffffu, sg.g, 0);
    mbarArrive(workEmpty); /* this thread's reads of sg are done */
    issueQ(t0, nRows, g);
  }

  float o[kDv / 2];
  float mA, mB, lA, lB;
  float s_[64];
  uint32_t pf[8][4];

  auto issueS = [&](int st) {
    const uint32_t kSt = sK + st * S::kKBytes;
#pragma unroll
    for (int ks = 0; ks < kDqk / 16; ks++) {
      const uint32_t off = (ks >> 2) * kQTile + (ks & 3) * 32, koff = (ks >> 2) * kKTile + (ks & 3) * 32;
      E::ss(s_, sw128Desc(qBase + off, 16, 1024), sw128Desc(kSt + koff, 16, 1024), ks > 0);
    }
  };
  auto issuePv = [&](int st) {
    const uint32_t vSt = sV + st * S::kVBytes;
#pragma unroll
    for (int kk = 0; kk < kBN / 16; kk++) E::rs(o, pf[kk], sw128Desc(vSt + kk * 16 * 128, kKTile, 1024));
  };
  int base = 0; /* the CTA's key tiles before this item's (stage and parity) */
  auto passTurn = [&](int i) {
    if (w == 0 || i + 1 < nIter) namedArrive(kBarTurn0 + (1 - w), 256);
  };
  auto stageOf = [&](int i) { return (base + i) % kStages; };
  auto parityOf = [&](int i) { return (uint32_t)((base + i) / kStages) & 1; };
  /* the masked softmax of the tile in stage st (S waited for, nothing in flight: its registers
   * come from P's): a bit per key and row from the positions warps 9-11 wrote */
  auto softmaxMasked = [&](int st, float& cA, float& cB, float& sumA, float& sumB) {
    const uint32_t ps = sQ + L::kPosOff + st * L::kPosInts * 4;
    const int qpA = rowA < nRows ? __ldg(p.queryPos + t0 + rowA) : INT32_MIN; /* padding rows see nothing */
    const int qpB = rowB < nRows ? __ldg(p.queryPos + t0 + rowB) : INT32_MIN;
    uint32_t bA = 0, bB = 0;
#pragma unroll
    for (int j = 0; j < 16; j++) {
      const int2 k2 = libLds2(ps + (8 * j + cq) * 4);
      bA |= (uint32_t)(k2.x <= qpA) << (2 * j) | (uint32_t)(k2.y <= qpA) << (2 * j + 1);
      bB |= (uint32_t)(k2.x <= qpB) << (2 * j) | (uint32_t)(k2.y <= qpB) << (2 * j + 1);
    }
    libTileMax<true>(s_, bA, bB, scale2, mA, mB, cA, cB);
    libTileExp<true>(s_, bA, bB, scale2, mA, mB, sumA, sumB);
  };

  /* one tile, S then softmax then P V, each waited for (the other warpgroup's GEMMs fill the
   * tensor cores meanwhile): every tile without the overlap, the masked ones with it */
  auto step = [&](int i, bool masked) {
    const int st = stageOf(i);
    namedBarrier(kBarTurn0 + w, 256); /* my turn to issue */
    mbarWait(fullK + 8 * st, parityOf(i));
    wgmmaFence();
    issueS(st);
    wgmmaCommit();
    passTurn(i);
    wgmmaWait<0>();
    fenceRegs(s_);
    mbarArriveLane0(emptyK + 8 * st, lane); /* this warp is done with the stage's K */
    float cA, cB, sumA, sumB;
    if (masked) {
      mbarWait(fullV + 8 * st, parityOf(i)); /* the positions arrive with V */
      softmaxMasked(st, cA, cB, sumA, sumB);
    } else {
      libTileMax<false>(s_, 0u, 0u, scale2, mA, mB, cA, cB);
      libTileExp<false>(s_, 0u, 0u, scale2, mA, mB, sumA, sumB);
    }
    lA = lA * cA + sumA;
    lB = lB * cB + sumB;
    libPackP<T>(s_, pf);
    rescaleO(o, cA, cB);
    fenceRegs(o);
    mbarWait(fullV + 8 * st, parityOf(i));
    wgmmaFence();
    issuePv(st);
    wgmmaCommit();
    wgmmaWait<0>();
    fenceRegs(o);
    mbarArrive(emptyV + 8 * st); /* this thread's reads of the stage's positions are done */
  };

  for (uint32_t item = 0;; item++) {
#pragma unroll
    for (int i = 0; i < kDv / 2; i++) o[i] = 0.f;
    mA = -INFINITY, mB = -INFINITY, lA = 0.f, lB = 0.f;
    /* Q landed: cp.async writes are generic-proxy, wgmma reads through the async proxy */
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    fenceProxyAsync();
    namedBarrier(kBarQ0 + w, 128);
    if ((tid & 127) == 0) PF90_MARK(item, 0 + w);

    /* the persistent form: the next item, and this warpgroup's Q rows of it, once its S GEMMs of
     * this one are done (they are the only readers of those rows) */
    int nNext = -1, mNext = 0, tNext = 0, rNext = 0, gNext = 0;
    auto next = [&]() {
      if constexpr (kPersistent) {
        namedBarrier(kBarQ0 + w, 128); /* every warp of the warpgroup is past its last S */
        mbarWait(workFull, (item + 1) & 1);
        nNext = __shfl_sync(0xffffffffu, sg.tiles, 0);
        mNext = __shfl_sync(0xffffffffu, sg.masked, 0);
        tNext = __shfl_sync(0xffffffffu, sg.t0, 0);
        rNext = __shfl_sync(0xffffffffu, sg.nRows, 0);
        gNext = __shfl_sync(0xffffffffu, sg.g, 0);
        mbarArrive(workEmpty);
        /* warpgroup 1 opens the next item's turns now, not at its start: warpgroup 0's first S of
         * it then runs under this warpgroup's last P V and epilogue (warpgroup 0 has passed its
         * last turn of this item, so its syncs on kBarTurn0 for this one are all done) */
        if (w == 1 && nNext > 0) namedArrive(kBarTurn0, 256);
        if (nNext >= 0) issueQ(tNext, rNext, gNext);
      }
    };

    if (nIter > 0) {
      /* warpgroup 0 issues first (the persistent form's later items: opened in next()) */
      if (w == 1 && (!kPersistent || item == 0)) namedArrive(kBarTurn0, 256);
      int i0 = 0;
      if constexpr (!kOverlap) {
        for (; i0 < nIter; i0++) step(i0, i0 < nMask);
        next();
      } else {
        for (; i0 + 1 < nMask; i0++) step(i0, true);
      }
      if (kOverlap && i0 < nIter) {
        /* S of tile i with P V of tile i - 1, the softmax of tile i under that P V
         * (prefill_sm90.cuh's overlap) from tile i0 on. Tile i0 is the last masked one, if any: its
         * softmax runs with nothing in flight, as the standalone kernel's peeled diagonal tile. */
        float cA, cB, sumA, sumB;
        {
          const int st = stageOf(i0);
          namedBarrier(kBarTurn0 + w, 256);
          mbarWait(fullK + 8 * st, parityOf(i0));
          wgmmaFence();
          issueS(st);
          wgmmaCommit();
          passTurn(i0);
          wgmmaWait<0>();
          fenceRegs(s_);
          if ((tid & 127) == 0) PF90_MARK(item, 2 + w);
          mbarArriveLane0(emptyK + 8 * st, lane);
          if (i0 < nMask) {
            mbarWait(fullV + 8 * st, parityOf(i0)); /* the positions arrive with V */
            softmaxMasked(st, cA, cB, sumA, sumB);
          } else {
            libTileMax<false>(s_, 0u, 0u, scale2, mA, mB, cA, cB);
            libTileExp<false>(s_, 0u, 0u, scale2, mA, mB, sumA, sumB);
          }
          lA = lA * cA + sumA;
          lB = lB * cB + sumB;
          rescaleO(o, cA, cB);
          libPackP<T>(s_, pf);
        }
        for (int i = i0 + 1; i < nIter; i++) {
          const int st = stageOf(i), sp = stageOf(i - 1);
          namedBarrier(kBarTurn0 + w, 256);
          mbarWait(fullK + 8 * st, parityOf(i));
          mbarWait(fullV + 8 * sp, parityOf(i - 1));
          wgmmaFence();
          issueS(st);
          wgmmaCommit();
          issuePv(sp);
          wgmmaCommit();
          passTurn(i);
          wgmmaWait<1>(); /* S done, P V in flight */
          fenceRegs(s_);
          mbarArriveLane0(emptyK + 8 * st, lane);
          libTileMax<false>(s_, 0u, 0u, scale2, mA, mB, cA, cB);
          libTileExp<false>(s_, 0u, 0u, scale2, mA, mB, sumA, sumB);
          wgmmaWait<0>();
          fenceRegs(o);
          mbarArrive(emptyV + 8 * sp);
          lA = lA * cA + sumA;
          lB = lB * cB + sumB;
          rescaleO(o, cA, cB);
          libPackP<T>(s_, pf);
        }
        const int sl = stageOf(nIter - 1);
        mbarWait(fullV + 8 * sl, parityOf(nIter - 1));
        wgmmaFence();
        issuePv(sl);
        wgmmaCommit();
        if ((tid & 127) == 0) PF90_MARK(item, 4 + w);
        next(); /* the next item's Q under the last P V */
        if ((tid & 127) == 0) PF90_MARK(item, 6 + w);
        wgmmaWait<0>();
        fenceRegs(o);
        mbarArrive(emptyV + 8 * sl);
        if ((tid & 127) == 0) PF90_MARK(item, 16 + w);
      }
    } else {
      next();
    }

    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    {
      const int gb = g / p.headsPerBlock, gr = g - gb * p.headsPerBlock;
      libStoreRows<kDv>(p, gb, gr, t0 + rowA, t0 + rowB, o, mA, lA, mB, lB, cq, lane, rowA < nRows, rowB < nRows);
    }
    if ((tid & 127) == 0) PF90_MARK(item, 8 + w);
    if constexpr (!kPersistent) {
      break;
    } else {
      if (nNext < 0) break;
      base += nIter;
      nIter = nNext;
      nMask = mNext;
      t0 = tNext;
      nRows = rNext;
      g = gNext;
    }
  }
}

/* The rows the attention's copy warps left of its fused store (a programmatic dependent of the
 * attention: the counter, an L2 atomic, is all they share while both run). A warp a row: claims,
 * then stores it whole; then it waits for the attention, so that it cannot end first. */
__global__ void __launch_bounds__(256, 4) /* 4 CTAs an SM: the launch counts on them */
    prefillSm90StoreRest(const __grid_constant__ cpclPrefillParams_t p, unsigned int* ctr) {
  const int lane = threadIdx.x & 31;
  const int kRow16 = p.numKvHeads * (p.headDimQk / 8), vRow16 = p.numKvHeads * (p.headDimVo / 8);
  LibKvRow r;
  while (libKvClaim(p, ctr, lane, r))
    for (int part = 0; part < 2; part++) {
      const int n16 = part ? vRow16 : kRow16;
      for (int off = 0; off < n16; off += kRestChunk) libKvCopy<kRestChunk>(p, r, part, off, n16, lane);
    }
  /* not before the attention: what follows in the stream waits for this kernel, so it must not
   * end first (every attention CTA is resident by now: it cannot wait on this one) */
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
}

}  // namespace pf90
}  // namespace cpcl

#endif /* CPCL_CUDA_PREFILL_SM90_LIB_CUH_ */
