/* mpi: sparse (top-k) attention (DESIGN.md §4.3) on W ranks against a naive fp64 attention over
 * exactly the listed positions on the unsharded sequence, for every host schedule: K 16..2048
 * with -1 padding and entries past the row, interleave 1 and 16 (and 3), dcp = W and dcp < W,
 * GQA and MLA 576/512, multi-row sequences, ranks owning none of a row's listed positions (their
 * partial is empty, lse -inf); Partial + Combine bitwise equal to Decode, repeats bitwise, a2a and
 * pipelined the same bits; ranks that pass other lists or another topk fail together. */
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
  int K;
  int onlyRank0; /* every listed position owned by rank 0: the other ranks' partials are empty */
} shape_t;

static double tolOf(cpclDataType_t t) { return t == cpclFloat32 ? 1e-4 : t == cpclFloat16 ? 1.5e-3 : 6e-3; }

static void runCase(cpclComm_t comm, int dcp, int I, int pageSize, const shape_t* sh) {
  const int K = sh->K;
  const int lens1[6] = {1, 3, 40, K + 9, 2 * K + 5, 7};
  static const int rowsM[6] = {1, 2, 1, 3, 2, 1};
  const int S = 6;
  int32_t qs[7], lens[6];
  qs[0] = 0;
  for (int s = 0; s < S; s++) {
    lens[s] = lens1[s] + rowsM[s] - 1;
    qs[s + 1] = qs[s] + rowsM[s];
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
                    .seed = (uint64_t)(311 + I * 5 + D + sh->Dqk + K)};
  const size_t es = tuDtypeSize(sh->type);
  int32_t* list = tuMakeTopk(&pb, K, pb.seed, 0);
  if (sh->onlyRank0) /* keep rank 0's positions alone (W > 1: the others own none) */
    for (size_t i = 0; i < (size_t)T * K; i++)
      if (list[i] >= 0 && (list[i] / I) % W != 0) list[i] = -1;

  cpclAttnDesc_t desc = tuDesc(&pb, H, pageSize);
  desc.topk = K;
  tuCache_t c;
  tuCacheAlloc(&pb, W, rank, I, pageSize, &c);
  tuCacheFill(&pb, W, rank, I, &c);
  void* q = tuMakeQ(&pb, dr * H, H);
  cpclBatch_t b = tuBatch(S, T, qs, lens, c.blockTable, c.maxPagesPerSeq);
  b.topkIndices = list;
  const size_t outBytes = (size_t)T * H * Dv * es, lseBytes = sizeof(float) * (size_t)T * H;
  void *out = malloc(outBytes), *out2 = malloc(outBytes), *pOut = malloc((size_t)T * Hq * Dv * es);
  float *lse = malloc(lseBytes), *lse2 = malloc(lseBytes), *pLse = malloc(sizeof(float) * (size_t)T * Hq);
  void* firstOut = malloc(outBytes);
  double* o = malloc(sizeof(double) * (size_t)Dv);
  const double tol = 2 * tolOf(sh->type); /* partials and the merged output are both rounded */

  for (int a = 0; a < 3; a++) {
    desc.algo = algos[a];
    cpclAttnPlan_t plan;
    CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, T));
    memset(out, 0xff, outBytes);
    memset(lse, 0xff, lseBytes);
    CPCL_OK(cpclAttnDecode(plan, &b, q, c.k, sh->latent ? NULL : c.v, out, lse, NULL));
    for (int t = 0; t < T; t++)
      for (int h = 0; h < H; h++) {
        const int g = dr * H + h;
        const double want = tuNaiveSparse(&pb, t, g, list + (size_t)t * K, K, 1, 0, 1, 0, o);
        for (int d = 0; d < Dv; d++) {
          const double got = tuGet(out, ((size_t)t * H + h) * Dv + d, sh->type);
          if (!(fabs(got - o[d]) <= tol)) {
            fprintf(stderr, "[rank %d] %s W %d dcp %d I %d page %d Dqk %d K %d: row %d head %d dim %d got %g want %g\n",
                    rank, algos[a], W, D, I, pageSize, sh->Dqk, K, t, h, d, got, o[d]);
            MPI_Abort(world, 1);
          }
        }
        const float gl = lse[t * H + h];
        EXPECT((want == -INFINITY && gl == -INFINITY) || fabs(gl - want) <= 1e-3 * (1 + fabs(want)));
      }
    /* bitwise identical on repeat */
    memset(out2, 0xff, outBytes);
    CPCL_OK(cpclAttnDecode(plan, &b, q, c.k, sh->latent ? NULL : c.v, out2, lse2, NULL));
    EXPECT(memcmp(out, out2, outBytes) == 0 && memcmp(lse, lse2, lseBytes) == 0);
    /* the halves give the decode's bits; this rank's partial is its own positions' attention */
    memset(pOut, 0xff, (size_t)T * Hq * Dv * es);
    memset(pLse, 0xff, sizeof(float) * (size_t)T * Hq);
    CPCL_OK(cpclAttnPartial(plan, &b, q, c.k, sh->latent ? NULL : c.v, pOut, pLse, NULL));
    for (int t = 0; t < T; t++)
      for (int g = 0; g < Hq; g++) {
        const double want = tuNaiveSparse(&pb, t, g, list + (size_t)t * K, K, W, rank, I, 1, o);
        const float gl = pLse[(size_t)t * Hq + g];
        EXPECT((want == -INFINITY && gl == -INFINITY) || fabs(gl - want) <= 1e-3 * (1 + fabs(want)));
        if (sh->onlyRank0 && rank != 0) EXPECT(gl == -INFINITY);
        for (int d = 0; d < Dv; d++)
          EXPECT(fabs(tuGet(pOut, ((size_t)t * Hq + g) * Dv + d, sh->type) - o[d]) <= tolOf(sh->type));
      }
    memset(out2, 0xff, outBytes);
    memset(lse2, 0xff, lseBytes);
    CPCL_OK(cpclAttnCombine(plan, T, pOut, pLse, out2, lse2, NULL));
    EXPECT(memcmp(out, out2, outBytes) == 0 && memcmp(lse, lse2, lseBytes) == 0);
    if (a == 1) memcpy(firstOut, out, outBytes);
    if (a == 2) EXPECT(memcmp(firstOut, out, outBytes) == 0);
    CPCL_OK(cpclAttnPlanDestroy(plan));
    casesRun++;
  }
  free(q), free(out), free(out2), free(pOut), free(lse), free(lse2), free(pLse), free(firstOut), free(o);
  free(list);
  tuCacheFree(&c);
}

/* Every rank must pass the same lists and the same topk: a rank that differs fails every rank
 * with cpclInvalidUsage naming the field, and the plan stays usable. */
static void runDisagreement(void) {
  cpclOob_t oob;
  cpclMpiOob(&oob, &world);
  cpclComm_t comm;
  CPCL_OK(cpclCommInitOob(&comm, &oob, NULL));
  int32_t qs[2] = {0, 1}, lens[1] = {20};
  tuProblem_t pb = {.numSeqs = 1,
                    .numTokens = 1,
                    .queryStart = qs,
                    .seqLens = lens,
                    .Hq = 2 * W,
                    .Hkv = 1,
                    .Dqk = 16,
                    .Dv = 16,
                    .qType = cpclFloat32,
                    .kvType = cpclFloat32,
                    .smScale = 0.25f,
                    .seed = 3};
  cpclAttnDesc_t d = tuDesc(&pb, 2, 4);
  d.topk = rank == W - 1 ? 8 : 4;
  cpclAttnPlan_t p;
  EXPECT_RES(cpclAttnPlanCreate(&p, comm, &d, 1), cpclInvalidUsage);
  EXPECT(strstr(cpclGetLastError(comm), "desc->topk") != NULL);
  d.topk = 4;
  CPCL_OK(cpclAttnPlanCreate(&p, comm, &d, 1));
  tuCache_t c;
  tuCacheAlloc(&pb, W, rank, 1, 4, &c);
  tuCacheFill(&pb, W, rank, 1, &c);
  int32_t list[4] = {0, 5, 19, -1};
  if (rank == W - 1) list[1] = 6;
  cpclBatch_t b = tuBatch(1, 1, NULL, lens, c.blockTable, c.maxPagesPerSeq);
  b.topkIndices = list;
  float q[32], out[32], lse[2];
  for (int i = 0; i < 32; i++) q[i] = 0.01f * (float)i;
  EXPECT_RES(cpclAttnDecode(p, &b, q, c.k, c.v, out, lse, NULL), cpclInvalidUsage);
  EXPECT(strstr(cpclGetLastError(comm), "topkIndices differ") != NULL);
  list[1] = 5;
  CPCL_OK(cpclAttnDecode(p, &b, q, c.k, c.v, out, lse, NULL));
  CPCL_OK(cpclAttnPlanDestroy(p));
  tuCacheFree(&c);
  CPCL_OK(cpclCommDestroy(comm));
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &W);
  const int inter[][2] = {{1, 1}, {1, 16}, {16, 16}, {3, 6}}; /* (interleave, pageSize) */
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
      const shape_t gqa = {2, 1, 64, 64, 0, cpclBfloat16, i % 2 ? 16 : 128, 0};
      runCase(comm, dcp, I, ps, &gqa);
      if (dcp == W) {
        const shape_t gqa32 = {2, 2, 32, 32, 0, cpclFloat32, 64, W > 1 && i == 1};
        runCase(comm, dcp, I, ps, &gqa32);
      }
      if (i == 2 || (i == 0 && dcp == W)) {
        const shape_t mla = {2, 1, 576, 512, 1, cpclBfloat16, i == 0 ? 2048 : 64, 0};
        runCase(comm, dcp, I, ps, &mla);
      }
      CPCL_OK(cpclCommDestroy(comm));
    }
  }
  if (W > 1) runDisagreement();
  if (rank == 0) printf("test_sparse: %d ranks, %d schedule cases passed\n", W, casesRun);
  MPI_Finalize();
  return 0;
}
