/* Unit: the host prefill kernel against a naive fp64 causal attention over the unsharded
 * sequence. Each sequence's tokens are a cached context (sharded over W ranks, paged) followed
 * by new tokens; the new K/V are dealt into B blocks (random or contiguous), the query rows are
 * one PCP rank's head-tail chunks of the new tokens. Every partial (one cache shard, or one
 * block) must match the naive attention restricted to its keys (rows that see none: out = 0,
 * lse = -inf), and the merge of all of them the whole causal attention. Outputs are poisoned
 * (NaN) before each run. Also cpclPcpChunks, exhaustively for small prompts. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "attn_params.h"
#include "merge_params.h"
#include "prefill_layout.h"
#include "prefill_params.h"
#include "kernelutil.h"
#include "testutil.h"

#define NSEQ 6
#define MAXB 5
#define MAXW 4
#define MAXPARTS (MAXW + MAXB + 1)

static double tolOf(cpclDataType_t t) { return t == cpclFloat32 ? 1e-4 : t == cpclFloat16 ? 1.5e-3 : 6e-3; }

typedef struct {
  cpclDataType_t qType, kvType, outType;
  int Hkv, G, Dqk, Dv, latent, base2;
  int W, I, pageSize, withCache;
  int numBlocks, contiguous; /* how the new tokens are dealt into blocks */
  uint64_t seed;
} pfCase_t;

/* One problem: lens / ctx per sequence, query rows, blocks, caches */
typedef struct {
  pfCase_t c;
  tuProblem_t pb; /* seqLens = ctx: what tuCache* stores */
  int32_t len[NSEQ], ctx[NSEQ];
  int Hq, T;
  int32_t qs[NSEQ + 1];
  int32_t* qpos; /* [T] */
  int* qseq;     /* [T] */
  void* q;       /* [T][Hq][Dqk] */
  int8_t* blockOf[NSEQ];
  int32_t rowStart[MAXB][NSEQ + 1];
  int32_t* kpos[MAXB];
  void* k[MAXB];
  void* v[MAXB];
  tuCache_t cache[MAXW];
  void* ws;
  double* kd[NSEQ]; /* [len][Hkv][Dqk] every token's K as stored, for the naive attention */
  double* vd[NSEQ]; /* [len][Hkv][Dv] */
} pfProblem_t;

static void pfBuild(const pfCase_t* rc, pfProblem_t* P) {
  static const int lens[NSEQ] = {0, 1, 3, 17, 70, 150};
  static const int ctxs[NSEQ] = {0, 0, 1, 9, 30, 61};
  memset(P, 0, sizeof(*P));
  P->c = *rc;
  P->Hq = rc->Hkv * rc->G;
  uint64_t rs = rc->seed;
  /* query rows: PCP rank r of pcp p (a different split per sequence) */
  P->qs[0] = 0;
  int64_t st[NSEQ][2], ln[NSEQ][2];
  for (int s = 0; s < NSEQ; s++) {
    P->len[s] = lens[s];
    P->ctx[s] = rc->withCache ? ctxs[s] : 0;
    const int pcp = 1 + (int)((rc->seed + s) % 4), r = (int)((rc->seed * 3 + s) % pcp);
    const int64_t n = cpclPcpChunksOf(P->len[s] - P->ctx[s], pcp, r, st[s], ln[s]);
    P->qs[s + 1] = P->qs[s] + (int32_t)n;
  }
  P->T = P->qs[NSEQ];
  P->qpos = malloc(sizeof(int32_t) * (P->T + 1));
  P->qseq = malloc(sizeof(int) * (P->T + 1));
  for (int s = 0; s < NSEQ; s++) {
    int t = P->qs[s];
    for (int c = 0; c < 2; c++)
      for (int j = 0; j < ln[s][c]; j++, t++) {
        P->qpos[t] = P->ctx[s] + (int32_t)(st[s][c] + j);
        P->qseq[t] = s;
      }
  }
  tuProblem_t* pb = &P->pb;
  pb->numSeqs = NSEQ;
  pb->numTokens = P->T;
  pb->seqLens = P->ctx;
  pb->Hq = P->Hq;
  pb->Hkv = rc->Hkv;
  pb->Dqk = rc->Dqk;
  pb->Dv = rc->Dv;
  pb->latent = rc->latent;
  pb->qType = rc->qType;
  pb->kvType = rc->kvType;
  pb->smScale = (float)(1.0 / sqrt((double)rc->Dqk));
  pb->seed = rc->seed * 7919 + 17;
  /* q of row t depends on (sequence, position), not on the row index */
  P->q = malloc((size_t)(P->T + 1) * P->Hq * rc->Dqk * tuDtypeSize(rc->qType));
  for (int t = 0; t < P->T; t++)
    for (int g = 0; g < P->Hq; g++)
      for (int d = 0; d < rc->Dqk; d++)
        tuPut(P->q, ((size_t)t * P->Hq + g) * rc->Dqk + d,
              2.0 * tuRand(pb->seed, 7, (uint64_t)P->qseq[t], (uint64_t)P->qpos[t], (uint64_t)(g * 4096 + d)),
              rc->qType);
  for (int s = 0; s < NSEQ; s++) {
    P->kd[s] = malloc(sizeof(double) * ((size_t)P->len[s] * rc->Hkv * rc->Dqk + 1));
    P->vd[s] = malloc(sizeof(double) * ((size_t)P->len[s] * rc->Hkv * rc->Dv + 1));
    for (int64_t pos = 0; pos < P->len[s]; pos++)
      for (int h = 0; h < rc->Hkv; h++) {
        for (int d = 0; d < rc->Dqk; d++) P->kd[s][(pos * rc->Hkv + h) * rc->Dqk + d] = tuKv(pb, 0, s, pos, h, d);
        for (int d = 0; d < rc->Dv; d++) P->vd[s][(pos * rc->Hkv + h) * rc->Dv + d] = tuKv(pb, 1, s, pos, h, d);
      }
  }
  /* new tokens dealt into blocks */
  const int B = rc->numBlocks;
  for (int s = 0; s < NSEQ; s++) {
    const int n = P->len[s] - P->ctx[s];
    P->blockOf[s] = malloc((size_t)n + 1);
    for (int j = 0; j < n; j++) {
      rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
      P->blockOf[s][j] = (int8_t)(rc->contiguous ? (int64_t)j * B / (n ? n : 1) : (int)((rs >> 33) % (uint64_t)B));
    }
  }
  const size_t es = tuDtypeSize(rc->kvType);
  for (int b = 0; b < B; b++) {
    int rows = 0;
    P->rowStart[b][0] = 0;
    for (int s = 0; s < NSEQ; s++) {
      for (int j = 0; j < P->len[s] - P->ctx[s]; j++) rows += P->blockOf[s][j] == b;
      P->rowStart[b][s + 1] = rows;
    }
    P->kpos[b] = malloc(sizeof(int32_t) * (rows + 1));
    P->k[b] = malloc((size_t)(rows + 1) * rc->Hkv * rc->Dqk * es);
    P->v[b] = rc->latent ? NULL : malloc((size_t)(rows + 1) * rc->Hkv * rc->Dv * es);
    int row = 0;
    for (int s = 0; s < NSEQ; s++)
      for (int j = 0; j < P->len[s] - P->ctx[s]; j++) {
        if (P->blockOf[s][j] != b) continue;
        const int64_t pos = P->ctx[s] + j;
        P->kpos[b][row] = (int32_t)pos;
        for (int h = 0; h < rc->Hkv; h++) {
          for (int d = 0; d < rc->Dqk; d++)
            tuPut(P->k[b], ((size_t)row * rc->Hkv + h) * rc->Dqk + d, tuKv(pb, 0, s, pos, h, d), rc->kvType);
          if (!rc->latent)
            for (int d = 0; d < rc->Dv; d++)
              tuPut(P->v[b], ((size_t)row * rc->Hkv + h) * rc->Dv + d, tuKv(pb, 1, s, pos, h, d), rc->kvType);
        }
        row++;
      }
  }
  for (int r = 0; r < rc->W; r++) {
    tuCacheAlloc(pb, rc->W, r, rc->I, rc->pageSize, &P->cache[r]);
    tuCacheFill(pb, rc->W, r, rc->I, &P->cache[r]);
  }
  P->ws = malloc(cpclHostPrefillWorkspaceBytes(rc->Dqk, rc->Dv));
}

static void pfFree(pfProblem_t* P) {
  for (int s = 0; s < NSEQ; s++) {
    free(P->blockOf[s]);
    free(P->kd[s]);
    free(P->vd[s]);
  }
  for (int b = 0; b < P->c.numBlocks; b++) {
    free(P->kpos[b]);
    free(P->k[b]);
    free(P->v[b]);
  }
  for (int r = 0; r < P->c.W; r++) tuCacheFree(&P->cache[r]);
  free(P->qpos);
  free(P->qseq);
  free(P->q);
  free(P->ws);
}

/* which part holds position pos of sequence s: cache rank 0..W-1, or block W + b */
static int partOf(const pfProblem_t* P, int s, int64_t pos) {
  if (pos < P->ctx[s]) return (int)((pos / P->c.I) % P->c.W);
  return P->c.W + P->blockOf[s][pos - P->ctx[s]];
}

/* naive fp64 attention of row t, head g over positions <= its own in the parts of keepMask;
 * returns the natural lse (-inf and o = 0 when no key is kept) */
static double naive(const pfProblem_t* P, int t, int g, uint64_t keepMask, double* o) {
  const tuProblem_t* pb = &P->pb;
  const int s = P->qseq[t], kh = g / P->c.G, Dqk = pb->Dqk, Dv = pb->Dv;
  const int64_t qp = P->qpos[t];
  double* sc = malloc(sizeof(double) * (qp + 1));
  double mx = -INFINITY;
  for (int64_t p = 0; p <= qp; p++) {
    sc[p] = -INFINITY;
    if (!((keepMask >> partOf(P, s, p)) & 1)) continue;
    const double* k = P->kd[s] + (p * pb->Hkv + kh) * Dqk;
    double acc = 0;
    for (int d = 0; d < Dqk; d++) acc += tuGet(P->q, ((size_t)t * P->Hq + g) * Dqk + d, pb->qType) * k[d];
    sc[p] = acc * pb->smScale;
    mx = sc[p] > mx ? sc[p] : mx;
  }
  for (int d = 0; d < Dv; d++) o[d] = 0;
  if (mx == -INFINITY) {
    free(sc);
    return -INFINITY;
  }
  double sum = 0;
  for (int64_t p = 0; p <= qp; p++) {
    if (sc[p] == -INFINITY) continue;
    const double w = exp(sc[p] - mx);
    sum += w;
    const double* v = P->vd[s] + (p * pb->Hkv + kh) * Dv;
    for (int d = 0; d < Dv; d++) o[d] += w * v[d];
  }
  for (int d = 0; d < Dv; d++) o[d] /= sum;
  free(sc);
  return mx + log(sum);
}

/* params of one call: cache shard `cacheRank` (-1: none) and the blocks of blockMask */
static void pfParams(const pfProblem_t* P, int cacheRank, unsigned blockMask, void* out, float* lse,
                     cpclPrefillParams_t* p) {
  const pfCase_t* rc = &P->c;
  memset(p, 0, sizeof(*p));
  p->numSeqs = NSEQ;
  p->numTokens = P->T;
  p->queryStart = P->qs;
  p->queryPos = P->qpos;
  for (int b = 0; b < rc->numBlocks; b++) {
    if (!((blockMask >> b) & 1)) continue;
    p->kv[p->numKvBlocks++] = (cpclPrefillKvBlock_t){P->k[b], P->v[b], P->rowStart[b], P->kpos[b]};
  }
  if (cacheRank >= 0) {
    const tuCache_t* c = &P->cache[cacheRank];
    p->cacheLens = P->ctx;
    p->blockTable = c->blockTable;
    p->maxPagesPerSeq = c->maxPagesPerSeq;
    p->pageSize = c->pageSize;
    p->cpSize = rc->W;
    p->cpRank = cacheRank;
    p->interleave = rc->I;
    p->kCache = c->k;
    p->vCache = c->v;
  }
  p->numKvHeads = rc->Hkv;
  p->headDimQk = rc->Dqk;
  p->headDimVo = rc->Dv;
  p->latentKv = rc->latent;
  p->groupSize = rc->G;
  p->headBegin = 0;
  p->numHeads = P->Hq;
  p->headsPerBlock = P->Hq;
  p->smScale = P->pb.smScale;
  p->lseBase2 = rc->base2;
  p->qType = rc->qType;
  p->kvType = rc->kvType;
  p->outType = rc->outType;
  p->q = P->q;
  p->qTokenStride = (int64_t)P->Hq * rc->Dqk;
  p->out = out;
  p->oTokenStride = (int64_t)P->Hq * rc->Dv;
  p->lse = lse;
  p->lseTokenStride = P->Hq;
  p->workspace = P->ws;
  p->workspaceBytes = cpclHostPrefillWorkspaceBytes(rc->Dqk, rc->Dv);
}

/* out/lse of a call against the naive attention over keepMask's parts */
static void checkAgainst(const pfProblem_t* P, const void* out, const float* lse, cpclDataType_t outType,
                         uint64_t keepMask, double tol, const char* what) {
  const int Dv = P->c.Dv;
  const double lseScale = P->c.base2 ? 1.0 / log(2.0) : 1.0;
  double* o = malloc(sizeof(double) * Dv);
  for (int t = 0; t < P->T; t++)
    for (int g = 0; g < P->Hq; g++) {
      const double want = naive(P, t, g, keepMask, o);
      const float got = lse[(size_t)t * P->Hq + g];
      if (want == -INFINITY) {
        if (got != -INFINITY) fail_msg("%s row %d head %d: lse %g, want -inf", what, t, g, got);
      } else if (!(fabs(got - want * lseScale) < 1e-4 * (1 + fabs(want)))) {
        fail_msg("%s row %d (pos %d) head %d: lse %.7g, want %.7g", what, t, P->qpos[t], g, got, want * lseScale);
      }
      for (int d = 0; d < Dv; d++) {
        const double x = tuGet(out, ((size_t)t * P->Hq + g) * Dv + d, outType);
        if (want == -INFINITY ? x != 0.0 : !(fabs(x - o[d]) <= tol))
          fail_msg("%s row %d (pos %d) head %d dim %d: got %g want %g", what, t, P->qpos[t], g, d, x, o[d]);
      }
    }
  free(o);
}

static void runCase(const pfCase_t* rc) {
  pfProblem_t P;
  pfBuild(rc, &P);
  const int W = rc->W, B = rc->numBlocks, T = P.T, Hq = P.Hq, Dv = rc->Dv;
  const size_t es = tuDtypeSize(rc->outType), oBytes = (size_t)T * Hq * Dv * es + 16,
               lBytes = sizeof(float) * ((size_t)T * Hq + 1);
  const int nParts = W + B;
  void* outs[MAXPARTS];
  float* lses[MAXPARTS];
  for (int i = 0; i <= nParts; i++) {
    outs[i] = malloc(oBytes);
    lses[i] = malloc(lBytes);
    memset(outs[i], 0xff, oBytes);
    memset(lses[i], 0xff, lBytes);
  }
  cpclPrefillParams_t p;
  /* each cache shard, each block, alone */
  for (int i = 0; i < nParts; i++) {
    pfParams(&P, i < W ? i : -1, i < W ? 0u : 1u << (i - W), outs[i], lses[i], &p);
    cpclHostPrefill(&p);
    char what[64];
    snprintf(what, sizeof(what), i < W ? "cache shard %d" : "block %d", i < W ? i : i - W);
    checkAgainst(&P, outs[i], lses[i], rc->outType, 1ull << i, tolOf(rc->outType), what);
  }
  /* the merge of all partials, in part order: the whole causal attention */
  void* merged = malloc(oBytes);
  float* mlse = malloc(lBytes);
  memset(merged, 0xff, oBytes);
  tuMerge(nParts, outs, lses, T, Hq, Dv, rc->outType, rc->base2, merged, mlse);
  const uint64_t all = (1ull << nParts) - 1;
  checkAgainst(&P, merged, mlse, rc->outType, all, 2 * tolOf(rc->outType), "merged");
  /* one call over cache shard 0 and every block at once (what the allgather schedule runs) */
  memset(outs[nParts], 0xff, oBytes);
  pfParams(&P, 0, (1u << B) - 1, outs[nParts], lses[nParts], &p);
  cpclHostPrefill(&p);
  checkAgainst(&P, outs[nParts], lses[nParts], rc->outType, all & ~(((1ull << W) - 1) & ~1ull), tolOf(rc->outType),
               "shard 0 + all blocks");
  /* the same heads in two halves addressed as blocks of heads: the same bits */
  if (Hq % 2 == 0) {
    void* half = malloc(oBytes);
    float* halfLse = malloc(lBytes);
    memset(half, 0xff, oBytes);
    for (int hb = 0; hb < 2; hb++) {
      pfParams(&P, 0, (1u << B) - 1, half, halfLse, &p);
      p.headBegin = hb * Hq / 2;
      p.numHeads = Hq / 2;
      p.headsPerBlock = Hq / 2;
      p.qBlockStride = (int64_t)(Hq / 2) * rc->Dqk; /* [T][2][Hq/2][D] == [T][Hq][D] */
      p.oBlockStride = (int64_t)(Hq / 2) * Dv;
      p.lseBlockStride = Hq / 2;
      cpclHostPrefill(&p);
    }
    assert_memory_equal(half, outs[nParts], (size_t)T * Hq * Dv * es);
    assert_memory_equal(halfLse, lses[nParts], sizeof(float) * (size_t)T * Hq);
    free(half);
    free(halfLse);
  }
  for (int i = 0; i <= nParts; i++) {
    free(outs[i]);
    free(lses[i]);
  }
  free(merged);
  free(mlse);
  pfFree(&P);
}

static pfCase_t base(void) {
  pfCase_t rc = {cpclBfloat16, cpclBfloat16, cpclBfloat16, 2, 2, 64, 64, 0, 0, 2, 2, 16, 1, 3, 0, 1};
  return rc;
}

static void test_dtypes(void** state) {
  (void)state;
  const cpclDataType_t types[][3] = {
      {cpclBfloat16, cpclBfloat16, cpclBfloat16}, {cpclFloat16, cpclFloat16, cpclFloat16},
      {cpclFloat32, cpclFloat32, cpclFloat32},    {cpclBfloat16, cpclBfloat16, cpclFloat32},
      {cpclFloat32, cpclBfloat16, cpclFloat32},   {cpclBfloat16, cpclFloat16, cpclBfloat16}};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    pfCase_t rc = base();
    rc.qType = types[i][0];
    rc.kvType = types[i][1];
    rc.outType = types[i][2];
    rc.seed = 10 + i;
    runCase(&rc);
  }
}

static void test_gqa_groups(void** state) {
  (void)state;
  const int groups[] = {1, 2, 3, 4, 8};
  for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
    pfCase_t rc = base();
    rc.G = groups[i];
    rc.Dqk = rc.Dv = 128;
    rc.outType = cpclFloat32;
    rc.withCache = (int)(i % 2);
    rc.seed = 20 + i;
    runCase(&rc);
  }
  /* MQA; and a group wider than one query tile (70 heads of one KV head: several head chunks) */
  pfCase_t rc = base();
  rc.Hkv = 1;
  rc.G = 6;
  rc.seed = 29;
  runCase(&rc);
  rc.G = 70;
  rc.W = 1;
  rc.numBlocks = 2;
  rc.Dqk = 40;
  rc.Dv = 24;
  rc.seed = 28;
  runCase(&rc);
}

static void test_mla(void** state) {
  (void)state;
  pfCase_t rc = base();
  rc.Hkv = 1;
  rc.G = 4;
  rc.Dqk = 576;
  rc.Dv = 512;
  rc.latent = 1;
  rc.seed = 30;
  runCase(&rc);
  rc.qType = rc.kvType = rc.outType = cpclFloat32;
  rc.G = 2;
  rc.W = 1;
  rc.pageSize = 5;
  rc.numBlocks = 2;
  rc.seed = 31;
  runCase(&rc);
}

/* head dims that are not a multiple of the register tiles, every sharding of the cache */
static void test_pages_interleave(void** state) {
  (void)state;
  const int pages[] = {1, 5, 16};
  const int shard[][2] = {{1, 1}, {4, 1}, {3, 2}, {2, 16}};
  for (size_t i = 0; i < 3; i++)
    for (size_t j = 0; j < 4; j++) {
      pfCase_t rc = base();
      rc.qType = rc.kvType = rc.outType = cpclFloat32;
      rc.Hkv = 1;
      rc.Dqk = 40;
      rc.Dv = 24;
      rc.W = shard[j][0];
      rc.I = shard[j][1];
      rc.pageSize = pages[i];
      rc.seed = 40 + i * 4 + j;
      runCase(&rc);
    }
}

static void test_base2(void** state) {
  (void)state;
  pfCase_t rc = base();
  rc.qType = rc.kvType = rc.outType = cpclFloat32;
  rc.base2 = 1;
  rc.seed = 50;
  runCase(&rc);
}

/* one to five blocks, dealt at random or in contiguous runs (a ring's blocks), fresh prompts */
static void test_block_chunkings(void** state) {
  (void)state;
  for (int b = 1; b <= MAXB; b++)
    for (int contiguous = 0; contiguous < 2; contiguous++) {
      pfCase_t rc = base();
      rc.numBlocks = b;
      rc.contiguous = contiguous;
      rc.withCache = b % 2;
      rc.W = 1 + b % 3;
      rc.outType = cpclFloat32;
      rc.seed = 60 + b * 2 + contiguous;
      runCase(&rc);
    }
}

/* no keys at all, and queries whose keys all lie after them: out = 0, lse = -inf */
static void test_no_keys(void** state) {
  (void)state;
  const int32_t qs[3] = {0, 2, 3}, qpos[3] = {0, 5, 7}, kpos[2] = {6, 8}, rowStart[3] = {0, 0, 2};
  const int32_t noRows[3] = {0, 0, 0};
  float q[3 * 2 * 8], k[2 * 8], v[2 * 8], out[3 * 2 * 8], lse[3 * 2];
  for (int i = 0; i < 48; i++) q[i] = (float)((i * 7) % 5) - 2.f;
  for (int i = 0; i < 16; i++) k[i] = v[i] = (float)(i % 3);
  void* ws = malloc(cpclHostPrefillWorkspaceBytes(8, 8));
  for (int variant = 0; variant < 3; variant++) {
    cpclPrefillParams_t p = {.numSeqs = 2,
                             .numTokens = 3,
                             .queryStart = qs,
                             .queryPos = qpos,
                             .numKvBlocks = variant,
                             .numKvHeads = 1,
                             .headDimQk = 8,
                             .headDimVo = 8,
                             .groupSize = 2,
                             .numHeads = 2,
                             .headsPerBlock = 2,
                             .smScale = 0.3f,
                             .qType = CPCL_K_FP32,
                             .kvType = CPCL_K_FP32,
                             .outType = CPCL_K_FP32,
                             .q = q,
                             .qTokenStride = 16,
                             .out = out,
                             .oTokenStride = 16,
                             .lse = lse,
                             .lseTokenStride = 2,
                             .workspace = ws};
    /* variant 1: sequence 1's keys (6, 8) are after its row at 5 and, for 8, after 7; variant 2
     * adds a block with no rows at all */
    p.kv[0] = (cpclPrefillKvBlock_t){k, v, rowStart, kpos};
    p.kv[1] = (cpclPrefillKvBlock_t){k, v, noRows, kpos};
    memset(out, 0xff, sizeof(out));
    memset(lse, 0xff, sizeof(lse));
    cpclHostPrefill(&p);
    for (int t = 0; t < 3; t++)
      for (int h = 0; h < 2; h++) {
        const int sees = variant > 0 && t == 2; /* only row 2 (pos 7) sees key 6 */
        if (!sees) {
          assert_true(lse[t * 2 + h] == -INFINITY);
          for (int d = 0; d < 8; d++) assert_true(out[(t * 2 + h) * 8 + d] == 0.f);
        } else {
          double s = 0;
          for (int d = 0; d < 8; d++) s += q[(t * 2 + h) * 8 + d] * k[d];
          assert_true(fabs(lse[t * 2 + h] - 0.3 * s) < 1e-5 * (1 + fabs(0.3 * s)));
          for (int d = 0; d < 8; d++) assert_true(out[(t * 2 + h) * 8 + d] == v[d]);
        }
      }
  }
  free(ws);
}

/* The cache part is the decode kernel's prefix attention: rows at seqLens - n + j against the
 * shard of a cache holding seqLens tokens give cpclHostAttn's answer (to fp32 rounding). */
static void test_matches_decode_kernel(void** state) {
  (void)state;
  static const int lens[NSEQ] = {1, 2, 5, 37, 70, 129}, rows[NSEQ] = {1, 2, 2, 1, 4, 3};
  int32_t qs[NSEQ + 1], seqLens[NSEQ], qpos[16];
  qs[0] = 0;
  for (int s = 0; s < NSEQ; s++) {
    seqLens[s] = lens[s] + rows[s] - 1;
    qs[s + 1] = qs[s] + rows[s];
    for (int j = 0; j < rows[s]; j++) qpos[qs[s] + j] = seqLens[s] - rows[s] + j;
  }
  tuProblem_t pb = {.numSeqs = NSEQ,
                    .numTokens = qs[NSEQ],
                    .queryStart = qs,
                    .seqLens = seqLens,
                    .Hq = 8,
                    .Hkv = 2,
                    .Dqk = 64,
                    .Dv = 64,
                    .qType = cpclFloat32,
                    .kvType = cpclBfloat16,
                    .smScale = 0.125f,
                    .seed = 77};
  const int T = pb.numTokens, W = 3, I = 2;
  void* q = tuMakeQ(&pb, 0, pb.Hq);
  float *o1 = malloc(sizeof(float) * T * 8 * 64), *o2 = malloc(sizeof(float) * T * 8 * 64);
  float l1[16 * 8], l2[16 * 8];
  void* ws1 = malloc(cpclHostAttnWorkspaceBytes(64, 64));
  void* ws2 = malloc(cpclHostPrefillWorkspaceBytes(64, 64));
  for (int r = 0; r < W; r++) {
    tuCache_t c;
    tuCacheAlloc(&pb, W, r, I, 5, &c);
    tuCacheFill(&pb, W, r, I, &c);
    cpclAttnParams_t a;
    tuAttnParams(&pb, &c, W, r, I, q, o1, l1, ws1, &a);
    cpclHostAttn(&a);
    cpclPrefillParams_t p = {.numSeqs = NSEQ,
                             .numTokens = T,
                             .queryStart = qs,
                             .queryPos = qpos,
                             .cacheLens = seqLens,
                             .blockTable = c.blockTable,
                             .maxPagesPerSeq = c.maxPagesPerSeq,
                             .pageSize = 5,
                             .cpSize = W,
                             .cpRank = r,
                             .interleave = I,
                             .kCache = c.k,
                             .vCache = c.v,
                             .numKvHeads = 2,
                             .headDimQk = 64,
                             .headDimVo = 64,
                             .groupSize = 4,
                             .numHeads = 8,
                             .headsPerBlock = 8,
                             .smScale = 0.125f,
                             .qType = CPCL_K_FP32,
                             .kvType = CPCL_K_BF16,
                             .outType = CPCL_K_FP32,
                             .q = q,
                             .qTokenStride = 8 * 64,
                             .out = o2,
                             .oTokenStride = 8 * 64,
                             .lse = l2,
                             .lseTokenStride = 8,
                             .workspace = ws2};
    cpclHostPrefill(&p);
    for (int i = 0; i < T * 8; i++) {
      if (l1[i] == -INFINITY) {
        assert_true(l2[i] == -INFINITY);
      } else {
        assert_true(fabsf(l1[i] - l2[i]) < 1e-5f * (1 + fabsf(l1[i])));
      }
    }
    for (int i = 0; i < T * 8 * 64; i++)
      if (!(fabsf(o1[i] - o2[i]) < 1e-5f)) fail_msg("rank %d element %d: decode %g prefill %g", r, i, o1[i], o2[i]);
    tuCacheFree(&c);
  }
  free(q);
  free(o1);
  free(o2);
  free(ws1);
  free(ws2);
}

/* cpclHostPrefillStore of every block, rank by rank, equals the brute-force placement of
 * tuCacheFill, and writes nothing else (both caches start poisoned) */
static void test_store(void** state) {
  (void)state;
  const int cfg[][5] = {
      /* W, I, pageSize, latent, blocks */ {1, 1, 16, 0, 2}, {3, 2, 5, 0, 4}, {4, 1, 1, 1, 3}, {2, 16, 16, 0, 1}};
  for (size_t i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++) {
    pfCase_t rc = base();
    rc.W = 1;
    rc.withCache = 0;
    rc.latent = cfg[i][3];
    if (rc.latent) {
      rc.Hkv = 1;
      rc.Dqk = 576;
      rc.Dv = 512;
    }
    rc.numBlocks = cfg[i][4];
    rc.seed = 90 + i;
    pfProblem_t P;
    pfBuild(&rc, &P);
    tuProblem_t whole = P.pb;
    whole.seqLens = P.len;
    const int W = cfg[i][0], I = cfg[i][1], ps = cfg[i][2];
    for (int r = 0; r < W; r++) {
      tuCache_t want, got;
      tuCacheAlloc(&whole, W, r, I, ps, &want);
      tuCacheAlloc(&whole, W, r, I, ps, &got);
      tuCacheFill(&whole, W, r, I, &want);
      for (int b = 0; b < rc.numBlocks; b++) {
        cpclPrefillStoreParams_t sp = {.numSeqs = NSEQ,
                                       .kv = {P.k[b], P.v[b], P.rowStart[b], P.kpos[b]},
                                       .blockTable = got.blockTable,
                                       .maxPagesPerSeq = got.maxPagesPerSeq,
                                       .pageSize = ps,
                                       .cpSize = W,
                                       .cpRank = r,
                                       .interleave = I,
                                       .numKvHeads = rc.Hkv,
                                       .headDimQk = rc.Dqk,
                                       .headDimVo = rc.Dv,
                                       .latentKv = rc.latent,
                                       .kvType = rc.kvType,
                                       .kCache = got.k,
                                       .vCache = got.v};
        cpclHostPrefillStore(&sp);
      }
      const size_t slots = (size_t)want.numPages * ps * rc.Hkv, es = tuDtypeSize(rc.kvType);
      assert_memory_equal(got.k, want.k, slots * rc.Dqk * es);
      if (!rc.latent) assert_memory_equal(got.v, want.v, slots * rc.Dv * es);
      tuCacheFree(&want);
      tuCacheFree(&got);
    }
    pfFree(&P);
  }
}

/* ---- cpclPcpChunks ---- */
static void test_pcp_chunks(void** state) {
  (void)state;
  for (int P = 1; P <= 4; P++)
    for (int64_t n = 0; n <= 40; n++) {
      const int64_t c = (n + 2 * P - 1) / (2 * P);
      int owner[41];
      for (int i = 0; i < 41; i++) owner[i] = -1;
      int64_t total = 0, maxRows = 0, minRows = INT64_MAX;
      for (int r = 0; r < P; r++) {
        int64_t st[2] = {-7, -7}, ln[2] = {-7, -7};
        const int64_t rows = cpclPcpChunks(n, P, r, st, ln);
        assert_int_equal(rows, ln[0] + ln[1]);
        for (int k = 0; k < 2; k++) {
          const int chunk = k == 0 ? r : 2 * P - 1 - r;
          const int64_t b = chunk * c < n ? chunk * c : n, e = (chunk + 1) * c < n ? (chunk + 1) * c : n;
          assert_int_equal(st[k], b);
          assert_int_equal(ln[k], e - b);
          for (int64_t i = st[k]; i < st[k] + ln[k]; i++) {
            assert_true(owner[i] == -1); /* disjoint */
            owner[i] = r;
          }
        }
        if (ln[0] > 0 && ln[1] > 0) assert_true(st[0] + ln[0] <= st[1]); /* head before tail */
        total += rows;
        maxRows = rows > maxRows ? rows : maxRows;
        minRows = rows < minRows ? rows : minRows;
      }
      assert_int_equal(total, n); /* covering */
      for (int64_t i = 0; i < n; i++) assert_true(owner[i] >= 0 && owner[i] < P);
      if (n % (2 * P) == 0) assert_int_equal(maxRows, minRows); /* balanced when even */
    }
  int64_t st[2], ln[2];
  assert_int_equal(cpclPcpChunks(-1, 2, 0, st, ln), -1);
  assert_int_equal(cpclPcpChunks(8, 0, 0, st, ln), -1);
  assert_int_equal(cpclPcpChunks(8, 2, 2, st, ln), -1);
  assert_int_equal(cpclPcpChunks(8, 2, -1, st, ln), -1);
  assert_int_equal(cpclPcpChunks(8, 2, 0, NULL, ln), -1);
  assert_int_equal(cpclPcpChunks(8, 2, 0, st, NULL), -1);
  /* a long prompt: 64-bit lengths */
  assert_int_equal(cpclPcpChunks(INT64_C(1) << 40, 4, 1, st, ln), INT64_C(1) << 38);
  assert_int_equal(st[1], 6 * (INT64_C(1) << 37));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pcp_chunks),
      cmocka_unit_test(test_no_keys),
      cmocka_unit_test(test_dtypes),
      cmocka_unit_test(test_gqa_groups),
      cmocka_unit_test(test_mla),
      cmocka_unit_test(test_base2),
      cmocka_unit_test(test_pages_interleave),
      cmocka_unit_test(test_block_chunkings),
      cmocka_unit_test(test_matches_decode_kernel),
      cmocka_unit_test(test_store),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
