/*
 * attn_split.cuh -- paged prefix attention with LSE (flash-decoding) on CUDA cores, the CUDA twin
 * of kernels/host/attn_host.c; any dtype pair and head dimension. Instantiated per (query, KV)
 * dtype pair in inst/attn_split_*.cu; attn.cu dispatches.
 *
 * Grid: x = (row t, KV head kh), y = chunk of kUC heads of one GQA group, z = KV split.
 * A CTA streams keys [kBeg, kEnd) of row t's local prefix (length localLen(cpRank, pos + 1),
 * pos = seqLens[s] - n + j) for up to kUC gathered heads that share KV head kh, so each K/V byte
 * it loads serves all of them. Tiles of kBK keys are copied to shared memory with cp.async
 * (16-byte chunks, two stages), rows padded by 16 bytes so a warp reading one row per lane is
 * conflict-free.
 *
 *   warp w owns units u = w + kWarps * i (i < kUPW); lane = key in the tile for scores and
 *   softmax, lane = kDpl consecutive output dims for P.V
 *   s = (q . k) * smScale * log2 e;  m' = max(m, max s);  l' = l 2^(m-m') + sum 2^(s-m')
 *
 * Sparse attention (p.sparseIdx): the CTA streams keys [kBeg, kEnd) of the row's compacted list
 * instead, key k being local key sparseIdx[t][k]; the split, softmax and merge are the same (the
 * list's count plays the prefix length).
 *
 * Splits (batch-invariant: a row's split depends only on its own length):
 *   n = min(maxSplits, ceil(len / chunkMin)); chunk = roundup(ceil(len / n), kBK);
 *   n = ceil(len / chunk). One split: the CTA writes out/lse directly. Several: normalised
 *   partials (fp32) and base-2 LSEs go to the workspace
 *     wsO [maxSplits][numTokens][numHeads][Dv], wsLse [maxSplits][numTokens][numHeads]
 *   and the CTA that finishes a row's heads last merges them (fp32, split order), counted by
 *   p.splitCounters (attn_common.cuh): no second launch.
 */
#ifndef CPCL_CUDA_ATTN_SPLIT_CUH_
#define CPCL_CUDA_ATTN_SPLIT_CUH_

#include <cuda_runtime.h>
#include <math.h>

#include "attn_common.cuh"
#include "attn_instances.cuh"
#include "launch.cuh"

namespace cpcl {

constexpr int kThreads = 128, kWarps = kThreads / 32, kUC = kCtaHeads, kUPW = kUC / kWarps;

/* One CTA's work (a plain launch or a ticket of the fused kernel); true when it wrote out/lse. */
template <typename TQ, typename TKV, int kDpl>
__device__ __forceinline__ bool splitBody(const cpclAttnParams_t& p, const CtaIdx& cta, unsigned char* smem) {
  const int Dqk = p.headDimQk, Dv = p.headDimVo;
  CtaWork w;
  if (!ctaWork(p, cta, w)) return false;
  const int t = w.t, kh = w.kh, s = w.s, g0 = w.g0, nu = w.nu, split = w.split;
  const RowSplit rs = w.rs;
  const int64_t kBeg = w.kBeg, kEnd = w.kEnd;

  const int kRowB = Dqk * (int)sizeof(TKV) + 16, vRowB = p.latentKv ? 0 : Dv * (int)sizeof(TKV) + 16;
  const int stageB = kBK * (kRowB + vRowB);
  unsigned char* stage0 = smem;
  float* qs = reinterpret_cast<float*>(smem + 2 * stageB); /* [kUC][Dqk], pre-scaled */
  float* ps = qs + kUC * Dqk;                              /* [kUC][kBK] probabilities */
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

  const float qscale = p.smScale * kLog2e;
  for (int i = tid; i < kUC * Dqk; i += kThreads) {
    const int u = i / Dqk, d = i % Dqk, g = g0 + u;
    qs[i] = u < nu ? toF<TQ>(attnQ<TQ>(p, g, t)[d]) * qscale : 0.f;
  }

  const PageMap pm(p.blockTable + (int64_t)s * p.maxPagesPerSeq, p.pageSize);
  const int32_t* sparse = p.sparseIdx ? sparseRow(p, t) : nullptr; /* key k is local key sparse[k] */
  const int Hkv = p.numKvHeads;
  const int chunksK = Dqk * (int)sizeof(TKV) / 16, chunksV = p.latentKv ? 0 : Dv * (int)sizeof(TKV) / 16;
  const unsigned char* kc = static_cast<const unsigned char*>(p.kCache);
  const unsigned char* vc = static_cast<const unsigned char*>(p.vCache);
  auto loadTile = [&](int64_t k0, unsigned char* st) {
    /* a warp's lanes take consecutive chunks of one row; the slot is looked up once per row */
    const int per = chunksK + chunksV;
    for (int i = tid; i < kBK * per; i += kThreads) {
      const int row = i / per, c = i - row * per;
      const int64_t key = k0 + row;
      if (key >= kEnd) continue; /* masked below: never read */
      const int64_t slot = pm.slot(sparse ? (int64_t)sparse[key] : key);
      if (c < chunksK)
        cpAsync16(st + row * kRowB + c * 16, kc + ((slot * Hkv + kh) * Dqk) * (int64_t)sizeof(TKV) + c * 16);
      else
        cpAsync16(st + kBK * kRowB + row * vRowB + (c - chunksK) * 16,
                  vc + ((slot * Hkv + kh) * Dv) * (int64_t)sizeof(TKV) + (c - chunksK) * 16);
    }
    cpAsyncCommit();
  };

  float m[kUPW], l[kUPW], acc[kUPW][kDpl];
#pragma unroll
  for (int i = 0; i < kUPW; i++) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int j = 0; j < kDpl; j++) acc[i][j] = 0.f;
  }
  const int nTiles = kEnd > kBeg ? (int)((kEnd - kBeg + kBK - 1) / kBK) : 0;
  if (nTiles > 0) loadTile(kBeg, stage0);
  for (int it = 0; it < nTiles; it++) {
    if (it + 1 < nTiles) {
      loadTile(kBeg + (int64_t)(it + 1) * kBK, stage0 + ((it + 1) & 1) * stageB);
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const unsigned char* st = stage0 + (it & 1) * stageB;
    const int nk = (int)min((int64_t)kBK, kEnd - (kBeg + (int64_t)it * kBK));

    /* scores: lane = key, this warp's units */
    float sc[kUPW];
#pragma unroll
    for (int i = 0; i < kUPW; i++) sc[i] = 0.f;
    if (lane < nk) {
      const TKV* krow = reinterpret_cast<const TKV*>(st + lane * kRowB);
      for (int d = 0; d < Dqk; d += 8) {
        float kf[8];
        load8<TKV>(krow + d, kf);
#pragma unroll
        for (int i = 0; i < kUPW; i++) {
          const float4 qa = *reinterpret_cast<const float4*>(qs + (warp + kWarps * i) * Dqk + d);
          const float4 qb = *reinterpret_cast<const float4*>(qs + (warp + kWarps * i) * Dqk + d + 4);
          sc[i] += qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] + qb.y * kf[5] +
                   qb.z * kf[6] + qb.w * kf[7];
        }
      }
    }
    /* online softmax, warp-uniform per unit */
#pragma unroll
    for (int i = 0; i < kUPW; i++) {
      const int u = warp + kWarps * i;
      const float sv = (lane < nk && u < nu) ? sc[i] : -INFINITY;
      const float mnew = fmaxf(m[i], warpMax(sv));
      const float alpha = m[i] == -INFINITY ? 0.f : exp2f(m[i] - mnew);
      const float pk = sv == -INFINITY ? 0.f : exp2f(sv - mnew);
      l[i] = l[i] * alpha + warpSum(pk);
      m[i] = mnew;
      ps[u * kBK + lane] = pk;
#pragma unroll
      for (int j = 0; j < kDpl; j++) acc[i][j] *= alpha;
    }
    __syncwarp();
    /* P.V: lane owns dims [lane * kDpl, lane * kDpl + kDpl) */
    const int vStride = p.latentKv ? kRowB : vRowB;
    const unsigned char* vbase = p.latentKv ? st : st + kBK * kRowB;
    const int d0 = lane * kDpl;
    for (int k = 0; k < nk; k++) {
      const TKV* vrow = reinterpret_cast<const TKV*>(vbase + k * vStride) + d0;
      float vv[kDpl];
#pragma unroll
      for (int j = 0; j < kDpl; j += 2) {
        float2 v2 = d0 + j < Dv ? load2<TKV>(vrow + j) : make_float2(0.f, 0.f);
        vv[j] = v2.x;
        vv[j + 1] = v2.y;
      }
#pragma unroll
      for (int i = 0; i < kUPW; i++) {
        const float pk = ps[(warp + kWarps * i) * kBK + k];
#pragma unroll
        for (int j = 0; j < kDpl; j++) acc[i][j] += pk * vv[j];
      }
    }
    __syncthreads(); /* this stage is refilled two tiles on */
  }

  const int T = p.numTokens;
#pragma unroll
  for (int i = 0; i < kUPW; i++) {
    const int u = warp + kWarps * i;
    if (u >= nu) continue;
    const int g = g0 + u, d0 = lane * kDpl;
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
    const float lse2 = l[i] > 0.f ? m[i] + log2f(l[i]) : -INFINITY;
    if (rs.n == 1) {
      TQ* o = attnOut<TQ>(p, g, t);
#pragma unroll
      for (int j = 0; j < kDpl; j++)
        if (d0 + j < Dv) o[d0 + j] = fromF<TQ>(acc[i][j] * inv);
      float* lse = lane == 0 ? attnLse(p, g, t) : nullptr;
      if (lse) *lse = p.lseBase2 ? lse2 : lse2 * kLn2;
    } else {
      const int hi = g - p.headBegin;
      float* wsO = static_cast<float*>(p.workspace) + (((int64_t)split * T + t) * p.numHeads + hi) * Dv;
#pragma unroll
      for (int j = 0; j < kDpl; j++)
        if (d0 + j < Dv) wsO[d0 + j] = acc[i][j] * inv;
      if (lane == 0) wsLseOf(p)[((int64_t)split * T + t) * p.numHeads + hi] = lse2;
    }
  }
  if (rs.n > 1) return mergeSplitsIfLast<TQ>(p, w);
  return true;
}

template <typename TQ, typename TKV, int kDpl>
struct SplitBody {
  using OutT = TQ;
  static constexpr int kThreads = cpcl::kThreads, kHeads = kUC;
  static size_t smemBytes(const cpclAttnParams_t* p) {
    const int kRowB = p->headDimQk * (int)sizeof(TKV) + 16;
    const int vRowB = p->latentKv ? 0 : p->headDimVo * (int)sizeof(TKV) + 16;
    return 2 * (size_t)kBK * (kRowB + vRowB) + (size_t)kUC * p->headDimQk * 4 + (size_t)kUC * kBK * 4;
  }
  static __device__ __forceinline__ bool run(const cpclAttnParams_t& p, const CtaIdx& c, unsigned char* smem) {
    return splitBody<TQ, TKV, kDpl>(p, c, smem);
  }
};

/* the CUDA-core attention of one dtype pair: the head dimension picks the lane width */
template <typename TQ, typename TKV>
int launchSplit(const cpclAttnParams_t* p, const cpclFusedParams_t* f, cudaStream_t s) {
  CPCL_DISPATCH_DPL(p->headDimVo, kDpl, return launchBody<SplitBody<TQ, TKV, kDpl>>(p, f, s));
}

}  // namespace cpcl

#endif /* CPCL_CUDA_ATTN_SPLIT_CUH_ */
