/*
 * prefill_host.c -- causal prefill attention with LSE (kernels/prefill_params.h): the C
 * reference of the CUDA prefill kernel, and the CPU backend's kernel.
 *
 * Tiled as FlashAttention: for each (sequence s, KV head kh) the query rows of s and the heads
 * of kh's GQA group form "units" (row, head); a query tile is up to UNITS units (BQ = UNITS / nh
 * rows of nh heads), and it walks its keys in tiles of BK, each K/V tile converted to fp32 once
 * and used by every head of the group. Keys come from the new K/V blocks and the paged cache
 * alike; only the tile loader differs. Online softmax in base 2 (q pre-scaled by
 * smScale * log2 e):
 *
 *   S   = Q K^T                                   [units][BK], -inf where pos(key) > pos(row)
 *   m'  = max(m, max_k S);  l' = l 2^(m - m') + sum_k 2^(S - m')
 *   acc'= acc 2^(m - m') + 2^(S - m') V
 *   out = acc / l,  lse_2 = m + log2 l            (natural: lse_2 * ln 2)
 *
 * A key tile entirely after the query tile is skipped; one entirely before it needs no mask.
 * Q K^T is blocked 4 units x 16 keys and P V 2 units x 32 dims so the inner loops vectorise to
 * register tiles; exp2 is a polynomial that vectorises (libm's does not).
 *
 * cpclHostPrefillStore: the rows of a block into the cache, owned positions only.
 */
#include <math.h>
#include <string.h>

#include "dtype.h"
#include "kv_layout.h"
#include "prefill_params.h"

/* Let the AVX2 clone fuse the multiply-adds of the register tiles: -std=c11 turns GCC's
 * contraction off, and FMA is 15-20% of this kernel's speed. clang contracts by default. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

#define UNITS 64 /* (row, head) units per query tile */
#define BK 64    /* keys per tile */
#define UB 4     /* units per Q K^T register tile */
#define KB 16    /* keys per Q K^T register tile */
#define DB 32    /* dims per P V register tile */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

static inline int roundUp(int x, int m) { return (x + m - 1) / m * m; }

/* floats of one region, kept a multiple of 16 so every region starts 64-byte aligned */
static size_t regions(int Dqk, int Dv, size_t* off) {
  const size_t Dqkp = roundUp(Dqk, DB), Dvp = roundUp(Dv, DB);
  const size_t sz[] = {UNITS * Dqkp, BK * Dqkp, Dqkp * BK, BK * Dvp, UNITS * Dvp, UNITS * BK, UNITS, UNITS, UNITS, BK};
  size_t n = 0;
  for (int i = 0; i < 10; i++) {
    off[i] = n;
    n += (sz[i] + 15) / 16 * 16;
  }
  return n;
}

size_t cpclHostPrefillWorkspaceBytes(int headDimQk, int headDimVo) {
  size_t off[10];
  return regions(headDimQk, headDimVo, off) * sizeof(float) + 64;
}

/* the helpers are inlined into each clone of cpclHostPrefill, so they get its instruction set */
#define INLINE static inline __attribute__((always_inline))

/* 2^x for x <= 0 (0 below -126, so -inf gives 0): round-to-nearest split x = n + f, |f| <= 1/2,
 * 2^f by its degree-6 Taylor polynomial (relative error 1.2e-7), 2^n through the exponent bits. */
INLINE float fexp2(float x) {
  const float xc = x > -126.f ? x : -126.f;
  const float n = (xc + 12582912.f) - 12582912.f; /* 1.5 * 2^23: rounds to an integer */
  const float f = xc - n;
  const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, 4);
  float y = 1.5403530393381606e-4f;
  y = y * f + 1.3333558146428443e-3f;
  y = y * f + 9.6181291076284772e-3f;
  y = y * f + 5.5504108664821580e-2f;
  y = y * f + 2.4022650695910071e-1f;
  y = y * f + 6.9314718055994531e-1f;
  y = y * f + 1.f;
  return x > -126.f ? y * scale : 0.f;
}

typedef struct {
  int Dqk, Dv, Dqkp, Dvp;
  float* qf;  /* [UNITS][Dqkp] */
  float* kr;  /* [BK][Dqkp] K rows (MLA: also V) */
  float* kt;  /* [Dqkp][BK] K transposed */
  float* vf;  /* [BK][Dvp] */
  float* acc; /* [UNITS][Dvp] */
  float* sc;  /* [UNITS][BK] scores, then probabilities */
  float* m;
  float* l;
  int32_t* qpos; /* [UNITS] */
  int32_t* kpos; /* [BK] */
  const float* vrow;
  int vstride;
} tile_t;

/* eight floats (GCC/clang vector extension: 256-bit registers in the AVX2 clone, pairs of
 * 128-bit ones in the baseline); aligned(4) makes a dereference an unaligned load */
typedef float v8 __attribute__((vector_size(32), aligned(4)));

/* S = Q K^T for nuPad units (a multiple of UB) and keys [0, nk rounded up to KB) */
INLINE void scores(const tile_t* w, int nuPad, int nk) {
  const int Dqk = w->Dqk, Dqkp = w->Dqkp;
  for (int u0 = 0; u0 < nuPad; u0 += UB)
    for (int k0 = 0; k0 < nk; k0 += KB) {
      v8 a[UB][KB / 8];
      for (int uu = 0; uu < UB; uu++)
        for (int j = 0; j < KB / 8; j++) a[uu][j] = (v8){0};
      const float* q0 = w->qf + (size_t)u0 * Dqkp;
      for (int d = 0; d < Dqk; d++) {
        const v8* kd = (const v8*)(w->kt + (size_t)d * BK + k0);
        const v8 k0v = kd[0], k1v = kd[1];
        for (int uu = 0; uu < UB; uu++) {
          const float qv = q0[(size_t)uu * Dqkp + d];
          a[uu][0] += qv * k0v;
          a[uu][1] += qv * k1v;
        }
      }
      for (int uu = 0; uu < UB; uu++)
        for (int j = 0; j < KB / 8; j++) *(v8*)(w->sc + (size_t)(u0 + uu) * BK + k0 + 8 * j) = a[uu][j];
    }
}

/* acc += P V for nuPad units over keys [0, nk) */
INLINE void accumulate(const tile_t* w, int nuPad, int nk) {
  const int Dvp = w->Dvp, vs = w->vstride;
  for (int u0 = 0; u0 < nuPad; u0 += 2)
    for (int d0 = 0; d0 < Dvp; d0 += DB) {
      v8* a0 = (v8*)(w->acc + (size_t)u0 * Dvp + d0);
      v8* a1 = (v8*)(w->acc + (size_t)(u0 + 1) * Dvp + d0);
      v8 x[2][DB / 8];
      for (int j = 0; j < DB / 8; j++) {
        x[0][j] = a0[j];
        x[1][j] = a1[j];
      }
      const float* p0 = w->sc + (size_t)u0 * BK;
      const float* p1 = p0 + BK;
      for (int k = 0; k < nk; k++) {
        const v8* vk = (const v8*)(w->vrow + (size_t)k * vs + d0);
        const float e0 = p0[k], e1 = p1[k];
        for (int j = 0; j < DB / 8; j++) {
          const v8 vv = vk[j];
          x[0][j] += e0 * vv;
          x[1][j] += e1 * vv;
        }
      }
      for (int j = 0; j < DB / 8; j++) {
        a0[j] = x[0][j];
        a1[j] = x[1][j];
      }
    }
}

/* one key tile (kr/kt/vf/kpos filled for nk keys) against the query tile's nu units */
INLINE void attendTile(tile_t* w, int nu, int nuPad, int nk, int masked) {
  scores(w, nuPad, nk);
  for (int u = 0; u < nuPad; u++) {
    float* restrict su = w->sc + (size_t)u * BK;
    if (u >= nu) { /* padding units: keep their accumulators finite and unused */
      for (int k = 0; k < nk; k++) su[k] = 0.f;
      continue;
    }
    const int32_t qp = w->qpos[u];
    float mb = -INFINITY;
    for (int k = 0; k < nk; k++) {
      const float s = masked && w->kpos[k] > qp ? -INFINITY : su[k];
      su[k] = s;
      mb = s > mb ? s : mb;
    }
    if (mb == -INFINITY) { /* no key of this tile is visible to the unit */
      for (int k = 0; k < nk; k++) su[k] = 0.f;
      continue;
    }
    const float mold = w->m[u], mnew = mb > mold ? mb : mold;
    float sum = 0.f;
    for (int k = 0; k < nk; k++) {
      const float e = fexp2(su[k] - mnew);
      su[k] = e;
      sum += e;
    }
    if (mnew != mold) {
      const float alpha = fexp2(mold - mnew); /* 0 on the unit's first visible tile */
      float* restrict au = w->acc + (size_t)u * w->Dvp;
      for (int d = 0; d < w->Dvp; d++) au[d] *= alpha;
      w->l[u] *= alpha;
      w->m[u] = mnew;
    }
    w->l[u] += sum;
  }
  accumulate(w, nuPad, nk);
}

/* K (and V) rows into the tile: row k of the tile is element offset kOff[k] / vOff[k] */
INLINE void loadTile(const cpclPrefillParams_t* p, tile_t* w, const void* k, const void* v, const int64_t* kOff,
                     const int64_t* vOff, int nk) {
  for (int i = 0; i < nk; i++) {
    float* kri = w->kr + (size_t)i * w->Dqkp;
    cpclLoadRow(kri, k, kOff[i], w->Dqk, p->kvType);
    for (int d = 0; d < w->Dqk; d++) w->kt[(size_t)d * BK + i] = kri[d];
    if (!p->latentKv) cpclLoadRow(w->vf + (size_t)i * w->Dvp, v, vOff[i], w->Dv, p->kvType);
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void cpclHostPrefill(const cpclPrefillParams_t* p) {
  const int Dqk = p->headDimQk, Dv = p->headDimVo, Hkv = p->numKvHeads, G = p->groupSize, Hb = p->headsPerBlock;
  const float qscale = p->smScale * LOG2E;
  size_t off[10];
  regions(Dqk, Dv, off);
  float* base = (float*)(((uintptr_t)p->workspace + 63) & ~(uintptr_t)63);
  tile_t w = {.Dqk = Dqk,
              .Dv = Dv,
              .Dqkp = roundUp(Dqk, DB),
              .Dvp = roundUp(Dv, DB),
              .qf = base + off[0],
              .kr = base + off[1],
              .kt = base + off[2],
              .vf = base + off[3],
              .acc = base + off[4],
              .sc = base + off[5],
              .m = base + off[6],
              .l = base + off[7],
              .qpos = (int32_t*)(base + off[8]),
              .kpos = (int32_t*)(base + off[9])};
  w.vrow = p->latentKv ? w.kr : w.vf;
  w.vstride = p->latentKv ? w.Dqkp : w.Dvp;
  /* padding columns are read by the register tiles: keep them zero, never NaN */
  memset(w.qf, 0, sizeof(float) * UNITS * w.Dqkp);
  memset(w.kr, 0, sizeof(float) * BK * w.Dqkp);
  memset(w.kt, 0, sizeof(float) * BK * w.Dqkp);
  memset(w.vf, 0, sizeof(float) * BK * w.Dvp);
  int64_t kOff[BK], vOff[BK];
  const int headEnd = p->headBegin + p->numHeads;
  const int64_t kRow = (int64_t)Hkv * Dqk, vRow = (int64_t)Hkv * Dv;

  for (int s = 0; s < p->numSeqs; s++) {
    const int r0 = p->queryStart[s], r1 = p->queryStart[s + 1];
    const int64_t nLocal = p->cacheLens ? cpclKvLocalLenOf(p->cacheLens[s], p->cpSize, p->cpRank, p->interleave) : 0;
    const int32_t* bt = p->blockTable ? p->blockTable + (int64_t)s * p->maxPagesPerSeq : NULL;
    const int64_t WI = (int64_t)p->cpSize * p->interleave;
    for (int kh = p->headBegin / G; r1 > r0 && kh <= (headEnd - 1) / G; kh++) {
      const int gBegin = kh * G > p->headBegin ? kh * G : p->headBegin;
      const int gEnd = (kh + 1) * G < headEnd ? (kh + 1) * G : headEnd;
      const int hc = gEnd - gBegin < UNITS ? gEnd - gBegin : UNITS;
      for (int h0 = gBegin; h0 < gEnd; h0 += hc) {
        const int nh = gEnd - h0 < hc ? gEnd - h0 : hc, bq = UNITS / nh;
        for (int t0 = r0; t0 < r1; t0 += bq) {
          const int nr = r1 - t0 < bq ? r1 - t0 : bq, nu = nr * nh, nuPad = roundUp(nu, UB);
          int32_t qmin = INT32_MAX, qmax = INT32_MIN;
          for (int u = 0; u < nu; u++) {
            const int t = t0 + u / nh, g = h0 + u % nh;
            float* qu = w.qf + (size_t)u * w.Dqkp;
            cpclLoadRow(qu, p->q, (g / Hb) * p->qBlockStride + t * p->qTokenStride + (int64_t)(g % Hb) * Dqk, Dqk,
                        p->qType);
            for (int d = 0; d < Dqk; d++) qu[d] *= qscale;
            w.qpos[u] = p->queryPos[t];
            qmin = w.qpos[u] < qmin ? w.qpos[u] : qmin;
            qmax = w.qpos[u] > qmax ? w.qpos[u] : qmax;
            w.m[u] = -INFINITY;
            w.l[u] = 0.f;
            memset(w.acc + (size_t)u * w.Dvp, 0, sizeof(float) * w.Dvp);
          }
          for (int u = nu; u < nuPad; u++) {
            memset(w.qf + (size_t)u * w.Dqkp, 0, sizeof(float) * Dqk);
            memset(w.acc + (size_t)u * w.Dvp, 0, sizeof(float) * w.Dvp);
          }

          /* (b) the cached shard: positions increase with the local index */
          for (int64_t i0 = 0; i0 < nLocal; i0 += BK) {
            const int nk = nLocal - i0 < BK ? (int)(nLocal - i0) : BK;
            int32_t kmin = INT32_MAX, kmax = INT32_MIN;
            for (int k = 0; k < nk; k++) {
              const int64_t i = i0 + k, slot = (int64_t)bt[i / p->pageSize] * p->pageSize + i % p->pageSize;
              const int32_t pos =
                  (int32_t)((i / p->interleave) * WI + (int64_t)p->cpRank * p->interleave + i % p->interleave);
              w.kpos[k] = pos;
              kmin = pos < kmin ? pos : kmin;
              kmax = pos > kmax ? pos : kmax;
              kOff[k] = slot * kRow + (int64_t)kh * Dqk;
              vOff[k] = slot * vRow + (int64_t)kh * Dv;
            }
            if (kmin > qmax) continue; /* all after the tile's last row */
            loadTile(p, &w, p->kCache, p->vCache, kOff, vOff, nk);
            attendTile(&w, nu, nuPad, nk, kmax > qmin);
          }

          /* (a) the new K/V blocks */
          for (int b = 0; b < p->numKvBlocks; b++) {
            const cpclPrefillKvBlock_t* kb = &p->kv[b];
            const int k0 = kb->rowStart[s], k1 = kb->rowStart[s + 1];
            for (int j0 = k0; j0 < k1; j0 += BK) {
              const int nk = k1 - j0 < BK ? k1 - j0 : BK;
              int32_t kmin = INT32_MAX, kmax = INT32_MIN;
              for (int k = 0; k < nk; k++) {
                const int32_t pos = kb->pos[j0 + k];
                w.kpos[k] = pos;
                kmin = pos < kmin ? pos : kmin;
                kmax = pos > kmax ? pos : kmax;
                kOff[k] = (int64_t)(j0 + k) * kRow + (int64_t)kh * Dqk;
                vOff[k] = (int64_t)(j0 + k) * vRow + (int64_t)kh * Dv;
              }
              if (kmin > qmax) continue; /* all after the tile's last row */
              loadTile(p, &w, kb->k, kb->v, kOff, vOff, nk);
              attendTile(&w, nu, nuPad, nk, kmax > qmin);
            }
          }

          for (int u = 0; u < nu; u++) {
            const int t = t0 + u / nh, g = h0 + u % nh;
            float* au = w.acc + (size_t)u * w.Dvp;
            float lse2 = -INFINITY;
            if (w.l[u] > 0.f) {
              const float inv = 1.f / w.l[u];
              for (int d = 0; d < Dv; d++) au[d] *= inv;
              lse2 = w.m[u] + log2f(w.l[u]);
            } else {
              memset(au, 0, sizeof(float) * Dv);
            }
            cpclStoreRow(p->out, (g / Hb) * p->oBlockStride + t * p->oTokenStride + (int64_t)(g % Hb) * Dv, au, Dv,
                         p->outType);
            if (p->lse)
              p->lse[(g / Hb) * p->lseBlockStride + t * p->lseTokenStride + g % Hb] = p->lseBase2 ? lse2 : lse2 * LN2;
          }
          if (p->progress) p->progress(p->progressCtx);
        }
      }
    }
  }
  if (p->storeK)
    for (int b = 0; b < p->numKvBlocks; b++) {
      const cpclPrefillStoreParams_t sp = cpclPrefillStoreOf(p, b);
      cpclHostPrefillStore(&sp);
    }
}

void cpclHostPrefillStore(const cpclPrefillStoreParams_t* p) {
  const size_t es = p->kvType == CPCL_K_FP32 ? 4 : 2;
  const size_t kRow = (size_t)p->numKvHeads * p->headDimQk * es, vRow = (size_t)p->numKvHeads * p->headDimVo * es;
  for (int s = 0; s < p->numSeqs; s++)
    for (int j = p->kv.rowStart[s]; j < p->kv.rowStart[s + 1]; j++) {
      const int64_t pos = p->kv.pos[j];
      if (cpclKvOwner(pos, p->cpSize, p->interleave) != p->cpRank) continue;
      const int64_t li = cpclKvLocalIndex(pos, p->cpSize, p->interleave);
      const int64_t slot =
          (int64_t)p->blockTable[(int64_t)s * p->maxPagesPerSeq + li / p->pageSize] * p->pageSize + li % p->pageSize;
      memcpy((char*)p->kCache + slot * kRow, (const char*)p->kv.k + (int64_t)j * kRow, kRow);
      if (!p->latentKv) memcpy((char*)p->vCache + slot * vRow, (const char*)p->kv.v + (int64_t)j * vRow, vRow);
    }
}
