/*
 * mla_sm90.cuh -- MLA decode attention on Hopper tensor cores (sm_90a: wgmma, TMA, mbarriers).
 *
 * Shapes (bf16 unless said): the library's cpclAttnParams_t (attn_params.h): q, out and lse of
 * gathered head g, row t at the block addresses there (attnQ / attnOut / attnLse of
 * attn_common.cuh: headsPerBlock, the strided layout or qBlock / outBlock / lseBlock), heads
 * [headBegin, headBegin + numHeads) of one latent KV head, latent cache [slots][576] (slot =
 * page * pageSize + i % pageSize of blockTable[seq][i / pageSize]), V = the first 512 elements of
 * each cached row, lse fp32 (natural log, base 2 with lseBase2). Row t of sequence s (n rows)
 * sits at global position seqLens[s] - n + j and attends to the local prefix
 * [0, localLen(cpRank, pos + 1)) of DESIGN.md §2 (kv_layout.h). Bad batch data is recorded in
 * errorFlag (params_common.h) and its row left empty, as in the other bodies: rowOf's checks,
 * the block-table capacity, and a negative page id among the pages a split reads (each split
 * checks only its own pages; the row is then empty: a one-split row is written so by its CTA, a
 * split row through a NaN lse that the merge turns into out 0, lse -inf; padding rows,
 * seqLens == 0, are empty, no error).
 *
 * CTA = 64 head-rows of one query row (heads g0 .. g0 + 63, padded with zero queries below 64:
 * wgmma's M) x one KV split; grid (numTokens x ceil(numHeads / 64), 1, maxSplits), tokens in x
 * since gridDim.y stops at 65535. 384 threads: warpgroups 0 and 1 are consumers, warpgroup 2 the
 * producer, which gives its registers to the consumers (setmaxnreg: 56 / 224).
 *   producer (one lane): for each 64-key block, TMA-copies its rows into one of two stages,
 *     nine 64x64 boxes per page run (SWIZZLE_128B), completing on full[stage]; a stage is
 *     refilled after the 8 consumer warps arrive on empty[stage].
 *   consumer warpgroup w: S = Q K^T (64x64, 36 wgmma m64n64k16 over the 576 dims, Q and K from
 *     shared memory), the online softmax in base 2 on its registers, then
 *     O[:, 256w .. 256w + 255] += P V (4 wgmma m64n256k16, P from registers, V read from the
 *     same stage as K, MN-major). Both warpgroups compute the same S (the 64x512 fp32 output
 *     needs both warpgroups' registers, and computing S twice keeps them free of any exchange:
 *     bitwise the same m and l in both).
 * Q: one bulk copy a head row (1152 bytes) by warp 0 into sQ, swizzled in place by the consumers
 * (the launcher takes this body only for 16-byte aligned q rows). Epilogue (mlaSm90Kernel, more
 * than 32 head rows): the normalised fragments staged in the free KV stages, then stored 16 bytes
 * a lane, a row a warp.
 * Keys past the row's end in the last block: S = -inf (select, never a product), and their V rows
 * are zeroed in shared memory before P V, so stale or NaN bytes never reach the output.
 *
 * Splits (batch-invariant: they depend on the row's own length and plan constants only):
 *   ns = min(maxSplits, ceil(len / chunkMin)); chunk = roundup(ceil(len / ns), 64);
 *   n = ceil(len / chunk). One split: the CTA writes out/lse. Several: fp32 normalised partials
 *   wsO [rows][numHeads][maxSplits][512] and base-2 LSEs wsLse [rows][numHeads][maxSplits] (head
 *   index g - headBegin); mlaSm90Combine
 *   merges them in split order (DESIGN.md §1: exact, empty partials skipped), launched with
 *   programmatic dependent launch so its launch overlaps the attention's tail.
 */
#ifndef CPCL_CUDA_MLA_SM90_CUH_
#define CPCL_CUDA_MLA_SM90_CUH_

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

#include "attn_common.cuh"
#include "fused_params.h"
#include "sm90_ptx.cuh"
#include "topk_own.cuh"

namespace cpcl {
namespace mla90 {

using namespace ::cpcl::sm90; /* the Hopper PTX wrappers */

constexpr int kDqk = 576, kDv = 512, kBN = 64, kM = 64;
constexpr int kTiles = kDqk / 64;        /* 64-dim tiles of a 64-row block: 9 */
constexpr int kTileB = 64 * 128;         /* one tile: 64 rows x 128 bytes, 128B-swizzled */
constexpr int kBlockB = kTiles * kTileB; /* a 64-row block of 576 dims: 73728 bytes */
constexpr int kThreads = 384;            /* 2 consumer warpgroups + 1 producer warpgroup */
constexpr int kSmemBytes = 3 * kBlockB + 8192 + 320 + 6 * 256 + 16 + 1024; /* Q, 2 stages, sP, barriers,
                                                                            * row scales and sums, the bad-page
                                                                            * flag, alignment */
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

/* The split constants of a plan and the workspace they index (mla_sm90.h): the rest of what the
 * body reads is the library's cpclAttnParams_t. */
struct Split {
  int maxSplits, chunkMin; /* plan constants (see above) */
  float* wsO;              /* [numTokens][numHeads][maxSplits][512]; unused when maxSplits == 1 */
  float* wsLse;            /* [numTokens][numHeads][maxSplits] */
  int evictFirst;          /* KV copies with an L2 evict-first hint (FlashMLA reports a better hit rate) */
  /* Sparse attention (issue 16): row t attends to the local KV indices sparseIdx[t][0 ..
   * sparseCount[t]) (this rank's own positions of its top-k list, compacted), in list order; the
   * row's "length" is that count and the splits cut the list as they cut a dense prefix. NULL for
   * dense attention. The producer warpgroup gathers the listed rows with cp.async. */
  const int32_t* sparseIdx;   /* [numTokens][sparseStride] */
  const int32_t* sparseCount; /* [numTokens] */
  int sparseStride;
  /* cpclAttnParams_t.topkRaw: the rows' unfiltered lists of global positions; the attention CTAs
   * then filter them themselves (rowWorkRaw) into sparseIdx / sparseCount, their scratch (NULL: the
   * filter kernel's lists) */
  const int32_t* topkRaw;
  /* A timing probe (cpclMlaSm90Trace, the bench only; NULL in the library): the first CTA of
   * the grid records clock64 at the events of kTrace* below, for the seesaw schedules. */
  unsigned long long* trace;
  /* The fused kernel's split merge (mla_sm90_fused.cu; NULL elsewhere): arrival counters and
   * ready words, one per (row, head chunk) = the attention CTA's blockIdx.x */
  unsigned* wsCount;
  unsigned* wsReady;
  int mergeCtas;  /* the split-merge CTAs after the attention ones */
  int mergeWarps; /* warps a head there (1 or 4): each counts itself out of the unit's ready word */
};

/* trace slots: consumer warpgroup w, pair j (< 64), event e (< 16): ((j * 2) + w) * 16 + e;
 * producer, block i (< 512): kTraceProducer + 2 i + e (e 0: its stage is free, 1: copies issued);
 * the CTA of mlaSm90Kernel: kTraceCta + e (0 entry, 1 its row's work known, 2 Q in shared memory,
 * 3 epilogue start, 4 epilogue done; warpgroup 0);
 * the same numbers as mla_sm90.h's kMlaSm90Trace* (the bench's view) */
constexpr int kTraceSlots = 4096, kTraceProducer = 2048, kTraceCta = 3072;
/* Records clock64 in slot when tr is set, from lane 0 of warpgroup lane 0 of the grid's first CTA:
 * the store is predicated inside the asm (no branch: ptxas serializes wgmma around divergence).
 * Only with CPCL_MLA_TRACE defined (the probe costs registers: 8 bytes of spill in variant 4). */
__device__ __forceinline__ void traceAt(unsigned long long* tr, int slot, int wt) {
#ifndef CPCL_MLA_TRACE /* compiled in only for the bench's traced build: the library's code stays as measured */
  return;
#endif
  if (tr == nullptr) return;
  const int who = blockIdx.x == 0 && blockIdx.z == 0 && wt == 0 && slot >= 0 && slot < kTraceSlots;
  const unsigned long long c = clock64();
  asm volatile("{\n.reg .pred p;\nsetp.ne.s32 p, %2, 0;\n@p st.global.u64 [%0], %1;\n}\n" ::"l"(tr + (who ? slot : 0)),
               "l"(c), "r"(who)
               : "memory");
}

/* ---- PTX wrappers of this body only (the shared ones: sm90_ptx.cuh) ---- */
/* the same with an L2 cache policy (createpolicy) */
__device__ __forceinline__ void tmaLoad2dHint(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar,
                                              uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, "
      "{%2, %3}], [%4], %5;\n" ::"r"(dst),
      "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar), "l"(policy)
      : "memory");
}
__device__ __forceinline__ void fenceRegs4(uint32_t (&r)[4]) {
#pragma unroll
  for (int i = 0; i < 4; i++) asm volatile("" : "+r"(r[i])::"memory");
}

#include "mla_sm90_wgmma.inc"

__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

/* ---- the row's work ---- */
struct RowWork {
  int seq;
  int len;   /* local prefix length, 0: empty row */
  int chunk; /* keys per split, a multiple of 64 */
  int n;     /* splits */
};

/* The row's splits from its length r.len (its own length and the plan's constants only) */
__device__ __forceinline__ void cutRow(RowWork& r, const Split& sp) {
  if (r.len == 0) {
    r.n = 1;
    r.chunk = 0;
  } else {
    int ns = (r.len + sp.chunkMin - 1) / sp.chunkMin;
    ns = ns < sp.maxSplits ? ns : sp.maxSplits;
    r.chunk = ((r.len + ns - 1) / ns + kBN - 1) / kBN * kBN;
    r.n = (r.len + r.chunk - 1) / r.chunk;
  }
}

/* The row's length and splits; bad batch data is recorded in flag (NULL: not recorded, the merge
 * kernel, which sees the same data as the attention) and leaves the row empty. */
__device__ __forceinline__ RowWork rowWork(const cpclAttnParams_t& p, const Split& sp, int t, int* flag) {
  RowWork r;
  int s = 0, r0, nr, sl;
  r.len = 0;
  const bool live = rowOf(p.queryStart, p.seqLens, p.numSeqs, t, flag, &s, &r0, &nr, p.numTokens, &sl);
  if (live && sp.sparseIdx) {
    const int c = __ldg(sp.sparseCount + t); /* the filter's count: within 0 .. stride */
    r.len = c < 0 ? 0 : c > sp.sparseStride ? sp.sparseStride : c;
  } else if (live) {
    const int64_t pos = (int64_t)sl - nr + (t - r0);
    int64_t len = cpclKvLocalLenOf(pos + 1, p.cpSize, p.cpRank, p.interleave);
    const int64_t cap = (int64_t)p.maxPagesPerSeq * p.pageSize;
    if (len > cap) { /* the block-table row cannot hold it: never read past it */
      reportError(flag, CPCL_KERR_CAPACITY, s, (int)min(len, (int64_t)INT32_MAX), (int)cap);
      len = 0;
    }
    r.len = (int)len;
  }
  r.seq = s;
  cutRow(r, sp);
  return r;
}

/* rowWork for Split.topkRaw (the filter inside the attention), every thread of the CTA of row t,
 * head chunk c of nc, split `split`: the row's list scanned with the filter kernel's rule
 * (topkKeep) in rounds of kN x 8 entries, each thread 8 consecutive ones, the kept counts summed
 * over the CTA (the warp sums in sScan, 32 ints of shared memory free before the main loop): the
 * count, so the splits (cutRow); then a second pass writes the kept entries whose place in the
 * compacted list falls in this split's [kBeg, kEnd) to the (row, chunk) scratch list (a block-wide
 * exclusive scan in list order, as the filter kernel's), and CTA (c 0, split 0) stores the count for
 * the combine. The list is the filter kernel's, entry for entry, so the bits are its path's. The
 * caller's barrier after this orders the writes before the producer's loads (ld.global.cg). */
template <int kN>
__device__ __forceinline__ RowWork rowWorkRaw(const cpclAttnParams_t& p, const Split& sp, int t, int c, int nc,
                                              int split, int* sScan) {
  constexpr int kPer = 8, kRound = kN * kPer, kWarps = kN / 32;
  static_assert(kWarps <= 32, "the warp sums take 32 ints");
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  RowWork r;
  int s = 0, r0, nr, sl;
  int64_t pos = -1; /* a bad or padding row keeps nothing */
  if (rowOf(p.queryStart, p.seqLens, p.numSeqs, t, p.errorFlag, &s, &r0, &nr, p.numTokens, &sl))
    pos = (int64_t)sl - nr + (t - r0);
  r.seq = s;
  const int K = sp.sparseStride;
  const int32_t* in = sp.topkRaw + (int64_t)t * K;
  const uint32_t W = (uint32_t)p.cpSize, I = (uint32_t)p.interleave, rank = (uint32_t)p.cpRank;
  /* this thread's kept mask and local indices of round k0 */
  auto scan = [&](int k0, int32_t(&loc)[kPer]) -> unsigned {
    unsigned keep = 0;
    const int kb = k0 + tid * kPer;
#pragma unroll
    for (int e = 0; e < kPer; e++) {
      const int32_t g = kb + e < K ? __ldg(in + kb + e) : -1;
      if (topkKeep(g, pos, W, I, rank, &loc[e])) keep |= 1u << e;
    }
    return keep;
  };
  int total = 0;
  for (int k0 = 0; k0 < K && pos >= 0; k0 += kRound) {
    int32_t loc[kPer];
    const int mine = __popc(scan(k0, loc));
    const int w = __reduce_add_sync(0xffffffffu, mine);
    if (lane == 0) sScan[warp] = w;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kWarps; i++) total += sScan[i];
    __syncthreads(); /* every thread has read the sums */
  }
  r.len = total; /* <= K */
  cutRow(r, sp);
  if (c == 0 && split == 0 && tid == 0) const_cast<int32_t*>(sp.sparseCount)[t] = total;
  if (split >= r.n || r.len == 0) return r;
  const int kBeg = split * r.chunk, kEnd = min(r.len, kBeg + r.chunk);
  int32_t* dst = const_cast<int32_t*>(sp.sparseIdx) + ((int64_t)t * nc + c) * K;
  int base = 0;
  for (int k0 = 0; k0 < K && base < kEnd; k0 += kRound) {
    int32_t loc[kPer];
    const unsigned keep = scan(k0, loc);
    const int mine = __popc(keep), incl = warpInclusiveSum(mine, lane);
    if (lane == 31) sScan[warp] = incl;
    __syncthreads();
    int before = base, all = 0;
#pragma unroll
    for (int i = 0; i < kWarps; i++) {
      const int v = sScan[i];
      before += i < warp ? v : 0;
      all += v;
    }
    int at = before + incl - mine;
#pragma unroll
    for (int e = 0; e < kPer; e++)
      if ((keep >> e) & 1u) {
        if (at >= kBeg && at < kEnd) dst[at] = loc[e];
        at++;
      }
    base += all;
    __syncthreads(); /* every thread has read the sums */
  }
  return r;
}

/* ---- the attention kernel: grid (numTokens x ceil(numHeads / 64), 1, maxSplits) ---- */
/* The online-softmax step of one 64-key block on this thread's S fragment (base 2; element 4j + e
 * is row (e < 2 ? A : B), key 8j + cq + (e & 1)). Keys >= valid are masked by a select (never a
 * product); the new maxima nA, nB come from the previous mA, mB; P is left as bf16 A-operand
 * fragments (pf[kk]: keys 16kk .. 16kk + 15) with the rescale factors cA, cB and this thread's
 * row sums. S is only read: writing the registers of a wgmma accumulator while another wgmma is
 * in flight makes ptxas serialize them all. Key 0 of a block is always valid, so the maxima are
 * finite after the first block. */
/* The producer's read of block-table entry idx of its row (DESIGN: a negative page id is bad
 * batch data): the first one is recorded in errorFlag and raises sBad (the split's partial is
 * thrown away), and page 0 is read in its place. Returns the page's first cache row. */
__device__ __forceinline__ int checkedPageRow(const cpclAttnParams_t& p, const int32_t* bt, int idx, int seq, bool& bad,
                                              int* sBad) {
  const int id = __ldg(bt + idx);
  if (id < 0 && !bad) {
    bad = true;
    *sBad = 1;
    __threadfence_block(); /* before this thread's later arrivals, whose barriers the consumers wait on */
    reportError(p.errorFlag, CPCL_KERR_PAGE, seq, id, idx);
  }
  return id < 0 ? 0 : id * p.pageSize;
}
/* A list entry: the filter kernel's lists through the non-coherent path, a CTA's own (raw, written
 * in this kernel) through L2 */
__device__ __forceinline__ int listAt(const int32_t* a, bool raw) { return raw ? __ldcg(a) : __ldg(a); }

/* The sparse producer's cache slot of listed index idx of its row (pages of pg, cap = table
 * entries x pg): an index outside the row, or a negative page id, is bad data, recorded once
 * (errorFlag, sBad) and read as slot 0. */
__device__ __forceinline__ int64_t checkedSparseSlot(const cpclAttnParams_t& p, const int32_t* bt, int idx, int pg,
                                                     int64_t cap, int seq, bool& bad, int* sBad) {
  const int id = idx >= 0 && idx < cap ? __ldg(bt + idx / pg) : -1;
  int64_t slot = 0;
  if (id < 0) {
    if (!bad) {
      bad = true;
      *sBad = 1;
      __threadfence_block(); /* before this thread's cp.async arrivals, whose barriers the consumers wait on */
      if (idx < 0 || idx >= cap)
        reportError(p.errorFlag, CPCL_KERR_CAPACITY, seq, idx, (int)min(cap, (int64_t)INT32_MAX));
      else
        reportError(p.errorFlag, CPCL_KERR_PAGE, seq, id, idx / pg);
    }
  } else {
    slot = (int64_t)id * pg + idx % pg;
  }
  return slot;
}

template <bool kKeep = false>
__device__ __forceinline__ void softmaxBlock(const float (&s)[32], int valid, int cq, float scale2, float mA, float mB,
                                             float& nA, float& nB, float& cA, float& cB, float& sumA, float& sumB,
                                             uint32_t (&pf)[4][4], float* keep = nullptr) {
  float xA = -INFINITY, xB = -INFINITY;
#pragma unroll
  for (int j = 0; j < 8; j++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int key = 8 * j + cq + (e & 1);
      const float v = key < valid ? s[4 * j + e] : -INFINITY;
      if (e < 2)
        xA = fmaxf(xA, v);
      else
        xB = fmaxf(xB, v);
    }
  }
  xA = fmaxf(xA, __shfl_xor_sync(0xffffffffu, xA, 1));
  xA = fmaxf(xA, __shfl_xor_sync(0xffffffffu, xA, 2));
  xB = fmaxf(xB, __shfl_xor_sync(0xffffffffu, xB, 1));
  xB = fmaxf(xB, __shfl_xor_sync(0xffffffffu, xB, 2));
  /* smScale > 0, so the maximum of the scaled scores is the scaled maximum */
  nA = fmaxf(mA, xA * scale2);
  nB = fmaxf(mB, xB * scale2);
  cA = exp2f(mA - nA); /* 0 on the first block */
  cB = exp2f(mB - nB);
  sumA = 0.f;
  sumB = 0.f;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    float p[4];
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int key = 8 * j + cq + (e & 1);
      p[e] = key < valid ? exp2f(fmaf(s[4 * j + e], scale2, -(e < 2 ? nA : nB))) : 0.f;
    }
    if (kKeep) /* the fp32 probabilities too, in place of this block's scores (each read above) */
#pragma unroll
      for (int e = 0; e < 4; e++) keep[4 * j + e] = p[e];
    sumA += p[0] + p[1];
    sumB += p[2] + p[3];
    pf[j >> 1][(j & 1) * 2 + 0] = packBf16(p[0], p[1]);
    pf[j >> 1][(j & 1) * 2 + 1] = packBf16(p[2], p[3]);
  }
}

/* O rows A (elements 4j, 4j + 1) and B (4j + 2, 4j + 3) times cA, cB; skipped when no maximum of
 * the warp moved (x 1 is exact, and later blocks rarely move one). The test is a warp vote, so
 * the branch is uniform: ptxas serializes wgmma in flight around divergent branches. */
__device__ __forceinline__ void rescaleO(float (&o)[128], float cA, float cB) {
  if (__any_sync(0xffffffffu, cA != 1.f || cB != 1.f)) {
#pragma unroll
    for (int j = 0; j < 32; j++) {
      o[4 * j + 0] *= cA;
      o[4 * j + 1] *= cA;
      o[4 * j + 2] *= cB;
      o[4 * j + 3] *= cB;
    }
  }
}

/* S (64 x 64) = Q K^T over the 576 dims of one stage. With per-tile barriers (tileBar != 0) each
 * 64-dim tile is waited for just before its four k-steps, so S starts when the first tile lands.
 * kProxyFence: the tiles were written by cp.async (the generic proxy), so each wait is followed by
 * a proxy fence before wgmma (the async proxy) reads them. */
template <bool kProxyFence = false>
__device__ __forceinline__ void issueS(float (&s)[32], uint32_t qBase, uint32_t kSt, uint32_t tileBar = 0,
                                       uint32_t parity = 0) {
  wgmmaFence();
#pragma unroll
  for (int ks = 0; ks < kDqk / 16; ks++) {
    if (tileBar && (ks & 3) == 0) {
      mbarWait(tileBar + (ks >> 2) * 8, parity);
      if (kProxyFence) fenceProxyAsync();
    }
    const uint32_t off = (ks >> 2) * kTileB + (ks & 3) * 32;
    wgmmaSS_m64n64k16(s, sw128Desc(qBase + off, 16, 1024), sw128Desc(kSt + off, 16, 1024), ks > 0);
  }
  wgmmaCommit();
}

/* V descriptor of 16 keys (kk) of this warpgroup's 256 dims: MN-major SW128, LBO = 8192 between
 * 64-dim tiles, SBO = 1024 between 8-key groups (kVDesc 1 swaps them: kept to prove the choice) */
template <int kVDesc>
__device__ __forceinline__ uint64_t vDesc(uint32_t kSt, int w, int kk) {
  return sw128Desc(kSt + (4 * w) * kTileB + kk * 16 * 128, kVDesc == 0 ? 8192 : 1024, kVDesc == 0 ? 1024 : 8192);
}

/* O += P V with P in registers */
template <int kVDesc>
__device__ __forceinline__ void issuePvRegs(float (&o)[128], uint32_t (&pf)[4][4], uint32_t kSt, int w) {
  wgmmaFence();
#pragma unroll
  for (int kk = 0; kk < 4; kk++) wgmmaRS_m64n256k16(o, pf[kk], vDesc<kVDesc>(kSt, w, kk));
  wgmmaCommit();
}
/* O += P V with P in shared memory (sP, K-major SW128) */
template <int kVDesc>
__device__ __forceinline__ void issuePvSmem(float (&o)[128], uint32_t sP, uint32_t kSt, int w) {
  wgmmaFence();
#pragma unroll
  for (int kk = 0; kk < 4; kk++) wgmmaSS_m64n256k16(o, sw128Desc(sP + kk * 32, 16, 1024), vDesc<kVDesc>(kSt, w, kk), 1);
  wgmmaCommit();
}

/* zero this warpgroup's V half of rows [valid, 64) of a stage: stale or NaN bytes past the row's
 * end must not reach P V (their P is 0, but 0 x NaN is NaN). The S of those keys is masked. */
__device__ __forceinline__ void zeroTail(unsigned char* stage, int w, int wt, int valid) {
  const uint32_t vt = smemAddr(stage) + (uint32_t)((4 * w) * kTileB);
  const int n = (kBN - valid) * 4 * 8; /* 16-byte chunks: rows x 4 tiles x 8 */
#pragma unroll
  for (int k0 = 0; k0 < kBN * 4 * 8; k0 += 128) { /* a fixed trip count: predicated stores, no divergent loop */
    const int k = k0 + wt, r = valid + k / 32, tile = (k >> 3) & 3, j = k & 7;
    /* predicated in the PTX, so the compiler cannot branch around each store (it did in some units:
     * a BSSY / BRA / BSYNC a store in every block's path, session 18), and a shared-space store */
    asm volatile("{\n.reg .pred q;\nsetp.lt.s32 q, %1, %2;\n@q st.shared.v4.b32 [%0], {%3, %3, %3, %3};\n}\n" ::"r"(
                     vt + (uint32_t)(tile * kTileB + r * 128 + (j << 4))),
                 "r"(k), "r"(n), "r"(0)
                 : "memory");
  }
  fenceProxyAsync();
  namedBarrier(2 + w, 128);
}

/* P (this thread's fragment) -> sP in the K-major SW128 layout: row r, keys 8j + cq .. + 1 */
__device__ __forceinline__ void storeP(unsigned char* sP, const uint32_t (&pf)[4][4], int rA, int rB, int cq) {
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const uint32_t a = pf[j >> 1][(j & 1) * 2 + 0], b = pf[j >> 1][(j & 1) * 2 + 1];
    *reinterpret_cast<uint32_t*>(sP + rA * 128 + ((j ^ (rA & 7)) << 4) + cq * 2) = a;
    *reinterpret_cast<uint32_t*>(sP + rB * 128 + ((j ^ (rB & 7)) << 4) + cq * 2) = b;
  }
}

/* Named barriers: 1 all consumers, 2 + w one warpgroup, 4 P0 ready (WG0 -> WG1), 5 P1 ready. */
constexpr int kBarAll = 1, kBarP0 = 4, kBarP1 = 5;

/* ---- epilogue: normalise, store (out and lse, or the split's partial) ---- */
__device__ __forceinline__ void mlaEpilogue(const cpclAttnParams_t& p, const Split& sp, const RowWork& rw, int t,
                                            int split, int g0, int nu, int w, int lane, int rA, int rB, int cq,
                                            bool badSplit, const float (&o)[128], float lA, float lB, float mA,
                                            float mB) {
  const float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
  const float lse2A = lA > 0.f ? mA + log2f(lA) : -INFINITY, lse2B = lB > 0.f ? mB + log2f(lB) : -INFINITY;
  const int d0 = 256 * w + cq;
  /* a split that met a bad page: its row is empty (one split: out 0, lse -inf, written here;
   * several: a NaN lse marks the partial, and the merge empties the row) */
  if (badSplit) {
    if (rw.n == 1) {
#pragma unroll
      for (int h2 = 0; h2 < 2; h2++) {
        const int r = h2 ? rB : rA;
        if (r >= nu) continue;
        __nv_bfloat16* dst = attnOut<__nv_bfloat16>(p, g0 + r, t) + d0;
#pragma unroll
        for (int j = 0; j < 32; j++) *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j) = __floats2bfloat162_rn(0.f, 0.f);
        float* lse = w == 0 && (lane & 3) == 0 ? attnLse(p, g0 + r, t) : nullptr;
        if (lse) *lse = -INFINITY;
      }
    } else if (w == 0 && (lane & 3) == 0) {
      const int64_t uA = ((int64_t)t * p.numHeads + g0 - p.headBegin + rA) * sp.maxSplits + split;
      const int64_t uB = ((int64_t)t * p.numHeads + g0 - p.headBegin + rB) * sp.maxSplits + split;
      if (rA < nu) sp.wsLse[uA] = __int_as_float(0x7fc00000);
      if (rB < nu) sp.wsLse[uB] = __int_as_float(0x7fc00000);
    }
    return;
  }
  if (rw.n == 1) {
    if (rA < nu) {
      __nv_bfloat16* dst = attnOut<__nv_bfloat16>(p, g0 + rA, t) + d0;
#pragma unroll
      for (int j = 0; j < 32; j++)
        *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j) = __floats2bfloat162_rn(o[4 * j] * iA, o[4 * j + 1] * iA);
      float* lse = w == 0 && (lane & 3) == 0 ? attnLse(p, g0 + rA, t) : nullptr;
      if (lse) *lse = p.lseBase2 ? lse2A : lse2A * kLn2;
    }
    if (rB < nu) {
      __nv_bfloat16* dst = attnOut<__nv_bfloat16>(p, g0 + rB, t) + d0;
#pragma unroll
      for (int j = 0; j < 32; j++)
        *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j) = __floats2bfloat162_rn(o[4 * j + 2] * iB, o[4 * j + 3] * iB);
      float* lse = w == 0 && (lane & 3) == 0 ? attnLse(p, g0 + rB, t) : nullptr;
      if (lse) *lse = p.lseBase2 ? lse2B : lse2B * kLn2;
    }
  } else {
    const int S = sp.maxSplits;
    if (rA < nu) {
      const int64_t u = ((int64_t)t * p.numHeads + g0 - p.headBegin + rA) * S + split;
      float* dst = sp.wsO + u * kDv + d0;
#pragma unroll
      for (int j = 0; j < 32; j++)
        *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[4 * j] * iA, o[4 * j + 1] * iA);
      if (w == 0 && (lane & 3) == 0) sp.wsLse[u] = lse2A;
    }
    if (rB < nu) {
      const int64_t u = ((int64_t)t * p.numHeads + g0 - p.headBegin + rB) * S + split;
      float* dst = sp.wsO + u * kDv + d0;
#pragma unroll
      for (int j = 0; j < 32; j++)
        *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[4 * j + 2] * iB, o[4 * j + 3] * iB);
      if (w == 0 && (lane & 3) == 0) sp.wsLse[u] = lse2B;
    }
  }
}

/* The epilogue of mlaSm90Kernel, through shared memory: every thread writes its normalised
 * fragments into sO (the KV stages, free once every warpgroup is past its last block: the first
 * barrier), then the 8 consumer warps store the head rows (1024 bytes of bf16 out, or the 2048
 * bytes of an fp32 partial) in 16-byte chunks, a row a warp at a time. The fragments' own stores
 * are 4- and 8-byte writes scattered over 8 rows a warp instruction (~10k cycles of a CTA of 64
 * rows, docs/MLA_SM90.md "Session 10"). Row pitches of 1040 and 2080 bytes keep the fragment
 * writes free of bank conflicts. A destination row that is not 16-byte aligned is stored in 4-byte
 * words instead. A split that met a bad page takes mlaEpilogue's path (rare, nothing staged). */
__device__ __forceinline__ void mlaEpilogueStaged(const cpclAttnParams_t& p, const Split& sp, const RowWork& rw, int t,
                                                  int split, int g0, int nu, int w, int lane, int rA, int rB, int cq,
                                                  bool badSplit, const float (&o)[128], float lA, float lB, float mA,
                                                  float mB, unsigned char* sO, unsigned char** sDst) {
  /* up to 32 head rows (16-head rows: B1 and B64 H16 of issue 13) the fragments' own stores are as
   * fast (the staging measured 0.6 us slower at B1 H16 L4k: "Session 10") */
  if (nu <= 32) {
    mlaEpilogue(p, sp, rw, t, split, g0, nu, w, lane, rA, rB, cq, badSplit, o, lA, lB, mA, mB);
    return;
  }
  /* one barrier: every warpgroup's last reads of the stages are done, and the bad-page mark is
   * or-ed over the consumers, so the branch below is uniform (the barriers in it need all 256) */
  uint32_t anyBad;
  asm volatile("{\n.reg .pred q, r;\nsetp.ne.u32 q, %1, 0;\nbar.red.or.pred r, %2, 256, q;\nselp.u32 %0, 1, 0, r;\n}\n"
               : "=r"(anyBad)
               : "r"((uint32_t)badSplit), "n"(kBarAll)
               : "memory");
  if (anyBad) {
    mlaEpilogue(p, sp, rw, t, split, g0, nu, w, lane, rA, rB, cq, true, o, lA, lB, mA, mB);
    return;
  }
  const bool part = rw.n != 1;
  const int pitch = part ? 2080 : 1040;
  const float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
  const float lse2A = lA > 0.f ? mA + log2f(lA) : -INFINITY, lse2B = lB > 0.f ? mB + log2f(lB) : -INFINITY;
  const int d0 = 256 * w + cq, S = sp.maxSplits;
  auto rowU = [&](int r) { return ((int64_t)t * p.numHeads + g0 - p.headBegin + r) * S + split; };
#pragma unroll
  for (int h2 = 0; h2 < 2; h2++) {
    const int r = h2 ? rB : rA;
    const float inv = h2 ? iB : iA, lse2 = h2 ? lse2B : lse2A;
    if (r >= nu) continue;
    unsigned char* row = sO + r * pitch;
    const bool lead = w == 0 && (lane & 3) == 0; /* the row's lse, and where the row goes */
    if (part) {
#pragma unroll
      for (int j = 0; j < 32; j++)
        *reinterpret_cast<float2*>(row + (d0 + 8 * j) * 4) =
            make_float2(o[4 * j + 2 * h2] * inv, o[4 * j + 2 * h2 + 1] * inv);
      if (lead) {
        sp.wsLse[rowU(r)] = lse2;
        sDst[r] = reinterpret_cast<unsigned char*>(sp.wsO + rowU(r) * kDv);
      }
    } else {
#pragma unroll
      for (int j = 0; j < 32; j++)
        *reinterpret_cast<__nv_bfloat162*>(row + (d0 + 8 * j) * 2) =
            __floats2bfloat162_rn(o[4 * j + 2 * h2] * inv, o[4 * j + 2 * h2 + 1] * inv);
      if (lead) {
        float* lse = attnLse(p, g0 + r, t);
        if (lse) *lse = p.lseBase2 ? lse2 : lse2 * kLn2;
        sDst[r] = reinterpret_cast<unsigned char*>(attnOut<__nv_bfloat16>(p, g0 + r, t));
      }
    }
  }
  namedBarrier(kBarAll, 256);
  /* warp k of the 8 stores rows k, k + 8, ...: 16 bytes a lane, 512 contiguous bytes an instruction */
  const uint32_t chunks = part ? kDv * 4 / 16 : kDv * 2 / 16;
  for (int r = (int)(threadIdx.x >> 5); r < nu; r += 8) {
    unsigned char* dst = sDst[r];
    const unsigned char* src = sO + r * pitch;
    if (((uintptr_t)dst & 15) == 0) {
      for (uint32_t c = lane; c < chunks; c += 32)
        *reinterpret_cast<uint4*>(dst + c * 16) = *reinterpret_cast<const uint4*>(src + c * 16);
    } else {
      for (uint32_t c = lane; c < chunks * 4; c += 32)
        reinterpret_cast<uint32_t*>(dst)[c] = reinterpret_cast<const uint32_t*>(src)[c];
    }
  }
}

/* kKind 0: both warpgroups compute every block's S (no exchange; S done twice).
 * kKind 2: kKind 1 with warpgroup 1 issuing S1 after P0 V0_R instead of at the pair's start
 *   (less overlap of S1 with WG0's softmax, more time for stage 1 to load).
 * kKind 1: seesaw (FlashMLA's schedule): blocks in pairs, warpgroup 0 computes S of the even block
 *   (stage 0), warpgroup 1 of the odd one (stage 1); each uses its own P from registers and the
 *   other's from sP, with the running maximum passed along through sC / sM:
 *     WG0: S0; m0 = max(m, S0); P0; O_L = O_L c0 + P0 V0_L; [P1 ready] O_L = O_L c1 + P1 V1_L
 *     WG1: S1; [P0 ready] O_R = O_R c0 + P0 V0_R; m1 = max(m0, S1); P1; O_R = O_R c1 + P1 V1_R
 *   Row sums: WG0 keeps those of even blocks, WG1 of odd ones (both rescaled by every c), added
 *   at the end. */
/* kLanes (TMA producer): 0 one thread issues every box; 1 one lane a page; 2 one lane a (page, tile)
 * box, tile-major. With kSparse it picks the gather instead: 0 session 2's (variant 11), 1 session
 * 4's (variants 17, 18: list entries two blocks ahead, slots one block ahead, rows prefetched into
 * L2; launched as a programmatic dependent of the filter). kEarly: each warpgroup waits for its
 * P.V of a stage right after issuing it and frees the stage then, before it waits on the other
 * warpgroup or on the other stage (else a stage's release waits behind the other stage's arrival,
 * and the two loads chain: measured with the clock64 timeline, docs/MLA_SM90.md "Session 3"). */
/* kFlags (the two-warpgroup schedules with early release, kKind 1 or 2 with kEarly):
 *   kFlagHandOrder: a warpgroup does not wait for the other's stage (WG0 for stage 1 before P1 V1_L,
 *     WG1 for stage 0 before P0 V0_R): the other warpgroup waited for every tile of it before the
 *     hand-off (P1, P0) this one has passed, and the named barrier orders those waits before its
 *     reads (FlashMLA's schedule relies on the same); nine try_waits less on each hand-off's path;
 * Measured slower and removed (docs/MLA_SM90.md, "Session 12"): warpgroup 1's softmax over its own
 * maxima before P0 arrives (1), and warpgroup 1's softmax1 under its P0 V0_R (4). */
constexpr int kFlagHandOrder = 2;
/* kMbarHand: the P0 / P1 hand-offs between the warpgroups (P in sP, the scales and maxima in
 * sC / sM) through mbarriers (one arrival a warp, by lane 0 after __syncwarp) instead of named
 * barriers (bar.arrive -> bar.sync), which compute-sanitizer's racecheck does not model
 * (tools/kernel_bench/racecheck_probe.cu); the order is the same. */
/* Where a CTA's work starts and ends beyond the body: MlaStandalone for mlaSm90Kernel (nothing),
 * MlaFusedCta (mla_sm90_fused.cu) inside the fused decode kernel: work(g0, nu) by every thread once
 * the CTA knows it has work (the query put and the owners' wait, before Q is read), done(...) by
 * the 256 consumer threads after their epilogue stores (the per-block count, or the split's arrival
 * for the split-merge CTAs). */
struct MlaStandalone {
  static constexpr bool kFused = false;
  __device__ __forceinline__ void work(int, int) const {}
  __device__ __forceinline__ void done(int, int, int, int) const {}
};

/* One CTA of the body: grid cell (bx, bz) of mlaSm90Kernel's grid (numTokens x head chunks, 1,
 * maxSplits) */
template <int kKind, int kVDesc, bool kTileBars, bool kSparse, int kLanes, bool kEarly, bool kMbarHand, int kFlags,
          class Cta>
__device__ __forceinline__ void mlaCta(const CUtensorMap& kvMap, const cpclAttnParams_t& p, const Split& sp,
                                       const Cta& cta, unsigned bx, unsigned bz) {
  static_assert(kFlags == 0 || (kKind != 0 && kEarly), "kFlags are for the two-warpgroup schedules with early release");
  constexpr bool kHandOrder = kFlags & kFlagHandOrder;
  extern __shared__ unsigned char smemRaw[];
  /* the first 1024-byte boundary, as an offset from smemRaw: the pointer keeps the shared state space,
   * so its loads and stores compile to LDS / STS (through an integer cast they were generic LD / ST) */
  unsigned char* smem = smemRaw + ((1024u - (smemAddr(smemRaw) & 1023u)) & 1023u);
  unsigned char* sQ = smem;
  unsigned char* sK = smem + kBlockB; /* stages 0, 1 */
  unsigned char* sP = smem + 3 * kBlockB;
  /* full[stage][tile] (with kTileBars; else full[stage][0] counts the whole block), empty[stage] */
  uint64_t* fullBar = reinterpret_cast<uint64_t*>(smem + 3 * kBlockB + 8192);
  uint64_t* emptyBar = fullBar + 2 * kTiles;
  uint64_t* handBar = emptyBar + 2; /* kMbarHand: P0 published, P1 published */
  uint64_t* qBar = handBar + 2;     /* Q's bulk copies landed */
  float* sC0 = reinterpret_cast<float*>(smem + 3 * kBlockB + 8192 + 320);
  float* sM0 = sC0 + 64;
  float* sC1 = sM0 + 64;
  float* sM1 = sC1 + 64;
  float* sLA = sM1 + 64;
  float* sLB = sLA + 64;
  int* sBad = reinterpret_cast<int*>(sLB + 64); /* the producer met a negative page id in this split */

  /* lets the combine kernel (launched as a programmatic dependent) be scheduled early; it waits
   * for this grid's completion before reading anything */
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  /* The session-4 sparse form is launched as a programmatic dependent (mla_sm90.cu), so that it
   * is resident while the top-k filter before it runs: nothing written before this launch is read
   * until the grids before it have completed. */
  traceAt(sp.trace, kTraceCta + 0, threadIdx.x);
  if constexpr (kSparse && kLanes == 1) asm volatile("griddepcontrol.wait;\n" ::: "memory");

  const int nChunks = (p.numHeads + kM - 1) / kM;
  const int t = (int)bx / nChunks, chunk = (int)bx % nChunks, split = (int)bz, g0 = p.headBegin + chunk * kM;
  /* the filter inside the attention (sparse only): the warp sums in sP, which the loop writes only later */
  const RowWork rw = kSparse && sp.topkRaw
                         ? rowWorkRaw<kThreads>(p, sp, t, chunk, nChunks, split, reinterpret_cast<int*>(sP))
                         : rowWork(p, sp, t, p.errorFlag);
  if (split >= rw.n) return;
  const int nu = min(kM, p.headBegin + p.numHeads - g0);
  cta.work(g0, nu);
  const int kBeg = split * rw.chunk, kEnd = min(rw.len, kBeg + rw.chunk);
  /* Through a shuffle, so the compiler knows it is warp-uniform (else it serializes the wgmma of
   * the per-tile-barrier variants). */
  const int nBlocks = __shfl_sync(0xffffffffu, (kEnd - kBeg + kBN - 1) / kBN, 0);
  const int tid = threadIdx.x;
  traceAt(sp.trace, kTraceCta + 1, tid);

  if (tid == 0) {
    /* TMA: one arrival (the expect_tx); sparse: the 128 producer threads' cp.async arrivals */
    for (int i = 0; i < 2 * kTiles; i++) mbarInit(smemAddr(&fullBar[i]), kSparse ? 128 : 1);
    for (int i = 0; i < 2; i++) mbarInit(smemAddr(&emptyBar[i]), 8);
    if (kMbarHand)
      for (int i = 0; i < 2; i++) mbarInit(smemAddr(&handBar[i]), 4); /* the 4 warps of one warpgroup */
    mbarInit(smemAddr(qBar), 1);
    *sBad = 0;
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  /* Q's head rows (1152 contiguous bytes each), one bulk copy a row into sQ as rows of 1152 bytes
   * (the consumers swizzle them in place below). LDG of the same 72 KB by the consumers took ~11k
   * cycles, landing behind the first two blocks' copies (the clock64 timeline, docs/MLA_SM90.md
   * "Session 10"). Rows past nu are not read. */
  if (tid < 32 && nBlocks > 0) {
    if (tid == 0) mbarExpectTx(smemAddr(qBar), (uint32_t)nu * (kDqk * 2));
    __syncwarp();
    for (int r = tid; r < nu; r += 32)
      bulkG2S(smemAddr(sQ) + r * (kDqk * 2), attnQ<__nv_bfloat16>(p, g0 + r, t), kDqk * 2, smemAddr(qBar));
  }

  if (tid >= 256) { /* ---- producer warpgroup ---- */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 56;\n" ::: "memory");
    if constexpr (kSparse) {
      /* The producer warpgroup gathers each block's listed rows with 16-byte cp.async (nine
       * one-row TMA boxes a key were measured 6x slower: the copy engine is slow on 128-byte
       * boxes). Thread i copies 16-byte chunk i % 8 of every 64-dim tile for rows i / 8 + 16k
       * (k < 4): a warp reads four whole 128-byte row segments at a time. Rows past the block's
       * count are zero-filled (source size 0). Each thread's copies of a tile complete on that
       * tile's full barrier (count 128, cp.async.mbarrier.arrive.noinc), so S still starts tile
       * by tile. Slots are resolved one block ahead. A listed index outside the block-table row,
       * or a negative page id, is bad data: recorded, read as slot 0, and the split's partial
       * thrown away (sBad). */
      const int pt = tid - 256, ch = pt & 7, r0 = pt >> 3;
      const int32_t* bt = p.blockTable + (int64_t)rw.seq * p.maxPagesPerSeq;
      /* the filter kernel's list of row t, or this CTA's own (rowWorkRaw: row t, head chunk `chunk`,
       * written by this CTA before the barrier above, so read through L2, never the non-coherent path) */
      const bool raw = sp.topkRaw != nullptr;
      const int32_t* list = sp.sparseIdx + (raw ? (int64_t)t * nChunks + chunk : (int64_t)t) * sp.sparseStride;
      const int pg = p.pageSize;
      const int64_t cap = (int64_t)p.maxPagesPerSeq * pg;
      const char* kv = static_cast<const char*>(p.kCache);
      bool bad = false;
      if constexpr (kLanes == 1) {
        /* The session-4 gather (variants 17, 18; docs/MLA_SM90.md "Session 4"): the same copies,
         * with the list -> block table -> row chain taken off the critical path. A block's list
         * entries are loaded two blocks ahead, its slots resolved one block ahead (one block-table
         * load left), and its rows prefetched into L2 then (cp.async.bulk.prefetch.L2, one 1152-byte
         * row an instruction), so that when its stage frees the cp.async hit L2 instead of a random
         * HBM row each. */
        int ix[4];      /* list entries of the next block to resolve */
        int64_t row[4]; /* byte offset of each of this thread's rows in the cache; -1: past the count */
        auto loadIdx = [&](int i, int(&dst)[4]) {
          const int b0 = kBeg + i * kBN, valid = min(kBN, kEnd - b0);
#pragma unroll
          for (int k = 0; k < 4; k++) dst[k] = r0 + 16 * k < valid ? listAt(list + b0 + r0 + 16 * k, raw) : 0;
        };
        auto resolve = [&](int i, const int(&src)[4]) {
          const int valid = min(kBN, kEnd - (kBeg + i * kBN));
#pragma unroll
          for (int k = 0; k < 4; k++) {
            const int idx = src[k];
            row[k] = -1;
            if (r0 + 16 * k >= valid) continue;
            row[k] = checkedSparseSlot(p, bt, idx, pg, cap, rw.seq, bad, sBad) * (kDqk * 2);
          }
        };
        /* the 8 threads of a row group hold the same 4 rows: thread ch < 4 prefetches row ch (the
         * bulk prefetch takes a uniform address: ptxas loops over a warp's 16 rows, ~16 issues a
         * block, off the critical path while the producer waits for the stage) */
        auto prefetchRows = [&]() {
#pragma unroll
          for (int k = 0; k < 4; k++)
            if (ch == k && row[k] >= 0)
              asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(kv + row[k]), "r"(kDqk * 2) : "memory");
        };
        if (nBlocks > 0) {
          loadIdx(0, ix);
          resolve(0, ix);
        }
        if (nBlocks > 1) loadIdx(1, ix);
        for (int i = 0; i < nBlocks; i++) {
          const int st = i & 1;
          if (i >= 2) mbarWait(smemAddr(&emptyBar[st]), ((i >> 1) - 1) & 1);
          traceAt(sp.trace, kTraceProducer + 2 * i, pt);
          const uint32_t full0 = smemAddr(&fullBar[st * kTiles]);
          const uint32_t dst = smemAddr(sK + st * kBlockB);
          for (int c = 0; c < kTiles; c++) {
#pragma unroll
            for (int k = 0; k < 4; k++) {
              const int r = r0 + 16 * k;
              const uint32_t d = dst + c * kTileB + r * 128 + ((ch ^ (r & 7)) << 4);
              const char* src = kv + (row[k] < 0 ? 0 : row[k]) + ch * 16 + c * 128;
              asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                           "r"(row[k] < 0 ? 0 : 16)
                           : "memory");
            }
            if (kTileBars || c == kTiles - 1)
              asm volatile(
                  "cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(kTileBars ? full0 + c * 8 : full0)
                  : "memory");
          }
          traceAt(sp.trace, kTraceProducer + 2 * i + 1, pt);
          if (i + 1 < nBlocks) {
            resolve(i + 1, ix);
            if (i > 0) prefetchRows();               /* block 1's stage is free: its copies follow at once */
            if (i + 2 < nBlocks) loadIdx(i + 2, ix); /* in flight over the wait for block i + 1's stage */
          }
        }
        return;
      }
      int64_t rowOff[4]; /* byte offset of each of this thread's rows; -1: past the count */
      auto fetchRows = [&](int i) {
        const int b0 = kBeg + i * kBN, valid = min(kBN, kEnd - b0);
#pragma unroll
        for (int k = 0; k < 4; k++) {
          const int j = r0 + 16 * k;
          rowOff[k] = -1;
          if (j < valid) {
            const int idx = listAt(list + b0 + j, raw);
            rowOff[k] = checkedSparseSlot(p, bt, idx, pg, cap, rw.seq, bad, sBad) * (kDqk * 2) + ch * 16;
          }
        }
      };
      if (nBlocks > 0) fetchRows(0);
      for (int i = 0; i < nBlocks; i++) {
        const int st = i & 1;
        if (i >= 2) mbarWait(smemAddr(&emptyBar[st]), ((i >> 1) - 1) & 1);
        const uint32_t full0 = smemAddr(&fullBar[st * kTiles]);
        const uint32_t dst = smemAddr(sK + st * kBlockB);
        for (int c = 0; c < kTiles; c++) {
#pragma unroll
          for (int k = 0; k < 4; k++) {
            const int r = r0 + 16 * k;
            const uint32_t d = dst + c * kTileB + r * 128 + ((ch ^ (r & 7)) << 4);
            const char* src = kv + (rowOff[k] < 0 ? 0 : rowOff[k]) + c * 128;
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                         "r"(rowOff[k] < 0 ? 0 : 16)
                         : "memory");
          }
          if (kTileBars || c == kTiles - 1)
            asm volatile(
                "cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(kTileBars ? full0 + c * 8 : full0)
                : "memory");
        }
        if (i + 1 < nBlocks) fetchRows(i + 1);
      }
      return;
    }
    if constexpr (kLanes) {
      /* one lane a page (pages below 64 rows: 2 to 8 a block), so a block's boxes and block-table
       * reads are issued by np lanes at once instead of one thread in turn; lane 0 posts every
       * tile's byte count first (variant 10: tests whether the single issuing thread is what makes
       * page 16 slower than page 64) */
      if (tid >= 288) return;
      const int ln = tid & 31;
      const int32_t* bt = p.blockTable + (int64_t)rw.seq * p.maxPagesPerSeq;
      const int pg = p.pageSize;
      bool bad = false;
      int row = 0;
      auto fetchRow = [&](int i) {
        const int b0 = kBeg + i * kBN, valid = min(kBN, kEnd - b0);
        const int np = pg >= kBN ? 1 : (valid + pg - 1) / pg;
        row = 0;
        if (ln < np) {
          const int idx = pg >= kBN ? b0 / pg : b0 / pg + ln;
          row = checkedPageRow(p, bt, idx, rw.seq, bad, sBad) + (pg >= kBN ? b0 % pg : 0);
        }
      };
      if (nBlocks > 0) fetchRow(0);
      for (int i = 0; i < nBlocks; i++) {
        const int st = i & 1;
        if (i >= 2) mbarWait(smemAddr(&emptyBar[st]), ((i >> 1) - 1) & 1);
        if (ln == 0) traceAt(sp.trace, kTraceProducer + 2 * i, 0);
        const int b0 = kBeg + i * kBN, valid = min(kBN, kEnd - b0);
        const uint32_t full0 = smemAddr(&fullBar[st * kTiles]);
        const uint32_t dst = smemAddr(sK + st * kBlockB);
        const int np = pg >= kBN ? 1 : (valid + pg - 1) / pg, boxRows = pg >= kBN ? kBN : pg;
        /* orders every lane's sBad write of fetchRow (this block's pages, read one block ahead)
         * before lane 0's arrivals below: the consumers learn of a bad page through those barriers
         * only (a write by another lane was otherwise published by no arrival of the last block) */
        __syncwarp();
        if (ln == 0) {
          if (kTileBars) {
            for (int c = 0; c < kTiles; c++) mbarExpectTx(full0 + c * 8, (uint32_t)np * boxRows * 128);
          } else {
            mbarExpectTx(full0, (uint32_t)np * kTiles * boxRows * 128);
          }
        }
        __syncwarp();
        if constexpr (kLanes == 1) {
          if (ln < np)
            for (int c = 0; c < kTiles; c++)
              tmaLoad2d(dst + c * kTileB + ln * boxRows * 128, &kvMap, c * 64, row, kTileBars ? full0 + c * 8 : full0);
        } else { /* box q = (tile q / np, page q % np): tile 0 of every page first */
#pragma unroll
          for (int k = 0; k < (8 * kTiles + 31) / 32; k++) {
            const int q = ln + 32 * k, pgI = q % np, c = q / np;
            const int r = __shfl_sync(0xffffffffu, row, pgI);
            if (c < kTiles)
              tmaLoad2d(dst + c * kTileB + pgI * boxRows * 128, &kvMap, c * 64, r, kTileBars ? full0 + c * 8 : full0);
            if (32 * (k + 1) >= np * kTiles) break;
          }
        }
        if (ln == 0) traceAt(sp.trace, kTraceProducer + 2 * i + 1, 0);
        if (i + 1 < nBlocks) fetchRow(i + 1);
      }
      return;
    }
    if (tid != 256) return;
    const int32_t* bt = p.blockTable + (int64_t)rw.seq * p.maxPagesPerSeq;
    const int pg = p.pageSize;
    /* page rows of a block, read one block ahead: the block-table load's latency overlaps the
     * wait for a free stage instead of adding to every block's load (pg >= 8: at most 8 pages) */
    int rows[8];
    bool bad = false;
    /* Each split checks the pages it reads (DESIGN: a negative page id is bad batch data): it
     * records the first in errorFlag, reads page 0 in its place (its partial is thrown away) and
     * raises sBad, which the consumers read after their last block (the store is ordered before
     * the arrive on that block's full barrier, whose wait they pass, or, under kFlagHandOrder,
     * which the other warpgroup passed before their hand-off and the final kBarAll barrier). */
    auto pageRow = [&](int idx) { return checkedPageRow(p, bt, idx, rw.seq, bad, sBad); };
    auto fetchRows = [&](int i) {
      const int b0 = kBeg + i * kBN, valid = min(kBN, kEnd - b0);
      if (pg >= kBN) {
        rows[0] = pageRow(b0 / pg) + b0 % pg;
      } else {
        const int np = (valid + pg - 1) / pg;
#pragma unroll
        for (int j = 0; j < 8; j++)
          if (j < np) rows[j] = pageRow(b0 / pg + j);
      }
    };
    uint64_t policy = 0;
    if (sp.evictFirst) asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
    if (nBlocks > 0) fetchRows(0);
    for (int i = 0; i < nBlocks; i++) {
      const int st = i & 1;
      if (i >= 2) mbarWait(smemAddr(&emptyBar[st]), ((i >> 1) - 1) & 1);
      traceAt(sp.trace, kTraceProducer + 2 * i, 0);
      const int b0 = kBeg + i * kBN, valid = min(kBN, kEnd - b0);
      const uint32_t full0 = smemAddr(&fullBar[st * kTiles]);
      const uint32_t dst = smemAddr(sK + st * kBlockB);
      /* pages of pg rows (one box of 64 when the block lies inside one page); pages wholly past
       * the end are not read */
      const int np = pg >= kBN ? 1 : (valid + pg - 1) / pg, boxRows = pg >= kBN ? kBN : pg;
      if (!kTileBars) mbarExpectTx(full0, (uint32_t)np * kTiles * boxRows * 128);
      for (int c = 0; c < kTiles; c++) {
        const uint32_t full = kTileBars ? full0 + c * 8 : full0;
        if (kTileBars) mbarExpectTx(full, (uint32_t)np * boxRows * 128);
#pragma unroll
        for (int j = 0; j < 8; j++)
          if (j < np) {
            if (sp.evictFirst)
              tmaLoad2dHint(dst + c * kTileB + j * boxRows * 128, &kvMap, c * 64, rows[j], full, policy);
            else
              tmaLoad2d(dst + c * kTileB + j * boxRows * 128, &kvMap, c * 64, rows[j], full);
          }
      }
      traceAt(sp.trace, kTraceProducer + 2 * i + 1, 0);
      if (i + 1 < nBlocks) fetchRows(i + 1);
    }
    return;
  }

  /* ---- consumers: warpgroup w owns output dims [256w, 256w + 256) ---- */
  asm volatile("setmaxnreg.inc.sync.aligned.u32 224;\n" ::: "memory");
  /* the warpgroup index through a shuffle, so the compiler knows it is warp-uniform (wgmma in a
   * branch it cannot prove uniform gets serialized) */
  const int w = __shfl_sync(0xffffffffu, tid >> 7, 0), wt = tid & 127, warp = wt >> 5, lane = tid & 31;
  const int rA = warp * 16 + (lane >> 2), rB = rA + 8; /* the two rows this thread holds */
  const int cq = (lane & 3) * 2;                       /* its column pair in each 8-column group */

  /* Q -> the TMA/wgmma 128B-swizzled layout, in place: every thread reads its 18 16-byte chunks
   * of the landed rows, then (after all have read) writes them swizzled; padded head rows are
   * zero */
  {
    constexpr int kPer = kM * (kDqk / 8) / 256;
    uint4 v[kPer];
    if (nBlocks > 0) mbarWait(smemAddr(qBar), 0);
#pragma unroll
    for (int k = 0; k < kPer; k++) {
      const int i = tid + k * 256, r = i / (kDqk / 8), c = i % (kDqk / 8); /* 16-byte chunk c of row r */
      v[k] = make_uint4(0, 0, 0, 0);
      if (r < nu && nBlocks > 0) v[k] = *reinterpret_cast<const uint4*>(sQ + r * (kDqk * 2) + c * 16);
    }
    namedBarrier(kBarAll, 256);
#pragma unroll
    for (int k = 0; k < kPer; k++) {
      const int i = tid + k * 256, r = i / (kDqk / 8), c = i % (kDqk / 8);
      const int tile = c >> 3, j = c & 7;
      *reinterpret_cast<uint4*>(sQ + tile * kTileB + r * 128 + ((j ^ (r & 7)) << 4)) = v[k];
    }
    fenceProxyAsync();
    namedBarrier(kBarAll, 256);
    traceAt(sp.trace, kTraceCta + 2, tid);
  }

  float o[128];
#pragma unroll
  for (int i = 0; i < 128; i++) o[i] = 0.f;
  float mA = -INFINITY, mB = -INFINITY, lA = 0.f, lB = 0.f;
  const float scale2 = p.smScale * kLog2e;
  const uint32_t qBase = smemAddr(sQ), kBase = smemAddr(sK), pBase = smemAddr(sP);
  auto validOf = [&](int i) { return min(kBN, kEnd - (kBeg + i * kBN)); };
  auto release = [&](int st) {
    mbarArriveLane0(smemAddr(&emptyBar[st]), lane); /* this warp is done with the stage */
  };
  /* the whole stage landed (every tile's barrier with kTileBars) */
  auto waitStage = [&](int st, uint32_t parity) {
    if (kTileBars) {
#pragma unroll
      for (int c = 0; c < kTiles; c++) mbarWait(smemAddr(&fullBar[st * kTiles + c]), parity);
    } else {
      mbarWait(smemAddr(&fullBar[st * kTiles]), parity);
    }
    if (kSparse) fenceProxyAsync(); /* cp.async wrote the stage (generic proxy); wgmma reads it */
  };
  /* S of a stage: its tiles waited for one by one (kTileBars), else the stage as a whole */
  auto stageS = [&](float(&s)[32], int st, uint32_t parity) {
    if (!kTileBars) {
      mbarWait(smemAddr(&fullBar[st * kTiles]), parity);
      if (kSparse) fenceProxyAsync();
    }
    issueS<kSparse>(s, qBase, kBase + st * kBlockB, kTileBars ? smemAddr(&fullBar[st * kTiles]) : 0u, parity);
  };

  /* publish hand-off h (0: P0, 1: P1) to the other warpgroup, or wait for pair j's */
  auto handArrive = [&](int h, int barId) {
    if constexpr (kMbarHand) {
      __syncwarp();
      mbarArriveLane0(smemAddr(&handBar[h]), lane);
    } else {
      namedArrive(barId, 256);
    }
  };
  auto handWait = [&](int h, int barId, int j) {
    if constexpr (kMbarHand)
      mbarWait(smemAddr(&handBar[h]), (uint32_t)(j & 1));
    else
      namedBarrier(barId, 256);
  };
  if constexpr (kKind == 0) {
    for (int i = 0; i < nBlocks; i++) {
      const int st = i & 1, valid = validOf(i);
      const uint32_t kSt = kBase + st * kBlockB;
      float s[32];
      stageS(s, st, (i >> 1) & 1);
      if (valid < kBN) zeroTail(sK + st * kBlockB, w, wt, valid);
      wgmmaWait<0>();
      fenceRegs(s);
      float nA, nB, cA, cB, sumA, sumB;
      uint32_t pf[4][4];
      softmaxBlock(s, valid, cq, scale2, mA, mB, nA, nB, cA, cB, sumA, sumB, pf);
      mA = nA;
      mB = nB;
      lA = lA * cA + sumA;
      lB = lB * cB + sumB;
      rescaleO(o, cA, cB);
      fenceRegs(o);
      issuePvRegs<kVDesc>(o, pf, kSt, w);
      wgmmaWait<0>();
      fenceRegs(o);
      release(st);
    }
    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
  } else {
    const int nPairs = (nBlocks + 1) / 2;
    const uint32_t kSt0 = kBase, kSt1 = kBase + kBlockB;
    if (w == 0) {
      for (int j = 0; j < nPairs; j++) {
        const bool odd = 2 * j + 1 < nBlocks;
        const int tb = (j * 2 + 0) * 16;
        traceAt(sp.trace, tb + 0, wt);
        float s[32];
        stageS(s, 0, j & 1);    /* overlaps the last pair's P1 V1_L */
        if (j > 0 && !kEarly) { /* P1 V1_L of the last pair is done: free stage 1 */
          wgmmaWait<1>();
          fenceRegs(o);
          release(1);
        }
        wgmmaWait<0>();
        fenceRegs(s);
        traceAt(sp.trace, tb + 1, wt);
        const int v0 = validOf(2 * j);
        float nA, nB, cA, cB, sumA, sumB;
        uint32_t pf[4][4];
        softmaxBlock(s, v0, cq, scale2, mA, mB, nA, nB, cA, cB, sumA, sumB, pf);
        storeP(sP, pf, rA, rB, cq);
        if ((lane & 3) == 0) {
          sC0[rA] = cA;
          sC0[rB] = cB;
          sM0[rA] = nA;
          sM0[rB] = nB;
        }
        fenceProxyAsync();
        handArrive(0, kBarP0);
        traceAt(sp.trace, tb + 2, wt);
        lA = lA * cA + sumA;
        lB = lB * cB + sumB;
        rescaleO(o, cA, cB);
        if (v0 < kBN) zeroTail(sK, 0, wt, v0);
        fenceRegs(o);
        issuePvRegs<kVDesc>(o, pf, kSt0, 0);
        traceAt(sp.trace, tb + 3, wt);
        if (odd) {
          if (kEarly) { /* P0 V0_L done: stage 0 is free before the wait for P1 */
            wgmmaWait<0>();
            fenceRegs(o);
            release(0);
          }
          handWait(1, kBarP1, j); /* P1 in sP, c1 and m1 published */
          traceAt(sp.trace, tb + 4, wt);
          const float c1A = sC1[rA], c1B = sC1[rB];
          mA = sM1[rA];
          mB = sM1[rB];
          if (!kEarly) {
            wgmmaWait<0>();
            fenceRegs(o);
            release(0);
          }
          traceAt(sp.trace, tb + 5, wt);
          lA *= c1A;
          lB *= c1B;
          rescaleO(o, c1A, c1B);
          if constexpr (kHandOrder) {
            if (kSparse) fenceProxyAsync(); /* cp.async wrote the stage (generic proxy); wgmma reads it */
          } else {
            waitStage(1, j & 1);
          }
          traceAt(sp.trace, tb + 6, wt);
          const int v1 = validOf(2 * j + 1);
          if (v1 < kBN) zeroTail(sK + kBlockB, 0, wt, v1);
          fenceRegs(o);
          issuePvSmem<kVDesc>(o, pBase, kSt1, 0);
          traceAt(sp.trace, tb + 7, wt);
          if (kEarly) { /* P1 V1_L done: stage 1 is free before the next S0 waits for stage 0 */
            wgmmaWait<0>();
            fenceRegs(o);
            release(1);
          }
        } else {
          wgmmaWait<0>();
          fenceRegs(o);
          release(0);
          mA = nA;
          mB = nB;
        }
      }
      wgmmaWait<0>();
      fenceRegs(o);
    } else {
      for (int j = 0; j < nPairs; j++) {
        const bool odd = 2 * j + 1 < nBlocks;
        const int tb = (j * 2 + 1) * 16;
        traceAt(sp.trace, tb + 0, wt);
        float s[32];
        if (kKind == 1 && odd) stageS(s, 1, j & 1);
        const int v0 = validOf(2 * j);
        if constexpr (!kHandOrder) waitStage(0, j & 1);
        traceAt(sp.trace, tb + 1, wt);
        /* the V rows past the row's end zeroed once stage 0 is known landed: by its own wait, or under
         * kFlagHandOrder by warpgroup 0's, ordered by the P0 hand-off */
        if (!kHandOrder && v0 < kBN) zeroTail(sK, 1, wt, v0);
        handWait(0, kBarP0, j); /* P0 in sP, c0 and m0 published */
        if constexpr (kHandOrder) {
          if (kSparse) fenceProxyAsync(); /* cp.async wrote the stage (generic proxy); wgmma reads it */
          if (v0 < kBN) zeroTail(sK, 1, wt, v0);
        }
        traceAt(sp.trace, tb + 2, wt);
        const float c0A = sC0[rA], c0B = sC0[rB], m0A = sM0[rA], m0B = sM0[rB];
        /* S1 (issued alongside WG0's S0) is done by now in practice; waiting for it here keeps the
         * rescale of O out of a wgmma stage in flight (ptxas would serialize every wgmma) */
        wgmmaWait<0>();
        fenceRegs(s);
        lA *= c0A;
        lB *= c0B;
        rescaleO(o, c0A, c0B);
        fenceRegs(o);
        issuePvSmem<kVDesc>(o, pBase, kSt0, 1);
        if (kEarly) { /* P0 V0_R done: stage 0 is free before S1 waits for stage 1 */
          wgmmaWait<0>();
          fenceRegs(o);
          release(0);
        }
        traceAt(sp.trace, tb + 3, wt);
        if (kKind == 2 && odd) stageS(s, 1, j & 1); /* S1 behind P0 V0_R: stage 1 gets longer to load */
        traceAt(sp.trace, tb + 4, wt);
        if (odd) {
          const int v1 = validOf(2 * j + 1);
          float nA, nB, cA, cB, sumA, sumB;
          uint32_t pf[4][4];
          if (kKind == 2) wgmmaWait<0>();
          traceAt(sp.trace, tb + 5, wt);
          softmaxBlock(s, v1, cq, scale2, m0A, m0B, nA, nB, cA, cB, sumA, sumB, pf);
          wgmmaWait<0>(); /* P0 V0_R done: sP and stage 0 are free */
          fenceRegs(o);
          if (!kEarly) release(0);
          storeP(sP, pf, rA, rB, cq);
          if ((lane & 3) == 0) {
            sC1[rA] = cA;
            sC1[rB] = cB;
            sM1[rA] = nA;
            sM1[rB] = nB;
          }
          fenceProxyAsync();
          handArrive(1, kBarP1);
          traceAt(sp.trace, tb + 6, wt);
          mA = nA;
          mB = nB;
          lA = lA * cA + sumA;
          lB = lB * cB + sumB;
          rescaleO(o, cA, cB);
          if (v1 < kBN) zeroTail(sK + kBlockB, 1, wt, v1);
          fenceRegs(o);
          issuePvRegs<kVDesc>(o, pf, kSt1, 1);
          traceAt(sp.trace, tb + 7, wt);
          wgmmaWait<0>();
          fenceRegs(o);
          traceAt(sp.trace, tb + 8, wt);
          release(1);
        } else {
          wgmmaWait<0>();
          fenceRegs(o);
          if (!kEarly) release(0);
          mA = m0A;
          mB = m0B;
        }
      }
    }
    /* total row sums: even blocks' (WG0) + odd blocks' (WG1), the same sum in both */
    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    if ((lane & 3) == 0) {
      float* mine = w == 0 ? sLA : sLB;
      mine[rA] = lA;
      mine[rB] = lB;
    }
    namedBarrier(kBarAll, 256);
    lA = sLA[rA] + sLB[rA];
    lB = sLA[rB] + sLB[rB];
  }

  traceAt(sp.trace, kTraceCta + 3, tid);
  mlaEpilogueStaged(p, sp, rw, t, split, g0, nu, w, lane, rA, rB, cq,
                    nBlocks > 0 && *reinterpret_cast<volatile int*>(sBad), o, lA, lB, mA, mB, sK,
                    reinterpret_cast<unsigned char**>(sP));
  traceAt(sp.trace, kTraceCta + 4, tid);
  cta.done(rw.n, (int)bx, g0, nu);
}

template <int kKind, int kVDesc, bool kTileBars, bool kSparse = false, int kLanes = 0, bool kEarly = false,
          bool kMbarHand = false, int kFlags = 0>
__global__ void __launch_bounds__(kThreads, 1)
    mlaSm90Kernel(const __grid_constant__ CUtensorMap kvMap, const __grid_constant__ cpclAttnParams_t p,
                  const Split sp) {
  mlaCta<kKind, kVDesc, kTileBars, kSparse, kLanes, kEarly, kMbarHand, kFlags>(kvMap, p, sp, MlaStandalone{},
                                                                               blockIdx.x, blockIdx.z);
}

/* The seesaw schedule and the split merge are kernels of mla_sm90.cu only (not templates: a second
 * unit that includes this header, mla_sm90_fused.cu, defines CPCL_MLA_SM90_BODY_ONLY) */
#ifndef CPCL_MLA_SM90_BODY_ONLY
/* ---- schedule 9: FlashMLA's seesaw without a producer warpgroup (256 threads) ----
 * Both warpgroups are consumers and each issues the copies of the tiles it lets go (one lane:
 * WG0 tiles 0-3, WG1 tiles 4-8 of a stage), so a tile is refilled the moment its last reader is
 * done and every thread has the registers of 256-thread CTAs. S of the next pair's blocks is
 * issued at the end of each warpgroup's iteration, so one warpgroup's softmax runs under the
 * other's GEMMs. Q's rope tile (dims 512-575) lives in registers (rQ8) and its shared tile holds
 * sP1. Per pair j (block 2j in stage 0, 2j + 1 in stage 1; S0 and S1 done on entry):
 *   WG0: m0 = max(m, S0), P0, O_L *= c0            -> [scale0]
 *        O_L += P0 V0_L; done: refill tiles 0-3 of stage 0 with block 2j + 2
 *        [scale1] <- WG1; P0 *= c1 -> sP0          -> [P0]
 *        [PV0R issued] <- WG1; O_L *= c1; O_L += sP1 V1_L
 *        S0' tiles 0-3; P1 V1_L done: refill tiles 0-3 of stage 1 (block 2j + 3); S0' tiles 4-8
 *   WG1: [scale0] <- WG0; m1 = max(m0, S1), P1 -> sP1, O_R *= c0 c1 -> [scale1]
 *        O_R += P1 V1_R; [P0] <- WG0; O_R += sP0 V0_R -> [PV0R issued]
 *        P1 V1_R done: refill tiles 4-8 of stage 1; P0 V0_R done: refill tiles 4-8 of stage 0
 *        S1' (all tiles)
 * WG1 reads stage tiles whose barriers WG0 waited for (and the reverse) only after a named barrier
 * that follows that wait. Row sums: WG0 keeps the even blocks', WG1 the odd blocks'. */
constexpr int kThreadsSeesaw = 256;
constexpr int kBarScale0 = 6, kBarScale1 = 7, kBarPv0Issued = 8;

/* S of tiles [C0, C1) of a stage, Q tiles 0-7 from shared memory and tile 8 from registers */
template <int C0, int C1>
__device__ __forceinline__ void issueSTiles(float (&s)[32], uint32_t qBase, uint32_t kSt, uint32_t tileBar,
                                            uint32_t parity, const uint32_t (&q8)[4][4]) {
  wgmmaFence();
#pragma unroll
  for (int c = C0; c < C1; c++) {
    mbarWait(tileBar + c * 8, parity);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      const uint32_t off = c * kTileB + kk * 32;
      if (c < kTiles - 1)
        wgmmaSS_m64n64k16(s, sw128Desc(qBase + off, 16, 1024), sw128Desc(kSt + off, 16, 1024), c > 0 || kk > 0);
      else
        wgmmaRS_m64n64k16(s, q8[kk], sw128Desc(kSt + off, 16, 1024));
    }
  }
  wgmmaCommit();
}

__global__ void __launch_bounds__(kThreadsSeesaw, 1)
    mlaSm90Seesaw(const __grid_constant__ CUtensorMap kvMap, const __grid_constant__ cpclAttnParams_t p,
                  const Split sp) {
  extern __shared__ unsigned char smemRaw[];
  /* the first 1024-byte boundary, as an offset from smemRaw: the pointer keeps the shared state space,
   * so its loads and stores compile to LDS / STS (through an integer cast they were generic LD / ST) */
  unsigned char* smem = smemRaw + ((1024u - (smemAddr(smemRaw) & 1023u)) & 1023u);
  unsigned char* sQ = smem;
  unsigned char* sK = smem + kBlockB;
  unsigned char* sP0 = smem + 3 * kBlockB;
  unsigned char* sP1 = sQ + (kTiles - 1) * kTileB; /* Q's rope tile, once it is in registers */
  uint64_t* fullBar = reinterpret_cast<uint64_t*>(smem + 3 * kBlockB + 8192); /* [stage][tile] */
  float* sM = reinterpret_cast<float*>(smem + 3 * kBlockB + 8192 + 320);
  float* sS0 = sM + 64;
  float* sS1 = sS0 + 64;
  float* sLA = sS1 + 64;
  float* sLB = sLA + 64;
  int* sBad = reinterpret_cast<int*>(sLB + 64);

  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");

  const int nChunks = (p.numHeads + kM - 1) / kM;
  const int t = blockIdx.x / nChunks, split = blockIdx.z, g0 = p.headBegin + (blockIdx.x % nChunks) * kM;
  const RowWork rw = rowWork(p, sp, t, p.errorFlag);
  if (split >= rw.n) return;
  const int nu = min(kM, p.headBegin + p.numHeads - g0);
  const int kBeg = split * rw.chunk, kEnd = min(rw.len, kBeg + rw.chunk);
  const int nBlocks = __shfl_sync(0xffffffffu, (kEnd - kBeg + kBN - 1) / kBN, 0);
  const int tid = threadIdx.x;
  const int w = __shfl_sync(0xffffffffu, tid >> 7, 0), wt = tid & 127, warp = wt >> 5, lane = tid & 31;
  const int rA = warp * 16 + (lane >> 2), rB = rA + 8;
  const int cq = (lane & 3) * 2;

  if (tid == 0) {
    for (int i = 0; i < 2 * kTiles; i++) mbarInit(smemAddr(&fullBar[i]), 1);
    *sBad = 0;
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  if (tid < 64) sM[tid] = -INFINITY;
  __syncthreads();

  /* ---- copies: lane 0 of each warpgroup issues its tiles of a block (WG0 0-3, WG1 4-8) ---- */
  const bool issuer = wt == 0;
  const int32_t* bt = p.blockTable + (int64_t)rw.seq * p.maxPagesPerSeq;
  const int pg = p.pageSize;
  const int np0 = pg >= kBN ? 1 : kBN / pg, boxRows = pg >= kBN ? kBN : pg;
  bool bad = false;
  auto pageRow = [&](int idx) { return checkedPageRow(p, bt, idx, rw.seq, bad, sBad); };
  /* page rows of block i (at most 8 pages); pages wholly past the end are not read */
  auto blockRows = [&](int i, int(&rows)[8], int& np) {
    const int b0 = kBeg + i * kBN, valid = min(kBN, kEnd - b0);
    if (pg >= kBN) {
      np = 1;
      rows[0] = pageRow(b0 / pg) + b0 % pg;
    } else {
      np = (valid + pg - 1) / pg;
#pragma unroll
      for (int j = 0; j < 8; j++)
        if (j < np) rows[j] = pageRow(b0 / pg + j);
    }
  };
  auto issueTiles = [&](int st, const int(&rows)[8], int np, int c0, int c1) {
    const uint32_t full0 = smemAddr(&fullBar[st * kTiles]);
    const uint32_t dst = smemAddr(sK + st * kBlockB);
    for (int c = c0; c < c1; c++) {
      mbarExpectTx(full0 + c * 8, (uint32_t)np * boxRows * 128);
#pragma unroll
      for (int j = 0; j < 8; j++)
        if (j < np) tmaLoad2d(dst + c * kTileB + j * boxRows * 128, &kvMap, c * 64, rows[j], full0 + c * 8);
    }
  };
  const int myC0 = w == 0 ? 0 : 4, myC1 = w == 0 ? 4 : kTiles;
  int rowsA[8], npA = np0, rowsB[8], npB = np0; /* the next blocks of stage 0 and stage 1 */
  if (issuer) {
    if (nBlocks > 0) {
      blockRows(0, rowsA, npA);
      issueTiles(0, rowsA, npA, myC0, myC1);
    }
    if (nBlocks > 1) {
      blockRows(1, rowsB, npB);
      issueTiles(1, rowsB, npB, myC0, myC1);
    }
    if (nBlocks > 2) blockRows(2, rowsA, npA);
    if (nBlocks > 3) blockRows(3, rowsB, npB);
  }

  /* ---- Q -> shared memory (swizzled), then its rope tile -> registers ---- */
  {
    constexpr int kPer = kM * (kDqk / 8) / 256;
    uint4 v[kPer];
#pragma unroll
    for (int k = 0; k < kPer; k++) {
      const int i = tid + k * 256, r = i / (kDqk / 8), c = i % (kDqk / 8);
      v[k] = make_uint4(0, 0, 0, 0);
      if (r < nu && nBlocks > 0)
        v[k] = __ldg(reinterpret_cast<const uint4*>(attnQ<__nv_bfloat16>(p, g0 + r, t) + c * 8));
    }
#pragma unroll
    for (int k = 0; k < kPer; k++) {
      const int i = tid + k * 256, r = i / (kDqk / 8), c = i % (kDqk / 8);
      const int tile = c >> 3, j = c & 7;
      *reinterpret_cast<uint4*>(sQ + tile * kTileB + r * 128 + ((j ^ (r & 7)) << 4)) = v[k];
    }
    fenceProxyAsync();
    namedBarrier(kBarAll, 256);
  }
  uint32_t q8[4][4]; /* A fragments of Q's rope tile: k-step kk, rows rA / rB, dims 16kk + cq (+8) */
  {
    const unsigned char* t8 = sQ + (kTiles - 1) * kTileB;
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
      for (int h = 0; h < 2; h++) { /* dims 16kk + 8h + cq: 16-byte chunk 2kk + h of the row */
        const int ch = 2 * kk + h;
        q8[kk][2 * h + 0] = *reinterpret_cast<const uint32_t*>(t8 + rA * 128 + ((ch ^ (rA & 7)) << 4) + cq * 2);
        q8[kk][2 * h + 1] = *reinterpret_cast<const uint32_t*>(t8 + rB * 128 + ((ch ^ (rB & 7)) << 4) + cq * 2);
      }
    namedBarrier(kBarAll, 256); /* every rope fragment read before sP1 overwrites the tile */
  }

  float o[128];
#pragma unroll
  for (int i = 0; i < 128; i++) o[i] = 0.f;
  float lA = 0.f, lB = 0.f;
  const float scale2 = p.smScale * kLog2e;
  const uint32_t qBase = smemAddr(sQ), kSt0 = smemAddr(sK), kSt1 = kSt0 + kBlockB;
  const uint32_t bar0 = smemAddr(&fullBar[0]), bar1 = smemAddr(&fullBar[kTiles]);
  const uint32_t pBase0 = smemAddr(sP0), pBase1 = smemAddr(sP1);
  auto validOf = [&](int i) { return min(kBN, kEnd - (kBeg + i * kBN)); };
  float s[32];
  if (w == 0 && nBlocks > 0) {
    issueSTiles<0, kTiles>(s, qBase, kSt0, bar0, 0, q8);
    wgmmaWait<0>();
    fenceRegs(s);
  }
  if (w == 1 && nBlocks > 1) {
    issueSTiles<0, kTiles>(s, qBase, kSt1, bar1, 0, q8);
    wgmmaWait<0>();
    fenceRegs(s);
  }

  /* one pair; which of blocks 2j + 1 .. 2j + 3 exist is a template constant, so every wgmma wait
   * is unconditional within an instance (ptxas serializes wgmma around waits it cannot place) */
  auto pair = [&](int j, auto H1, auto H2, auto H3) {
    constexpr bool has1 = decltype(H1)::value, has2 = decltype(H2)::value, has3 = decltype(H3)::value;
    const int v0 = validOf(2 * j), v1 = has1 ? validOf(2 * j + 1) : 0;
    const uint32_t nextPar = (j + 1) & 1;
    if (w == 0) {
      float nA, nB, cA, cB, sumA, sumB;
      uint32_t pf[4][4];
      softmaxBlock<true>(s, v0, cq, scale2, sM[rA], sM[rB], nA, nB, cA, cB, sumA, sumB, pf, s);
      lA = lA * cA + sumA;
      lB = lB * cB + sumB;
      rescaleO(o, cA, cB);
      if ((lane & 3) == 0) {
        sM[rA] = nA;
        sM[rB] = nB;
        sS0[rA] = cA;
        sS0[rB] = cB;
      }
      namedArrive(kBarScale0, 256);
      if (v0 < kBN) zeroTail(sK, 0, wt, v0);
      fenceRegs(o);
      issuePvRegs<0>(o, pf, kSt0, 0);
      wgmmaWait<0>();
      fenceRegs(o);
      if constexpr (has2)
        if (issuer) issueTiles(0, rowsA, npA, 0, 4); /* P0 V0_L done: V0_L and S0 were its readers */
      namedBarrier(kBarScale1, 256);
      const float c1A = sS1[rA], c1B = sS1[rB];
      /* P0 rescaled to WG1's maximum, for its O_R += sP0 V0_R */
#pragma unroll
      for (int q = 0; q < 8; q++) {
        pf[q >> 1][(q & 1) * 2 + 0] = packBf16(s[4 * q + 0] * c1A, s[4 * q + 1] * c1A);
        pf[q >> 1][(q & 1) * 2 + 1] = packBf16(s[4 * q + 2] * c1B, s[4 * q + 3] * c1B);
      }
      storeP(sP0, pf, rA, rB, cq);
      fenceProxyAsync();
      namedArrive(kBarP0, 256);
      if constexpr (has1) {
        namedBarrier(kBarPv0Issued, 256); /* sP1 stored (and S1 done) */
        lA *= c1A;
        lB *= c1B;
        rescaleO(o, c1A, c1B);
        if (v1 < kBN) zeroTail(sK + kBlockB, 0, wt, v1);
        fenceRegs(o);
        issuePvSmem<0>(o, pBase1, kSt1, 0);
      }
      if constexpr (has2) issueSTiles<0, 4>(s, qBase, kSt0, bar0, nextPar, q8);
      if constexpr (has1) {
        if constexpr (has2)
          wgmmaWait<1>();
        else
          wgmmaWait<0>();
        fenceRegs(o);
        if constexpr (has3)
          if (issuer) issueTiles(1, rowsB, npB, 0, 4); /* P1 V1_L done */
      }
      if constexpr (has2) {
        issueSTiles<4, kTiles>(s, qBase, kSt0, bar0, nextPar, q8);
        wgmmaWait<0>();
        fenceRegs(s);
        fenceRegs(o);
      }
    } else {
      namedBarrier(kBarScale0, 256);
      const float c0A = sS0[rA], c0B = sS0[rB], m0A = sM[rA], m0B = sM[rB];
      float nA = m0A, nB = m0B, cA = 1.f, cB = 1.f, sumA = 0.f, sumB = 0.f;
      uint32_t pf[4][4];
      if constexpr (has1) softmaxBlock(s, v1, cq, scale2, m0A, m0B, nA, nB, cA, cB, sumA, sumB, pf);
      lA = lA * (c0A * cA) + sumA;
      lB = lB * (c0B * cB) + sumB;
      rescaleO(o, c0A * cA, c0B * cB);
      if ((lane & 3) == 0) {
        sM[rA] = nA;
        sM[rB] = nB;
        sS1[rA] = cA;
        sS1[rB] = cB;
      }
      namedArrive(kBarScale1, 256);
      if constexpr (has1) {
        storeP(sP1, pf, rA, rB, cq);
        if (v1 < kBN) zeroTail(sK + kBlockB, 1, wt, v1);
        fenceRegs(o);
        issuePvRegs<0>(o, pf, kSt1, 1);
        fenceProxyAsync(); /* sP1 for WG0's P1 V1_L */
      }
      namedBarrier(kBarP0, 256);
      if (v0 < kBN) zeroTail(sK, 1, wt, v0);
      /* with P1 V1_R in flight on o, no instruction may touch o before P0 V0_R joins it (ptxas
       * would serialize every wgmma); without it, the rescale above must stay before the issue */
      if constexpr (!has1) fenceRegs(o);
      issuePvSmem<0>(o, pBase0, kSt0, 1);
      if constexpr (has1) namedArrive(kBarPv0Issued, 256);
      if constexpr (has1) {
        wgmmaWait<1>();
        fenceRegs(o);
        if constexpr (has3)
          if (issuer) issueTiles(1, rowsB, npB, 4, kTiles); /* P1 V1_R done */
      }
      wgmmaWait<0>();
      fenceRegs(o);
      if constexpr (has2)
        if (issuer) issueTiles(0, rowsA, npA, 4, kTiles); /* P0 V0_R done */
      if constexpr (has3) {
        issueSTiles<0, kTiles>(s, qBase, kSt1, bar1, nextPar, q8);
        wgmmaWait<0>();
        fenceRegs(s);
        fenceRegs(o);
      }
    }
    /* the blocks the issuers copy next (their page rows read while this pair computes) */
    if (issuer && 2 * j + 4 < nBlocks) blockRows(2 * j + 4, rowsA, npA);
    if (issuer && 2 * j + 5 < nBlocks) blockRows(2 * j + 5, rowsB, npB);
  };
  using T_ = std::true_type;
  using F_ = std::false_type;
  const int nPairs = (nBlocks + 1) / 2;
  for (int j = 0; j < nPairs; j++) {
    if (2 * j + 3 < nBlocks)
      pair(j, T_{}, T_{}, T_{});
    else if (2 * j + 2 < nBlocks)
      pair(j, T_{}, T_{}, F_{});
    else if (2 * j + 1 < nBlocks)
      pair(j, T_{}, F_{}, F_{});
    else
      pair(j, F_{}, F_{}, F_{});
  }
  lA += __shfl_xor_sync(0xffffffffu, lA, 1);
  lA += __shfl_xor_sync(0xffffffffu, lA, 2);
  lB += __shfl_xor_sync(0xffffffffu, lB, 1);
  lB += __shfl_xor_sync(0xffffffffu, lB, 2);
  if ((lane & 3) == 0) {
    float* mine = w == 0 ? sLA : sLB;
    mine[rA] = lA;
    mine[rB] = lB;
  }
  namedBarrier(kBarAll, 256);
  lA = sLA[rA] + sLB[rA];
  lB = sLA[rB] + sLB[rB];
  const float mA = sM[rA], mB = sM[rB];
  mlaEpilogue(p, sp, rw, t, split, g0, nu, w, lane, rA, rB, cq, nBlocks > 0 && *reinterpret_cast<volatile int*>(sBad),
              o, lA, lB, mA, mB);
}

/* ---- the merge of split partials: one CTA of 128 threads per (row, head of the call), thread i
 * owns output dims 4i .. 4i + 3; grid numTokens * numHeads ----
 * Every thread loads its float4 of 16 splits before it adds any (16 loads in flight, not one):
 * at B = 1 there are only numHeads CTAs, so the merge is a chain of L2 latencies, one per round
 * of 16 splits. The sum runs in split order with fp32 weights, so its bits do not depend
 * on the grid or on which split finished first. */
constexpr int kCombineThreads = 128, kCombineBatch = 16;
__global__ void __launch_bounds__(kCombineThreads)
    mlaSm90Combine(const __grid_constant__ cpclAttnParams_t p, const Split sp) {
  /* a programmatic dependent of the attention: wait for it to finish and flush */
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  __shared__ float sW[64];
  __shared__ float sOutLse2;
  const int u = blockIdx.x, tid = threadIdx.x, lane = tid & 31;
  if (u >= p.numTokens * p.numHeads) return;
  const int t = u / p.numHeads, h = u % p.numHeads;
  /* the attention recorded any bad datum; a row with a bad page has only empty partials here */
  const RowWork rw = rowWork(p, sp, t, nullptr);
  const int n = rw.n;
  if (n <= 1) return; /* written by the attention itself */
  const int S = sp.maxSplits;
  if (tid < 32) { /* the weights, once per CTA: exp2(lse_k - lse) in fp32, 0 for an empty split */
    const float* lse = sp.wsLse + (int64_t)u * S;
    float x0 = lane < n ? __ldcg(lse + lane) : -INFINITY;
    float x1 = lane + 32 < n ? __ldcg(lse + lane + 32) : -INFINITY;
    /* a split that met a bad page (NaN lse): the row is empty, like the one-split case */
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
    sW[lane] = w0;
    sW[lane + 32] = w1;
    if (lane == 0) sOutLse2 = outLse2;
  }
  __syncthreads();
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  const float* src = sp.wsO + (int64_t)u * S * kDv + tid * 4;
  for (int k0 = 0; k0 < n; k0 += kCombineBatch) {
    float4 v[kCombineBatch];
    float wk[kCombineBatch];
#pragma unroll
    for (int i = 0; i < kCombineBatch; i++) {
      const int k = k0 + i;
      wk[i] = k < n ? sW[k] : 0.f;
      /* an empty partial (weight 0) is never read, never multiplied */
      v[i] = wk[i] != 0.f ? __ldcg(reinterpret_cast<const float4*>(src + (int64_t)k * kDv))
                          : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int i = 0; i < kCombineBatch; i++) {
      if (wk[i] == 0.f) continue;
      acc.x += wk[i] * v[i].x;
      acc.y += wk[i] * v[i].y;
      acc.z += wk[i] * v[i].z;
      acc.w += wk[i] * v[i].w;
    }
  }
  const int g = p.headBegin + h;
  __nv_bfloat16* dst = attnOut<__nv_bfloat16>(p, g, t) + tid * 4;
  __nv_bfloat162 a = __floats2bfloat162_rn(acc.x, acc.y), b = __floats2bfloat162_rn(acc.z, acc.w);
  uint2 o2;
  o2.x = *reinterpret_cast<uint32_t*>(&a);
  o2.y = *reinterpret_cast<uint32_t*>(&b);
  *reinterpret_cast<uint2*>(dst) = o2;
  float* lseOut = tid == 0 ? attnLse(p, g, t) : nullptr;
  if (lseOut) *lseOut = p.lseBase2 ? sOutLse2 : sOutLse2 * kLn2;
}

#endif /* CPCL_MLA_SM90_BODY_ONLY */

/* The body inside the fused decode kernel (mla_sm90_fused.cu) for dense schedule 19 or 12: -1
 * where it does not take f (another variant, the attribute refused, more merge CTAs than half the
 * SMs), else 0 or a cudaError_t. sp: prepared for f->attn, with wsCount / wsReady set when
 * sp->maxSplits > 1. */
int launchFused(int variant, const CUtensorMap* kvMap, const Split* sp, const cpclFusedParams_t* f, int numSms,
                cudaStream_t stream);

}  // namespace mla90
}  // namespace cpcl

#endif /* CPCL_CUDA_MLA_SM90_CUH_ */
