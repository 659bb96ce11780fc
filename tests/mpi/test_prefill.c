/* mpi: cpclAttnPrefill on W ranks, every factorisation pcp x dcp of W, against a naive fp64
 * causal attention over the unsharded sequences and against the one-rank prefill of the same
 * prompt; both schedules (through the descriptor and CPCL_PREFILL_ALGO), each bitwise repeatable;
 * the cache after the call bitwise what cpclKvStore of the same tokens writes. GQA, MQA and MLA,
 * interleave 1 and 16, sequences with mixed context and new lengths (newLen 0, 1, < 2*pcp,
 * context 0 and > 0) and fresh prompts, fp32 and base-2 LSE, lse NULL. Then the validation:
 * each bad field named, ranks that disagree, a comm that stays usable. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "mpi_check.h"
#include "mpi_oob.h"
#include "testutil.h"

static MPI_Comm world = MPI_COMM_WORLD;
static int rank, W;
static int casesRun;

#define S 6

typedef struct {
  int H, Hkv, Dqk, Dv, latent;
  cpclDataType_t type;
  int base2, noLse;
} shape_t;

static double tolOf(cpclDataType_t t) { return t == cpclFloat32 ? 1e-4 : t == cpclFloat16 ? 1.5e-3 : 6e-3; }

/* One global prompt batch and this rank's part of it. */
typedef struct {
  shape_t sh;
  int P, D, pr, dr, I, ps;
  int32_t ctx[S], nw[S], full[S];
  tuProblem_t pbFull, pbCtx; /* seqLens = context + new / context only; the same K/V values */
  int T;                     /* this rank's rows */
  int32_t qs[S + 1];
  int32_t* pos; /* [T] */
  int* seq;     /* [T] */
  void *q, *kNew, *vNew;
  tuCache_t cache, pristine, want; /* want: the context, then cpclKvStore of every new token */
  size_t kBytes, vBytes;
} job_t;

static double qVal(const job_t* j, int s, int64_t p, int g, int d) {
  return 2.0 * tuRand(j->pbFull.seed, 7, (uint64_t)s, (uint64_t)p, (uint64_t)(g * 4096 + d));
}

static void jobBuild(job_t* j, const shape_t* sh, int P, int D, int I, int ps, int fresh, uint64_t seed) {
  static const int ctx0[S] = {0, 13, 0, 40, 7, 25};
  memset(j, 0, sizeof(*j));
  j->sh = *sh;
  j->P = P, j->D = D, j->pr = rank / D, j->dr = rank % D, j->I = I, j->ps = ps;
  const int nw0[S] = {37, 5, 1, 0, 2 * P - 1, 64};
  for (int s = 0; s < S; s++) {
    j->ctx[s] = fresh ? 0 : ctx0[s];
    j->nw[s] = nw0[s];
    j->full[s] = j->ctx[s] + j->nw[s];
  }
  tuProblem_t pb = {.numSeqs = S,
                    .Hq = D * sh->H,
                    .Hkv = sh->Hkv,
                    .Dqk = sh->Dqk,
                    .Dv = sh->Dv,
                    .latent = sh->latent,
                    .qType = sh->type,
                    .kvType = sh->type,
                    .smScale = (float)(1.0 / sqrt((double)sh->Dqk)),
                    .seed = seed};
  j->pbFull = pb, j->pbCtx = pb;
  j->pbFull.seqLens = j->full;
  j->pbCtx.seqLens = j->ctx;
  j->qs[0] = 0;
  for (int s = 0; s < S; s++) {
    int64_t st[2], ln[2];
    j->qs[s + 1] = j->qs[s] + (int32_t)cpclPcpChunks(j->nw[s], P, j->pr, st, ln);
  }
  j->T = j->qs[S];
  j->pos = malloc(sizeof(int32_t) * (j->T + 1));
  j->seq = malloc(sizeof(int) * (j->T + 1));
  for (int s = 0, t = 0; s < S; s++) {
    int64_t st[2], ln[2];
    cpclPcpChunks(j->nw[s], P, j->pr, st, ln);
    for (int c = 0; c < 2; c++)
      for (int64_t i = 0; i < ln[c]; i++, t++) j->pos[t] = j->ctx[s] + (int32_t)(st[c] + i), j->seq[t] = s;
  }
  const size_t es = tuDtypeSize(sh->type);
  const int H = sh->H, Hkv = sh->Hkv;
  j->q = malloc((size_t)(j->T + 1) * H * sh->Dqk * es);
  j->kNew = malloc((size_t)(j->T + 1) * Hkv * sh->Dqk * es);
  j->vNew = malloc((size_t)(j->T + 1) * Hkv * sh->Dv * es);
  for (int t = 0; t < j->T; t++) {
    for (int h = 0; h < H; h++)
      for (int d = 0; d < sh->Dqk; d++)
        tuPut(j->q, ((size_t)t * H + h) * sh->Dqk + d, qVal(j, j->seq[t], j->pos[t], j->dr * H + h, d), sh->type);
    for (int h = 0; h < Hkv; h++) {
      for (int d = 0; d < sh->Dqk; d++)
        tuPut(j->kNew, ((size_t)t * Hkv + h) * sh->Dqk + d, tuKv(&j->pbFull, 0, j->seq[t], j->pos[t], h, d), sh->type);
      for (int d = 0; d < sh->Dv; d++)
        tuPut(j->vNew, ((size_t)t * Hkv + h) * sh->Dv + d, tuKv(&j->pbFull, 1, j->seq[t], j->pos[t], h, d), sh->type);
    }
  }
  tuCacheAlloc(&j->pbFull, W, rank, I, ps, &j->cache);
  tuCacheFill(&j->pbCtx, W, rank, I, &j->cache);
  tuCacheAlloc(&j->pbFull, W, rank, I, ps, &j->pristine);
  tuCacheFill(&j->pbCtx, W, rank, I, &j->pristine);
  tuCacheAlloc(&j->pbFull, W, rank, I, ps, &j->want);
  tuCacheFill(&j->pbCtx, W, rank, I, &j->want);
  j->kBytes = (size_t)j->cache.numPages * ps * Hkv * sh->Dqk * es;
  j->vBytes = sh->latent ? 0 : (size_t)j->cache.numPages * ps * Hkv * sh->Dv * es;
}

static void jobFree(job_t* j) {
  free(j->pos), free(j->seq), free(j->q), free(j->kNew), free(j->vNew);
  tuCacheFree(&j->cache), tuCacheFree(&j->pristine), tuCacheFree(&j->want);
}

static cpclPrefillBatch_t jobBatch(const job_t* j) {
  cpclPrefillBatch_t b = CPCL_PREFILL_BATCH_INITIALIZER;
  b.numSeqs = S;
  b.numTokens = j->T;
  b.queryStart = j->qs;
  b.contextLens = j->ctx;
  b.newLens = j->nw;
  b.blockTable = j->cache.blockTable;
  b.maxPagesPerSeq = j->cache.maxPagesPerSeq;
  return b;
}

/* What cpclKvStore writes for every new token of every sequence (all PCP ranks' rows, in order). */
static void jobWantCache(job_t* j, cpclComm_t comm, const cpclAttnDesc_t* desc) {
  const shape_t* sh = &j->sh;
  const size_t es = tuDtypeSize(sh->type);
  int32_t qs[S + 1] = {0};
  for (int s = 0; s < S; s++) qs[s + 1] = qs[s] + j->nw[s];
  const int n = qs[S];
  void* k = malloc((size_t)n * sh->Hkv * sh->Dqk * es);
  void* v = malloc((size_t)n * sh->Hkv * sh->Dv * es);
  for (int s = 0; s < S; s++)
    for (int i = 0; i < j->nw[s]; i++)
      for (int h = 0; h < sh->Hkv; h++) {
        const size_t row = (size_t)(qs[s] + i) * sh->Hkv + h;
        for (int d = 0; d < sh->Dqk; d++)
          tuPut(k, row * sh->Dqk + d, tuKv(&j->pbFull, 0, s, j->ctx[s] + i, h, d), sh->type);
        for (int d = 0; d < sh->Dv; d++)
          tuPut(v, row * sh->Dv + d, tuKv(&j->pbFull, 1, s, j->ctx[s] + i, h, d), sh->type);
      }
  cpclAttnPlan_t plan;
  CPCL_OK(cpclAttnPlanCreate(&plan, comm, desc, 8));
  cpclBatch_t b = tuBatch(S, n, qs, j->full, j->want.blockTable, j->want.maxPagesPerSeq);
  CPCL_OK(cpclKvStore(plan, &b, k, sh->latent ? NULL : v, j->want.k, sh->latent ? NULL : j->want.v, NULL));
  CPCL_OK(cpclAttnPlanDestroy(plan));
  free(k), free(v);
}

/* naive fp64 causal attention of this rank's row t, own head h, over positions <= its own */
static double naive(const job_t* j, int t, int h, double* o) {
  const shape_t* sh = &j->sh;
  const int s = j->seq[t], g = j->dr * sh->H + h, G = j->D * sh->H / sh->Hkv, kh = g / G;
  const int64_t qp = j->pos[t];
  double* sc = malloc(sizeof(double) * (size_t)(qp + 1));
  double* qv = malloc(sizeof(double) * sh->Dqk);
  for (int d = 0; d < sh->Dqk; d++) qv[d] = tuGet(j->q, ((size_t)t * sh->H + h) * sh->Dqk + d, sh->type);
  double m = -INFINITY;
  for (int64_t p = 0; p <= qp; p++) {
    double dot = 0;
    for (int d = 0; d < sh->Dqk; d++) dot += qv[d] * tuKv(&j->pbFull, 0, s, p, kh, d);
    sc[p] = dot * j->pbFull.smScale;
    m = sc[p] > m ? sc[p] : m;
  }
  double l = 0;
  for (int d = 0; d < sh->Dv; d++) o[d] = 0;
  for (int64_t p = 0; p <= qp; p++) {
    const double w = exp(sc[p] - m);
    l += w;
    for (int d = 0; d < sh->Dv; d++) o[d] += w * tuKv(&j->pbFull, 1, s, p, kh, d);
  }
  for (int d = 0; d < sh->Dv; d++) o[d] /= l;
  free(sc), free(qv);
  return m + log(l);
}

/* The same prompt on one rank (self transport), all D*H heads: out [rows][D*H][Dv], lse. Rows
 * with one PCP rank are the new tokens in order. */
static void singleRank(const job_t* j, void* out, float* lse) {
  const shape_t* sh = &j->sh;
  const int Hq = j->D * sh->H;
  const size_t es = tuDtypeSize(sh->type);
  cpclComm_t comm;
  CPCL_OK(tuSelfComm(&comm, 1, cpclMemHost));
  tuProblem_t pb = j->pbFull;
  pb.Hq = Hq;
  cpclAttnDesc_t desc = tuDesc(&pb, Hq, j->ps);
  desc.lseBase2 = sh->base2;
  int32_t qs[S + 1] = {0};
  for (int s = 0; s < S; s++) qs[s + 1] = qs[s] + j->nw[s];
  const int n = qs[S];
  void* q = malloc((size_t)n * Hq * sh->Dqk * es);
  void* k = malloc((size_t)n * sh->Hkv * sh->Dqk * es);
  void* v = malloc((size_t)n * sh->Hkv * sh->Dv * es);
  for (int s = 0; s < S; s++)
    for (int i = 0; i < j->nw[s]; i++) {
      const int64_t p = j->ctx[s] + i;
      const size_t t = (size_t)qs[s] + i;
      for (int g = 0; g < Hq; g++)
        for (int d = 0; d < sh->Dqk; d++) tuPut(q, (t * Hq + g) * sh->Dqk + d, qVal(j, s, p, g, d), sh->type);
      for (int h = 0; h < sh->Hkv; h++) {
        for (int d = 0; d < sh->Dqk; d++) tuPut(k, (t * sh->Hkv + h) * sh->Dqk + d, tuKv(&pb, 0, s, p, h, d), sh->type);
        for (int d = 0; d < sh->Dv; d++) tuPut(v, (t * sh->Hkv + h) * sh->Dv + d, tuKv(&pb, 1, s, p, h, d), sh->type);
      }
    }
  tuCache_t c;
  tuCacheAlloc(&pb, 1, 0, 1, j->ps, &c);
  tuProblem_t pbc = pb;
  const int32_t* ctxLens = j->ctx;
  pbc.seqLens = (int32_t*)ctxLens;
  tuCacheFill(&pbc, 1, 0, 1, &c);
  cpclAttnPlan_t plan;
  CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, n));
  cpclPrefillBatch_t b = CPCL_PREFILL_BATCH_INITIALIZER;
  b.numSeqs = S, b.numTokens = n, b.queryStart = qs, b.contextLens = j->ctx, b.newLens = j->nw;
  b.blockTable = c.blockTable, b.maxPagesPerSeq = c.maxPagesPerSeq;
  CPCL_OK(cpclAttnPrefill(plan, &b, q, k, sh->latent ? NULL : v, c.k, sh->latent ? NULL : c.v, out, lse, NULL));
  CPCL_OK(cpclAttnPlanDestroy(plan));
  CPCL_OK(cpclCommDestroy(comm));
  tuCacheFree(&c);
  free(q), free(k), free(v);
}

static void runCase(cpclComm_t comm, int P, int D, int I, int ps, const shape_t* sh, int fresh) {
  job_t j;
  jobBuild(&j, sh, P, D, I, ps, fresh, (uint64_t)(300 + 17 * P + 5 * D + I + sh->Dqk + fresh));
  const int T = j.T, H = sh->H, Hq = D * H, Dv = sh->Dv;
  const size_t es = tuDtypeSize(sh->type), outBytes = (size_t)T * H * Dv * es + 1, lseBytes = sizeof(float) * T * H + 1;
  cpclAttnDesc_t desc = tuDesc(&j.pbFull, H, ps);
  desc.lseBase2 = sh->base2;
  jobWantCache(&j, comm, &desc);

  /* the reference: fp64 on the unsharded sequences, and the one-rank prefill */
  double* ref = malloc(sizeof(double) * ((size_t)T * H * Dv + 1));
  double* refLse = malloc(sizeof(double) * ((size_t)T * H + 1));
  for (int t = 0; t < T; t++)
    for (int h = 0; h < H; h++) refLse[t * H + h] = naive(&j, t, h, ref + ((size_t)t * H + h) * Dv);
  int n1 = 0;
  for (int s = 0; s < S; s++) n1 += j.nw[s];
  void* one = malloc((size_t)n1 * Hq * Dv * es);
  float* oneLse = malloc(sizeof(float) * n1 * Hq);
  singleRank(&j, one, oneLse);

  void *out = malloc(outBytes), *out2 = malloc(outBytes), *first = malloc(outBytes);
  float *lse = malloc(lseBytes), *lse2 = malloc(lseBytes);
  const double tol = tolOf(sh->type);
  const cpclPrefillBatch_t b = jobBatch(&j);
  static const char* const algos[] = {"allgather", "ring", "ring"};
  for (int a = 0; a < 3; a++) {
    /* the third run: the schedule through the environment */
    if (a == 2) {
      setenv("CPCL_PREFILL_ALGO", algos[a], 1);
      cpclParamReset();
      desc.prefillAlgo = NULL;
    } else {
      desc.prefillAlgo = algos[a];
    }
    cpclAttnPlan_t plan;
    CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, n1)); /* the same on every rank */
    for (int rep = 0; rep < 2; rep++) {
      memcpy(j.cache.k, j.pristine.k, j.kBytes);
      if (j.vBytes) memcpy(j.cache.v, j.pristine.v, j.vBytes);
      void* o = rep ? out2 : out;
      float* l = rep ? lse2 : lse;
      memset(o, 0xff, outBytes);
      memset(l, 0xff, lseBytes);
      CPCL_OK(cpclAttnPrefill(plan, &b, j.q, j.kNew, sh->latent ? NULL : j.vNew, j.cache.k,
                              sh->latent ? NULL : j.cache.v, o, sh->noLse ? NULL : l, NULL));
      /* the cache: exactly what cpclKvStore of the same tokens writes, nothing else changed */
      EXPECT(memcmp(j.cache.k, j.want.k, j.kBytes) == 0);
      if (j.vBytes) EXPECT(memcmp(j.cache.v, j.want.v, j.vBytes) == 0);
    }
    EXPECT(memcmp(out, out2, outBytes - 1) == 0); /* bitwise repeatable */
    if (!sh->noLse) EXPECT(memcmp(lse, lse2, lseBytes - 1) == 0);
    if (a == 1) memcpy(first, out, outBytes);
    if (a == 2) EXPECT(memcmp(first, out, outBytes - 1) == 0); /* env and desc: the same schedule */
    for (int t = 0; t < T; t++) {
      const int s = j.seq[t], row1 = 0;
      int r1 = row1;
      for (int x = 0; x < s; x++) r1 += j.nw[x];
      r1 += j.pos[t] - j.ctx[s];
      for (int h = 0; h < H; h++) {
        const int g = j.dr * H + h;
        for (int d = 0; d < Dv; d++) {
          const double got = tuGet(out, ((size_t)t * H + h) * Dv + d, sh->type);
          const double want = ref[((size_t)t * H + h) * Dv + d];
          const double single = tuGet(one, ((size_t)r1 * Hq + g) * Dv + d, sh->type);
          if (!(fabs(got - want) <= tol) || !(fabs(got - single) <= tol)) {
            fprintf(stderr,
                    "[rank %d] %s pcp %d dcp %d I %d page %d Dqk %d type %d fresh %d: row %d (seq %d pos %d) head %d "
                    "dim %d got %g want %g one-rank %g\n",
                    rank, algos[a], P, D, I, ps, sh->Dqk, sh->type, fresh, t, s, j.pos[t], h, d, got, want, single);
            MPI_Abort(world, 1);
          }
        }
        if (!sh->noLse) {
          const double e = refLse[t * H + h] * (sh->base2 ? 1.4426950408889634 : 1.0);
          const float gl = lse[t * H + h];
          if (!(fabs(gl - e) <= 1e-4 * (1 + fabs(e))) ||
              !(fabsf(gl - oneLse[r1 * Hq + g]) <= 1e-4f * (1 + fabsf(gl)))) {
            fprintf(stderr, "[rank %d] %s pcp %d dcp %d: lse row %d head %d got %g want %g one-rank %g\n", rank,
                    algos[a], P, D, t, h, gl, e, oneLse[r1 * Hq + g]);
            MPI_Abort(world, 1);
          }
        }
      }
    }
    CPCL_OK(cpclAttnPlanDestroy(plan));
    casesRun++;
  }
  unsetenv("CPCL_PREFILL_ALGO");
  cpclParamReset();
  free(ref), free(refLse), free(one), free(oneLse), free(out), free(out2), free(first), free(lse), free(lse2);
  jobFree(&j);
}

/* A call whose arguments are bad on every rank alike: cpclInvalidArgument, the message names
 * the field. */
#define EXPECT_BAD(call, what)                                                                        \
  do {                                                                                                \
    EXPECT_RES(call, cpclInvalidArgument);                                                            \
    if (strstr(cpclGetLastError(comm), what) == NULL) {                                               \
      fprintf(stderr, "[rank %d] %s:%d: message \"%s\" does not name %s\n", rank, __FILE__, __LINE__, \
              cpclGetLastError(comm), what);                                                          \
      MPI_Abort(world, 1);                                                                            \
    }                                                                                                 \
  } while (0)

static void runValidation(cpclComm_t comm, int P, int D) {
  shape_t sh = {2, 2, 32, 32, 0, cpclFloat32, 0, 0};
  job_t j;
  jobBuild(&j, &sh, P, D, 1, 4, 0, 4242);
  cpclAttnDesc_t desc = tuDesc(&j.pbFull, sh.H, 4);
  int n1 = 0;
  for (int s = 0; s < S; s++) n1 += j.nw[s];
  const int maxT = n1 + 4; /* room for the disagreeing rank's extra row */
  cpclAttnPlan_t plan;
  CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, maxT));
  void* out = malloc((size_t)(j.T + 1) * sh.H * sh.Dv * 4);
  float* lse = malloc(sizeof(float) * (j.T + 1) * sh.H);
  const cpclPrefillBatch_t good = jobBatch(&j);
  cpclPrefillBatch_t b;
#define CALL(batchPtr) cpclAttnPrefill(plan, batchPtr, j.q, j.kNew, j.vNew, j.cache.k, j.cache.v, out, lse, NULL)
  CPCL_OK(CALL(&good));
  EXPECT_BAD(CALL(NULL), "batch is NULL");
  b = good, b.size = 8;
  EXPECT_BAD(CALL(&b), "batch->size");
  b = good, b.numSeqs = -1;
  EXPECT_BAD(CALL(&b), "batch->numSeqs");
  b = good, b.numSeqs = maxT + 1;
  EXPECT_BAD(CALL(&b), "batch->numSeqs");
  b = good, b.numTokens = maxT + 1;
  EXPECT_BAD(CALL(&b), "batch->numTokens");
  b = good, b.numTokens = good.numTokens - 1;
  EXPECT_BAD(CALL(&b), "batch->numTokens");
  b = good, b.queryStart = NULL;
  EXPECT_BAD(CALL(&b), "batch->queryStart");
  int32_t qs[S + 1];
  memcpy(qs, j.qs, sizeof(qs));
  qs[1] += 1; /* sequence 0 claims a row its chunks do not have */
  b = good, b.queryStart = qs;
  EXPECT_BAD(CALL(&b), "batch->queryStart[1]");
  b = good, b.contextLens = NULL;
  EXPECT_BAD(CALL(&b), "batch->contextLens");
  b = good, b.newLens = NULL;
  EXPECT_BAD(CALL(&b), "batch->newLens");
  int32_t ctx[S], nw[S];
  memcpy(ctx, j.ctx, sizeof(ctx));
  memcpy(nw, j.nw, sizeof(nw));
  ctx[2] = -1;
  b = good, b.contextLens = ctx;
  EXPECT_BAD(CALL(&b), "batch->contextLens[2] is -1");
  memcpy(ctx, j.ctx, sizeof(ctx));
  ctx[2] = 0x7fffffff; /* and one new token */
  b = good, b.contextLens = ctx;
  EXPECT_BAD(CALL(&b), "batch->contextLens[2] + newLens[2]");
  nw[3] = -3;
  b = good, b.newLens = nw;
  EXPECT_BAD(CALL(&b), "batch->newLens[3] is -3");
  b = good, b.blockTable = NULL;
  EXPECT_BAD(CALL(&b), "batch->blockTable");
  b = good, b.maxPagesPerSeq = 1; /* the rows of the block table are shorter than the sequences */
  EXPECT_BAD(CALL(&b), "block-table row");
  int32_t* bt = malloc(sizeof(int32_t) * (size_t)j.cache.numPages);
  memcpy(bt, j.cache.blockTable, sizeof(int32_t) * (size_t)j.cache.numPages);
  bt[0 * j.cache.maxPagesPerSeq + 0] = -1; /* sequence 0's first page: every rank reads or writes it */
  b = good, b.blockTable = bt;
  EXPECT_BAD(CALL(&b), "batch->blockTable[0][0] is -1");
  memcpy(bt, j.cache.blockTable, sizeof(int32_t) * (size_t)j.cache.numPages);
  for (int i = 0; i < j.cache.maxPagesPerSeq; i++) bt[3 * j.cache.maxPagesPerSeq + i] = -1;
  b = good, b.blockTable = bt; /* sequence 3 has no new tokens: its row is never read */
  CPCL_OK(CALL(&b));
  EXPECT_BAD(cpclAttnPrefill(plan, &good, NULL, j.kNew, j.vNew, j.cache.k, j.cache.v, out, lse, NULL), "q is NULL");
  EXPECT_BAD(cpclAttnPrefill(plan, &good, j.q, NULL, j.vNew, j.cache.k, j.cache.v, out, lse, NULL), "kNew is NULL");
  EXPECT_BAD(cpclAttnPrefill(plan, &good, j.q, j.kNew, NULL, j.cache.k, j.cache.v, out, lse, NULL), "vNew is NULL");
  EXPECT_BAD(cpclAttnPrefill(plan, &good, j.q, j.kNew, j.vNew, NULL, j.cache.v, out, lse, NULL), "kCache is NULL");
  EXPECT_BAD(cpclAttnPrefill(plan, &good, j.q, j.kNew, j.vNew, j.cache.k, NULL, out, lse, NULL), "vCache is NULL");
  EXPECT_BAD(cpclAttnPrefill(plan, &good, j.q, j.kNew, j.vNew, j.cache.k, j.cache.v, NULL, lse, NULL), "out is NULL");
  EXPECT_RES(cpclAttnPrefill(NULL, &good, j.q, j.kNew, j.vNew, j.cache.k, j.cache.v, out, lse, NULL),
             cpclInvalidArgument);
  /* every newLens 0: a valid, empty step; no tensor is needed */
  memset(nw, 0, sizeof(nw));
  int32_t qs0[S + 1] = {0};
  b = good, b.newLens = nw, b.queryStart = qs0, b.numTokens = 0;
  CPCL_OK(cpclAttnPrefill(plan, &b, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
  if (W > 1) {
    /* one rank's bad argument: it gets its own error, the others cpclInvalidUsage naming it */
    b = good;
    if (rank == W - 1) b.size = 8;
    EXPECT_RES(CALL(&b), rank == W - 1 ? cpclInvalidArgument : cpclInvalidUsage);
    if (rank != W - 1) EXPECT(strstr(cpclGetLastError(comm), "rejected its arguments") != NULL);
    /* ranks that disagree on the contents: rank 0 has another context length (its own rows are
     * unchanged, so only the agreement can see it) */
    memcpy(ctx, j.ctx, sizeof(ctx));
    if (rank == 0) ctx[1] += 1;
    b = good, b.contextLens = ctx;
    EXPECT_RES(CALL(&b), cpclInvalidUsage);
    EXPECT(strstr(cpclGetLastError(comm), "batch->contextLens differ") != NULL);
    /* and on the new tokens: rank 0 has one more in sequence 3, its rows follow its own newLens */
    memcpy(nw, j.nw, sizeof(nw));
    int32_t qsr[S + 1];
    memcpy(qsr, j.qs, sizeof(qsr));
    cpclPrefillBatch_t bd = good;
    if (rank == 0) {
      nw[3] = 1; /* PCP rank 0 holds chunk 0 of a one-token prompt */
      for (int s = 4; s <= S; s++) qsr[s] += 1;
      bd.numTokens += 1;
    }
    bd.newLens = nw, bd.queryStart = qsr;
    void* q2 = calloc((size_t)(j.T + 2) * sh.H * sh.Dqk, 4);
    void* k2 = calloc((size_t)(j.T + 2) * sh.Hkv * sh.Dqk, 4);
    void* out2 = malloc((size_t)(j.T + 2) * sh.H * sh.Dv * 4);
    float* lse2 = malloc(sizeof(float) * (j.T + 2) * sh.H);
    EXPECT_RES(cpclAttnPrefill(plan, &bd, q2, k2, k2, j.cache.k, j.cache.v, out2, lse2, NULL), cpclInvalidUsage);
    EXPECT(strstr(cpclGetLastError(comm), "disagree") != NULL);
    free(q2), free(k2), free(out2), free(lse2);
    /* a decode on one rank while the others prefill */
    if (rank == 0) {
      cpclBatch_t db = tuBatch(1, 1, NULL, j.full, j.cache.blockTable, j.cache.maxPagesPerSeq);
      EXPECT_RES(cpclAttnDecode(plan, &db, j.q, j.cache.k, j.cache.v, out, lse, NULL), cpclInvalidUsage);
    } else {
      EXPECT_RES(CALL(&good), cpclInvalidUsage);
    }
    EXPECT(strstr(cpclGetLastError(comm), "disagree") != NULL);
  }
  /* the communicator and plan are still usable */
  memcpy(j.cache.k, j.pristine.k, j.kBytes);
  memcpy(j.cache.v, j.pristine.v, j.vBytes);
  CPCL_OK(CALL(&good));
#undef CALL
  /* CPCL_PREFILL_ALGO is read (and checked) when the descriptor names no schedule */
  {
    setenv("CPCL_PREFILL_ALGO", "zigzag", 1);
    cpclParamReset();
    cpclAttnPlan_t bad;
    EXPECT_RES(cpclAttnPlanCreate(&bad, comm, &desc, maxT), cpclInvalidArgument);
    EXPECT(strstr(cpclGetLastError(comm), "CPCL_PREFILL_ALGO is \"zigzag\"") != NULL);
    desc.prefillAlgo = "allgather"; /* the descriptor wins */
    CPCL_OK(cpclAttnPlanCreate(&bad, comm, &desc, maxT));
    CPCL_OK(cpclAttnPlanDestroy(bad));
    desc.prefillAlgo = NULL;
    unsetenv("CPCL_PREFILL_ALGO");
    cpclParamReset();
  }
  /* the prefill workspace carved from a caller's buffer (poisoned) gives the same bits */
  {
    size_t need = 0;
    CPCL_OK(cpclAttnPlanWorkspaceBytes(plan, &need));
    void* ws = NULL;
    EXPECT(posix_memalign(&ws, 256, need) == 0);
    memset(ws, 0xa5, need);
    cpclAttnPlan_t wp;
    CPCL_OK(cpclAttnPlanCreateWithWorkspace(&wp, comm, &desc, maxT, ws, need));
    const size_t ob = (size_t)j.T * sh.H * sh.Dv * 4, lb = sizeof(float) * j.T * sh.H;
    void* out2 = malloc(ob + 1);
    float* lse2 = malloc(lb + 1);
    CPCL_OK(cpclAttnPrefill(wp, &good, j.q, j.kNew, j.vNew, j.cache.k, j.cache.v, out2, lse2, NULL));
    EXPECT(memcmp(out, out2, ob) == 0 && memcmp(lse, lse2, lb) == 0);
    CPCL_OK(cpclAttnPlanDestroy(wp));
    free(ws), free(out2), free(lse2);
  }
  CPCL_OK(cpclAttnPlanDestroy(plan));
  free(bt), free(out), free(lse);
  jobFree(&j);
  casesRun++;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &W);
  const int inter[][2] = {{1, 4}, {16, 16}}; /* (interleave, pageSize) */
  for (int D = W; D >= 1; D--) {
    if (W % D) continue;
    const int P = W / D;
    for (int i = 0; i < 2; i++) {
      cpclOob_t oob;
      cpclMpiOob(&oob, &world);
      cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
      cfg.dcpSize = D;
      cfg.kvInterleave = inter[i][0];
      cpclComm_t comm;
      CPCL_OK(cpclCommInitOob(&comm, &oob, &cfg));
      const int I = inter[i][0], ps = inter[i][1];
      const shape_t gqa = {2, 2, 64, 64, 0, cpclBfloat16, 0, 0};
      const shape_t mqa = {2, 1, 32, 32, 0, cpclFloat32, 1, 0};         /* base-2 LSE */
      const shape_t mla = {2, 1, 576, 512, 1, cpclBfloat16, 0, i == 1}; /* lse NULL once */
      runCase(comm, P, D, I, ps, &gqa, 0);
      runCase(comm, P, D, I, ps, &gqa, 1); /* fresh prompts: no context part */
      runCase(comm, P, D, I, ps, &mqa, 0);
      runCase(comm, P, D, I, ps, &mla, i);
      if (i == 0) runValidation(comm, P, D);
      CPCL_OK(cpclCommDestroy(comm));
    }
  }
  if (rank == 0) printf("test_prefill: %d ranks, %d cases passed\n", W, casesRun);
  MPI_Finalize();
  return 0;
}
