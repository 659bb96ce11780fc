/*
 * mla_sm90_halves.cuh -- variant 16 of the Hopper MLA decode body (mla_sm90.cuh has the shapes,
 * the splits and the contract, which this kernel keeps): FlashMLA's SM90 dense schedule, as read
 * from its source (docs/MLA_SM90.md, "Session 4"), in our own code.
 *
 * 256 threads, two warpgroups, no producer. A K/V stage (64 keys x 576 dims, nine 64-dim tiles)
 * is two halves: tiles 0-3 (V_L: dims 0-255) and tiles 4-8 (V_R: dims 256-511, and the rope
 * tile). Each half is refilled the moment its last reader is done with it, by warp 0 of the
 * warpgroup that read it last (one lane a (page, tile) box): WG0 refills the V_L halves, WG1
 * the V_R halves. S of the next pair's blocks is issued at the end of each warpgroup's
 * iteration, over the tiles in the order they were refilled. Q's rope tile lives in registers
 * (q8) and its shared tile holds sP1. Per pair j (block 2j in stage 0, 2j + 1 in stage 1; S0 and
 * S1 done on entry; [x] a hand-off mbarrier, every thread of the sending warpgroup arrives):
 *   WG0: m0 = max(m, S0), P0, O_L *= c0               -> [scale0]
 *        O_L += P0 V0_L; wait for it                    (WG0 was V0_L's only reader)
 *        [scale1] <-; refill V0_L with block 2j + 2; P0 *= c1 -> sP0 -> [P0]
 *        [P1] <-; O_L *= c1; O_L += sP1 V1_L; S0' tiles 0-3
 *        P1 V1_L done: refill V1_L with block 2j + 3;  S0' tiles 4-8
 *   WG1: [scale0] <-; m1 = max(m0, S1), P1, O_R *= c0 c1 -> [scale1]
 *        P1 -> sP1; O_R += P1 V1_R; [P0] <-; O_R += sP0 V0_R -> [P1]
 *        P1 V1_R done: refill V1_R with block 2j + 3; P0 V0_R done: refill V0_R with 2j + 2
 *        S1' tiles 4-8, then 0-3 (the order of their refills)
 * The ordering argument (which barrier orders which write before which read) is in
 * docs/MLA_SM90.md, "Session 4". Row sums: WG0 keeps the even blocks', WG1 the odd blocks'.
 */
#ifndef CPCL_CUDA_MLA_SM90_HALVES_CUH_
#define CPCL_CUDA_MLA_SM90_HALVES_CUH_

#include "mla_sm90.cuh"

namespace cpcl {
namespace mla90 {

constexpr int kThreadsHalves = 256;
constexpr int kHalfL = 4; /* tiles [0, 4) are V_L (WG0 refills them), [4, 9) V_R and rope (WG1) */
/* hand-off mbarriers (each completes once a pair, on the 128 arrivals of one warpgroup) */
constexpr int kHandScale0 = 0, kHandScale1 = 1, kHandP0 = 2, kHandP1 = 3;

/* S of all nine tiles of a stage in the order C0, C0 + 1, ... (mod 9), each tile waited for on
 * its own barrier; Q tiles 0-7 from shared memory, tile 8 from registers */
template <int C0>
__device__ __forceinline__ void issueSFrom(float (&s)[32], uint32_t qBase, uint32_t kSt, uint32_t tileBar,
                                           uint32_t parity, const uint32_t (&q8)[4][4]) {
  wgmmaFence();
#pragma unroll
  for (int k = 0; k < kTiles; k++) {
    const int c = (C0 + k) % kTiles;
    mbarWait(tileBar + c * 8, parity);
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      const uint32_t off = c * kTileB + kk * 32;
      if (c < kTiles - 1)
        wgmmaSS_m64n64k16(s, sw128Desc(qBase + off, 16, 1024), sw128Desc(kSt + off, 16, 1024), k > 0 || kk > 0);
      else /* never the first tile of the order: it always accumulates */
        wgmmaRS_m64n64k16(s, q8[kk], sw128Desc(kSt + off, 16, 1024));
    }
  }
  wgmmaCommit();
}

/* one TMA box of a half (copy: post its bytes on bar, then the box completing on it) or a page
 * slot past the row's end (arrive: one arrival without bytes), each predicated inside the asm so
 * that no branch is taken with a wgmma in flight */
__device__ __forceinline__ void halfBox(bool copy, bool arrive, uint32_t bar, uint32_t bytes, uint32_t dst,
                                        const CUtensorMap* map, int c0, int c1) {
  asm volatile(
      "{\n.reg .pred pc, pa;\nsetp.ne.u32 pc, %0, 0;\nsetp.ne.u32 pa, %1, 0;\n"
      "@pc mbarrier.arrive.expect_tx.shared::cta.b64 _, [%2], %3;\n"
      "@pc cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%4], [%5, {%6, %7}], "
      "[%2];\n"
      "@pa mbarrier.arrive.shared::cta.b64 _, [%2];\n}\n" ::"r"((uint32_t)copy),
      "r"((uint32_t)arrive), "r"(bar), "r"(bytes), "r"(dst), "l"((uint64_t)map), "r"(c0), "r"(c1)
      : "memory");
}

__global__ void __launch_bounds__(kThreadsHalves, 1)
    mlaSm90Halves(const __grid_constant__ CUtensorMap kvMap, const __grid_constant__ cpclAttnParams_t p,
                  const Split sp) {
  static_assert(kTiles == 9 && kHalfL == 4, "the halves are V_L = tiles 0-3 and V_R + rope = tiles 4-8");
  extern __shared__ unsigned char smemRaw[];
  /* the first 1024-byte boundary, as an offset from smemRaw: the pointer keeps the shared state space,
   * so its loads and stores compile to LDS / STS (through an integer cast they were generic LD / ST) */
  unsigned char* smem = smemRaw + ((1024u - (smemAddr(smemRaw) & 1023u)) & 1023u);
  unsigned char* sQ = smem;
  unsigned char* sK = smem + kBlockB; /* stages 0, 1 */
  unsigned char* sP0 = smem + 3 * kBlockB;
  unsigned char* sP1 = sQ + (kTiles - 1) * kTileB; /* Q's rope tile, once it is in registers */
  uint64_t* fullBar = reinterpret_cast<uint64_t*>(smem + 3 * kBlockB + 8192); /* [stage][tile] */
  uint64_t* handBar = fullBar + 2 * kTiles;                                   /* kHand* */
  float* sM = reinterpret_cast<float*>(smem + 3 * kBlockB + 8192 + 320);      /* the running maximum */
  float* sC0 = sM + 64;
  float* sC1 = sC0 + 64;
  float* sLA = sC1 + 64;
  float* sLB = sLA + 64;
  int* sBad = reinterpret_cast<int*>(sLB + 64); /* a copier met a negative page id in this split */
  int* sSplits = sBad + 1; /* the row's split count, for the epilogue (kept here, not in a register) */

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
    /* one arrival a page slot of a block (issueHalf) */
    const int slots = p.pageSize >= kBN ? 1 : kBN / p.pageSize;
    for (int i = 0; i < 2 * kTiles; i++) mbarInit(smemAddr(&fullBar[i]), slots);
    for (int i = 0; i < 4; i++) mbarInit(smemAddr(&handBar[i]), 128); /* every sending thread */
    *sBad = 0;
    *sSplits = rw.n;
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  if (tid < 64) sM[tid] = -INFINITY;
  __syncthreads();

  /* ---- copies: warp 0 of warpgroup w issues its half (WG0 tiles 0-3, WG1 tiles 4-8) of every
   * block, one lane a (page, tile) box: lane i copies page i % 8 of tiles i / 8 and i / 8 + 4 of
   * its half (pages of 64 rows or more: one box of 64 rows a tile), and holds that page's first
   * cache row (read by the lane itself: no shuffle in the copy path, where ptxas would serialize
   * the wgmma in flight) ---- */
  const bool copier = warp == 0;
  const int32_t* bt = p.blockTable + (int64_t)rw.seq * p.maxPagesPerSeq;
  const int pg = p.pageSize, boxRows = pg >= kBN ? kBN : pg, npFull = kBN / boxRows;
  const int hc0 = w == 0 ? 0 : kHalfL, hnt = w == 0 ? kHalfL : kTiles - kHalfL;
  const int lanePage = lane & 7;
  bool bad = false;
  auto validOf = [&](int i) { return min(kBN, kEnd - (kBeg + i * kBN)); };
  /* pages of block i that hold keys (pages wholly past the end are not read) */
  auto npOf = [&](int i) { return pg >= kBN ? 1 : (validOf(i) + pg - 1) / pg; };
  /* A lane's page of block i: its block-table index, its page id (0 for a lane without a page),
   * the first cache row of its box (page 0 for a negative id), and the record of a negative id
   * (errorFlag, sBad; the split's partial is thrown away). Inside the loop the ids are loaded at a
   * pair's start and used by select at the refill later in the pair, so the load's latency is not
   * waited for there: checking each id as it was loaded made warp 0 of each warpgroup wait for it at
   * every pair's start, in front of softmax0 and [scale0] (the trace's 2.4k cycles of "softmax0",
   * docs/MLA_SM90.md "Session 10"). The check (a branch) waits for the next pair's start, when the
   * id has long landed; every loaded id has a next pair, and sBad is read only after the loop. */
  auto tableIdx = [&](int i) { return (kBeg + i * kBN) / pg + (pg >= kBN ? 0 : lanePage); };
  auto laneId = [&](int i) { return lanePage < npOf(i) ? __ldg(bt + tableIdx(i)) : 0; };
  auto rowOfId = [&](int i, int id) { return (id < 0 ? 0 : id * pg) + (pg >= kBN ? (kBeg + i * kBN) % pg : 0); };
  auto checkId = [&](int i, int id) {
    if (id < 0 && !bad) {
      bad = true;
      *sBad = 1;
      reportError(p.errorFlag, CPCL_KERR_PAGE, rw.seq, id, tableIdx(i));
    }
  };
  /* the first two blocks' rows, checked at once (before the loop: nothing is in flight) */
  auto laneRow = [&](int i) {
    const int id = laneId(i);
    checkId(i, id);
    return rowOfId(i, id);
  };
  /* block i's half of this warpgroup into stage st (warp 0 only; row: this lane's laneRow(i)).
   * Each tile's barrier counts one arrival a page slot of a full block (npFull): the lane of a
   * page that holds keys arrives with its box's bytes right before it issues the box, the lane of
   * a page past the end arrives without bytes. So a phase completes only once every box of the
   * tile was posted and landed, and no lane waits for another (a __syncwarp here, with a wgmma in
   * flight, makes ptxas serialize every wgmma). Every thread of the warpgroup runs it, each box and
   * arrival predicated inside the asm (halfBox): the branches it had (copier, and the lane's page
   * and tile) put a divergent region behind S0' tiles 0-3 in flight, and ptxas serialized every
   * wgmma of the kernel (C7514; "Session 10"). */
  auto issueHalf = [&](int st, int i, int row) {
    const int np = npOf(i);
    const uint32_t full0 = smemAddr(&fullBar[st * kTiles]), dst = smemAddr(sK + st * kBlockB);
#pragma unroll
    for (int k = 0; k < 2; k++) {
      const int c = hc0 + (lane >> 3) + 4 * k;
      const bool slot = copier && lanePage < npFull && c < hc0 + hnt, copy = slot && lanePage < np;
      halfBox(copy, slot && !copy, full0 + c * 8, (uint32_t)boxRows * 128, dst + c * kTileB + lanePage * boxRows * 128,
              &kvMap, c * 64, row);
    }
  };
  int row0 = 0, row1 = 0; /* this lane's page rows of the blocks copied first into stage 0 / stage 1 */
  int id0 = 0, id1 = 0;   /* in the loop: its page ids of the blocks copied next into stage 0 / stage 1 */
  if (copier) {
    if (nBlocks > 0) {
      row0 = laneRow(0);
      issueHalf(0, 0, row0);
    }
    if (nBlocks > 1) {
      row1 = laneRow(1);
      issueHalf(1, 1, row1);
    }
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
      for (int h = 0; h < 2; h++) {
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
  const uint32_t hand = smemAddr(&handBar[0]);
  float s[32];
  if (w == 0 && nBlocks > 0) {
    issueSFrom<0>(s, qBase, kSt0, bar0, 0, q8);
    wgmmaWait<0>();
    fenceRegs(s);
  }
  if (w == 1 && nBlocks > 1) {
    issueSFrom<kHalfL>(s, qBase, kSt1, bar1, 0, q8);
    wgmmaWait<0>();
    fenceRegs(s);
  }

  /* one pair; which of blocks 2j + 1 .. 2j + 3 exist is a template constant, so every wgmma wait
   * is unconditional within an instance (ptxas serializes wgmma around waits it cannot place) */
  auto pair = [&](int j, auto H1, auto H2, auto H3) {
    constexpr bool has1 = decltype(H1)::value, has2 = decltype(H2)::value, has3 = decltype(H3)::value;
    const int v0 = validOf(2 * j), v1 = has1 ? validOf(2 * j + 1) : 0;
    const uint32_t par = j & 1, nextPar = (j + 1) & 1;
    const int tb = (j * 2 + w) * 16;
    traceAt(sp.trace, tb + 0, wt);
    /* the page ids of this pair's refills (first used after a P V), and the check of the last
     * pair's: no wgmma is in flight here */
    if (copier) {
      if (j > 0) { /* the ids of this pair's blocks, loaded and used in the last pair */
        checkId(2 * j, id0);
        if constexpr (has1) checkId(2 * j + 1, id1);
      }
      if constexpr (has2) id0 = laneId(2 * j + 2);
      if constexpr (has3) id1 = laneId(2 * j + 3);
    }
    if (w == 0) {
      float nA, nB, cA, cB, sumA, sumB;
      uint32_t pf[4][4];
      /* m = sM: WG1's m1 of the last pair ([scale1] of pair j - 1), or -inf */
      softmaxBlock<true>(s, v0, cq, scale2, sM[rA], sM[rB], nA, nB, cA, cB, sumA, sumB, pf, s);
      lA = lA * cA + sumA;
      lB = lB * cB + sumB;
      rescaleO(o, cA, cB);
      __syncwarp(); /* the quad's reads of sM before its lane 0 overwrites it */
      if ((lane & 3) == 0) {
        sM[rA] = nA;
        sM[rB] = nB;
        sC0[rA] = cA;
        sC0[rB] = cB;
      }
      mbarArrive(hand + kHandScale0 * 8);
      traceAt(sp.trace, tb + 1, wt);
      if constexpr (!has1) /* only the last block can be short */
        if (v0 < kBN) zeroTail(sK, 0, wt, v0);
      fenceRegs(o);
      issuePvRegs<0>(o, pf, kSt0, 0);
      wgmmaWait<0>();
      fenceRegs(o);
      traceAt(sp.trace, tb + 2, wt);
      mbarWait(hand + kHandScale1 * 8, par); /* m1, c1 */
      traceAt(sp.trace, tb + 3, wt);
      /* S0 and P0 V0_L, V0_L's only readers, are done */
      if constexpr (has2) issueHalf(0, 2 * j + 2, rowOfId(2 * j + 2, id0));
      const float c1A = sC1[rA], c1B = sC1[rB];
      /* P0 rescaled to WG1's maximum, for its O_R += sP0 V0_R */
#pragma unroll
      for (int q = 0; q < 8; q++) {
        pf[q >> 1][(q & 1) * 2 + 0] = packBf16(s[4 * q + 0] * c1A, s[4 * q + 1] * c1A);
        pf[q >> 1][(q & 1) * 2 + 1] = packBf16(s[4 * q + 2] * c1B, s[4 * q + 3] * c1B);
      }
      storeP(sP0, pf, rA, rB, cq);
      fenceProxyAsync();
      mbarArrive(hand + kHandP0 * 8);
      traceAt(sp.trace, tb + 4, wt);
      if constexpr (has1) {
        mbarWait(hand + kHandP1 * 8, par); /* sP1 stored, P0 V0_R issued */
        traceAt(sp.trace, tb + 5, wt);
        lA *= c1A;
        lB *= c1B;
        rescaleO(o, c1A, c1B);
        /* V1_L's copies, acquired here too (WG1 waited for them in its S1) */
#pragma unroll
        for (int c = 0; c < kHalfL; c++) mbarWait(bar1 + c * 8, par);
        if constexpr (!has2)
          if (v1 < kBN) zeroTail(sK + kBlockB, 0, wt, v1);
        fenceRegs(o);
        issuePvSmem<0>(o, pBase1, kSt1, 0);
      }
      if constexpr (has2) issueSTiles<0, kHalfL>(s, qBase, kSt0, bar0, nextPar, q8);
      traceAt(sp.trace, tb + 6, wt);
      if constexpr (has1) {
        if constexpr (has2)
          wgmmaWait<1>();
        else
          wgmmaWait<0>();
        fenceRegs(o);
        traceAt(sp.trace, tb + 7, wt);
        /* P1 V1_L done, and S1 (its other reader) was done before [P1] */
        if constexpr (has3) issueHalf(1, 2 * j + 3, rowOfId(2 * j + 3, id1));
      }
      if constexpr (has2) {
        issueSTiles<kHalfL, kTiles>(s, qBase, kSt0, bar0, nextPar, q8);
        traceAt(sp.trace, tb + 8, wt);
        wgmmaWait<0>();
        fenceRegs(s);
        fenceRegs(o);
      }
      traceAt(sp.trace, tb + 9, wt);
    } else {
      mbarWait(hand + kHandScale0 * 8, par); /* m0, c0 */
      traceAt(sp.trace, tb + 1, wt);
      const float c0A = sC0[rA], c0B = sC0[rB], m0A = sM[rA], m0B = sM[rB];
      float nA = m0A, nB = m0B, cA = 1.f, cB = 1.f, sumA = 0.f, sumB = 0.f;
      uint32_t pf[4][4];
      if constexpr (has1) softmaxBlock(s, v1, cq, scale2, m0A, m0B, nA, nB, cA, cB, sumA, sumB, pf);
      lA = lA * (c0A * cA) + sumA;
      lB = lB * (c0B * cB) + sumB;
      rescaleO(o, c0A * cA, c0B * cB);
      __syncwarp(); /* the quad's reads of sM before its lane 0 overwrites it */
      if ((lane & 3) == 0) {
        if constexpr (has1) { /* else m1 = m0, already there */
          sM[rA] = nA;
          sM[rB] = nB;
        }
        sC1[rA] = cA;
        sC1[rB] = cB;
      }
      mbarArrive(hand + kHandScale1 * 8);
      traceAt(sp.trace, tb + 2, wt);
      if constexpr (has1) {
        storeP(sP1, pf, rA, rB, cq);
        fenceProxyAsync(); /* sP1 for WG0's P1 V1_L, published by [P1] */
        if constexpr (!has2)
          if (v1 < kBN) zeroTail(sK + kBlockB, 1, wt, v1);
        fenceRegs(o);
        issuePvRegs<0>(o, pf, kSt1, 1);
      }
      traceAt(sp.trace, tb + 3, wt);
      mbarWait(hand + kHandP0 * 8, par); /* sP0 stored, and WG0's S0 done */
      traceAt(sp.trace, tb + 4, wt);
      /* V0_R's copies, acquired here too (WG0 waited for them in its S0) */
#pragma unroll
      for (int c = kHalfL; c < kHalfL + 4; c++) mbarWait(bar0 + c * 8, par);
      if constexpr (!has1)
        if (v0 < kBN) zeroTail(sK, 1, wt, v0);
      /* with P1 V1_R in flight on o, no instruction may touch o before P0 V0_R joins it (ptxas
       * would serialize every wgmma); without it, the rescale above must stay before the issue */
      if constexpr (!has1) fenceRegs(o);
      issuePvSmem<0>(o, pBase0, kSt0, 1);
      if constexpr (has1) mbarArrive(hand + kHandP1 * 8);
      traceAt(sp.trace, tb + 5, wt);
      if constexpr (has1) {
        /* P1 V1_R done, P0 V0_R still in flight on o: nothing may touch o here (a fenceRegs(o) was
         * C7514, ptxas serializing every wgmma of the kernel, "Session 10") */
        wgmmaWait<1>();
        traceAt(sp.trace, tb + 6, wt);
        /* P1 V1_R done; S1 was V1_R's and the rope tile's other reader */
        if constexpr (has3) issueHalf(1, 2 * j + 3, rowOfId(2 * j + 3, id1));
      }
      wgmmaWait<0>();
      fenceRegs(o);
      traceAt(sp.trace, tb + 7, wt);
      /* P0 V0_R done; WG0's S0 was done before [P0] */
      if constexpr (has2) issueHalf(0, 2 * j + 2, rowOfId(2 * j + 2, id0));
      if constexpr (has3) {
        issueSFrom<kHalfL>(s, qBase, kSt1, bar1, nextPar, q8);
        traceAt(sp.trace, tb + 8, wt);
        wgmmaWait<0>();
        fenceRegs(s);
        fenceRegs(o);
      }
      traceAt(sp.trace, tb + 9, wt);
    }
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
  namedBarrier(kBarAll, 256); /* both warpgroups' sums, the last m1 and sBad */
  lA = sLA[rA] + sLB[rA];
  lB = sLA[rB] + sLB[rB];
  const float mA = sM[rA], mB = sM[rB];
  RowWork rwE = rw;
  rwE.n = *sSplits;
  mlaEpilogue(p, sp, rwE, t, split, g0, nu, w, lane, rA, rB, cq, nBlocks > 0 && *reinterpret_cast<volatile int*>(sBad),
              o, lA, lB, mA, mB);
}

}  // namespace mla90
}  // namespace cpcl

#endif /* CPCL_CUDA_MLA_SM90_HALVES_CUH_ */
