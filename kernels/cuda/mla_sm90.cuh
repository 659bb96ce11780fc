/*
 * mla_sm90.cuh -- MLA decode attention on Hopper tensor cores (sm_90a: wgmma, TMA, mbarriers).
 *
 * Shapes (bf16 unless said): q [rows][H][576], latent cache [slots][576] (slot = page * pageSize +
 * i % pageSize of blockTable[seq][i / pageSize]), V = the first 512 elements of each cached row,
 * out [rows][H][512], lse [rows][H] fp32 (natural log, base 2 with lseBase2). Row t of sequence s
 * (n rows) sits at global position seqLens[s] - n + j and attends to the local prefix
 * [0, localLen(cpRank, pos + 1)) of DESIGN.md §2 (kv_layout.h).
 *
 * CTA = 64 head-rows of one query row (heads g0 .. g0 + 63, padded with zero queries below 64:
 * wgmma's M) x one KV split. 384 threads: warpgroups 0 and 1 are consumers, warpgroup 2 the
 * producer, which gives its registers to the consumers (setmaxnreg: 40 / 232).
 *   producer (one lane): for each 64-key block, TMA-copies its rows into one of two stages,
 *     nine 64x64 boxes per page run (SWIZZLE_128B), completing on full[stage]; a stage is
 *     refilled after the 8 consumer warps arrive on empty[stage].
 *   consumer warpgroup w: S = Q K^T (64x64, 36 wgmma m64n64k16 over the 576 dims, Q and K from
 *     shared memory), the online softmax in base 2 on its registers, then
 *     O[:, 256w .. 256w + 255] += P V (4 wgmma m64n256k16, P from registers, V read from the
 *     same stage as K, MN-major). Both warpgroups compute the same S (the 64x512 fp32 output
 *     needs both warpgroups' registers, and computing S twice keeps them free of any exchange:
 *     bitwise the same m and l in both).
 * Keys past the row's end in the last block: S = -inf (select, never a product), and their V rows
 * are zeroed in shared memory before P V, so stale or NaN bytes never reach the output.
 *
 * Splits (batch-invariant: they depend on the row's own length and plan constants only):
 *   ns = min(maxSplits, ceil(len / chunkMin)); chunk = roundup(ceil(len / ns), 64);
 *   n = ceil(len / chunk). One split: the CTA writes out/lse. Several: fp32 normalised partials
 *   wsO [rows][H][maxSplits][512] and base-2 LSEs wsLse [rows][H][maxSplits]; mlaSm90Combine
 *   merges them in split order (DESIGN.md §1: exact, empty partials skipped), launched with
 *   programmatic dependent launch so its launch overlaps the attention's tail.
 */
#ifndef CPCL_CUDA_MLA_SM90_CUH_
#define CPCL_CUDA_MLA_SM90_CUH_

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "../kv_layout.h"

namespace cpcl {
namespace mla90 {

constexpr int kDqk = 576, kDv = 512, kBN = 64, kM = 64;
constexpr int kTiles = kDqk / 64;          /* 64-dim tiles of a 64-row block: 9 */
constexpr int kTileB = 64 * 128;           /* one tile: 64 rows x 128 bytes, 128B-swizzled */
constexpr int kBlockB = kTiles * kTileB;   /* a 64-row block of 576 dims: 73728 bytes */
constexpr int kThreads = 384;              /* 2 consumer warpgroups + 1 producer warpgroup */
constexpr int kSmemBytes = 3 * kBlockB + 64 + 1024; /* Q, 2 stages, barriers, alignment */
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

struct Params {
  int numSeqs, numTokens;
  const int32_t* queryStart; /* [numSeqs + 1] or NULL: one row per sequence */
  const int32_t* seqLens;    /* [numSeqs] global lengths */
  const int32_t* blockTable; /* [numSeqs][maxPagesPerSeq] local page ids */
  int maxPagesPerSeq;
  int cpSize, cpRank, interleave;
  int pageSize;  /* 8, 16, 32, 64 or a multiple of 64 */
  int numHeads;  /* H: heads of a row in q, out and lse */
  float smScale;
  int lseBase2;
  const __nv_bfloat16* q; /* q + t * qTokenStride + h * 576 */
  int64_t qTokenStride;
  __nv_bfloat16* out; /* out + t * oTokenStride + h * 512 */
  int64_t oTokenStride;
  float* lse; /* lse + t * lseTokenStride + h; may be NULL */
  int64_t lseTokenStride;
  int maxSplits, chunkMin; /* plan constants (see above) */
  float* wsO;              /* [numTokens][H][maxSplits][512]; unused when maxSplits == 1 */
  float* wsLse;            /* [numTokens][H][maxSplits] */
};

/* ---- small PTX wrappers ---- */
__device__ __forceinline__ uint32_t smemAddr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbarInit(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbarExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbarArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbarWait(uint32_t bar, uint32_t parity) {
  uint32_t ok = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(ok)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!ok);
}
__device__ __forceinline__ void tmaLoad2d(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
      "[%4];\n" ::"r"(dst),
      "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void fenceProxyAsync() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void namedBarrier(int id, int n) { asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void wgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmmaCommit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* keeps the compiler from moving accumulator reads or writes across wgmma issue and wait */
template <int N>
__device__ __forceinline__ void fenceRegs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
__device__ __forceinline__ void fenceRegs4(uint32_t (&r)[4]) {
#pragma unroll
  for (int i = 0; i < 4; i++) asm volatile("" : "+r"(r[i])::"memory");
}

/* Shared-memory matrix descriptor, 128-byte swizzle: start >> 4 in bits 0-13, leading byte
 * offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, layout 1 (SWIZZLE_128B) in 62-63. */
__device__ __forceinline__ uint64_t sw128Desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((addr >> 4) & 0x3FFF) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
         ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
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

__device__ __forceinline__ RowWork rowWork(const Params& p, int t) {
  RowWork r;
  int s = t, r0 = t, nr = 1;
  if (p.queryStart) {
    int lo = 0, hi = p.numSeqs - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (p.queryStart[mid] <= t)
        lo = mid;
      else
        hi = mid - 1;
    }
    s = lo;
    r0 = p.queryStart[s];
    nr = p.queryStart[s + 1] - r0;
  }
  r.seq = s;
  r.len = 0;
  /* a row outside its sequence's rows, or a sequence shorter than its rows, is empty (the
   * library's validation reports it; this body never reads for it) */
  if (t >= r0 && t < r0 + nr && p.seqLens[s] >= nr) {
    const int64_t pos = (int64_t)p.seqLens[s] - nr + (t - r0);
    int64_t len = cpclKvLocalLenOf(pos + 1, p.cpSize, p.cpRank, p.interleave);
    if (len > (int64_t)p.maxPagesPerSeq * p.pageSize) len = 0;
    r.len = (int)len;
  }
  if (r.len == 0) {
    r.n = 1;
    r.chunk = 0;
  } else {
    int ns = (r.len + p.chunkMin - 1) / p.chunkMin;
    ns = ns < p.maxSplits ? ns : p.maxSplits;
    r.chunk = ((r.len + ns - 1) / ns + kBN - 1) / kBN * kBN;
    r.n = (r.len + r.chunk - 1) / r.chunk;
  }
  return r;
}

/* ---- the attention kernel: grid (ceil(H / 64), numTokens, maxSplits) ---- */
/* kVDesc: 0 = the V descriptor as CUTLASS builds MN-major SW128 (LBO = 8192 between 64-dim
 * tiles, SBO = 1024 between 8-key groups); 1 = the two swapped (kept to prove the choice on the GPU) */
template <int kVDesc>
__global__ void __launch_bounds__(kThreads, 1) mlaSm90Kernel(const __grid_constant__ CUtensorMap kvMap, const Params p) {
  extern __shared__ unsigned char smemRaw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(((uintptr_t)smemRaw + 1023) & ~(uintptr_t)1023);
  unsigned char* sQ = smem;
  unsigned char* sK = smem + kBlockB; /* stages 0, 1 */
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + 3 * kBlockB); /* full[2], empty[2] */

  /* lets the combine kernel (launched as a programmatic dependent) be scheduled early; it waits
   * for this grid's completion before reading anything */
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");

  const int t = blockIdx.y, split = blockIdx.z, g0 = blockIdx.x * kM;
  const RowWork rw = rowWork(p, t);
  if (split >= rw.n) return;
  const int nu = min(kM, p.numHeads - g0);
  const int kBeg = split * rw.chunk, kEnd = min(rw.len, kBeg + rw.chunk);
  const int nBlocks = (kEnd - kBeg + kBN - 1) / kBN; /* 0 for an empty row */
  const int tid = threadIdx.x;

  if (tid == 0) {
    for (int i = 0; i < 2; i++) {
      mbarInit(smemAddr(&bars[i]), 1);
      mbarInit(smemAddr(&bars[2 + i]), 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (tid >= 256) { /* ---- producer warpgroup ---- */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (tid != 256) return;
    const int32_t* bt = p.blockTable + (int64_t)rw.seq * p.maxPagesPerSeq;
    const int pg = p.pageSize;
    for (int i = 0; i < nBlocks; i++) {
      const int st = i & 1;
      if (i >= 2) mbarWait(smemAddr(&bars[2 + st]), ((i >> 1) - 1) & 1);
      const int b0 = kBeg + i * kBN, valid = min(kBN, kEnd - b0);
      const uint32_t full = smemAddr(&bars[st]);
      const uint32_t dst = smemAddr(sK + st * kBlockB);
      if (pg >= kBN) { /* the block lies inside one page */
        const int row = bt[b0 / pg] * pg + b0 % pg;
        mbarExpectTx(full, kBlockB);
        for (int c = 0; c < kTiles; c++) tmaLoad2d(dst + c * kTileB, &kvMap, c * 64, row, full);
      } else { /* pages of pg rows; pages wholly past the end are not read */
        const int np = (valid + pg - 1) / pg;
        mbarExpectTx(full, (uint32_t)np * kTiles * pg * 128);
        for (int j = 0; j < np; j++) {
          const int row = bt[b0 / pg + j] * pg;
          for (int c = 0; c < kTiles; c++) tmaLoad2d(dst + c * kTileB + j * pg * 128, &kvMap, c * 64, row, full);
        }
      }
    }
    return;
  }

  /* ---- consumers: warpgroup w owns output dims [256w, 256w + 256) ---- */
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const int w = tid >> 7, wt = tid & 127, warp = wt >> 5, lane = tid & 31;
  const int rA = warp * 16 + (lane >> 2), rB = rA + 8; /* the two rows this thread holds */
  const int cq = (lane & 3) * 2;                        /* its column pair in each 8-column group */

  /* Q -> shared memory in the TMA/wgmma 128B-swizzled layout; padded head rows are zero */
  {
    const __nv_bfloat16* qRow = p.q + (int64_t)t * p.qTokenStride + (int64_t)g0 * kDqk;
    for (int i = tid; i < kM * (kDqk / 8); i += 256) {
      const int r = i / (kDqk / 8), c = i % (kDqk / 8); /* 16-byte chunk c of row r */
      uint4 v = make_uint4(0, 0, 0, 0);
      if (r < nu && rw.len > 0) v = *reinterpret_cast<const uint4*>(qRow + (int64_t)r * kDqk + c * 8);
      const int tile = c >> 3, j = c & 7;
      *reinterpret_cast<uint4*>(sQ + tile * kTileB + r * 128 + ((j ^ (r & 7)) << 4)) = v;
    }
    fenceProxyAsync();
    namedBarrier(1, 256);
  }

  float o[128];
#pragma unroll
  for (int i = 0; i < 128; i++) o[i] = 0.f;
  float mA = -INFINITY, mB = -INFINITY, lA = 0.f, lB = 0.f;
  const float scale2 = p.smScale * kLog2e;
  const uint32_t qBase = smemAddr(sQ), kBase = smemAddr(sK);

  for (int i = 0; i < nBlocks; i++) {
    const int st = i & 1;
    const int b0 = kBeg + i * kBN, valid = min(kBN, kEnd - b0);
    mbarWait(smemAddr(&bars[st]), (i >> 1) & 1);
    const uint32_t kSt = kBase + st * kBlockB;

    /* S = Q K^T over 576 dims */
    float s[32];
    wgmmaFence();
#pragma unroll
    for (int ks = 0; ks < kDqk / 16; ks++) {
      const uint32_t off = (ks >> 2) * kTileB + (ks & 3) * 32;
      wgmmaSS_m64n64k16(s, sw128Desc(qBase + off, 16, 1024), sw128Desc(kSt + off, 16, 1024), ks > 0);
    }
    wgmmaCommit();

    if (valid < kBN) {
      /* zero this warpgroup's V half of the rows past the end (stale or NaN bytes); the S of
       * those keys is masked below */
      unsigned char* vt = sK + st * kBlockB + (4 * w) * kTileB;
      for (int k = wt; k < (kBN - valid) * 4 * 8; k += 128) {
        const int r = valid + k / 32, tile = (k >> 3) & 3, j = k & 7;
        *reinterpret_cast<uint4*>(vt + tile * kTileB + r * 128 + (j << 4)) = make_uint4(0, 0, 0, 0);
      }
      fenceProxyAsync();
      namedBarrier(2 + w, 128);
    }
    wgmmaWait<0>();
    fenceRegs(s);

    /* online softmax, base 2; element 4j + e: row (e < 2 ? rA : rB), key 8j + cq + (e & 1) */
    float xA = -INFINITY, xB = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; j++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int key = 8 * j + cq + (e & 1);
        const float v = key < valid ? s[4 * j + e] * scale2 : -INFINITY;
        s[4 * j + e] = v;
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
    /* key 0 of every block is valid, so the new maxima are finite */
    const float nA = fmaxf(mA, xA), nB = fmaxf(mB, xB);
    const float cA = exp2f(mA - nA), cB = exp2f(mB - nB); /* 0 on the first block */
    mA = nA;
    mB = nB;
    float sumA = 0.f, sumB = 0.f;
    uint32_t pf[4][4];
#pragma unroll
    for (int j = 0; j < 8; j++) {
      const float p0 = exp2f(s[4 * j + 0] - nA), p1 = exp2f(s[4 * j + 1] - nA);
      const float p2 = exp2f(s[4 * j + 2] - nB), p3 = exp2f(s[4 * j + 3] - nB);
      sumA += p0 + p1;
      sumB += p2 + p3;
      pf[j >> 1][(j & 1) * 2 + 0] = packBf16(p0, p1);
      pf[j >> 1][(j & 1) * 2 + 1] = packBf16(p2, p3);
    }
    lA = lA * cA + sumA;
    lB = lB * cB + sumB;
    /* rescale only when a maximum moved (x 1 is exact; later blocks rarely move it) */
    if (cA != 1.f) {
#pragma unroll
      for (int j = 0; j < 32; j++) {
        o[4 * j + 0] *= cA;
        o[4 * j + 1] *= cA;
      }
    }
    if (cB != 1.f) {
#pragma unroll
      for (int j = 0; j < 32; j++) {
        o[4 * j + 2] *= cB;
        o[4 * j + 3] *= cB;
      }
    }

    /* O[:, 256w ..] += P V: V = this stage's tiles 4w .. 4w + 3, MN-major (dims contiguous) */
    fenceRegs(o);
    wgmmaFence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      const uint32_t vAddr = kSt + (4 * w) * kTileB + kk * 16 * 128;
      wgmmaRS_m64n256k16(o, pf[kk], sw128Desc(vAddr, kVDesc == 0 ? 8192 : 1024, kVDesc == 0 ? 1024 : 8192));
    }
    wgmmaCommit();
    wgmmaWait<0>();
    fenceRegs(o);
    if (lane == 0) mbarArrive(smemAddr(&bars[2 + st])); /* this warp is done with the stage */
  }

  /* ---- epilogue: row sums over the quad, normalise, store ---- */
  lA += __shfl_xor_sync(0xffffffffu, lA, 1);
  lA += __shfl_xor_sync(0xffffffffu, lA, 2);
  lB += __shfl_xor_sync(0xffffffffu, lB, 1);
  lB += __shfl_xor_sync(0xffffffffu, lB, 2);
  const float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
  const float lse2A = lA > 0.f ? mA + log2f(lA) : -INFINITY, lse2B = lB > 0.f ? mB + log2f(lB) : -INFINITY;
  const int d0 = 256 * w + cq;
  if (rw.n == 1) {
    if (rA < nu) {
      __nv_bfloat16* dst = p.out + (int64_t)t * p.oTokenStride + (int64_t)(g0 + rA) * kDv + d0;
#pragma unroll
      for (int j = 0; j < 32; j++)
        *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j) = __floats2bfloat162_rn(o[4 * j] * iA, o[4 * j + 1] * iA);
      if (w == 0 && (lane & 3) == 0 && p.lse)
        p.lse[(int64_t)t * p.lseTokenStride + g0 + rA] = p.lseBase2 ? lse2A : lse2A * kLn2;
    }
    if (rB < nu) {
      __nv_bfloat16* dst = p.out + (int64_t)t * p.oTokenStride + (int64_t)(g0 + rB) * kDv + d0;
#pragma unroll
      for (int j = 0; j < 32; j++)
        *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j) = __floats2bfloat162_rn(o[4 * j + 2] * iB, o[4 * j + 3] * iB);
      if (w == 0 && (lane & 3) == 0 && p.lse)
        p.lse[(int64_t)t * p.lseTokenStride + g0 + rB] = p.lseBase2 ? lse2B : lse2B * kLn2;
    }
  } else {
    const int S = p.maxSplits;
    if (rA < nu) {
      const int64_t u = ((int64_t)t * p.numHeads + g0 + rA) * S + split;
      float* dst = p.wsO + u * kDv + d0;
#pragma unroll
      for (int j = 0; j < 32; j++) *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[4 * j] * iA, o[4 * j + 1] * iA);
      if (w == 0 && (lane & 3) == 0) p.wsLse[u] = lse2A;
    }
    if (rB < nu) {
      const int64_t u = ((int64_t)t * p.numHeads + g0 + rB) * S + split;
      float* dst = p.wsO + u * kDv + d0;
#pragma unroll
      for (int j = 0; j < 32; j++)
        *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(o[4 * j + 2] * iB, o[4 * j + 3] * iB);
      if (w == 0 && (lane & 3) == 0) p.wsLse[u] = lse2B;
    }
  }
}

/* ---- the merge of split partials: one warp per (row, head); grid ceil(T * H / 8) x 256 ---- */
__global__ void __launch_bounds__(256) mlaSm90Combine(const Params p) {
  /* a programmatic dependent of the attention: wait for it to finish and flush */
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  const int u = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (u >= p.numTokens * p.numHeads) return;
  const int t = u / p.numHeads, h = u % p.numHeads;
  const RowWork rw = rowWork(p, t);
  const int n = rw.n;
  if (n <= 1) return; /* written by the attention itself */
  const int S = p.maxSplits;
  const float* lse = p.wsLse + (int64_t)u * S;
  const float x0 = lane < n ? __ldcg(lse + lane) : -INFINITY;
  const float x1 = lane + 32 < n ? __ldcg(lse + lane + 32) : -INFINITY;
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
  float4 acc[4];
#pragma unroll
  for (int q = 0; q < 4; q++) acc[q] = make_float4(0.f, 0.f, 0.f, 0.f);
  const float* src = p.wsO + (int64_t)u * S * kDv + lane * 4;
  for (int k = 0; k < n; k++) { /* split order: the same sum whatever finished first */
    const float wk = __shfl_sync(0xffffffffu, k < 32 ? w0 : w1, k & 31);
    if (wk == 0.f) continue; /* an empty partial: never multiply its bytes */
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const float4 v = __ldcg(reinterpret_cast<const float4*>(src + (int64_t)k * kDv + q * 128));
      acc[q].x += wk * v.x;
      acc[q].y += wk * v.y;
      acc[q].z += wk * v.z;
      acc[q].w += wk * v.w;
    }
  }
  __nv_bfloat16* dst = p.out + (int64_t)t * p.oTokenStride + (int64_t)h * kDv + lane * 4;
#pragma unroll
  for (int q = 0; q < 4; q++) {
    __nv_bfloat162 a = __floats2bfloat162_rn(acc[q].x, acc[q].y), b = __floats2bfloat162_rn(acc[q].z, acc[q].w);
    uint2 v;
    v.x = *reinterpret_cast<uint32_t*>(&a);
    v.y = *reinterpret_cast<uint32_t*>(&b);
    *reinterpret_cast<uint2*>(dst + q * 128) = v;
  }
  if (lane == 0 && p.lse) p.lse[(int64_t)t * p.lseTokenStride + h] = p.lseBase2 ? outLse2 : outLse2 * kLn2;
}

}  // namespace mla90
}  // namespace cpcl

#endif /* CPCL_CUDA_MLA_SM90_CUH_ */
