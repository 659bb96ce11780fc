/*
 * attn_mma.cuh -- tensor-core paged prefix attention for GQA decode: qType == kvType in
 * {bf16, fp16}, headDimQk == headDimVo == D in {64, 128}, separate V. Same grid, rows and
 * batch-invariant splits as attn_split.cuh (attn_common.cuh); other shapes take that kernel.
 * Instantiated per (dtype, D) in inst/attn_mma_*.cu; attn.cu dispatches.
 *
 * The up to kUC = 16 gathered heads of a CTA (one row t, one KV head) are the M = 16 rows of
 * mma.sync.m16n8k16 (fp32 accumulate). Keys stream in tiles of kTile = 64 through kStages (2 or 3)
 * cp.async stages (rows padded by 16 bytes: ldmatrix is conflict-free); warp w takes keys
 * [16 w, 16 w + 16) of every tile and keeps its own online-softmax state:
 *   S[16 x 16]  = Q[16 x D] . K^T          D/16 k-steps x 2 n-tiles, K by ldmatrix
 *   m' = max(m, rowmax S * c), c = smScale * log2 e;  P = 2^(S c - m')  (quad shuffles)
 *   O[16 x D]  = O 2^(m - m') + P . V       P re-packed as the A fragment, V by ldmatrix.trans
 * Fragment layouts (PTX m16n8k16): A reg i: row g + 8 (i & 1), cols 2 q + 8 (i >> 1);
 * B reg i: k = 2 q + 8 i, n = g; C: c0 c1 row g, c2 c3 row g + 8, cols 2 q (+1); g = lane / 4,
 * q = lane % 4. At the end the 4 warps' (m, l, O) merge through shared memory.
 */
#ifndef CPCL_CUDA_ATTN_MMA_CUH_
#define CPCL_CUDA_ATTN_MMA_CUH_

#include <cuda_runtime.h>
#include <math.h>

#include "attn_common.cuh"
#include "attn_instances.cuh"
#include "launch.cuh"
#include "mma_sync.cuh"

namespace cpcl {

constexpr int kMmaThreads = 128, kMmaWarps = 4, kTile = 64, kHeads = kCtaHeads;

/* ---- pieces both tensor-core bodies use ---- */

/* Q as A fragments, once, for rows (heads) gFirst .. gFirst + nRows - 1 of row t; rows past nRows
 * are zero (their output is never written). */
template <typename T, int KS>
__device__ __forceinline__ void loadQFrags(const cpclAttnParams_t& p, int t, int gFirst, int nRows, int gr, int cq,
                                           uint32_t (&qa)[KS][4]) {
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int row = gr + (i & 1) * 8, g = nRows > 0 ? gFirst + min(row, nRows - 1) : gFirst; /* any valid head */
    const T* qr = attnQ<T>(p, g, t);
#pragma unroll
    for (int ks = 0; ks < KS; ks++)
      qa[ks][i] = row < nRows ? *reinterpret_cast<const uint32_t*>(qr + ks * 16 + cq + (i >> 1) * 8) : 0u;
  }
}

/* K and V tiles of kTile keys into a cp.async stage [K rows | V rows], rows padded by 16 bytes.
 * Thread tid copies chunk c = tid % kChunks of rows tid / kChunks + r * kRowsPer. All of its
 * rows' slots are looked up first, so the block-table loads are in flight together instead of one
 * round trip per row; consecutive lanes then copy consecutive 16 B. Keys past kEnd are zeros. */
template <typename T, int D>
struct KvTileLoader {
  static constexpr int kRowB = D * 2 + 16, kChunks = D / 8, kRowsPer = kMmaThreads / kChunks,
                       kRowsEach = kTile / kRowsPer;
  PageMap pm;
  const T *kc, *vc;
  int hkv, kh;
  int64_t kEnd;
  __device__ __forceinline__ KvTileLoader(const cpclAttnParams_t& p, const CtaWork& w)
      : pm(p.blockTable + (int64_t)w.s * p.maxPagesPerSeq, p.pageSize),
        kc(static_cast<const T*>(p.kCache)),
        vc(static_cast<const T*>(p.vCache)),
        hkv(p.numKvHeads),
        kh(w.kh),
        kEnd(w.kEnd) {}
  __device__ __forceinline__ void operator()(int64_t k0, unsigned char* st) const {
    const int tid = threadIdx.x, c = tid % kChunks, r0 = tid / kChunks;
    int64_t off[kRowsEach];
#pragma unroll
    for (int i = 0; i < kRowsEach; i++) {
      const int64_t key = k0 + r0 + i * kRowsPer;
      off[i] = key < kEnd ? (pm.slot(key) * hkv + kh) * D + c * 8 : -1;
    }
#pragma unroll
    for (int i = 0; i < kRowsEach; i++) {
      const int r = r0 + i * kRowsPer;
      const bool valid = off[i] >= 0;
      cpAsync16Zfill(st + r * kRowB + c * 16, kc + (valid ? off[i] : 0), valid);
      cpAsync16Zfill(st + kTile * kRowB + r * kRowB + c * 16, vc + (valid ? off[i] : 0), valid);
    }
  }
};

/* The key loop of both bodies: tiles of [kBeg, kEnd) stream through kStages cp.async stages,
 * and perTile(it, stage) runs on tile it once it has landed. */
template <int kStages, int kStageB, class Loader, class PerTile>
__device__ __forceinline__ void forEachTile(const Loader& loadTile, int64_t kBeg, int64_t kEnd, unsigned char* smem,
                                            PerTile&& perTile) {
  const int nTiles = kEnd > kBeg ? (int)((kEnd - kBeg + kTile - 1) / kTile) : 0;
#pragma unroll
  for (int st = 0; st < kStages - 1; st++) {
    if (st < nTiles) loadTile(kBeg + (int64_t)st * kTile, smem + st * kStageB);
    cpAsyncCommit();
  }
  for (int it = 0; it < nTiles; it++) {
    cpAsyncWait<kStages - 2>();
    __syncthreads();
    const int nxt = it + kStages - 1;
    if (nxt < nTiles) loadTile(kBeg + (int64_t)nxt * kTile, smem + (nxt % kStages) * kStageB);
    cpAsyncCommit();
    perTile(it, smem + (it % kStages) * kStageB);
  }
}

/* S += Q . K^T for keys [k0, k0 + 8 N) of the stage's K rows: N n-tiles of 8 keys. */
template <typename T, int D, int N>
__device__ __forceinline__ void scoreKeys(const unsigned char* ks_, int k0, const uint32_t (&qa)[D / 16][4],
                                          float (&sc)[N][4]) {
  constexpr int kRowB = D * 2 + 16;
  const int lane = threadIdx.x & 31, j = lane >> 3;
#pragma unroll
  for (int kb = 0; kb < N / 2; kb++) {
    const unsigned char* kp = ks_ + (k0 + kb * 16 + (j >> 1) * 8 + (lane & 7)) * kRowB + (j & 1) * 16;
#pragma unroll
    for (int k = 0; k < D / 16; k++) {
      uint32_t kf[4];
      ldsm4(kf, kp + k * 32);
      Mma<T>::run(sc[2 * kb], qa[k], kf);
      Mma<T>::run(sc[2 * kb + 1], qa[k], kf + 2);
    }
  }
}

/* O += P . V for keys [k0, k0 + 8 N) of the stage's V rows, P (from onlineSoftmax) re-packed as A
 * fragments of 16 keys. */
template <typename T, int D, int N>
__device__ __forceinline__ void accumulatePV(const unsigned char* vs_, int k0, const float (&pv)[N][4],
                                             float (&o)[D / 8][4]) {
  constexpr int kRowB = D * 2 + 16;
  const int lane = threadIdx.x & 31, j = lane >> 3;
#pragma unroll
  for (int kb = 0; kb < N / 2; kb++) {
    uint32_t pa[4];
    pa[0] = Mma<T>::pack(pv[2 * kb][0], pv[2 * kb][1]);
    pa[1] = Mma<T>::pack(pv[2 * kb][2], pv[2 * kb][3]);
    pa[2] = Mma<T>::pack(pv[2 * kb + 1][0], pv[2 * kb + 1][1]);
    pa[3] = Mma<T>::pack(pv[2 * kb + 1][2], pv[2 * kb + 1][3]);
    const unsigned char* vp = vs_ + (k0 + kb * 16 + (j & 1) * 8 + (lane & 7)) * kRowB + (j >> 1) * 16;
#pragma unroll
    for (int nb = 0; nb < D / 8; nb += 2) {
      uint32_t vb[4];
      ldsm4T(vb, vp + nb * 16);
      Mma<T>::run(o[nb], pa, vb);
      Mma<T>::run(o[nb + 1], pa, vb + 2);
    }
  }
}

/* One CTA's work (a plain launch or a ticket of the fused kernel); true when it wrote out/lse. */
template <typename T, int D, int kStages>
__device__ __forceinline__ bool mmaBody(const cpclAttnParams_t& p, const CtaIdx& cta, unsigned char* smem) {
  constexpr int kRowB = D * 2 + 16, kStageB = 2 * kTile * kRowB, KS = D / 16, NT = D / 8;
  CtaWork w;
  if (!ctaWork(p, cta, w)) return false;
  const int t = w.t, g0 = w.g0, nu = w.nu, split = w.split;
  const RowSplit rs = w.rs;
  const int64_t kBeg = w.kBeg, kEnd = w.kEnd;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gr = lane >> 2, cq = (lane & 3) * 2;

  uint32_t qa[KS][4];
  loadQFrags<T, KS>(p, t, g0, nu, gr, cq, qa);
  const KvTileLoader<T, D> loadTile(p, w);

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[NT][4];
#pragma unroll
  for (int n = 0; n < NT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  const float c = p.smScale * kLog2e;
  forEachTile<kStages, kStageB>(loadTile, kBeg, kEnd, smem, [&](int it, const unsigned char* ks_) {
    const int kw = warp * 16; /* this warp's 16 keys of the tile */
    float sc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    scoreKeys<T, D, 2>(ks_, kw, qa, sc);
    onlineSoftmax<2, NT>(sc, kBeg + (int64_t)it * kTile + kw, kEnd, c, cq, m, l, o);
    accumulatePV<T, D, 2>(ks_ + kTile * kRowB, kw, sc, o);
  });
  cpAsyncWait<0>();
  __syncthreads();

  /* merge the 4 warps' states: smem mW[4][16], lW[4][16], oW[4][16][D + 4] */
  float* mW = reinterpret_cast<float*>(smem);
  float* lW = mW + kMmaWarps * kHeads;
  float* oW = lW + kMmaWarps * kHeads;
  constexpr int oStride = D + 4;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    if ((lane & 3) == 0) {
      mW[warp * kHeads + gr + r * 8] = m[r];
      lW[warp * kHeads + gr + r * 8] = l[r];
    }
#pragma unroll
    for (int n = 0; n < NT; n++) {
      float* dst = oW + (warp * kHeads + gr + r * 8) * oStride + n * 8 + cq;
      dst[0] = o[n][r * 2];
      dst[1] = o[n][r * 2 + 1];
    }
  }
  __syncthreads();
  /* per row: each warp's weight 2^(m_w - m) / l and the row's LSE, once (16 threads) */
  if (tid < kHeads) {
    float mg = -INFINITY, lsum = 0.f;
#pragma unroll
    for (int w = 0; w < kMmaWarps; w++) mg = fmaxf(mg, mW[w * kHeads + tid]);
#pragma unroll
    for (int w = 0; w < kMmaWarps; w++) {
      const float mw = mW[w * kHeads + tid];
      mW[w * kHeads + tid] = (mg == -INFINITY || mw == -INFINITY) ? 0.f : exp2f(mw - mg); /* now a scale */
      lsum += mW[w * kHeads + tid] * lW[w * kHeads + tid];
    }
#pragma unroll
    for (int w = 0; w < kMmaWarps; w++) mW[w * kHeads + tid] = lsum > 0.f ? mW[w * kHeads + tid] / lsum : 0.f;
    lW[tid] = lsum > 0.f ? mg + log2f(lsum) : -INFINITY; /* row LSE (base 2); warp 0's l is no longer needed */
  }
  __syncthreads();
  const int T_ = p.numTokens;
  for (int idx = tid; idx < kHeads * D; idx += kMmaThreads) {
    const int row = idx / D, d = idx % D;
    if (row >= nu) continue;
    float val = 0.f;
#pragma unroll
    for (int w = 0; w < kMmaWarps; w++) val += mW[w * kHeads + row] * oW[(w * kHeads + row) * oStride + d];
    const float lse2 = lW[row];
    const int g = g0 + row;
    if (rs.n == 1) {
      attnOut<T>(p, g, t)[d] = fromF<T>(val);
      float* lse = d == 0 ? attnLse(p, g, t) : nullptr;
      if (lse) *lse = p.lseBase2 ? lse2 : lse2 * kLn2;
    } else {
      const int hi = g - p.headBegin;
      static_cast<float*>(p.workspace)[(((int64_t)split * T_ + t) * p.numHeads + hi) * D + d] = val;
      if (d == 0) wsLseOf(p)[((int64_t)split * T_ + t) * p.numHeads + hi] = lse2;
    }
  }
  if (rs.n > 1) return mergeSplitsIfLast<T>(p, w);
  return true;
}

/* The wide body, for GQA groups of more than 16 heads (after the DCP gather, e.g. 64 heads on one
 * KV head): up to kWideHeads = 64 heads of one (row, KV head, split) in one CTA, warp w taking
 * heads [16 w, 16 w + 16) over every key of each tile, so each K/V tile is loaded once for all
 * of them (the 16-head body loads it once per 16 heads). Per tile and warp:
 *   S[16 x 64] = Q_w . K^T: 4 key blocks x 2 n-tiles x D/16 k-steps;  online softmax per row;
 *   O[16 x D] += P . V: 4 key blocks of 16 as the A fragment.
 * No cross-warp merge: each warp owns its heads. Fragment layouts as in mmaBody. */
template <typename T, int D, int kStages>
__device__ __forceinline__ bool mmaWideBody(const cpclAttnParams_t& p, const CtaIdx& cta, unsigned char* smem) {
  constexpr int kRowB = D * 2 + 16, kStageB = 2 * kTile * kRowB, KS = D / 16, NT = D / 8, NB = kTile / 16;
  CtaWork w;
  if (!ctaWork(p, cta, w, kWideHeads)) return false;
  const int t = w.t, g0 = w.g0, split = w.split;
  const int64_t kBeg = w.kBeg, kEnd = w.kEnd;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gr = lane >> 2, cq = (lane & 3) * 2;
  const int nuW = max(0, min(16, w.nu - warp * 16)); /* this warp's heads; 0: it only helps load */
  const int gw = g0 + warp * 16;

  uint32_t qa[KS][4];
  loadQFrags<T, KS>(p, t, gw, nuW, gr, cq, qa);
  const KvTileLoader<T, D> loadTile(p, w);

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[NT][4];
#pragma unroll
  for (int n = 0; n < NT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  const float c = p.smScale * kLog2e;
  forEachTile<kStages, kStageB>(loadTile, kBeg, kEnd, smem, [&](int it, const unsigned char* ks_) {
    float sc[2 * NB][4];
#pragma unroll
    for (int n = 0; n < 2 * NB; n++) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
    scoreKeys<T, D, 2 * NB>(ks_, 0, qa, sc); /* every key of the tile */
    onlineSoftmax<2 * NB, NT>(sc, kBeg + (int64_t)it * kTile, kEnd, c, cq, m, l, o);
    accumulatePV<T, D, 2 * NB>(ks_ + kTile * kRowB, 0, sc, o);
  });
  cpAsyncWait<0>();
  __syncthreads();

  /* each warp owns its heads: finish rows gr and gr + 8 directly */
  const int T_ = p.numTokens;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int row = gr + r * 8;
    if (row >= nuW) continue;
    const int g = gw + row;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    const float lse2 = l[r] > 0.f ? m[r] + log2f(l[r]) : -INFINITY;
    if (w.rs.n == 1) {
      T* out = attnOut<T>(p, g, t);
#pragma unroll
      for (int n = 0; n < NT; n++) {
        out[n * 8 + cq] = fromF<T>(o[n][r * 2] * inv);
        out[n * 8 + cq + 1] = fromF<T>(o[n][r * 2 + 1] * inv);
      }
      float* lse = (lane & 3) == 0 ? attnLse(p, g, t) : nullptr;
      if (lse) *lse = p.lseBase2 ? lse2 : lse2 * kLn2;
    } else {
      const int hi = g - p.headBegin;
      float* ws = static_cast<float*>(p.workspace) + (((int64_t)split * T_ + t) * p.numHeads + hi) * D;
#pragma unroll
      for (int n = 0; n < NT; n++) {
        ws[n * 8 + cq] = o[n][r * 2] * inv;
        ws[n * 8 + cq + 1] = o[n][r * 2 + 1] * inv;
      }
      if ((lane & 3) == 0) wsLseOf(p)[((int64_t)split * T_ + t) * p.numHeads + hi] = lse2;
    }
  }
  if (w.rs.n > 1) return mergeSplitsIfLast<T, kWideHeads>(p, w);
  return true;
}

template <typename T, int D, int kStages>
struct MmaWideBody {
  using OutT = T;
  static constexpr int kThreads = kMmaThreads, kHeads = kWideHeads;
  static size_t smemBytes(const cpclAttnParams_t*) { return (size_t)kStages * 2 * kTile * (D * 2 + 16); }
  static __device__ __forceinline__ bool run(const cpclAttnParams_t& p, const CtaIdx& c, unsigned char* smem) {
    return mmaWideBody<T, D, kStages>(p, c, smem);
  }
};

template <typename T, int D, int kStages>
struct MmaBody {
  using OutT = T;
  static constexpr int kThreads = kMmaThreads, kHeads = kCtaHeads;
  static size_t smemBytes(const cpclAttnParams_t*) { return (size_t)kStages * 2 * kTile * (D * 2 + 16); }
  static __device__ __forceinline__ bool run(const cpclAttnParams_t& p, const CtaIdx& c, unsigned char* smem) {
    return mmaBody<T, D, kStages>(p, c, smem);
  }
};

template <typename T, int D>
int launchMma(const cpclAttnParams_t* p, const cpclFusedParams_t* f, cudaStream_t stream) {
  /* Groups of more than 16 heads: the wide body loads each K/V tile once for up to 64 heads
   * (1.3-1.8x at batch 8-64 on 64 heads, measured); with few rows its fewer, longer CTAs lose
   * (batch 1: 53 vs 33 us at 8k), so plans for fewer than 8 rows keep the 16-head body
   * (narrowOnly, set per plan: a row's result never depends on its batch). */
  if (attnHeadsPerKv(p) > kCtaHeads && !p->narrowOnly) return launchBody<MmaWideBody<T, D, 2>>(p, f, stream);
  /* 2 stages (70 KB, 3 CTAs an SM) beat 3 (104 KB, 2 CTAs) at every measured shape */
  return p->pipelineStages == 3 ? launchBody<MmaBody<T, D, 3>>(p, f, stream)
                                : launchBody<MmaBody<T, D, 2>>(p, f, stream);
}

}  // namespace cpcl

#endif /* CPCL_CUDA_ATTN_MMA_CUH_ */
