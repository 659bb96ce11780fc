/* mpi: the fused decode, partial + combine and the KV store on W ranks against the single-rank
 * result on the same data, for every host schedule; bitwise identical on repeat. Covers dcp = W
 * and dcp < W (PCP), interleave 1/3/16, page sizes 1/6/16, sequences shorter than W*I (empty
 * shards), mixed lengths, multi-row sequences, GQA and MLA shapes, every dtype, base-2 LSE,
 * lse = NULL. */
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
static const char* const algos[] = {"agrs", "a2a", "pipelined"};

typedef struct {
  int H, Hkv, Dqk, Dv, latent;
  cpclDataType_t type;
  int multiRow, base2, noLse;
} shape_t;

static double tolOf(cpclDataType_t t) { return t == cpclFloat32 ? 1e-4 : t == cpclFloat16 ? 1.5e-3 : 6e-3; }

static void runCase(cpclComm_t comm, int dcp, int I, int pageSize, const shape_t* sh) {
  static const int lens1[] = {1, 2, 5, 40, 97, 3};
  static const int rowsM[] = {1, 3, 2, 1, 4, 2};
  const int S = 6;
  int32_t qs[7], lens[6];
  qs[0] = 0;
  for (int s = 0; s < S; s++) {
    int rows = sh->multiRow ? rowsM[s] : 1;
    lens[s] = lens1[s] + rows - 1;
    qs[s + 1] = qs[s] + rows;
  }
  const int H = sh->H, D = dcp, Hq = D * H, T = qs[S], Dv = sh->Dv, dr = rank % D;
  tuProblem_t pb = {.numSeqs = S,
                    .numTokens = T,
                    .queryStart = qs,
                    .seqLens = lens,
                    .Hq = Hq,
                    .Hkv = sh->Hkv,
                    .Dqk = sh->Dqk,
                    .Dv = Dv,
                    .latent = sh->latent,
                    .qType = sh->type,
                    .kvType = sh->type,
                    .smScale = (float)(1.0 / sqrt((double)sh->Dqk)),
                    .seed = (uint64_t)(77 + I * 5 + D + sh->Dqk)};
  const size_t es = tuDtypeSize(sh->type);
  /* the single-rank answer for all gathered heads */
  void* ref = malloc((size_t)T * Hq * Dv * es);
  float* refLse = malloc(sizeof(float) * (size_t)T * Hq);
  CPCL_OK(tuSingleRank(&pb, pageSize, sh->base2, ref, refLse));

  cpclAttnDesc_t desc = tuDesc(&pb, H, pageSize);
  desc.lseBase2 = sh->base2;

  /* this rank's shard through cpclKvStore (every token a "new" row), checked against the
   * brute-force placement */
  tuCache_t want, c;
  tuCacheAlloc(&pb, W, rank, I, pageSize, &want);
  tuCacheFill(&pb, W, rank, I, &want);
  tuCacheAlloc(&pb, W, rank, I, pageSize, &c);
  {
    int32_t all[7];
    all[0] = 0;
    for (int s = 0; s < S; s++) all[s + 1] = all[s] + lens[s];
    int n = all[S];
    void* kNew = malloc((size_t)n * sh->Hkv * sh->Dqk * es);
    void* vNew = malloc((size_t)n * sh->Hkv * Dv * es);
    for (int s = 0; s < S; s++)
      for (int p = 0; p < lens[s]; p++)
        for (int h = 0; h < sh->Hkv; h++) {
          size_t row = (size_t)(all[s] + p) * sh->Hkv + h;
          for (int d = 0; d < sh->Dqk; d++) tuPut(kNew, row * sh->Dqk + d, tuKv(&pb, 0, s, p, h, d), sh->type);
          for (int d = 0; d < Dv; d++) tuPut(vNew, row * Dv + d, tuKv(&pb, 1, s, p, h, d), sh->type);
        }
    cpclAttnPlan_t plan;
    CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, T));
    cpclBatch_t fill = tuBatch(S, n, all, lens, c.blockTable, c.maxPagesPerSeq);
    CPCL_OK(cpclKvStore(plan, &fill, kNew, vNew, c.k, sh->latent ? NULL : c.v, NULL));
    EXPECT(memcmp(c.k, want.k, (size_t)c.numPages * pageSize * sh->Hkv * sh->Dqk * es) == 0);
    if (!sh->latent) EXPECT(memcmp(c.v, want.v, (size_t)c.numPages * pageSize * sh->Hkv * Dv * es) == 0);
    CPCL_OK(cpclAttnPlanDestroy(plan));
    free(kNew);
    free(vNew);
  }
  void* q = tuMakeQ(&pb, dr * H, H);
  cpclBatch_t b = tuBatch(S, T, sh->multiRow ? qs : NULL, lens, c.blockTable, c.maxPagesPerSeq);
  const size_t outBytes = (size_t)T * H * Dv * es, lseBytes = sizeof(float) * (size_t)T * H;
  void *out = malloc(outBytes), *out2 = malloc(outBytes), *pOut = malloc((size_t)T * Hq * Dv * es);
  float *lse = malloc(lseBytes), *lse2 = malloc(lseBytes), *pLse = malloc(sizeof(float) * (size_t)T * Hq);
  void* firstOut = malloc(outBytes);
  const double tol = tolOf(sh->type);

  for (int a = 0; a < 3; a++) {
    /* the schedule through the descriptor, and once through the environment */
    if (a == 2 && sh->noLse) {
      setenv("CPCL_ALGO", algos[a], 1);
      cpclParamReset();
      desc.algo = NULL;
    } else {
      desc.algo = algos[a];
    }
    cpclAttnPlan_t plan;
    CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, T));
    memset(out, 0xff, outBytes);
    memset(lse, 0xff, lseBytes);
    float* lseArg = sh->noLse ? NULL : lse;
    CPCL_OK(cpclAttnDecode(plan, &b, q, c.k, sh->latent ? NULL : c.v, out, lseArg, NULL));
    for (int t = 0; t < T; t++)
      for (int h = 0; h < H; h++) {
        const int g = dr * H + h;
        for (int d = 0; d < Dv; d++) {
          double got = tuGet(out, ((size_t)t * H + h) * Dv + d, sh->type);
          double exp = tuGet(ref, ((size_t)t * Hq + g) * Dv + d, sh->type);
          if (!(fabs(got - exp) <= tol)) {
            fprintf(stderr,
                    "[rank %d] %s W %d dcp %d I %d page %d Dqk %d type %d: row %d head %d dim %d got %g want %g\n",
                    rank, algos[a], W, D, I, pageSize, sh->Dqk, sh->type, t, h, d, got, exp);
            MPI_Abort(world, 1);
          }
        }
        if (!sh->noLse) {
          float gl = lse[t * H + h], el = refLse[t * Hq + g];
          EXPECT((gl == -INFINITY && el == -INFINITY) || fabsf(gl - el) <= 1e-4f * (1 + fabsf(el)));
        }
      }
    /* bitwise identical on repeat */
    memset(out2, 0xff, outBytes);
    memset(lse2, 0xff, lseBytes);
    CPCL_OK(cpclAttnDecode(plan, &b, q, c.k, sh->latent ? NULL : c.v, out2, sh->noLse ? NULL : lse2, NULL));
    EXPECT(memcmp(out, out2, outBytes) == 0);
    if (!sh->noLse) EXPECT(memcmp(lse, lse2, lseBytes) == 0);
    /* the two halves give the fused result, bit for bit */
    memset(pOut, 0xff, (size_t)T * Hq * Dv * es);
    CPCL_OK(cpclAttnPartial(plan, &b, q, c.k, sh->latent ? NULL : c.v, pOut, pLse, NULL));
    memset(out2, 0xff, outBytes);
    memset(lse2, 0xff, lseBytes);
    CPCL_OK(cpclAttnCombine(plan, T, pOut, pLse, out2, sh->noLse ? NULL : lse2, NULL));
    EXPECT(memcmp(out, out2, outBytes) == 0);
    if (!sh->noLse) EXPECT(memcmp(lse, lse2, lseBytes) == 0);
    /* a2a and pipelined run the same arithmetic: the same bits */
    if (a == 1) memcpy(firstOut, out, outBytes);
    if (a == 2) EXPECT(memcmp(firstOut, out, outBytes) == 0);
    CPCL_OK(cpclAttnPlanDestroy(plan));
    casesRun++;
  }
  unsetenv("CPCL_ALGO");
  cpclParamReset();
  free(q);
  free(out);
  free(out2);
  free(pOut);
  free(lse);
  free(lse2);
  free(pLse);
  free(firstOut);
  free(ref);
  free(refLse);
  tuCacheFree(&c);
  tuCacheFree(&want);
}

/* Padding (seqLens[s] == 0, DESIGN.md §4.1) on W ranks: a batch of 4 sequences, 1 and 3 padding
 * (2 and 3 rows, their block-table rows all -1: never read). Its rows come out 0 with lse -inf
 * (partials too); every other row is bitwise what the batch without the padding gives, and
 * cpclKvStore stores exactly what the compact batch stores. With useWs, the padded plan carves
 * its workspace from a caller's buffer: the same bits again. */
static void runPaddingCase(cpclComm_t comm, int dcp, int I, int pageSize, int useWs) {
  static const int lensP[4] = {40, 0, 7, 0}, rowsP[4] = {2, 2, 1, 3};
  int32_t qsP[5] = {0}, lens[4];
  for (int s = 0; s < 4; s++) {
    qsP[s + 1] = qsP[s] + rowsP[s];
    lens[s] = lensP[s];
  }
  const int T = qsP[4], H = 2, D = dcp, Hq = D * H, Dqk = 32, Dv = 32, dr = rank % D;
  tuProblem_t pb = {.numSeqs = 4,
                    .numTokens = T,
                    .queryStart = qsP,
                    .seqLens = lens,
                    .Hq = Hq,
                    .Hkv = 2,
                    .Dqk = Dqk,
                    .Dv = Dv,
                    .qType = cpclFloat32,
                    .kvType = cpclFloat32,
                    .smScale = 0.17f,
                    .seed = (uint64_t)(900 + I + D)};
  tuCache_t c;
  tuCacheAlloc(&pb, W, rank, I, pageSize, &c);
  tuCacheFill(&pb, W, rank, I, &c);
  const int mp = c.maxPagesPerSeq;
  for (int i = 0; i < mp; i++) c.blockTable[1 * mp + i] = c.blockTable[3 * mp + i] = -1;
  /* the compact batch: sequences 0 and 2, rows 0-1 and 4 of the padded one */
  static const int rowOf[3] = {0, 1, 4};
  int32_t qsC[3] = {0, 2, 3}, lensC[2] = {40, 7};
  int32_t* btC = malloc(sizeof(int32_t) * 2 * (size_t)mp);
  memcpy(btC, c.blockTable, sizeof(int32_t) * (size_t)mp);
  memcpy(btC + mp, c.blockTable + 2 * mp, sizeof(int32_t) * (size_t)mp);
  const size_t qRow = (size_t)H * Dqk * 4, oRow = (size_t)H * Dv * 4;
  char* qP = tuMakeQ(&pb, dr * H, H);
  char* qC = malloc(3 * qRow);
  for (int i = 0; i < 3; i++) memcpy(qC + i * qRow, qP + rowOf[i] * qRow, qRow);
  const cpclBatch_t bP = tuBatch(4, T, qsP, lens, c.blockTable, mp), bC = tuBatch(2, 3, qsC, lensC, btC, mp);
  char *outP = malloc(T * oRow), *outC = malloc(3 * oRow), *pOut = malloc((size_t)T * Hq * Dv * 4);
  float *lseP = malloc(sizeof(float) * T * H), *lseC = malloc(sizeof(float) * 3 * H);
  float* pLse = malloc(sizeof(float) * (size_t)T * Hq);
  for (int a = 0; a < 3; a++) {
    cpclAttnDesc_t desc = tuDesc(&pb, H, pageSize);
    desc.algo = algos[a];
    cpclAttnPlan_t plan, planC;
    void* ws = NULL;
    CPCL_OK(cpclAttnPlanCreate(&planC, comm, &desc, T));
    if (useWs) {
      size_t need = 0;
      CPCL_OK(cpclAttnPlanWorkspaceBytes(planC, &need));
      EXPECT(need > 0);
      EXPECT(posix_memalign(&ws, 256, need) == 0);
      memset(ws, 0xa5, need); /* whatever the engine's buffer held */
      CPCL_OK(cpclAttnPlanCreateWithWorkspace(&plan, comm, &desc, T, ws, need));
    } else {
      CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, T));
    }
    memset(outP, 0xff, T * oRow);
    memset(lseP, 0xff, sizeof(float) * T * H);
    CPCL_OK(cpclAttnDecode(plan, &bP, qP, c.k, c.v, outP, lseP, NULL));
    CPCL_OK(cpclAttnDecode(planC, &bC, qC, c.k, c.v, outC, lseC, NULL));
    for (int t = 0; t < T; t++) {
      const int pad = t >= 2 && t != 4;
      for (int h = 0; h < H; h++) {
        if (pad) {
          EXPECT(lseP[t * H + h] == -INFINITY);
          for (int d = 0; d < Dv; d++) EXPECT(((float*)outP)[((size_t)t * H + h) * Dv + d] == 0.f);
        }
      }
    }
    for (int i = 0; i < 3; i++) {
      EXPECT(memcmp(outP + rowOf[i] * oRow, outC + i * oRow, oRow) == 0);
      EXPECT(memcmp(lseP + rowOf[i] * H, lseC + i * H, sizeof(float) * H) == 0);
    }
    /* the halves: padding partials are -inf, and Combine gives the decode's bits */
    CPCL_OK(cpclAttnPartial(plan, &bP, qP, c.k, c.v, pOut, pLse, NULL));
    for (int t = 0; t < T; t++)
      if (t >= 2 && t != 4)
        for (int g = 0; g < Hq; g++) EXPECT(pLse[t * Hq + g] == -INFINITY);
    char* out2 = malloc(T * oRow);
    float* lse2 = malloc(sizeof(float) * T * H);
    CPCL_OK(cpclAttnCombine(plan, T, pOut, pLse, out2, lse2, NULL));
    EXPECT(memcmp(out2, outP, T * oRow) == 0 && memcmp(lse2, lseP, sizeof(float) * T * H) == 0);
    free(out2);
    free(lse2);
    /* the store: padding rows store nothing (their positions are negative, their pages -1) */
    if (a == 0) {
      const size_t kvRow = (size_t)pb.Hkv * Dqk * 4, cacheBytes = (size_t)c.numPages * pageSize * kvRow;
      char *kNewP = malloc(T * kvRow), *kNewC = malloc(3 * kvRow);
      for (size_t i = 0; i < T * kvRow / 4; i++) ((float*)kNewP)[i] = (float)(i % 97) - 48.f;
      for (int i = 0; i < 3; i++) memcpy(kNewC + i * kvRow, kNewP + rowOf[i] * kvRow, kvRow);
      char *kP = malloc(cacheBytes), *vP = malloc(cacheBytes), *kC = malloc(cacheBytes), *vC = malloc(cacheBytes);
      memcpy(kP, c.k, cacheBytes), memcpy(kC, c.k, cacheBytes), memcpy(vP, c.v, cacheBytes),
          memcpy(vC, c.v, cacheBytes);
      CPCL_OK(cpclKvStore(plan, &bP, kNewP, kNewP, kP, vP, NULL));
      CPCL_OK(cpclKvStore(planC, &bC, kNewC, kNewC, kC, vC, NULL));
      EXPECT(memcmp(kP, kC, cacheBytes) == 0 && memcmp(vP, vC, cacheBytes) == 0);
      free(kNewP), free(kNewC), free(kP), free(vP), free(kC), free(vC);
    }
    if (useWs) { /* the caller's buffer gives the plan's own bits */
      cpclAttnPlan_t own;
      CPCL_OK(cpclAttnPlanCreate(&own, comm, &desc, T));
      char* out3 = malloc(T * oRow);
      float* lse3 = malloc(sizeof(float) * T * H);
      CPCL_OK(cpclAttnDecode(own, &bP, qP, c.k, c.v, out3, lse3, NULL));
      EXPECT(memcmp(out3, outP, T * oRow) == 0 && memcmp(lse3, lseP, sizeof(float) * T * H) == 0);
      CPCL_OK(cpclAttnPlanDestroy(own));
      free(out3);
      free(lse3);
    }
    CPCL_OK(cpclAttnPlanDestroy(plan));
    CPCL_OK(cpclAttnPlanDestroy(planC));
    free(ws);
    casesRun++;
  }
  free(qP), free(qC), free(btC), free(outP), free(outC), free(pOut), free(lseP), free(lseC), free(pLse);
  tuCacheFree(&c);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &W);
  const int inter[][2] = {{1, 1}, {1, 16}, {3, 6}, {16, 16}}; /* (interleave, pageSize) */
  for (int dcp = W; dcp >= 1; dcp--) {
    if (W % dcp) continue;
    if (dcp != W && dcp != 1 && dcp != W / 2) continue;
    for (int i = 0; i < 4; i++) {
      cpclOob_t oob;
      cpclMpiOob(&oob, &world);
      cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
      cfg.dcpSize = dcp;
      cfg.kvInterleave = inter[i][0];
      cpclComm_t comm;
      CPCL_OK(cpclCommInitOob(&comm, &oob, &cfg));
      const int I = inter[i][0], ps = inter[i][1];
      shape_t gqa = {2, 1, 64, 64, 0, cpclBfloat16, 1, 0, 0};
      runCase(comm, dcp, I, ps, &gqa);
      if (i == 0 || dcp == W) {
        shape_t gqa2 = {2, 2, 32, 32, 0, cpclFloat32, 0, 1, 0}; /* base 2, fp32 */
        runCase(comm, dcp, I, ps, &gqa2);
        shape_t half = {4, 2, 16, 16, 0, cpclFloat16, 1, 0, 1}; /* fp16, lse NULL */
        runCase(comm, dcp, I, ps, &half);
      }
      if (i == 2 || (i == 0 && dcp == W)) {
        shape_t mla = {2, 1, 576, 512, 1, cpclBfloat16, 1, 0, 0};
        runCase(comm, dcp, I, ps, &mla);
      }
      runPaddingCase(comm, dcp, I, ps, i % 2);
      CPCL_OK(cpclCommDestroy(comm));
    }
  }
  if (W > 1) { /* the new descriptor fields are agreed on like the others */
    cpclOob_t oob;
    cpclMpiOob(&oob, &world);
    cpclComm_t comm;
    CPCL_OK(cpclCommInitOob(&comm, &oob, NULL));
    cpclAttnDesc_t d = CPCL_ATTN_DESC_INITIALIZER;
    d.numQoHeads = 2, d.numKvHeads = 1, d.smScale = 0.1f;
    d.prefillAlgo = rank == 0 ? "ring" : NULL;
    cpclAttnPlan_t p;
    EXPECT_RES(cpclAttnPlanCreate(&p, comm, &d, 4), cpclInvalidUsage);
    EXPECT(strstr(cpclGetLastError(comm), "desc->prefillAlgo") != NULL);
    d.prefillAlgo = "ring";
    CPCL_OK(cpclAttnPlanCreate(&p, comm, &d, 4));
    CPCL_OK(cpclAttnPlanDestroy(p));
    CPCL_OK(cpclCommDestroy(comm));
  }
  if (rank == 0) printf("test_decode: %d ranks, %d schedule cases passed\n", W, casesRun);
  MPI_Finalize();
  return 0;
}
