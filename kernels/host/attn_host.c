/*
 * attn_host.c -- prefix attention with LSE over a paged local KV shard: the C reference of the
 * CUDA kernel, and the CPU backend's kernel.
 *
 * For each (sequence s, KV head kh) the query rows of s and the gathered heads of kh's GQA group
 * form "units" (row, head). Units are processed together, up to UNITS at a time, in one pass
 * over the local keys in blocks of BK: each K/V block is converted to fp32 once and used by every
 * unit whose prefix reaches it. Online softmax in base 2 (q pre-scaled by smScale * log2 e):
 *
 *   s_k = (q . k_k) * smScale * log2 e
 *   m'  = max(m, max_k s_k);  l' = l * 2^(m - m') + sum_k 2^(s_k - m')
 *   acc'= acc * 2^(m - m') + sum_k 2^(s_k - m') v_k
 *   out = acc / l,  lse_2 = m + log2 l  (natural: lse_2 * ln 2)
 *
 * Row j of n rows of s sits at global position p = seqLens[s] - n + j and sees local prefix
 * localLen(cpRank, p + 1): no mask, every row's keys are a prefix of the shard.
 */
#include <math.h>
#include <string.h>

#include "attn_params.h"
#include "dtype.h"
#include "kv_layout.h"

#define BK 32    /* keys per block */
#define UNITS 64 /* (row, head) units per pass */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

size_t cpclHostAttnWorkspaceBytes(int headDimQk, int headDimVo) {
  size_t floats = (size_t)BK * (headDimQk + headDimVo) + (size_t)UNITS * (headDimQk + headDimVo + 2) + BK;
  return floats * sizeof(float) + UNITS * sizeof(int64_t) + 64;
}

static inline float dot(const float* restrict a, const float* restrict b, int n) {
  /* eight independent sums so the compiler vectorises without reassociating */
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
  for (; i < n; i++) s[0] += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* x86-64: an AVX2+FMA clone beside the baseline one, picked at load time (ifunc), so one
 * library runs everywhere and uses the wide units where they exist. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define CPCL_HOST_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CPCL_HOST_CLONES
#endif

/* the helpers are inlined into each clone, so they get its instruction set */
#define INLINE static inline __attribute__((always_inline))

/* One unit over nk keys of the converted block: scores, then the online-softmax update of its
 * running max m, sum l and accumulator acc (both the dense and the sparse walk share it). */
INLINE void unitBlock(const float* qu, const float* kf, const float* vrow, int vstride, int nk, int Dqk, int Dv,
                      float* sc, float* m, float* l, float* acc) {
  float mb = -INFINITY;
  for (int k = 0; k < nk; k++) {
    sc[k] = dot(qu, kf + (size_t)k * Dqk, Dqk);
    mb = sc[k] > mb ? sc[k] : mb;
  }
  const float mnew = mb > *m ? mb : *m;
  if (mnew != *m) {
    const float alpha = exp2f(*m - mnew); /* 0 on the first block */
    *l *= alpha;
    for (int d = 0; d < Dv; d++) acc[d] *= alpha;
    *m = mnew;
  }
  for (int k = 0; k < nk; k++) {
    const float pk = exp2f(sc[k] - mnew);
    const float* vk = vrow + (size_t)k * vstride;
    *l += pk;
    for (int d = 0; d < Dv; d++) acc[d] += pk * vk[d];
  }
}

/* Unit (row t, gathered head g) done: out = acc / l and its LSE, or zeros and -inf where it saw
 * no key (any: its key range was not empty). */
INLINE void unitStore(const cpclAttnParams_t* p, int64_t t, int g, int any, float m, float l, float* acc) {
  const int Dv = p->headDimVo, Hb = p->headsPerBlock;
  const int64_t oOff = (g / Hb) * p->oBlockStride + t * p->oTokenStride + (int64_t)(g % Hb) * Dv;
  float lse2 = -INFINITY;
  if (any && l > 0.f) {
    const float inv = 1.f / l;
    for (int d = 0; d < Dv; d++) acc[d] *= inv;
    lse2 = m + log2f(l);
  } else {
    memset(acc, 0, (size_t)Dv * sizeof(float));
  }
  cpclStoreRow(p->out, oOff, acc, Dv, p->qType);
  if (p->lse) p->lse[(g / Hb) * p->lseBlockStride + t * p->lseTokenStride + g % Hb] = p->lseBase2 ? lse2 : lse2 * LN2;
}

/* Sparse attention (p->sparseIdx): row t's keys are its listed local indices, so units share a
 * K/V block only within one row: the units are the row's gathered heads of one KV head, up to
 * UNITS at a time, and the keys are walked in list order in blocks of BK (the same online
 * softmax as the dense pass). */
CPCL_HOST_CLONES static void hostAttnSparse(const cpclAttnParams_t* p) {
  const int Dqk = p->headDimQk, Dv = p->headDimVo, Hkv = p->numKvHeads, G = p->groupSize;
  const int Hb = p->headsPerBlock, ps = p->pageSize;
  const float qscale = p->smScale * LOG2E;
  float* kf = (float*)p->workspace;
  float* vf = kf + (size_t)BK * Dqk;
  float* qf = vf + (size_t)BK * Dv;
  float* acc = qf + (size_t)UNITS * Dqk;
  float* m = acc + (size_t)UNITS * Dv;
  float* l = m + UNITS;
  float* sc = l + UNITS;
  const float* vrow = p->latentKv ? kf : vf;
  const int vstride = p->latentKv ? Dqk : Dv;
  const int headEnd = p->headBegin + p->numHeads;

  for (int s = 0; s < p->numSeqs; s++) {
    const int r0 = p->queryStart ? p->queryStart[s] : s;
    const int n = (p->queryStart ? p->queryStart[s + 1] : s + 1) - r0;
    const int32_t* bt = p->blockTable + (int64_t)s * p->maxPagesPerSeq;
    for (int j = 0; j < n; j++) {
      const int64_t t = r0 + j;
      const int32_t* idx = p->sparseIdx + t * p->sparseStride;
      const int cnt = p->seqLens[s] > 0 ? p->sparseCount[t] : 0;
      for (int kh = p->headBegin / G; kh <= (headEnd - 1) / G; kh++) {
        const int gBegin = kh * G > p->headBegin ? kh * G : p->headBegin;
        const int gEnd = (kh + 1) * G < headEnd ? (kh + 1) * G : headEnd;
        for (int h0 = gBegin; h0 < gEnd; h0 += UNITS) {
          const int nu = gEnd - h0 < UNITS ? gEnd - h0 : UNITS;
          for (int u = 0; u < nu; u++) {
            const int g = h0 + u;
            cpclLoadRow(qf + (size_t)u * Dqk, p->q,
                        (g / Hb) * p->qBlockStride + t * p->qTokenStride + (int64_t)(g % Hb) * Dqk, Dqk, p->qType);
            for (int d = 0; d < Dqk; d++) qf[(size_t)u * Dqk + d] *= qscale;
            m[u] = -INFINITY;
            l[u] = 0.f;
            memset(acc + (size_t)u * Dv, 0, (size_t)Dv * sizeof(float));
          }
          for (int i0 = 0; i0 < cnt; i0 += BK) {
            const int nk = cnt - i0 < BK ? cnt - i0 : BK;
            for (int k = 0; k < nk; k++) {
              const int64_t i = idx[i0 + k];
              const int64_t slot = (int64_t)bt[i / ps] * ps + i % ps;
              cpclLoadRow(kf + (size_t)k * Dqk, p->kCache, (slot * Hkv + kh) * Dqk, Dqk, p->kvType);
              if (!p->latentKv) cpclLoadRow(vf + (size_t)k * Dv, p->vCache, (slot * Hkv + kh) * Dv, Dv, p->kvType);
            }
            for (int u = 0; u < nu; u++)
              unitBlock(qf + (size_t)u * Dqk, kf, vrow, vstride, nk, Dqk, Dv, sc, &m[u], &l[u], acc + (size_t)u * Dv);
          }
          for (int u = 0; u < nu; u++) unitStore(p, t, h0 + u, cnt > 0, m[u], l[u], acc + (size_t)u * Dv);
        }
      }
    }
  }
}

CPCL_HOST_CLONES void cpclHostAttn(const cpclAttnParams_t* p) {
  if (p->sparseIdx) {
    hostAttnSparse(p);
    return;
  }
  const int Dqk = p->headDimQk, Dv = p->headDimVo, Hkv = p->numKvHeads, G = p->groupSize;
  const int Hb = p->headsPerBlock, ps = p->pageSize;
  const float qscale = p->smScale * LOG2E;
  float* kf = (float*)p->workspace;                                      /* [BK][Dqk] */
  float* vf = kf + (size_t)BK * Dqk;                                     /* [BK][Dv] (unused when latent) */
  float* qf = vf + (size_t)BK * Dv;                                      /* [UNITS][Dqk] */
  float* acc = qf + (size_t)UNITS * Dqk;                                 /* [UNITS][Dv] */
  float* m = acc + (size_t)UNITS * Dv;                                   /* [UNITS] */
  float* l = m + UNITS;                                                  /* [UNITS] */
  float* sc = l + UNITS;                                                 /* [BK] */
  int64_t* len = (int64_t*)(((uintptr_t)(sc + BK) + 7) & ~(uintptr_t)7); /* [UNITS] */
  const float* vrow = p->latentKv ? kf : vf;                             /* MLA: V is the first Dv of each K row */
  const int vstride = p->latentKv ? Dqk : Dv;
  const int headEnd = p->headBegin + p->numHeads;

  for (int s = 0; s < p->numSeqs; s++) {
    const int r0 = p->queryStart ? p->queryStart[s] : s;
    const int n = (p->queryStart ? p->queryStart[s + 1] : s + 1) - r0;
    const int64_t L = p->seqLens[s];
    const int32_t* bt = p->blockTable + (int64_t)s * p->maxPagesPerSeq;
    if (n <= 0) continue;
    for (int kh = p->headBegin / G; kh <= (headEnd - 1) / G; kh++) {
      const int gBegin = kh * G > p->headBegin ? kh * G : p->headBegin;
      const int gEnd = (kh + 1) * G < headEnd ? (kh + 1) * G : headEnd;
      const int nh = gEnd - gBegin, total = n * nh;
      for (int c0 = 0; c0 < total; c0 += UNITS) {
        const int nu = total - c0 < UNITS ? total - c0 : UNITS;
        int64_t maxLen = 0;
        for (int u = 0; u < nu; u++) {
          const int j = (c0 + u) / nh, g = gBegin + (c0 + u) % nh, t = r0 + j;
          const int64_t pos = L - n + j;
          len[u] = pos < 0 ? 0 : cpclKvLocalLenOf(pos + 1, p->cpSize, p->cpRank, p->interleave);
          if (len[u] > maxLen) maxLen = len[u];
          cpclLoadRow(qf + (size_t)u * Dqk, p->q,
                      (g / Hb) * p->qBlockStride + t * p->qTokenStride + (int64_t)(g % Hb) * Dqk, Dqk, p->qType);
          for (int d = 0; d < Dqk; d++) qf[(size_t)u * Dqk + d] *= qscale;
          m[u] = -INFINITY;
          l[u] = 0.f;
          memset(acc + (size_t)u * Dv, 0, (size_t)Dv * sizeof(float));
        }
        for (int64_t i0 = 0; i0 < maxLen; i0 += BK) {
          const int nk = maxLen - i0 < BK ? (int)(maxLen - i0) : BK;
          for (int k = 0; k < nk; k++) {
            const int64_t i = i0 + k;
            const int64_t slot = (int64_t)bt[i / ps] * ps + i % ps;
            cpclLoadRow(kf + (size_t)k * Dqk, p->kCache, (slot * Hkv + kh) * Dqk, Dqk, p->kvType);
            if (!p->latentKv) cpclLoadRow(vf + (size_t)k * Dv, p->vCache, (slot * Hkv + kh) * Dv, Dv, p->kvType);
          }
          for (int u = 0; u < nu; u++) {
            const int nku = len[u] - i0 < nk ? (int)(len[u] - i0) : nk;
            if (nku <= 0) continue;
            unitBlock(qf + (size_t)u * Dqk, kf, vrow, vstride, nku, Dqk, Dv, sc, &m[u], &l[u], acc + (size_t)u * Dv);
          }
        }
        for (int u = 0; u < nu; u++) {
          const int j = (c0 + u) / nh;
          unitStore(p, r0 + j, gBegin + (c0 + u) % nh, len[u] > 0, m[u], l[u], acc + (size_t)u * Dv);
        }
      }
    }
  }
}
