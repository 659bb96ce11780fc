/*
 * test_gpu_decode -- the GPU schedules across processes, under mpirun (several processes may
 * share one GPU: the ipc transport maps their buffers; timings there mean nothing, results do).
 *
 *   - every schedule (agrs, a2a, pipelined, fused where dcp = W) against the single-rank host
 *     result on the same data: cpclAttnDecode, and cpclAttnPartial + cpclAttnCombine; three
 *     repeats bitwise equal (the flags' epochs reuse buffers without a reset);
 *   - GQA bf16 D128 (tensor-core kernel, KV splits; the Hopper GQA body on sm_90, fused included,
 *     whose out is a2a's bit for bit), GQA fp16 D64, fp32, MLA 576/512 (the Hopper body on sm_90
 *     outside the fused kernel, the CUDA-core kernel elsewhere and inside it);
 *     interleave 1 and 16; dcp = W and dcp < W; multi-row sequences;
 *   - CUDA graphs: one cpclAttnDecode captured, replayed three times with new contents in the same
 *     batch buffers (q, seqLens, block tables, KV), each replay checked against a fresh reference
 *     (MLA with a2a too: the Hopper body's programmatic dependent merge launch in a graph; fused
 *     with GQA shape 0: the fused kernel's split-merge CTAs);
 *   - NCCL (cpclCommInitNccl over ncclCommInitRank) when there is a GPU per rank, every
 *     schedule (fused with one rank; with more it must say cpclUnsupported) and graphs;
 *   - padding sequences (seqLens 0) in every schedule and the KV store; a plan on a caller's
 *     workspace (one rank: the plan's own bits; ipc with W > 1: cpclUnsupported); a negative
 *     page id in device memory (the row left empty, cpclInvalidArgument after);
 *   - sparse attention (desc.topk, batch->topkIndices in device memory): every schedule against
 *     an fp64 attention over exactly the listed positions, MLA K 2048 / 128 and GQA, Partial +
 *     Combine bitwise equal to Decode, graph replays with new lists;
 *   - a stalled peer: one rank skips a step; the others' kernels give up after timeoutMs, the
 *     next call returns cpclTimeout, and nothing hangs.
 * Exits 77 (skipped) without a CUDA device.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi_check.h"
#include "mpi_oob.h"
#include "testutil.h"
#ifdef CPCL_HAVE_NCCL
#include "cpcl_nccl.h"
#endif

static MPI_Comm world = MPI_COMM_WORLD;
static int rank, W, casesRun, graphsRun;
static int noFused; /* the communicator's transport cannot run fused with W > 1 (nccl) */

#define CUDA_OK(call)                                                                                       \
  do {                                                                                                      \
    cudaError_t e_ = (call);                                                                                \
    if (e_ != cudaSuccess) {                                                                                \
      fprintf(stderr, "[rank %d] %s:%d %s: %s\n", rank, __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      MPI_Abort(world, 1);                                                                                  \
    }                                                                                                       \
  } while (0)

typedef struct {
  int H, Hkv, Dqk, Dv, latent;
  cpclDataType_t type;
  int multiRow;
  const char* name;
  int pageSize; /* 0: 16 */
} shape_t;

static double tolOf(cpclDataType_t t) { return t == cpclFloat32 ? 1e-4 : t == cpclFloat16 ? 2e-3 : 8e-3; }

/* One step's data on this rank, in device buffers of fixed capacity (so a captured graph can be
 * replayed with new contents): S sequences, T rows, block tables of maxPages columns. */
typedef struct {
  int S, T, maxPages, capPages, pageSize;
  int32_t *qs, *lens, *bt; /* device */
  void *q, *k, *v;         /* device */
  void *ref, *pOut;        /* host: single-rank answer [T][Hq][Dv]; partial scratch (device) */
  float* refLse;
} step_t;

/* The global problem for (seed, lens): fills this rank's device buffers and the reference. */
static void stepFill(step_t* st, const shape_t* sh, int dcp, int I, const int32_t* qsH, const int32_t* lensH,
                     uint64_t seed, tuProblem_t* pbOut) {
  const int H = sh->H, Hq = dcp * H, dr = rank % dcp;
  tuProblem_t pb = {.numSeqs = st->S,
                    .numTokens = st->T,
                    .queryStart = (int32_t*)qsH,
                    .seqLens = (int32_t*)lensH,
                    .Hq = Hq,
                    .Hkv = sh->Hkv,
                    .Dqk = sh->Dqk,
                    .Dv = sh->Dv,
                    .latent = sh->latent,
                    .qType = sh->type,
                    .kvType = sh->type,
                    .smScale = (float)(1.0 / sqrt((double)sh->Dqk)),
                    .seed = seed};
  *pbOut = pb;
  const size_t es = tuDtypeSize(sh->type);
  CPCL_OK(tuSingleRank(&pb, st->pageSize, 0, st->ref, st->refLse));
  tuCache_t c;
  tuCacheAlloc(&pb, W, rank, I, st->pageSize, &c);
  tuCacheFill(&pb, W, rank, I, &c);
  EXPECT(c.maxPagesPerSeq <= st->maxPages && c.numPages <= st->capPages);
  int32_t* bt = calloc((size_t)st->S * st->maxPages, sizeof(int32_t));
  for (int s = 0; s < st->S; s++)
    memcpy(bt + (size_t)s * st->maxPages, c.blockTable + (size_t)s * c.maxPagesPerSeq,
           sizeof(int32_t) * c.maxPagesPerSeq);
  CUDA_OK(cudaMemcpy(st->bt, bt, sizeof(int32_t) * st->S * st->maxPages, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(st->lens, lensH, sizeof(int32_t) * st->S, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(st->qs, qsH, sizeof(int32_t) * (st->S + 1), cudaMemcpyHostToDevice));
  const size_t kRow = (size_t)st->pageSize * sh->Hkv * sh->Dqk * es,
               vRow = (size_t)st->pageSize * sh->Hkv * sh->Dv * es;
  CUDA_OK(cudaMemcpy(st->k, c.k, kRow * c.numPages, cudaMemcpyHostToDevice));
  if (!sh->latent) CUDA_OK(cudaMemcpy(st->v, c.v, vRow * c.numPages, cudaMemcpyHostToDevice));
  void* q = tuMakeQ(&pb, dr * H, H);
  CUDA_OK(cudaMemcpy(st->q, q, (size_t)st->T * H * sh->Dqk * es, cudaMemcpyHostToDevice));
  free(q);
  free(bt);
  tuCacheFree(&c);
}

static void stepAlloc(step_t* st, const shape_t* sh, int dcp, int S, int T, int maxLen, int pageSize) {
  const size_t es = tuDtypeSize(sh->type);
  const int Hq = dcp * sh->H;
  st->S = S;
  st->T = T;
  st->pageSize = pageSize;
  st->maxPages = (maxLen + pageSize - 1) / pageSize + 1;
  st->capPages = S * st->maxPages + 1;
  CUDA_OK(cudaMalloc((void**)&st->qs, sizeof(int32_t) * (S + 1)));
  CUDA_OK(cudaMalloc((void**)&st->lens, sizeof(int32_t) * S));
  CUDA_OK(cudaMalloc((void**)&st->bt, sizeof(int32_t) * S * st->maxPages));
  CUDA_OK(cudaMalloc(&st->q, (size_t)T * sh->H * sh->Dqk * es));
  CUDA_OK(cudaMalloc(&st->k, (size_t)st->capPages * pageSize * sh->Hkv * sh->Dqk * es));
  CUDA_OK(cudaMalloc(&st->v, sh->latent ? 16 : (size_t)st->capPages * pageSize * sh->Hkv * sh->Dv * es));
  CUDA_OK(cudaMalloc(&st->pOut, (size_t)T * Hq * sh->Dv * es));
  st->ref = malloc((size_t)T * Hq * sh->Dv * es);
  st->refLse = malloc(sizeof(float) * T * Hq);
}

static void stepFree(step_t* st) {
  cudaFree(st->qs);
  cudaFree(st->lens);
  cudaFree(st->bt);
  cudaFree(st->q);
  cudaFree(st->k);
  cudaFree(st->v);
  cudaFree(st->pOut);
  free(st->ref);
  free(st->refLse);
}

/* out/lse (device, [T][H]) against the reference's heads of this rank */
static void checkOut(const step_t* st, const shape_t* sh, int dcp, const void* dOut, const float* dLse,
                     const char* what) {
  const int H = sh->H, Hq = dcp * H, T = st->T, Dv = sh->Dv, dr = rank % dcp;
  const size_t es = tuDtypeSize(sh->type);
  void* out = malloc((size_t)T * H * Dv * es);
  float* lse = malloc(sizeof(float) * T * H);
  CUDA_OK(cudaMemcpy(out, dOut, (size_t)T * H * Dv * es, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(lse, dLse, sizeof(float) * T * H, cudaMemcpyDeviceToHost));
  const double tol = tolOf(sh->type);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < H; h++) {
      const int g = dr * H + h;
      for (int d = 0; d < Dv; d++) {
        const double got = tuGet(out, ((size_t)t * H + h) * Dv + d, sh->type);
        const double want = tuGet(st->ref, ((size_t)t * Hq + g) * Dv + d, sh->type);
        if (!(fabs(got - want) <= tol)) {
          fprintf(stderr, "[rank %d] %s (%s, W %d dcp %d): row %d head %d dim %d got %g want %g\n", rank, what,
                  sh->name, W, dcp, t, h, d, got, want);
          MPI_Abort(world, 1);
        }
      }
      const float gl = lse[t * H + h], el = st->refLse[t * Hq + g];
      if (!((gl == -INFINITY && el == -INFINITY) || fabsf(gl - el) <= 1e-3f * (1 + fabsf(el)))) {
        fprintf(stderr, "[rank %d] %s (%s): lse row %d head %d got %g want %g\n", rank, what, sh->name, t, h, gl, el);
        MPI_Abort(world, 1);
      }
    }
  free(out);
  free(lse);
}

static const char* const algos[] = {"agrs", "a2a", "pipelined", "fused"};
static const shape_t shapes[6];

/* every schedule on one shape: decode (three times, bitwise equal), partial + combine */
static void runSchedules(cpclComm_t comm, int dcp, int I, const shape_t* sh, cudaStream_t stream) {
  static const int lensA[] = {1, 5, 40, 300, 1200, 97, 2100};
  static const int rowsM[] = {1, 3, 2, 1, 4, 2, 1};
  const int S = 7;
  int32_t qs[8], lens[7];
  qs[0] = 0;
  for (int s = 0; s < S; s++) {
    const int rows = sh->multiRow ? rowsM[s] : 1;
    lens[s] = lensA[s] + rows - 1;
    qs[s + 1] = qs[s] + rows;
  }
  const int T = qs[S], H = sh->H, Dv = sh->Dv;
  const size_t es = tuDtypeSize(sh->type);
  step_t st;
  const int page = sh->pageSize ? sh->pageSize : 16;
  stepAlloc(&st, sh, dcp, S, T, 2200, page);
  tuProblem_t pb;
  stepFill(&st, sh, dcp, I, qs, lens, 1000 + (uint64_t)I * 7 + sh->Dqk, &pb);
  cpclAttnDesc_t desc = tuDesc(&pb, H, page);
  void *out, *out2;
  float *lse, *lse2, *pLse;
  CUDA_OK(cudaMalloc(&out, (size_t)T * H * Dv * es));
  CUDA_OK(cudaMalloc(&out2, (size_t)T * H * Dv * es));
  CUDA_OK(cudaMalloc((void**)&lse, sizeof(float) * T * H));
  CUDA_OK(cudaMalloc((void**)&lse2, sizeof(float) * T * H));
  CUDA_OK(cudaMalloc((void**)&pLse, sizeof(float) * T * dcp * H));
  void* h1 = malloc((size_t)T * H * Dv * es);
  void* h2 = malloc((size_t)T * H * Dv * es);
  void* hA2a = malloc((size_t)T * H * Dv * es);
  cpclBatch_t b = tuBatch(S, T, sh->multiRow ? st.qs : NULL, st.lens, st.bt, st.maxPages);
  for (int a = 0; a < 4; a++) {
    if (a == 3 && dcp != W) continue; /* fused covers the DCP axis alone */
    desc.algo = algos[a];
    cpclAttnPlan_t plan;
    if (a == 3 && W > 1 && noFused) { /* nccl: no peer-mapped memory, so fused says so */
      EXPECT_RES(cpclAttnPlanCreate(&plan, comm, &desc, T < 8 ? 8 : T), cpclUnsupported);
      continue;
    }
    /* room for 8 rows: groups of more than 16 heads then take the wide tensor-core body */
    CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, T < 8 ? 8 : T));
    for (int rep = 0; rep < 3; rep++) {
      CUDA_OK(cudaMemsetAsync(out, 0xff, (size_t)T * H * Dv * es, stream));
      CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, out, lse, stream));
      CUDA_OK(cudaStreamSynchronize(stream));
      cpclResult_t async;
      CPCL_OK(cpclAttnPlanGetAsyncError(plan, &async));
      EXPECT_RES(async, cpclSuccess);
      if (rep == 0) {
        checkOut(&st, sh, dcp, out, lse, algos[a]);
        CUDA_OK(cudaMemcpy(h1, out, (size_t)T * H * Dv * es, cudaMemcpyDeviceToHost));
        if (a == 1) memcpy(hA2a, h1, (size_t)T * H * Dv * es);
        /* GQA: the fused kernel runs a2a's attention body (the Hopper one on sm_90, its splits
         * merged in the last split's tail or by the fused kernel's split-merge CTAs: the bits of
         * a2a's merge, shape 0 taking the second at np 1-4 and shape 1 the first) and the same
         * merge of the D partials, so the same bits; MLA keeps the CUDA-core body inside it */
        if (a == 3) EXPECT(memcmp(hA2a, h1, (size_t)T * H * Dv * es) == 0); /* MLA too: its fused form */
      } else {
        CUDA_OK(cudaMemcpy(h2, out, (size_t)T * H * Dv * es, cudaMemcpyDeviceToHost));
        EXPECT(memcmp(h1, h2, (size_t)T * H * Dv * es) == 0);
      }
    }
    CPCL_OK(cpclAttnPartial(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, st.pOut, pLse, stream));
    CPCL_OK(cpclAttnCombine(plan, T, st.pOut, pLse, out2, lse2, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    checkOut(&st, sh, dcp, out2, lse2, "partial+combine");
    CPCL_OK(cpclAttnPlanDestroy(plan));
    casesRun++;
  }
  cudaFree(out);
  cudaFree(out2);
  cudaFree(lse);
  cudaFree(lse2);
  cudaFree(pLse);
  free(h1);
  free(h2);
  free(hA2a);
  stepFree(&st);
}

/* Exact: the padding rows [T][H] of a device out (every element 0) and lse (-inf). */
static void checkEmptyRows(const step_t* st, const shape_t* sh, const void* dOut, const float* dLse, const int* empty,
                           const char* what) {
  const int H = sh->H, T = st->T;
  const size_t row = (size_t)H * sh->Dv * tuDtypeSize(sh->type);
  void* out = malloc(T * row);
  float* lse = malloc(sizeof(float) * T * H);
  CUDA_OK(cudaMemcpy(out, dOut, T * row, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(lse, dLse, sizeof(float) * T * H, cudaMemcpyDeviceToHost));
  for (int t = 0; t < T; t++) {
    if (!empty[t]) continue;
    for (size_t i = 0; i < (size_t)H * sh->Dv; i++) {
      const double v = tuGet(out, (size_t)t * H * sh->Dv + i, sh->type);
      if (v != 0.0) {
        fprintf(stderr, "[rank %d] %s (%s): padding row %d element %zu is %g\n", rank, what, sh->name, t, i, v);
        MPI_Abort(world, 1);
      }
    }
    for (int h = 0; h < H; h++) EXPECT(lse[t * H + h] == -INFINITY);
  }
  free(out);
  free(lse);
}

/* Padding sequences (seqLens 0, DESIGN.md §4.1) on the device, every schedule: sequences 1 and 3
 * are padding (2 and 3 rows, block-table rows all -1: never read); their rows come out empty,
 * no async error, the others match the host reference; cpclKvStore of the padded batch writes
 * exactly what the store of the compact batch (sequences 0 and 2) writes. */
static void runPadding(cpclComm_t comm, int dcp, int I, const shape_t* sh, cudaStream_t stream) {
  const int S = 4, H = sh->H, Dv = sh->Dv;
  int32_t qs[5] = {0, 2, 4, 5, 8}, lens[4] = {40, 0, 1200, 0};
  const int T = qs[S], empty[8] = {0, 0, 1, 1, 0, 1, 1, 1};
  const size_t es = tuDtypeSize(sh->type);
  step_t st;
  stepAlloc(&st, sh, dcp, S, T, 1200, 16);
  tuProblem_t pb;
  stepFill(&st, sh, dcp, I, qs, lens, 4242 + (uint64_t)I, &pb);
  const int mp = st.maxPages;
  int32_t* bt = malloc(sizeof(int32_t) * S * mp);
  CUDA_OK(cudaMemcpy(bt, st.bt, sizeof(int32_t) * S * mp, cudaMemcpyDeviceToHost));
  for (int i = 0; i < mp; i++) bt[mp + i] = bt[3 * mp + i] = -1;
  CUDA_OK(cudaMemcpy(st.bt, bt, sizeof(int32_t) * S * mp, cudaMemcpyHostToDevice));
  cpclAttnDesc_t desc = tuDesc(&pb, H, 16);
  void *out, *out2;
  float *lse, *lse2, *pLse;
  CUDA_OK(cudaMalloc(&out, (size_t)T * H * Dv * es));
  CUDA_OK(cudaMalloc(&out2, (size_t)T * H * Dv * es));
  CUDA_OK(cudaMalloc((void**)&lse, sizeof(float) * T * H));
  CUDA_OK(cudaMalloc((void**)&lse2, sizeof(float) * T * H));
  CUDA_OK(cudaMalloc((void**)&pLse, sizeof(float) * T * dcp * H));
  const cpclBatch_t b = tuBatch(S, T, st.qs, st.lens, st.bt, mp);
  for (int a = 0; a < 4; a++) {
    if (a == 3 && (dcp != W || (W > 1 && noFused))) continue;
    desc.algo = algos[a];
    cpclAttnPlan_t plan;
    CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, T));
    CUDA_OK(cudaMemsetAsync(out, 0xff, (size_t)T * H * Dv * es, stream));
    CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, out, lse, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    cpclResult_t async;
    CPCL_OK(cpclAttnPlanGetAsyncError(plan, &async));
    EXPECT_RES(async, cpclSuccess); /* padding is no error */
    checkOut(&st, sh, dcp, out, lse, "padding decode");
    checkEmptyRows(&st, sh, out, lse, empty, algos[a]);
    CPCL_OK(cpclAttnPartial(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, st.pOut, pLse, stream));
    CPCL_OK(cpclAttnCombine(plan, T, st.pOut, pLse, out2, lse2, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    checkOut(&st, sh, dcp, out2, lse2, "padding partial+combine");
    checkEmptyRows(&st, sh, out2, lse2, empty, "padding partial+combine");
    if (a == 0) { /* the store */
      static const int rowOfC[3] = {0, 1, 4};
      const int32_t qsC[3] = {0, 2, 3}, lensC[2] = {40, 1200};
      const size_t kvRow = (size_t)sh->Hkv * sh->Dqk * es, vRow = (size_t)sh->Hkv * Dv * es;
      const size_t kBytes = (size_t)st.capPages * 16 * kvRow, vBytes = (size_t)st.capPages * 16 * vRow;
      char* kNew = malloc(T * kvRow);
      char* vNew = malloc(T * vRow);
      for (size_t i = 0; i < T * kvRow; i++) kNew[i] = (char)(i * 7 + 1);
      for (size_t i = 0; i < T * vRow; i++) vNew[i] = (char)(i * 5 + 3);
      void *dkP, *dkC, *dvP, *dvC, *dkNew, *dvNew, *dkNewC, *dvNewC;
      int32_t *dqsC, *dlensC, *dbtC;
      CUDA_OK(cudaMalloc(&dkP, kBytes));
      CUDA_OK(cudaMalloc(&dkC, kBytes));
      CUDA_OK(cudaMalloc(&dvP, vBytes));
      CUDA_OK(cudaMalloc(&dvC, vBytes));
      CUDA_OK(cudaMalloc(&dkNew, T * kvRow));
      CUDA_OK(cudaMalloc(&dvNew, T * vRow));
      CUDA_OK(cudaMalloc(&dkNewC, 3 * kvRow));
      CUDA_OK(cudaMalloc(&dvNewC, 3 * vRow));
      CUDA_OK(cudaMalloc((void**)&dqsC, sizeof(qsC)));
      CUDA_OK(cudaMalloc((void**)&dlensC, sizeof(lensC)));
      CUDA_OK(cudaMalloc((void**)&dbtC, sizeof(int32_t) * 2 * mp));
      CUDA_OK(cudaMemcpy(dkP, st.k, kBytes, cudaMemcpyDeviceToDevice));
      CUDA_OK(cudaMemcpy(dkC, st.k, kBytes, cudaMemcpyDeviceToDevice));
      CUDA_OK(cudaMemset(dvP, 0x3c, vBytes));
      CUDA_OK(cudaMemset(dvC, 0x3c, vBytes));
      CUDA_OK(cudaMemcpy(dkNew, kNew, T * kvRow, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dvNew, vNew, T * vRow, cudaMemcpyHostToDevice));
      for (int i = 0; i < 3; i++) {
        CUDA_OK(cudaMemcpy((char*)dkNewC + i * kvRow, kNew + rowOfC[i] * kvRow, kvRow, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy((char*)dvNewC + i * vRow, vNew + rowOfC[i] * vRow, vRow, cudaMemcpyHostToDevice));
      }
      CUDA_OK(cudaMemcpy(dqsC, qsC, sizeof(qsC), cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dlensC, lensC, sizeof(lensC), cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dbtC, bt, sizeof(int32_t) * mp, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dbtC + mp, bt + 2 * mp, sizeof(int32_t) * mp, cudaMemcpyHostToDevice));
      const cpclBatch_t bC = tuBatch(2, 3, dqsC, dlensC, dbtC, mp);
      void* vP = sh->latent ? NULL : dvP;
      void* vC = sh->latent ? NULL : dvC;
      CPCL_OK(cpclKvStore(plan, &b, dkNew, sh->latent ? NULL : dvNew, dkP, vP, stream));
      CPCL_OK(cpclKvStore(plan, &bC, dkNewC, sh->latent ? NULL : dvNewC, dkC, vC, stream));
      CUDA_OK(cudaStreamSynchronize(stream));
      CPCL_OK(cpclAttnPlanGetAsyncError(plan, &async));
      EXPECT_RES(async, cpclSuccess);
      char *hP = malloc(kBytes > vBytes ? kBytes : vBytes), *hC = malloc(kBytes > vBytes ? kBytes : vBytes);
      CUDA_OK(cudaMemcpy(hP, dkP, kBytes, cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(hC, dkC, kBytes, cudaMemcpyDeviceToHost));
      EXPECT(memcmp(hP, hC, kBytes) == 0);
      CUDA_OK(cudaMemcpy(hP, dvP, vBytes, cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(hC, dvC, vBytes, cudaMemcpyDeviceToHost));
      EXPECT(memcmp(hP, hC, vBytes) == 0);
      free(hP), free(hC), free(kNew), free(vNew);
      cudaFree(dkP), cudaFree(dkC), cudaFree(dvP), cudaFree(dvC), cudaFree(dkNew), cudaFree(dvNew);
      cudaFree(dkNewC), cudaFree(dvNewC), cudaFree(dqsC), cudaFree(dlensC), cudaFree(dbtC);
    }
    CPCL_OK(cpclAttnPlanDestroy(plan));
    casesRun++;
  }
  cudaFree(out), cudaFree(out2), cudaFree(lse), cudaFree(lse2), cudaFree(pLse);
  free(bt);
  stepFree(&st);
}

/* One rank, CUDA memory: every schedule's plan carved from a caller's cudaMalloc buffer gives
 * the bits of the plan's own workspace; and a negative page id in device memory leaves the
 * row empty and comes back as cpclInvalidArgument (issue 18 item 6), from the decode and from
 * the store. */
static void runSelf(cudaStream_t stream) {
  cpclComm_t comm;
  CPCL_OK(tuSelfComm(&comm, 1, cpclMemCuda));
  const int worldSize = W;
  W = 1; /* stepFill shards the problem over W ranks: here one */
  const shape_t* sh = &shapes[0];
  const int H = sh->H, Dv = sh->Dv, T = 2;
  int32_t qs[3] = {0, 1, 2}, lens[2] = {100, 300};
  step_t st;
  stepAlloc(&st, sh, 1, 2, T, 300, 16);
  tuProblem_t pb;
  stepFill(&st, sh, 1, 1, qs, lens, 91, &pb);
  const size_t oBytes = (size_t)T * H * Dv * 2;
  void *out, *out2;
  float *lse, *lse2;
  CUDA_OK(cudaMalloc(&out, oBytes));
  CUDA_OK(cudaMalloc(&out2, oBytes));
  CUDA_OK(cudaMalloc((void**)&lse, sizeof(float) * T * H));
  CUDA_OK(cudaMalloc((void**)&lse2, sizeof(float) * T * H));
  char *h1 = malloc(oBytes), *h2 = malloc(oBytes);
  const cpclBatch_t b = tuBatch(2, T, NULL, st.lens, st.bt, st.maxPages);
  for (int a = 0; a < 4; a++) {
    cpclAttnDesc_t desc = tuDesc(&pb, H, 16);
    desc.algo = algos[a];
    cpclAttnPlan_t own, carved;
    CPCL_OK(cpclAttnPlanCreate(&own, comm, &desc, T));
    size_t need = 0;
    CPCL_OK(cpclAttnPlanWorkspaceBytes(own, &need));
    EXPECT(need > 0);
    void* ws;
    CUDA_OK(cudaMalloc(&ws, need));
    CUDA_OK(cudaMemset(ws, 0xa5, need));
    EXPECT_RES(cpclAttnPlanCreateWithWorkspace(&carved, comm, &desc, T, ws, need - 1), cpclInvalidArgument);
    CPCL_OK(cpclAttnPlanCreateWithWorkspace(&carved, comm, &desc, T, ws, need));
    for (int rep = 0; rep < 2; rep++) { /* twice: the carved flags and counters re-arm as their own do */
      CPCL_OK(cpclAttnDecode(own, &b, st.q, st.k, st.v, out, lse, stream));
      CPCL_OK(cpclAttnDecode(carved, &b, st.q, st.k, st.v, out2, lse2, stream));
      CUDA_OK(cudaStreamSynchronize(stream));
      checkOut(&st, sh, 1, out2, lse2, "caller's workspace");
      CUDA_OK(cudaMemcpy(h1, out, oBytes, cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(h2, out2, oBytes, cudaMemcpyDeviceToHost));
      EXPECT(memcmp(h1, h2, oBytes) == 0);
    }
    if (a == 1) { /* a negative page id among sequence 0's pages */
      const int32_t badPage = -5;
      int32_t page0;
      CUDA_OK(cudaMemcpy(&page0, st.bt, sizeof(page0), cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(st.bt, &badPage, sizeof(badPage), cudaMemcpyHostToDevice));
      CPCL_OK(cpclAttnDecode(carved, &b, st.q, st.k, st.v, out2, lse2, stream));
      CUDA_OK(cudaStreamSynchronize(stream));
      cpclResult_t async;
      CPCL_OK(cpclAttnPlanGetAsyncError(carved, &async));
      EXPECT_RES(async, cpclInvalidArgument);
      const int empty[2] = {1, 0};
      checkEmptyRows(&st, sh, out2, lse2, empty, "negative page id");
      EXPECT_RES(cpclAttnDecode(carved, &b, st.q, st.k, st.v, out2, lse2, stream), cpclInvalidArgument);
      EXPECT(strstr(cpclGetLastError(comm), "batch->blockTable[0][0] is -5") != NULL);
      /* the store of sequence 0's last token (position 99: page 6) with that page id negative */
      int32_t saved;
      CUDA_OK(cudaMemcpy(&saved, st.bt + 6, sizeof(saved), cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(st.bt, &page0, sizeof(page0), cudaMemcpyHostToDevice)); /* page 0 fine again */
      CUDA_OK(cudaMemcpy(st.bt + 6, &badPage, sizeof(badPage), cudaMemcpyHostToDevice));
      CPCL_OK(cpclKvStore(carved, &b, st.q, st.q, st.k, st.v, stream));
      CUDA_OK(cudaStreamSynchronize(stream));
      CPCL_OK(cpclAttnPlanGetAsyncError(carved, &async));
      EXPECT_RES(async, cpclInvalidArgument);
      EXPECT_RES(cpclAttnDecode(carved, &b, st.q, st.k, st.v, out2, lse2, stream), cpclInvalidArgument);
      EXPECT(strstr(cpclGetLastError(comm), "batch->blockTable[0][6] is -5") != NULL);
      CUDA_OK(cudaMemcpy(st.bt + 6, &saved, sizeof(saved), cudaMemcpyHostToDevice));
      stepFill(&st, sh, 1, 1, qs, lens, 91, &pb); /* the store above wrote sequence 1's token */
    }
    CPCL_OK(cpclAttnPlanDestroy(carved));
    CPCL_OK(cpclAttnPlanDestroy(own));
    CUDA_OK(cudaFree(ws)); /* the caller's, after the plan */
    casesRun++;
  }
  cudaFree(out), cudaFree(out2), cudaFree(lse), cudaFree(lse2);
  free(h1), free(h2);
  stepFree(&st);
  CPCL_OK(cpclCommDestroy(comm));
  W = worldSize;
}

/* One decode captured in a CUDA graph, replayed with new contents in the same buffers. */
static void runGraph(cpclComm_t comm, const char* algo, const shape_t* sh, cudaStream_t stream) {
  const int S = 4, T = 4, dcp = W, H = sh->H, Dv = sh->Dv;
  const size_t es = tuDtypeSize(sh->type);
  int32_t qs[5] = {0, 1, 2, 3, 4};
  int32_t lensSet[4][4] = {{7, 900, 33, 1500}, {1500, 2, 640, 81}, {64, 64, 1, 1300}, {1, 1, 1, 1}};
  step_t st;
  stepAlloc(&st, sh, dcp, S, T, 1500, 16);
  tuProblem_t pb;
  stepFill(&st, sh, dcp, 1, qs, lensSet[0], 5000, &pb);
  cpclAttnDesc_t desc = tuDesc(&pb, H, 16);
  desc.algo = algo;
  cpclAttnPlan_t plan;
  CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, T));
  void* out;
  float* lse;
  CUDA_OK(cudaMalloc(&out, (size_t)T * H * Dv * es));
  CUDA_OK(cudaMalloc((void**)&lse, sizeof(float) * T * H));
  cpclBatch_t b = tuBatch(S, T, NULL, st.lens, st.bt, st.maxPages);
  /* one eager step first, as engines warm up, then the capture */
  CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, out, lse, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  checkOut(&st, sh, dcp, out, lse, "eager before capture");
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, out, lse, stream));
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int it = 1; it < 4; it++) {
    stepFill(&st, sh, dcp, 1, qs, lensSet[it], 5000 + (uint64_t)it, &pb);
    CUDA_OK(cudaMemsetAsync(out, 0xff, (size_t)T * H * Dv * es, stream));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    char what[64];
    snprintf(what, sizeof(what), "%s graph replay %d", algo, it);
    checkOut(&st, sh, dcp, out, lse, what);
    cpclResult_t async;
    CPCL_OK(cpclAttnPlanGetAsyncError(plan, &async));
    EXPECT_RES(async, cpclSuccess);
  }
  /* eager calls still agree with the graph's epochs afterwards */
  CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, out, lse, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  checkOut(&st, sh, dcp, out, lse, "eager after replays");
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CPCL_OK(cpclAttnPlanDestroy(plan));
  cudaFree(out);
  cudaFree(lse);
  stepFree(&st);
  graphsRun++;
}

/* H is per rank: a rank attends W H gathered heads (MLA 4 / 16 / 32: 4..128 at np 1..4, pages 16
 * and 64, the Hopper body's one and two head chunks) */
static const shape_t shapes[6] = {
    {8, 1, 128, 128, 0, cpclBfloat16, 0, "GQA bf16 D128", 0},
    {2, 2, 64, 64, 0, cpclFloat16, 1, "GQA fp16 D64 multi-row", 0},
    {2, 1, 32, 32, 0, cpclFloat32, 1, "GQA fp32 D32", 0},
    {4, 1, 576, 512, 1, cpclBfloat16, 0, "MLA bf16 576/512", 0},
    {16, 1, 576, 512, 1, cpclBfloat16, 0, "MLA bf16 576/512 H16 page 64", 64},
    {32, 1, 576, 512, 1, cpclBfloat16, 1, "MLA bf16 576/512 H32 multi-row", 0},
};

static void suite(cpclComm_t comm, int dcp, int I, cudaStream_t stream, int full) {
  const char* only = getenv("CPCL_TEST_SHAPE"); /* debugging: one shape */
  for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
    if ((full || i < 2) && (!only || atoi(only) == (int)i)) runSchedules(comm, dcp, I, &shapes[i], stream);
}

/* Sparse attention (DESIGN.md §4.3) on every schedule: out/lse against a naive fp64 attention
 * over exactly the listed positions (-1 padding, entries past the row), decode repeated bitwise,
 * Partial + Combine bitwise equal to Decode, a2a and pipelined the same bits; where fused runs,
 * a captured decode replayed with new lists in the same buffer (the filter kernel is in the
 * graph). */
static void sparseRef(const tuProblem_t* pb, const int32_t* list, int K, int dcp, int H, double* refO, double* refL) {
  const int dr = rank % dcp;
  for (int t = 0; t < pb->numTokens; t++)
    for (int h = 0; h < H; h++)
      refL[t * H + h] =
          tuNaiveSparse(pb, t, dr * H + h, list + (size_t)t * K, K, 1, 0, 1, 0, refO + ((size_t)t * H + h) * pb->Dv);
}

static void checkSparse(const shape_t* sh, int T, const void* dOut, const float* dLse, const double* refO,
                        const double* refL, void* hOut, const char* what) {
  const int H = sh->H, Dv = sh->Dv;
  const size_t es = tuDtypeSize(sh->type);
  float* lse = malloc(sizeof(float) * T * H);
  CUDA_OK(cudaMemcpy(hOut, dOut, (size_t)T * H * Dv * es, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(lse, dLse, sizeof(float) * T * H, cudaMemcpyDeviceToHost));
  const double tol = 2 * tolOf(sh->type); /* the partial and the merged output are both rounded */
  for (int t = 0; t < T; t++)
    for (int h = 0; h < H; h++) {
      for (int d = 0; d < Dv; d++) {
        const double got = tuGet(hOut, ((size_t)t * H + h) * Dv + d, sh->type),
                     want = refO[((size_t)t * H + h) * Dv + d];
        if (!(fabs(got - want) <= tol)) {
          fprintf(stderr, "[rank %d] sparse %s (%s, W %d): row %d head %d dim %d got %g want %g\n", rank, what,
                  sh->name, W, t, h, d, got, want);
          MPI_Abort(world, 1);
        }
      }
      const double gl = lse[t * H + h], el = refL[t * H + h];
      if (!((gl == -INFINITY && el == -INFINITY) || fabs(gl - el) <= 1e-3 * (1 + fabs(el)))) {
        fprintf(stderr, "[rank %d] sparse %s (%s): lse row %d head %d got %g want %g\n", rank, what, sh->name, t, h, gl,
                el);
        MPI_Abort(world, 1);
      }
    }
  free(lse);
}

static void runSparse(cpclComm_t comm, int dcp, int I, const shape_t* sh, int K, cudaStream_t stream) {
  const int lensA[6] = {1, 5, 40, K + 30, 3 * K + 7, 97};
  static const int rowsM[6] = {1, 3, 2, 1, 2, 1};
  const int S = 6;
  int32_t qs[7], lens[6];
  qs[0] = 0;
  for (int s = 0; s < S; s++) {
    const int rows = sh->multiRow ? rowsM[s] : 1;
    lens[s] = lensA[s] + rows - 1;
    qs[s + 1] = qs[s] + rows;
  }
  const int T = qs[S], H = sh->H, Dv = sh->Dv;
  const size_t es = tuDtypeSize(sh->type), oBytes = (size_t)T * H * Dv * es, listBytes = sizeof(int32_t) * T * K;
  step_t st;
  stepAlloc(&st, sh, dcp, S, T, 3 * K + 12, 16);
  tuProblem_t pb;
  stepFill(&st, sh, dcp, I, qs, lens, 3000 + (uint64_t)I * 7 + sh->Dqk + K, &pb);
  int32_t* list = tuMakeTopk(&pb, K, pb.seed, 0);
  int32_t* dList;
  CUDA_OK(cudaMalloc((void**)&dList, listBytes));
  CUDA_OK(cudaMemcpy(dList, list, listBytes, cudaMemcpyHostToDevice));
  double* refO = malloc(sizeof(double) * (size_t)T * H * Dv);
  double* refL = malloc(sizeof(double) * (size_t)T * H);
  sparseRef(&pb, list, K, dcp, H, refO, refL);
  cpclAttnDesc_t desc = tuDesc(&pb, H, 16);
  desc.topk = K;
  void *out, *out2;
  float *lse, *lse2, *pLse;
  CUDA_OK(cudaMalloc(&out, oBytes));
  CUDA_OK(cudaMalloc(&out2, oBytes));
  CUDA_OK(cudaMalloc((void**)&lse, sizeof(float) * T * H));
  CUDA_OK(cudaMalloc((void**)&lse2, sizeof(float) * T * H));
  CUDA_OK(cudaMalloc((void**)&pLse, sizeof(float) * T * dcp * H));
  void *h1 = malloc(oBytes), *h2 = malloc(oBytes), *a2aOut = malloc(oBytes);
  cpclBatch_t b = tuBatch(S, T, sh->multiRow ? st.qs : NULL, st.lens, st.bt, st.maxPages);
  b.topkIndices = dList;
  for (int a = 0; a < 4; a++) {
    if (a == 3 && dcp != W) continue;
    desc.algo = algos[a];
    cpclAttnPlan_t plan;
    if (a == 3 && W > 1 && noFused) {
      EXPECT_RES(cpclAttnPlanCreate(&plan, comm, &desc, T), cpclUnsupported);
      continue;
    }
    CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, T));
    CUDA_OK(cudaMemsetAsync(out, 0xff, oBytes, stream));
    CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, out, lse, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    cpclResult_t async;
    CPCL_OK(cpclAttnPlanGetAsyncError(plan, &async));
    EXPECT_RES(async, cpclSuccess);
    checkSparse(sh, T, out, lse, refO, refL, h1, algos[a]);
    CUDA_OK(cudaMemsetAsync(out, 0xff, oBytes, stream));
    CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, out, lse, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    CUDA_OK(cudaMemcpy(h2, out, oBytes, cudaMemcpyDeviceToHost));
    EXPECT(memcmp(h1, h2, oBytes) == 0);
    if (a == 1) memcpy(a2aOut, h1, oBytes);
    if (a == 2) EXPECT(memcmp(a2aOut, h1, oBytes) == 0); /* pipelined: a2a's arithmetic */
    CPCL_OK(cpclAttnPartial(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, st.pOut, pLse, stream));
    CPCL_OK(cpclAttnCombine(plan, T, st.pOut, pLse, out2, lse2, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    CUDA_OK(cudaMemcpy(h2, out2, oBytes, cudaMemcpyDeviceToHost));
    if (a != 3) EXPECT(memcmp(h1, h2, oBytes) == 0); /* fused's halves are a2a's (to rounding the same) */
    checkSparse(sh, T, out2, lse2, refO, refL, h2, "partial+combine");
    if (a == 3 || (a == 1 && dcp == W)) { /* a graph: new lists in the same buffer each replay */
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, sh->latent ? NULL : st.v, out, lse, stream));
      CUDA_OK(cudaStreamEndCapture(stream, &graph));
      CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
      for (int it = 1; it < 3; it++) {
        int32_t* l2 = tuMakeTopk(&pb, K, pb.seed + 100 * (uint64_t)it, it == 2 ? 1u << 3 : 0);
        CUDA_OK(cudaMemcpy(dList, l2, listBytes, cudaMemcpyHostToDevice));
        sparseRef(&pb, l2, K, dcp, H, refO, refL);
        CUDA_OK(cudaMemsetAsync(out, 0xff, oBytes, stream));
        CUDA_OK(cudaGraphLaunch(exec, stream));
        CUDA_OK(cudaStreamSynchronize(stream));
        checkSparse(sh, T, out, lse, refO, refL, h2, "graph replay");
        free(l2);
        graphsRun++;
      }
      CUDA_OK(cudaGraphExecDestroy(exec));
      CUDA_OK(cudaGraphDestroy(graph));
      CUDA_OK(cudaMemcpy(dList, list, listBytes, cudaMemcpyHostToDevice));
      sparseRef(&pb, list, K, dcp, H, refO, refL);
    }
    CPCL_OK(cpclAttnPlanDestroy(plan));
    casesRun++;
  }
  cudaFree(out), cudaFree(out2), cudaFree(lse), cudaFree(lse2), cudaFree(pLse), cudaFree(dList);
  free(h1), free(h2), free(a2aOut), free(refO), free(refL), free(list);
  stepFree(&st);
}

/* One rank stops taking part: the others' device waits give up after timeoutMs. */
static void runStall(cudaStream_t stream) {
  cpclOob_t oob;
  cpclMpiOob(&oob, &world);
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.memType = cpclMemCuda;
  cfg.transport = "ipc";
  cfg.timeoutMs = 1500;
  cpclComm_t comm;
  CPCL_OK(cpclCommInitOob(&comm, &oob, &cfg));
  const shape_t* sh = &shapes[0];
  int32_t qs[3] = {0, 1, 2}, lens[2] = {100, 300};
  step_t st;
  stepAlloc(&st, sh, W, 2, 2, 300, 16);
  tuProblem_t pb;
  stepFill(&st, sh, W, 1, qs, lens, 77, &pb);
  cpclAttnDesc_t desc = tuDesc(&pb, sh->H, 16);
  desc.algo = "fused";
  cpclAttnPlan_t plan;
  CPCL_OK(cpclAttnPlanCreate(&plan, comm, &desc, 2));
  void* out;
  float* lse;
  CUDA_OK(cudaMalloc(&out, (size_t)2 * sh->H * sh->Dv * 2));
  CUDA_OK(cudaMalloc((void**)&lse, sizeof(float) * 2 * sh->H));
  cpclBatch_t b = tuBatch(2, 2, NULL, st.lens, st.bt, st.maxPages);
  CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, st.v, out, lse, stream)); /* everyone: one good step */
  CUDA_OK(cudaStreamSynchronize(stream));
  MPI_Barrier(world);
  if (rank != W - 1) { /* the last rank stalls: it skips the next step */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CPCL_OK(cpclAttnDecode(plan, &b, st.q, st.k, st.v, out, lse, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
    /* the next call reports it, and so does the query; then the communicator refuses work */
    EXPECT_RES(cpclAttnDecode(plan, &b, st.q, st.k, st.v, out, lse, stream), cpclTimeout);
    cpclResult_t async;
    CPCL_OK(cpclAttnPlanGetAsyncError(plan, &async));
    EXPECT_RES(async, cpclTimeout);
    EXPECT_RES(cpclAttnDecode(plan, &b, st.q, st.k, st.v, out, lse, stream), cpclInvalidUsage);
    EXPECT(ms < 1500 * 3 + 2000);
    if (rank == 0) printf("stall: the step gave up after %.0f ms (timeout 1500 ms): %s\n", ms, cpclGetLastError(comm));
  }
  MPI_Barrier(world);
  CPCL_OK(cpclAttnPlanDestroy(plan));
  cpclCommDestroy(comm);
  cudaFree(out);
  cudaFree(lse);
  stepFree(&st);
}

#ifdef CPCL_HAVE_NCCL
/* The engine's NCCL communicator (one rank per GPU: NCCL refuses two ranks on one GPU). */
static void runNccl(cudaStream_t stream) {
  ncclUniqueId id;
  ncclComm_t nc;
  if (rank == 0) EXPECT(ncclGetUniqueId(&id) == ncclSuccess);
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, world);
  EXPECT(ncclCommInitRank(&nc, W, id, rank) == ncclSuccess);
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.memType = cpclMemCuda;
  cpclComm_t comm;
  CPCL_OK(cpclCommInitNccl(&comm, nc, &cfg));
  int n = 0;
  CPCL_OK(cpclCommSize(comm, &n));
  EXPECT(n == W);
  noFused = W > 1;
  suite(comm, W, 1, stream, 1);
  runGraph(comm, "a2a", &shapes[0], stream);
  runGraph(comm, "agrs", &shapes[0], stream);
  runGraph(comm, W > 1 ? "pipelined" : "fused", &shapes[0], stream);
  noFused = 0;
  CPCL_OK(cpclCommDestroy(comm)); /* graphs that captured it are destroyed already */
  EXPECT(ncclCommDestroy(nc) == ncclSuccess);
  int v = 0;
  ncclGetVersion(&v);
  if (rank == 0) printf("nccl (version code %d), %d rank(s): every schedule and graph replay passed\n", v, W);
}
#endif

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &W);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    if (rank == 0) printf("test_gpu_decode: no CUDA device, skipped\n");
    MPI_Finalize();
    return 77;
  }
  CUDA_OK(cudaSetDevice(rank % devices));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const int Is[] = {1, 16};
  for (int dcp = W; dcp >= 1; dcp--) {
    if (W % dcp || (dcp != W && dcp != 1 && dcp != W / 2)) continue;
    for (int i = 0; i < 2; i++) {
      cpclOob_t oob;
      cpclMpiOob(&oob, &world);
      cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
      cfg.memType = cpclMemCuda;
      cfg.transport = "ipc";
      cfg.dcpSize = dcp;
      cfg.kvInterleave = Is[i];
      cpclComm_t comm;
      CPCL_OK(cpclCommInitOob(&comm, &oob, &cfg));
      suite(comm, dcp, Is[i], stream, dcp == W && i == 0);
      runPadding(comm, dcp, Is[i], &shapes[i == 0 ? 1 : 3], stream);
      runSparse(comm, dcp, Is[i], &shapes[3], dcp == W && i == 0 ? 2048 : 128, stream); /* MLA */
      runSparse(comm, dcp, Is[i], &shapes[1], 64, stream);                              /* GQA fp16 multi-row */
      if (dcp == W && i == 0 && W > 1) { /* ipc maps whole allocations only: said so */
        cpclAttnDesc_t d = CPCL_ATTN_DESC_INITIALIZER;
        d.numQoHeads = 8, d.numKvHeads = 1, d.smScale = 0.1f;
        cpclAttnPlan_t p;
        void* ws;
        CUDA_OK(cudaMalloc(&ws, 64 << 20));
        EXPECT_RES(cpclAttnPlanCreateWithWorkspace(&p, comm, &d, 4, ws, 64 << 20), cpclUnsupported);
        EXPECT(strstr(cpclGetLastError(comm), "whole allocations") != NULL);
        CUDA_OK(cudaFree(ws));
      }
      if (dcp == W && i == 0) {
        runGraph(comm, "fused", &shapes[0], stream);
        runGraph(comm, "a2a", &shapes[0], stream);
        runGraph(comm, "fused", &shapes[3], stream);
        runGraph(comm, "a2a", &shapes[3], stream); /* MLA on sm_90: the Hopper body and its merge kernel */
      }
      CPCL_OK(cpclCommDestroy(comm));
    }
  }
  if (rank == 0) runSelf(stream); /* a one-rank communicator of its own */
  MPI_Barrier(world);
  if (W > 1) runStall(stream);
#ifdef CPCL_HAVE_NCCL
  if (W <= devices) runNccl(stream);
#endif
  cudaStreamDestroy(stream);
  if (rank == 0)
    printf("test_gpu_decode: %d ranks on %d GPU(s), %d schedule cases and %d graph replays passed\n", W, devices,
           casesRun, graphsRun);
  MPI_Finalize();
  return 0;
}
