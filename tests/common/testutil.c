/* testutil.c -- see testutil.h */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

double tuRand(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t h = mix(seed + 0x9e3779b97f4a7c15ULL);
  h = mix(h ^ (a + 0x632be59bd9b4e019ULL));
  h = mix(h ^ (b * 0x85ebca77c2b2ae63ULL + 1));
  h = mix(h ^ (c * 0xc2b2ae3d27d4eb4fULL + 2));
  h = mix(h ^ (d * 0x165667b19e3779f9ULL + 3));
  return (double)(h >> 11) / (double)(1ULL << 52) - 1.0;
}

size_t tuDtypeSize(cpclDataType_t t) { return t == cpclFloat32 ? 4 : 2; }

static uint16_t toBf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float fromBf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
/* fp16 through the compiler's _Float16 when present would be simpler, but keep C11: values in
 * tests are in [-4, 4], normal range, so a plain round-to-nearest-even suffices. */
static uint16_t toF16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a < 0x38800000u) {              /* below the smallest normal half: go through a scaled float */
    float x = fabsf(f) * 16777216.0f; /* 2^24: subnormal half units */
    uint32_t n = (uint32_t)nearbyintf(x);
    return sign | (uint16_t)n;
  }
  int e = (int)(a >> 23) - 112;
  uint32_t man = a & 0x7fffffu;
  uint32_t h = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return sign | (uint16_t)h;
}
static float fromF16(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 31) return m ? NAN : (h & 0x8000) ? -INFINITY : INFINITY;
  float v = e == 0 ? ldexpf((float)m, -24) : ldexpf((float)(m | 0x400), e - 25);
  return (h & 0x8000) ? -v : v;
}

double tuPut(void* base, size_t i, double v, cpclDataType_t t) {
  switch (t) {
    case cpclBfloat16:
      ((uint16_t*)base)[i] = toBf16((float)v);
      break;
    case cpclFloat16:
      ((uint16_t*)base)[i] = toF16((float)v);
      break;
    default:
      ((float*)base)[i] = (float)v;
  }
  return tuGet(base, i, t);
}

double tuGet(const void* base, size_t i, cpclDataType_t t) {
  switch (t) {
    case cpclBfloat16:
      return fromBf16(((const uint16_t*)base)[i]);
    case cpclFloat16:
      return fromF16(((const uint16_t*)base)[i]);
    default:
      return ((const float*)base)[i];
  }
}

static double roundTo(double v, cpclDataType_t t) {
  uint32_t tmp = 0;
  return tuPut(&tmp, 0, v, t);
}

double tuKv(const tuProblem_t* pb, int isV, int s, int64_t p, int h, int d) {
  /* MLA: V is the first Dv elements of K */
  if (pb->latent) isV = 0;
  return roundTo(tuRand(pb->seed, 1 + isV, (uint64_t)s, (uint64_t)p, (uint64_t)(h * 4096 + d)), pb->kvType);
}

double tuQ(const tuProblem_t* pb, int t, int g, int d) {
  return roundTo(2.0 * tuRand(pb->seed, 7, (uint64_t)t, (uint64_t)g, (uint64_t)d), pb->qType);
}

void* tuMakeQ(const tuProblem_t* pb, int h0, int nh) {
  void* q = malloc((size_t)pb->numTokens * nh * pb->Dqk * tuDtypeSize(pb->qType) + 16);
  for (int t = 0; t < pb->numTokens; t++)
    for (int h = 0; h < nh; h++)
      for (int d = 0; d < pb->Dqk; d++) tuPut(q, ((size_t)t * nh + h) * pb->Dqk + d, tuQ(pb, t, h0 + h, d), pb->qType);
  return q;
}

static int64_t localLen(int64_t L, int W, int r, int I) {
  int64_t WI = (int64_t)W * I, rem = L % WI - (int64_t)r * I;
  rem = rem < 0 ? 0 : rem > I ? I : rem;
  return (L / WI) * I + rem;
}

void tuCacheAlloc(const tuProblem_t* pb, int W, int r, int I, int pageSize, tuCache_t* c) {
  memset(c, 0, sizeof(*c));
  c->pageSize = pageSize;
  int64_t maxLocal = 1;
  for (int s = 0; s < pb->numSeqs; s++) {
    int64_t l = localLen(pb->seqLens[s], W, r, I);
    if (l > maxLocal) maxLocal = l;
  }
  c->maxPagesPerSeq = (int)((maxLocal + pageSize - 1) / pageSize) + 1; /* one spare: rows are not full */
  c->numPages = pb->numSeqs * c->maxPagesPerSeq;
  c->blockTable = malloc(sizeof(int32_t) * (size_t)c->numPages);
  /* a scrambled, still one-to-one page assignment: 7 is coprime with most counts; fall back to
   * reversing when it is not */
  int stride = (c->numPages % 7) ? 7 : 1;
  for (int i = 0; i < c->numPages; i++)
    c->blockTable[i] = stride == 7 ? (int32_t)(((int64_t)i * 7 + 3) % c->numPages) : c->numPages - 1 - i;
  size_t es = tuDtypeSize(pb->kvType);
  size_t kBytes = (size_t)c->numPages * pageSize * pb->Hkv * pb->Dqk * es;
  c->k = malloc(kBytes);
  memset(c->k, 0xff, kBytes); /* NaN in every unwritten slot: reading one poisons the result */
  if (!pb->latent) {
    size_t vBytes = (size_t)c->numPages * pageSize * pb->Hkv * pb->Dv * es;
    c->v = malloc(vBytes);
    memset(c->v, 0xff, vBytes);
  }
}

void tuCacheFill(const tuProblem_t* pb, int W, int r, int I, tuCache_t* c) {
  for (int s = 0; s < pb->numSeqs; s++)
    for (int64_t p = 0; p < pb->seqLens[s]; p++) {
      if ((p / I) % W != r) continue;
      int64_t li = (p / ((int64_t)W * I)) * I + p % I;
      int64_t slot = (int64_t)c->blockTable[s * c->maxPagesPerSeq + li / c->pageSize] * c->pageSize + li % c->pageSize;
      for (int h = 0; h < pb->Hkv; h++) {
        for (int d = 0; d < pb->Dqk; d++)
          tuPut(c->k, (size_t)((slot * pb->Hkv + h) * pb->Dqk + d), tuKv(pb, 0, s, p, h, d), pb->kvType);
        if (!pb->latent)
          for (int d = 0; d < pb->Dv; d++)
            tuPut(c->v, (size_t)((slot * pb->Hkv + h) * pb->Dv + d), tuKv(pb, 1, s, p, h, d), pb->kvType);
      }
    }
}

void tuCacheFree(tuCache_t* c) {
  free(c->blockTable);
  free(c->k);
  free(c->v);
  memset(c, 0, sizeof(*c));
}

int64_t tuPos(const tuProblem_t* pb, int t, int* seq) {
  int s = 0;
  while (pb->queryStart[s + 1] <= t) s++;
  if (seq) *seq = s;
  int n = pb->queryStart[s + 1] - pb->queryStart[s];
  return (int64_t)pb->seqLens[s] - n + (t - pb->queryStart[s]);
}

double tuNaive(const tuProblem_t* pb, int t, int g, int W, int r, int I, int onlyRank, double* o) {
  int s;
  int64_t pos = tuPos(pb, t, &s);
  int G = pb->Hq / pb->Hkv, kh = g / G;
  double m = -INFINITY;
  double* sc = malloc(sizeof(double) * (size_t)(pos + 2));
  for (int64_t p = 0; p <= pos; p++) {
    sc[p] = -INFINITY;
    if (onlyRank && (p / I) % W != r) continue;
    double dot = 0;
    for (int d = 0; d < pb->Dqk; d++) dot += tuQ(pb, t, g, d) * tuKv(pb, 0, s, p, kh, d);
    sc[p] = dot * pb->smScale;
    if (sc[p] > m) m = sc[p];
  }
  for (int d = 0; d < pb->Dv; d++) o[d] = 0;
  if (m == -INFINITY) {
    free(sc);
    return -INFINITY;
  }
  double l = 0;
  for (int64_t p = 0; p <= pos; p++) {
    if (sc[p] == -INFINITY) continue;
    double w = exp(sc[p] - m);
    l += w;
    for (int d = 0; d < pb->Dv; d++) o[d] += w * tuKv(pb, 1, s, p, kh, d);
  }
  for (int d = 0; d < pb->Dv; d++) o[d] /= l;
  free(sc);
  return m + log(l);
}

double tuNaiveSparse(const tuProblem_t* pb, int t, int g, const int32_t* list, int K, int W, int r, int I, int onlyRank,
                     double* o) {
  int s;
  const int64_t pos = tuPos(pb, t, &s);
  const int G = pb->Hq / pb->Hkv, kh = g / G;
  double m = -INFINITY;
  double* sc = malloc(sizeof(double) * (size_t)(K > 0 ? K : 1));
  for (int k = 0; k < K; k++) {
    const int64_t p = list[k];
    sc[k] = -INFINITY;
    if (p < 0 || p > pos || (onlyRank && (p / I) % W != r)) continue;
    double dot = 0;
    for (int d = 0; d < pb->Dqk; d++) dot += tuQ(pb, t, g, d) * tuKv(pb, 0, s, p, kh, d);
    sc[k] = dot * pb->smScale;
    if (sc[k] > m) m = sc[k];
  }
  for (int d = 0; d < pb->Dv; d++) o[d] = 0;
  if (m == -INFINITY) {
    free(sc);
    return -INFINITY;
  }
  double l = 0;
  for (int k = 0; k < K; k++) {
    if (sc[k] == -INFINITY) continue;
    const double w = exp(sc[k] - m);
    l += w;
    for (int d = 0; d < pb->Dv; d++) o[d] += w * tuKv(pb, 1, s, list[k], kh, d);
  }
  for (int d = 0; d < pb->Dv; d++) o[d] /= l;
  free(sc);
  return m + log(l);
}

int32_t* tuMakeTopk(const tuProblem_t* pb, int K, uint64_t seed, unsigned emptyMask) {
  int32_t* list = malloc(sizeof(int32_t) * (size_t)pb->numTokens * (size_t)K);
  for (int t = 0; t < pb->numTokens; t++) {
    int s;
    const int64_t pos = tuPos(pb, t, &s);
    int32_t* row = list + (size_t)t * K;
    /* a random permutation of 0 .. pos (Fisher-Yates on the first min(K, pos + 1)) */
    const int64_t n = pos + 1;
    int32_t* perm = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) perm[i] = (int32_t)i;
    const int take = (int)(n < K ? n : K);
    for (int i = 0; i < take; i++) {
      const int64_t j = i + (int64_t)((tuRand(seed, 7, (uint64_t)t, (uint64_t)i, 0) + 1) * 0.5 * (double)(n - i));
      const int64_t jj = j >= n ? n - 1 : j;
      const int32_t tmp = perm[i];
      perm[i] = perm[jj];
      perm[jj] = tmp;
    }
    /* a few rows list fewer positions than they could: -1 padding inside K */
    const int keep = (emptyMask >> (s & 31)) & 1 ? 0 : (t % 3 == 1 ? take / 2 : take);
    for (int k = 0; k < K; k++) row[k] = k < keep ? perm[k] : -1;
    free(perm);
    /* entries the filter must skip, at random places */
    for (int k = 0; k < K; k++) {
      const double u = tuRand(seed, 8, (uint64_t)t, (uint64_t)k, 0);
      if (u > 0.85) {
        static const int32_t junk[4] = {INT32_MAX, INT32_MIN, -5, -1};
        const int which = (int)((u - 0.85) / 0.15 * 6);
        row[k] = which < 4 ? junk[which] : which == 4 ? (int32_t)(pos + 1) : pb->seqLens[s] + 3;
      }
    }
  }
  return list;
}

static int selfAllgather(const void* s, void* r, size_t bytes, void* ctx) {
  (void)ctx;
  memcpy(r, s, bytes);
  return 0;
}

cpclAttnDesc_t tuDesc(const tuProblem_t* pb, int numQoHeads, int pageSize) {
  cpclAttnDesc_t desc = CPCL_ATTN_DESC_INITIALIZER;
  desc.numQoHeads = numQoHeads;
  desc.numKvHeads = pb->Hkv;
  desc.headDimQk = pb->Dqk;
  desc.headDimVo = pb->Dv;
  desc.pageSize = pageSize;
  desc.smScale = pb->smScale;
  desc.qType = pb->qType;
  desc.kvType = pb->kvType;
  desc.latentKv = pb->latent;
  return desc;
}

cpclBatch_t tuBatch(int numSeqs, int numTokens, const int32_t* queryStart, const int32_t* seqLens,
                    const int32_t* blockTable, int maxPagesPerSeq) {
  cpclBatch_t b = CPCL_BATCH_INITIALIZER;
  b.numSeqs = numSeqs;
  b.numTokens = numTokens;
  b.queryStart = queryStart;
  b.seqLens = seqLens;
  b.blockTable = blockTable;
  b.maxPagesPerSeq = maxPagesPerSeq;
  return b;
}

cpclResult_t tuSelfComm(cpclComm_t* comm, int interleave, cpclMemType_t memType) {
  cpclOob_t oob = {selfAllgather, NULL, 0, 1};
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.transport = "self";
  cfg.kvInterleave = interleave;
  cfg.memType = memType;
  return cpclCommInitOob(comm, &oob, &cfg);
}

cpclResult_t tuSingleRank(const tuProblem_t* pb, int pageSize, int lseBase2, void* out, float* lse) {
  cpclComm_t comm;
  cpclResult_t res = tuSelfComm(&comm, 1, cpclMemHost);
  if (res != cpclSuccess) return res;
  cpclAttnDesc_t desc = tuDesc(pb, pb->Hq, pageSize);
  desc.lseBase2 = lseBase2;
  cpclAttnPlan_t plan;
  res = cpclAttnPlanCreate(&plan, comm, &desc, pb->numTokens);
  if (res == cpclSuccess) {
    tuCache_t c;
    tuCacheAlloc(pb, 1, 0, 1, pageSize, &c);
    tuCacheFill(pb, 1, 0, 1, &c);
    void* q = tuMakeQ(pb, 0, pb->Hq);
    cpclBatch_t b = tuBatch(pb->numSeqs, pb->numTokens, pb->queryStart, pb->seqLens, c.blockTable, c.maxPagesPerSeq);
    res = cpclAttnDecode(plan, &b, q, c.k, c.v, out, lse, NULL);
    free(q);
    tuCacheFree(&c);
    cpclAttnPlanDestroy(plan);
  }
  cpclCommDestroy(comm);
  return res;
}
