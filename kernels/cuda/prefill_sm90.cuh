/*
 * prefill_sm90.cuh -- causal prefill attention on Hopper tensor cores (sm_90a), FlashAttention-3
 * style: wgmma, TMA, mbarrier pipelines, warp specialisation, ping-pong between two consumer
 * warpgroups. The C interface and the tensor layouts are in prefill_sm90.h.
 *
 * CTA = one 128-row query tile m of one sequence, one query head h (KV head h / group);
 * grid (numHeads, numSeqs, ceil(maxSeqLen / 128)), the tile rank in z counted from the longest
 * possible tile down (m = tiles(maxSeqLen) - 1 - blockIdx.z), so the heaviest causal tiles are
 * dispatched first and the short ones fill the tail; CTAs with m past their sequence's tiles exit
 * at once. Tiles are cut from each sequence's own start, so a row's result does not depend on
 * the rest of the batch (batch-invariant), and the key order of the online softmax is fixed.
 * 384 threads:
 *   warpgroup 2, the producer (setmaxnreg 56; one lane works): TMA-copies the Q tile once, then
 *     for i = 0 .. m the K and V tiles of key tile j = m - i (the diagonal first, so the row maxima
 *     are set by the first tile and later tiles rarely rescale) into stage i % kStages, boxes of
 *     64 dims x 128 rows (SWIZZLE_128B, the wgmma layout), completing on fullK / fullV; a stage's
 *     K is refilled after the 8 consumer warps arrive on emptyK (after their S), its V after
 *     emptyV (after their P V). Key tiles past the query tile are never loaded.
 *   consumer warpgroups 0 and 1 (setmaxnreg 224): warpgroup w owns query rows 64w .. 64w + 63 of
 *     the tile. Per key tile: S = Q K^T (m64n128k16, Q and K from shared memory), the online
 *     softmax in base 2 on its registers (the causal mask only on the diagonal tile, as a select),
 *     O (64 x Dv fp32 in registers) rescaled, O += P V (m64n128k16 per 16 keys, P from registers
 *     as bf16 A fragments, V MN-major from shared memory).
 *   ping-pong: the S GEMM issue of the two warpgroups alternates through two named barriers
 *     (kBarTurn0 + w: "w may issue"), so in the steady state the tensor cores run S(0), S(1), PV(0),
 *     PV(1) while the other warpgroup's softmax runs on the CUDA cores.
 * Rows past the sequence's end in the last query tile are computed (their keys are real rows of
 * the next sequence or TMA's zero fill) and never stored; keys past a row are masked by the causal
 * select, and their V rows meet P = 0 exactly (they are finite: real K/V rows or zero fill).
 *
 * Not done here (docs/PREFILL_SM90.md): the paged-cache context part (keys before the new tokens
 * through the block table), intra-warpgroup overlap of softmax with the same warpgroup's P V,
 * a persistent tile scheduler, fp16, D 64.
 */
#ifndef CPCL_CUDA_PREFILL_SM90_CUH_
#define CPCL_CUDA_PREFILL_SM90_CUH_

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

#include "common.cuh"
#include "sm90_ptx.cuh"
#include "prefill_sm90.h"

namespace cpcl {
namespace pf90 {

using namespace ::cpcl::sm90; /* the Hopper PTX wrappers */

constexpr int kBM = 128, kBN = 128, kThreads = 384;
constexpr int kBarTurn0 = 1; /* named barriers 1, 2: the ping-pong turns (0 is __syncthreads) */
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

template <int kDqk, int kDv, int kStages>
struct Shape {
  static constexpr int kQBytes = kBM * kDqk * 2; /* 64-dim tiles of 128 rows x 128 bytes */
  static constexpr int kKBytes = kBN * kDqk * 2;
  static constexpr int kVBytes = kBN * kDv * 2;
  static constexpr int kBarOff = kQBytes + kStages * (kKBytes + kVBytes);
  static constexpr int kBars = 1 + 4 * kStages;                 /* fullQ, fullK[], fullV[], emptyK[], emptyV[] */
  static constexpr int kSmemBytes = kBarOff + kBars * 8 + 1024; /* + alignment of the base */
  static_assert(kDqk % 64 == 0 && kDv == 128, "dims: Dqk a multiple of 64, Dv 128 (the P V wgmma is m64n128)");
  static_assert(kSmemBytes <= 232448, "shared memory of one CTA");
};

/* ---- PTX wrappers of this body only (the shared ones: sm90_ptx.cuh) ---- */
__device__ __forceinline__ void prefetchMap(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"((uint64_t)map) : "memory");
}

#include "prefill_sm90_wgmma.inc"

__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

/* The online softmax of one 128-key tile on this thread's S fragment (element 4j + e: row A for
 * e < 2, row B else; key 8j + cq + (e & 1)), in three steps so the overlapped schedule can run
 * the first two while its P V is in flight. kMask (the diagonal tile only): keys >= validA /
 * validB are masked by a select, never a product. The diagonal tile comes first and its key 0 is
 * valid for every row, so the maxima are finite from the first tile on.
 * tileMax: new maxima (base 2, scaled) into mA, mB and the rescale factors cA, cB (0 on the
 * first tile: exp2(-inf)). S is only read. */
template <bool kMask>
__device__ __forceinline__ void tileMax(const float (&s)[64], int validA, int validB, int cq, float scale2, float& mA,
                                        float& mB, float& cA, float& cB) {
  float xA = -INFINITY, xB = -INFINITY;
#pragma unroll
  for (int j = 0; j < 16; j++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int key = 8 * j + cq + (e & 1);
      const bool ok = !kMask || key < (e < 2 ? validA : validB);
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
  /* smScale > 0: the maximum of the scaled scores is the scaled maximum */
  const float nA = fmaxf(mA, xA * scale2), nB = fmaxf(mB, xB * scale2);
  cA = fastExp2(mA - nA);
  cB = fastExp2(mB - nB);
  mA = nA;
  mB = nB;
}
/* tileExp: S := 2^(S scale2 - m) in place (masked keys 0) and this thread's row sums */
template <bool kMask>
__device__ __forceinline__ void tileExp(float (&s)[64], int validA, int validB, int cq, float scale2, float mA,
                                        float mB, float& sumA, float& sumB) {
  sumA = 0.f;
  sumB = 0.f;
#pragma unroll
  for (int j = 0; j < 16; j++) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int key = 8 * j + cq + (e & 1);
      const bool ok = !kMask || key < (e < 2 ? validA : validB);
      const float x = fastExp2(fmaf(s[4 * j + e], scale2, -(e < 2 ? mA : mB)));
      s[4 * j + e] = ok ? x : 0.f;
    }
    sumA += s[4 * j] + s[4 * j + 1];
    sumB += s[4 * j + 2] + s[4 * j + 3];
  }
}
/* packP: P as bf16 A fragments of the P V wgmma (pf[kk]: keys 16kk .. 16kk + 15) */
__device__ __forceinline__ void packP(const float (&s)[64], uint32_t (&pf)[8][4]) {
#pragma unroll
  for (int j = 0; j < 16; j++) {
    pf[j >> 1][(j & 1) * 2 + 0] = packBf16(s[4 * j], s[4 * j + 1]);
    pf[j >> 1][(j & 1) * 2 + 1] = packBf16(s[4 * j + 2], s[4 * j + 3]);
  }
}

/* O rows A and B times cA, cB; skipped when no maximum of the warp moved (x 1 is exact). The test
 * is a warp vote, so the branch is uniform (ptxas serializes wgmma around divergent branches). */
template <int kN>
__device__ __forceinline__ void rescaleO(float (&o)[kN], float cA, float cB) {
  if (__any_sync(0xffffffffu, cA != 1.f || cB != 1.f)) {
#pragma unroll
    for (int j = 0; j < kN / 4; j++) {
      o[4 * j + 0] *= cA;
      o[4 * j + 1] *= cA;
      o[4 * j + 2] *= cB;
      o[4 * j + 3] *= cB;
    }
  }
}

template <int kDqk, int kDv, int kStages, bool kOverlap>
__global__ void __launch_bounds__(kThreads, 1)
    prefillSm90Kernel(const __grid_constant__ CUtensorMap qMap, const __grid_constant__ CUtensorMap kMap,
                      const __grid_constant__ CUtensorMap vMap, const __grid_constant__ cpclPrefillSm90Params_t p) {
  using S = Shape<kDqk, kDv, kStages>;
  constexpr int kQTile = kBM * 128, kKTile = kBN * 128; /* bytes of one 64-dim tile */
  extern __shared__ unsigned char smemRaw[];
  /* the first 1024-byte boundary, as an offset from smemRaw: the pointer keeps the shared state space,
   * so its loads and stores compile to LDS / STS (through an integer cast they were generic LD / ST) */
  unsigned char* smem = smemRaw + ((1024u - (smemAddr(smemRaw) & 1023u)) & 1023u);
  const uint32_t sQ = smemAddr(smem), sK = sQ + S::kQBytes, sV = sK + kStages * S::kKBytes;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + S::kBarOff);
  const uint32_t fullQ = smemAddr(bars), fullK = fullQ + 8, fullV = fullK + 8 * kStages, emptyK = fullV + 8 * kStages,
                 emptyV = emptyK + 8 * kStages;

  const int h = blockIdx.x, seq = blockIdx.y;
  const int q0 = __ldg(p.cuSeqlens + seq);
  /* bad cuSeqlens (decreasing, past totalRows, longer than maxSeqLen) never reach memory outside
   * the tensors: the sequence is clipped to what the grid and the tensors cover (its rows past
   * that are left unwritten) */
  const int n =
      q0 < 0 || q0 > p.totalRows ? 0 : min(min(__ldg(p.cuSeqlens + seq + 1) - q0, p.totalRows - q0), p.maxSeqLen);
  const int tilesMax = (p.maxSeqLen + kBM - 1) / kBM;
  /* the tile index through a shuffle, so the compiler knows it is warp-uniform (wgmma in a
   * branch it cannot prove uniform gets serialized) */
  const int m = __shfl_sync(0xffffffffu, tilesMax - 1 - (int)blockIdx.z, 0);
  if (n <= 0 || m * kBM >= n) return; /* the whole CTA: before any barrier */
  const int nIter = m + 1;            /* key tiles m, m - 1, .., 0 (kBN == kBM) */
  const int tid = threadIdx.x;

  if (tid == 0) {
    mbarInit(fullQ, 1);
    for (int i = 0; i < kStages; i++) {
      mbarInit(fullK + 8 * i, 1);
      mbarInit(fullV + 8 * i, 1);
      mbarInit(emptyK + 8 * i, 8); /* lane 0 of each consumer warp */
      mbarInit(emptyV + 8 * i, 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (tid >= 256) { /* ---- producer warpgroup ---- */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 56;\n" ::: "memory");
    if (tid != 256) return;
    prefetchMap(&qMap);
    prefetchMap(&kMap);
    prefetchMap(&vMap);
    const int hkv = h / (p.numHeads / p.numKvHeads);
    mbarExpectTx(fullQ, S::kQBytes);
#pragma unroll
    for (int c = 0; c < kDqk / 64; c++) tmaLoad3d(sQ + c * kQTile, &qMap, c * 64, h, q0 + m * kBM, fullQ);
    for (int i = 0; i < nIter; i++) {
      const int j = m - i, st = i % kStages;
      const uint32_t par = ((i / kStages) - 1) & 1;
      if (i >= kStages) mbarWait(emptyK + 8 * st, par);
      mbarExpectTx(fullK + 8 * st, S::kKBytes);
#pragma unroll
      for (int c = 0; c < kDqk / 64; c++)
        tmaLoad3d(sK + st * S::kKBytes + c * kKTile, &kMap, c * 64, hkv, q0 + j * kBN, fullK + 8 * st);
      if (i >= kStages) mbarWait(emptyV + 8 * st, par);
      mbarExpectTx(fullV + 8 * st, S::kVBytes);
#pragma unroll
      for (int c = 0; c < kDv / 64; c++)
        tmaLoad3d(sV + st * S::kVBytes + c * kKTile, &vMap, c * 64, hkv, q0 + j * kBN, fullV + 8 * st);
    }
    return;
  }

  /* ---- consumers ---- */
  asm volatile("setmaxnreg.inc.sync.aligned.u32 224;\n" ::: "memory");
  const int w = __shfl_sync(0xffffffffu, tid >> 7, 0), warp = (tid & 127) >> 5, lane = tid & 31;
  const int rA = warp * 16 + (lane >> 2); /* this thread's rows: rA and rA + 8 of the warpgroup's 64 */
  const int cq = (lane & 3) * 2;          /* its column pair in each 8-column group */
  const int qA = m * kBM + 64 * w + rA;   /* local query index of row A (row B: + 8) */
  /* causal limit on the diagonal tile m: key 128 m + c is valid for query q when c <= q - 128 m */
  const int validA = qA - m * kBN + 1, validB = validA + 8;
  const float scale2 = p.smScale * kLog2e;
  const uint32_t qBase = sQ + w * 64 * 128; /* this warpgroup's 64 rows of each Q tile */

  float o[kDv / 2];
#pragma unroll
  for (int i = 0; i < kDv / 2; i++) o[i] = 0.f;
  float mA = -INFINITY, mB = -INFINITY, lA = 0.f, lB = 0.f;
  float s[64];
  uint32_t pf[8][4];

  auto issueS = [&](int st) {
    const uint32_t kSt = sK + st * S::kKBytes;
#pragma unroll
    for (int ks = 0; ks < kDqk / 16; ks++) {
      const uint32_t off = (ks >> 2) * kQTile + (ks & 3) * 32, koff = (ks >> 2) * kKTile + (ks & 3) * 32;
      wgmmaSS_m64n128k16(s, sw128Desc(qBase + off, 16, 1024), sw128Desc(kSt + koff, 16, 1024), ks > 0);
    }
  };
  /* V MN-major: LBO = one 64-dim tile (128 rows x 128 bytes) between dim tiles, SBO = 1024 between
   * 8-key groups, 16 keys (2048 bytes) per k-step */
  auto issuePv = [&](int st) {
    const uint32_t vSt = sV + st * S::kVBytes;
#pragma unroll
    for (int kk = 0; kk < kBN / 16; kk++) wgmmaRS_m64n128k16(o, pf[kk], sw128Desc(vSt + kk * 16 * 128, kKTile, 1024));
  };
  /* the ping-pong turns: warpgroup 1 owes no turn after its last tile, so each barrier sees as
   * many arrivals as syncs (warpgroup 0's: one initial + nIter - 1) */
  auto passTurn = [&](int i) {
    if (w == 0 || i + 1 < nIter) namedArrive(kBarTurn0 + (1 - w), 256);
  };
  auto stageOf = [](int i) { return i % kStages; };
  auto parityOf = [](int i) { return (uint32_t)(i / kStages) & 1; };

  if (w == 1) namedArrive(kBarTurn0, 256); /* warpgroup 0 issues first */
  mbarWait(fullQ, 0);

  if constexpr (!kOverlap) {
    /* per tile: S, softmax, P V, each waited for before the next (the other warpgroup's GEMMs
     * fill the tensor cores meanwhile) */
    auto step = [&](int i, auto maskTag) {
      constexpr bool kMask = decltype(maskTag)::value;
      const int st = stageOf(i);
      namedBarrier(kBarTurn0 + w, 256); /* my turn to issue */
      mbarWait(fullK + 8 * st, parityOf(i));
      wgmmaFence();
      issueS(st);
      wgmmaCommit();
      passTurn(i);
      wgmmaWait<0>();
      fenceRegs(s);
      mbarArriveLane0(emptyK + 8 * st, lane); /* this warp is done with the stage's K */
      float cA, cB, sumA, sumB;
      tileMax<kMask>(s, validA, validB, cq, scale2, mA, mB, cA, cB);
      tileExp<kMask>(s, validA, validB, cq, scale2, mA, mB, sumA, sumB);
      lA = lA * cA + sumA;
      lB = lB * cB + sumB;
      packP(s, pf);
      rescaleO(o, cA, cB);
      fenceRegs(o);
      mbarWait(fullV + 8 * st, parityOf(i));
      wgmmaFence();
      issuePv(st);
      wgmmaCommit();
      wgmmaWait<0>();
      fenceRegs(o);
      mbarArriveLane0(emptyV + 8 * st, lane);
    };
    step(0, std::true_type{}); /* the diagonal tile: the only masked one */
    for (int i = 1; i < nIter; i++) step(i, std::false_type{});
  } else {
    /* FlashAttention-3's intra-warpgroup overlap: S of tile i and P V of tile i - 1 are issued
     * together; the softmax of tile i (max and exp, on S only) runs while that P V is in flight,
     * then O is rescaled and P packed after it completes. */
    {
      namedBarrier(kBarTurn0 + w, 256);
      mbarWait(fullK, 0);
      wgmmaFence();
      issueS(0);
      wgmmaCommit();
      passTurn(0);
      wgmmaWait<0>();
      fenceRegs(s);
      mbarArriveLane0(emptyK, lane);
      float cA, cB;
      tileMax<true>(s, validA, validB, cq, scale2, mA, mB, cA, cB);
      tileExp<true>(s, validA, validB, cq, scale2, mA, mB, lA, lB);
      packP(s, pf);
    }
    for (int i = 1; i < nIter; i++) {
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
      fenceRegs(s);
      mbarArriveLane0(emptyK + 8 * st, lane);
      float cA, cB, sumA, sumB;
      tileMax<false>(s, validA, validB, cq, scale2, mA, mB, cA, cB);
      tileExp<false>(s, validA, validB, cq, scale2, mA, mB, sumA, sumB);
      wgmmaWait<0>();
      fenceRegs(o);
      mbarArriveLane0(emptyV + 8 * sp, lane);
      lA = lA * cA + sumA;
      lB = lB * cB + sumB;
      rescaleO(o, cA, cB);
      packP(s, pf);
    }
    const int sl = stageOf(nIter - 1);
    mbarWait(fullV + 8 * sl, parityOf(nIter - 1));
    wgmmaFence();
    issuePv(sl);
    wgmmaCommit();
    wgmmaWait<0>();
    fenceRegs(o);
    mbarArriveLane0(emptyV + 8 * sl, lane);
  }

  lA += __shfl_xor_sync(0xffffffffu, lA, 1);
  lA += __shfl_xor_sync(0xffffffffu, lA, 2);
  lB += __shfl_xor_sync(0xffffffffu, lB, 1);
  lB += __shfl_xor_sync(0xffffffffu, lB, 2);
  /* every stored row has its key 0 valid, so l >= 1 (the maximum's own term) */
  const float iA = 1.f / lA, iB = 1.f / lB, lseMul = p.lseBase2 ? 1.f : kLn2;
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(p.out);
  const int64_t rowStride = (int64_t)p.numHeads * kDv;
  const int qB = qA + 8;
  if (qA < n) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(out + (int64_t)(q0 + qA) * rowStride + (int64_t)h * kDv);
#pragma unroll
    for (int jj = 0; jj < kDv / 8; jj++) dst[(8 * jj + cq) / 2] = packBf16(o[4 * jj] * iA, o[4 * jj + 1] * iA);
    if (p.lse && (lane & 3) == 0) p.lse[(int64_t)(q0 + qA) * p.numHeads + h] = (mA + log2f(lA)) * lseMul;
  }
  if (qB < n) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(out + (int64_t)(q0 + qB) * rowStride + (int64_t)h * kDv);
#pragma unroll
    for (int jj = 0; jj < kDv / 8; jj++) dst[(8 * jj + cq) / 2] = packBf16(o[4 * jj + 2] * iB, o[4 * jj + 3] * iB);
    if (p.lse && (lane & 3) == 0) p.lse[(int64_t)(q0 + qB) * p.numHeads + h] = (mB + log2f(lB)) * lseMul;
  }
}

}  // namespace pf90
}  // namespace cpcl

#endif /* CPCL_CUDA_PREFILL_SM90_CUH_ */
