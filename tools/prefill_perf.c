/*
 * prefill_perf -- cpclAttnPrefill per schedule, side by side, against the one-rank prefill of
 * the same prompt in the same run (rank 0 runs it on a one-rank communicator), in the style of
 * nccl-tests over the shared perf driver (perf/driver.h) and data (perf/data.h). Run under
 * mpirun, one process per rank (CPU ranks over UCX, host memory). Each sequence is a prompt of
 * `new` tokens after `context` cached ones (sharded over all W ranks, filled through
 * cpclKvStore); each rank passes its head-tail chunks (cpclPcpChunks) and its heads.
 *
 *   mpirun -np 4 prefill_perf -l 8192 -L 8192 -D 1 -H 8 -K 2 -c 1
 *   prefill_perf -g 1 -B 4 -l 4096 -L 65536 -F 4 -H 32 -K 8        (one GPU: the bare kernel's TF/s)
 *
 * -g 1: GPU ranks, CUDA memory (q, K/V, caches, out and the block table on the device), every
 * step timed as CUDA-graph replays; one process per GPU, or several sharing one over ipc (-X ipc:
 * correctness, their times mean nothing). The one-rank prefill on rank 0 is then the bare kernel
 * on the GPU (plus the layout copy and the K/V store of its step): one_TF/s is its causal rate.
 *
 * Columns: seqs, context and new tokens per sequence, schedule, min/median/max time of the
 * slowest rank (us), tok/s (new tokens of the batch / median), GF/s/rank (causal attention
 * FLOPs of the whole batch, 2 (Dqk + Dv) per visible key and head, / W / median), MB/rank (bytes
 * one rank sends and receives per step, the most over ranks, from the schedule's messages: K/V
 * blocks, and with context the gathered queries and the partial slices), one_us (rank 0's
 * one-rank prefill of the same batch, all heads, median), speed-up over it, #wrong (elements off
 * the one-rank result beyond the dtype's tolerance, all ranks; -c 1), one_TF/s (the one-rank
 * prefill's causal FLOPs / its median), status. Uses only the
 * public header.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpcl.h"
#include "mpi_oob.h"
#include "perf/data.h"
#include "perf/driver.h"
#include "perf/driver_mpi.h"

static int rank, W;
static MPI_Comm world = MPI_COMM_WORLD;

typedef struct {
  int minN, maxN, stepN;     /* -l -L -F: new tokens per sequence */
  int context, seqs;         /* -C -B */
  int H, Hkv, Dqk, Dv, mla;  /* -H -K -d -v -m */
  int dcp, interleave, page; /* -D -i -p */
  int type;                  /* -t */
  char algos[PERF_LIST_MAX]; /* -a */
  int gpu;                   /* -g */
  const char* transport;     /* -X */
} opts_t;

static perf_t perf;
#define MAXI 1000000000L
static opts_t o = {8192, 8192, 2, 0, 1, 8, 2, 128, 128, 0, 0, 1, 16, cpclBfloat16, "allgather,ring", 0, NULL};
static const perfOpt_t options[] = {
    {'l', "minNew", PERF_OPT_INT, &o.minN, "N", "new tokens per sequence: smallest", 1, MAXI, NULL, NULL, NULL},
    {'L', "maxNew", PERF_OPT_INT, &o.maxN, "N", "new tokens per sequence: largest", 1, MAXI, NULL, NULL, NULL},
    {'F', "newFactor", PERF_OPT_INT, &o.stepN, "N", "new tokens: factor between rows", 2, 1024, NULL, NULL, NULL},
    {'C', "context", PERF_OPT_INT, &o.context, "N", "cached tokens per sequence before the new ones", 0, MAXI, NULL,
     NULL, NULL},
    {'B', "seqs", PERF_OPT_INT, &o.seqs, "N", "sequences per step", 1, 65536, NULL, NULL, NULL},
    {'H', "headsPerRank", PERF_OPT_INT, &o.H, "N", "query heads per rank", 1, 65536, NULL, NULL, NULL},
    {'K', "kvHeads", PERF_OPT_INT, &o.Hkv, "N", "KV heads", 1, 65536, NULL, NULL, NULL},
    {'d', "headDimQk", PERF_OPT_INT, &o.Dqk, "N", "head dim of q and k", 1, 65536, NULL, NULL, NULL},
    {'v', "headDimVo", PERF_OPT_INT, &o.Dv, "N", "head dim of v and out", 1, 65536, NULL, NULL, NULL},
    {'m', "mla", PERF_OPT_INT, &o.mla, "0|1", "1: MLA, latent KV 576/512, 1 KV head", 0, 1, NULL, NULL, NULL},
    {'D', "dcpSize", PERF_OPT_INT, &o.dcp, "N", "ranks on the DCP axis (0: all; pcp = W / dcp)", 0, 65536, NULL, NULL,
     NULL},
    {'i', "interleave", PERF_OPT_INT, &o.interleave, "N", "KV interleave (tokens per run)", 1, 65536, NULL, NULL, NULL},
    {'p', "pageSize", PERF_OPT_INT, &o.page, "N", "tokens per KV page", 1, 65536, NULL, NULL, NULL},
    {'t', "dtype", PERF_OPT_CHOICE, &o.type, "TYPE", "q, KV and out dtype", 0, 0, "bf16,fp16,fp32", NULL, NULL},
    {'a', "schedules", PERF_OPT_LIST, o.algos, "LIST", "prefill schedules", 0, 0, "allgather,ring", NULL, NULL},
#ifdef PERF_CUDA
    {'g', "gpu", PERF_OPT_INT, &o.gpu, "0|1", "1: GPU ranks (CUDA memory, graph replays)", 0, 1, NULL, NULL, NULL},
#endif
    {'X', "transport", PERF_OPT_STRING, &o.transport, "NAME", "transport (automatic: ucx on the host, ipc on GPUs)", 0,
     0, NULL, NULL, NULL},
};

typedef struct {
  cpclAttnPlan_t plan;
  const cpclPrefillBatch_t* batch;
  const void *q, *k, *v;
  void *kc, *vc, *out;
  float* lse;
} stepArgs_t;

static int prefillStep(void* a, int launch) {
  stepArgs_t* s = a;
  PERF_CHECK(cpclAttnPrefill(s->plan, s->batch, s->q, s->k, s->v, s->kc, s->vc, s->out, s->lse, perfRunStream()));
  return 0;
}

static int timeStep(const perf_t* p, stepArgs_t* a, perfStats_t* s) {
#ifdef PERF_CUDA
  if (perfGpu) return perfTimeGraph(p, perfGpuStream, prefillStep, a, s);
#endif
  return perfTimeHost(p, prefillStep, a, s);
}

/* one sequence's rows of PCP rank r: positions, in row order */
static int chunkRows(int n, int P, int r, int ctx, int32_t* pos) {
  int64_t st[2], ln[2];
  int rows = (int)cpclPcpChunks(n, P, r, st, ln);
  for (int c = 0, t = 0; c < 2; c++)
    for (int64_t j = 0; j < ln[c]; j++) pos[t++] = ctx + (int32_t)(st[c] + j);
  return rows;
}

/* K (v = 0) or V rows of the new tokens at positions pos of sequence s, keyed as perfCacheBuild */
static void genKv(void* dst, int rows, const int32_t* pos, int s, int v, size_t rowElems) {
  for (int t = 0; t < rows; t++)
    perfGenRow(dst, (size_t)t * rowElems, (int)rowElems, (uint64_t)s, (uint64_t)pos[t] * 2 + v, o.type);
}

/* q rows (gathered heads h0 .. h0+nh-1 of Hq) at positions pos of sequence s */
static void genQ(void* dst, int rows, const int32_t* pos, int s, int h0, int nh) {
  for (int t = 0; t < rows; t++)
    for (int h = 0; h < nh; h++)
      perfGenRow(dst, ((size_t)t * nh + h) * o.Dqk, o.Dqk, (uint64_t)1 << 40 | (uint64_t)s << 24 | (uint64_t)pos[t],
                 (uint64_t)(h0 + h), o.type);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &W);
  perfInit(&perf, "prefill_perf",
           "cpclAttnPrefill, every schedule against the one-rank prefill, one row per (prompt, schedule); run under "
           "mpirun",
           options, (int)(sizeof(options) / sizeof(options[0])));
  perf.hasCheck = 1;
  perfUseMpi(&perf, &world);
  int pr = perfParse(&perf, argc, argv);
  if (!pr && o.maxN < o.minN) pr = perfArgError(&perf, "-L %d is below -l %d", o.maxN, o.minN);
  if (!pr && o.mla) pr = perfMlaShape(&perf, &o.Dqk, &o.Dv, &o.Hkv);
  if (pr) {
    MPI_Finalize();
    return pr == 1 ? 0 : 2;
  }
  perfDataInit(o.gpu, rank);
  const perfKv_t kv = {o.Hkv, o.Dqk, o.Dv, o.mla, o.page, o.interleave, o.type};
  cpclComm_t comm = perfMpiComm(&world, o.dcp, o.interleave, o.transport);
  int D, dr, P, pcpRank;
  PERF_CHECK(cpclCommAxes(comm, &D, &dr, &P, &pcpRank));
  cpclComm_t self = perfSelfComm(&kv, perfGpu ? cpclMemCuda : cpclMemHost);
  const int H = o.H, Hq = D * H, Dv = o.Dv, B = o.seqs, C = o.context;
  const size_t es = perfElemSize(o.type), kRow = (size_t)o.Hkv * o.Dqk, vRow = o.mla ? 0 : (size_t)o.Hkv * Dv;
  const char* tname = o.type == cpclFloat32 ? "fp32" : o.type == cpclFloat16 ? "fp16" : "bf16";
  perfParamInt(&perf, "ranks", W);
  perfParamInt(&perf, "dcp", D);
  perfParamInt(&perf, "pcp", P);
  perfComment(&perf,
              "prefill_perf%s%s: W %d (pcp %d, dcp %d), %s, H %d per rank (%d gathered), Hkv %d, D %d/%d%s, "
              "interleave %d, page %d, %d warm-up + %d iterations, check %s, %s",
              perf.label[0] ? " " : "", perf.label, W, P, D, tname, H, Hq, o.Hkv, o.Dqk, Dv,
              o.mla ? " (MLA latent)" : "", o.interleave, o.page, perf.warmup, perf.iters, perf.check ? "on" : "off",
              perfGpu ? "GPU ranks, CUDA memory, CUDA-graph replays" : "CPU ranks, host memory");
  static const perfColumn_t cols[] = {
      {"seqs", PERF_INT, 5, 0},          {"context", PERF_INT, 8, 0},     {"new", PERF_INT, 7, 0},
      {"schedule", PERF_STRING, -10, 0}, {"min_us", PERF_DOUBLE, 11, 0},  {"median_us", PERF_DOUBLE, 11, 0},
      {"max_us", PERF_DOUBLE, 11, 0},    {"tok/s", PERF_DOUBLE, 9, 0},    {"GF/s/rank", PERF_DOUBLE, 9, 1},
      {"MB/rank", PERF_DOUBLE, 8, 2},    {"one_us", PERF_DOUBLE, 11, 0},  {"vs_one", PERF_DOUBLE, 6, 2},
      {"#wrong", PERF_INT, 7, 0},        {"one_TF/s", PERF_DOUBLE, 8, 1}, {"status", PERF_STRING, -1, 0},
  };
  perfColumns(&perf, cols, (int)(sizeof(cols) / sizeof(cols[0])));
  perfPrintHeader(&perf);
  long totalWrong = 0;
  for (long N = o.minN; N <= o.maxN; N *= o.stepN) {
    /* rows of every PCP rank (the plan's maxTokens is the largest, the same everywhere) */
    int32_t* pos = malloc(sizeof(int32_t) * (size_t)(N + 1));
    int rowsOf[64] = {0}, maxRows = 0;
    for (int r = 0; r < P && r < 64; r++) {
      rowsOf[r] = B * chunkRows((int)N, P, r, C, pos);
      maxRows = rowsOf[r] > maxRows ? rowsOf[r] : maxRows;
    }
    const int T = rowsOf[pcpRank], n1 = B * (int)N;
    int32_t* qs = malloc(sizeof(int32_t) * (size_t)(B + 1));
    int32_t *ctx = malloc(sizeof(int32_t) * B), *nw = malloc(sizeof(int32_t) * B);
    int32_t* myPos = malloc(sizeof(int32_t) * (size_t)(T + 1));
    void* q = malloc((size_t)(T + 1) * H * o.Dqk * es);
    void* k = malloc((size_t)(T + 1) * kRow * es);
    void* v = malloc((size_t)(T + 1) * (vRow ? vRow : 1) * es);
    qs[0] = 0;
    for (int s = 0; s < B; s++) {
      const int n = chunkRows((int)N, P, pcpRank, C, myPos + qs[s]);
      ctx[s] = C, nw[s] = (int)N, qs[s + 1] = qs[s] + n;
      genQ((char*)q + (size_t)qs[s] * H * o.Dqk * es, n, myPos + qs[s], s, dr * H, H);
      genKv((char*)k + (size_t)qs[s] * kRow * es, n, myPos + qs[s], s, 0, kRow);
      if (vRow) genKv((char*)v + (size_t)qs[s] * vRow * es, n, myPos + qs[s], s, 1, vRow);
    }
    cpclAttnDesc_t desc = perfDesc(&kv, H);
    cpclAttnPlan_t storePlan;
    PERF_CHECK(cpclAttnPlanCreate(&storePlan, comm, &desc, 1));
    perfCache_t c; /* every token, the new ones too: the prefill stores them again, the same bytes */
    perfCacheBuild(&kv, storePlan, W, rank, B, C + (int)N, &c, 1);
    PERF_CHECK(cpclAttnPlanDestroy(storePlan));
    cpclPrefillBatch_t batch = CPCL_PREFILL_BATCH_INITIALIZER;
    batch.numSeqs = B, batch.numTokens = T, batch.queryStart = qs, batch.contextLens = ctx, batch.newLens = nw;
    batch.blockTable = c.btRun, batch.maxPagesPerSeq = c.maxPages; /* the block table in the cache's memory */
    void* qRun = perfDup(q, (size_t)(T + 1) * H * o.Dqk * es);
    void* kRun = perfDup(k, (size_t)(T + 1) * kRow * es);
    void* vRun = perfDup(v, (size_t)(T + 1) * (vRow ? vRow : 1) * es);
    void* out = perfAlloc((size_t)(T + 1) * H * Dv * es);
    float* lse = perfAlloc(sizeof(float) * (size_t)(T + 1) * H);

    /* FLOPs of the batch's causal attention: every new row sees its position + 1 keys */
    double flops = 0;
    for (long j = 0; j < N; j++) flops += (double)(C + j + 1);
    flops *= 2.0 * (o.Dqk + Dv) * (double)Hq * B;
    /* bytes this rank sends and receives: K/V blocks over PCP (both schedules move P - 1
     * blocks), and with context the queries (to every rank) and the slices (one per rank) */
    double bytes = 0;
    for (int r = 0; r < P; r++)
      if (r != pcpRank) bytes += ((double)rowsOf[r] + T) * (kRow + vRow) * es;
    if (C > 0) {
      const double sl = (double)H * (Dv * es + sizeof(float));
      for (int p = 0; p < W; p++)
        if (p != rank) bytes += ((double)T + rowsOf[p / D]) * (H * o.Dqk * es + sl);
    }
    MPI_Allreduce(MPI_IN_PLACE, &bytes, 1, MPI_DOUBLE, MPI_MAX, world);

    /* the one-rank prefill of the same batch on rank 0: time and, for -c, its result */
    double oneUs = 0;
    void* ref = NULL; /* [n1][Hq][Dv], rows sequence-major in position order */
    if (perf.check) ref = malloc((size_t)n1 * Hq * Dv * es);
    if (rank == 0) {
      cpclAttnDesc_t od = perfDesc(&kv, Hq);
      cpclAttnPlan_t op;
      PERF_CHECK(cpclAttnPlanCreate(&op, self, &od, n1));
      perfCache_t oc;
      perfCacheBuild(&kv, op, 1, 0, B, C + (int)N, &oc, 1);
      int32_t* oqs = malloc(sizeof(int32_t) * (size_t)(B + 1));
      int32_t* opos = malloc(sizeof(int32_t) * (size_t)N);
      void* oq = malloc((size_t)n1 * Hq * o.Dqk * es);
      void* ok = malloc((size_t)n1 * kRow * es);
      void* ov = malloc((size_t)n1 * (vRow ? vRow : 1) * es);
      for (int s = 0; s <= B; s++) oqs[s] = s * (int)N;
      for (long j = 0; j < N; j++) opos[j] = C + (int32_t)j;
      for (int s = 0; s < B; s++) {
        genQ((char*)oq + (size_t)oqs[s] * Hq * o.Dqk * es, (int)N, opos, s, 0, Hq);
        genKv((char*)ok + (size_t)oqs[s] * kRow * es, (int)N, opos, s, 0, kRow);
        if (vRow) genKv((char*)ov + (size_t)oqs[s] * vRow * es, (int)N, opos, s, 1, vRow);
      }
      cpclPrefillBatch_t ob = batch;
      ob.numTokens = n1, ob.queryStart = oqs, ob.blockTable = oc.btRun, ob.maxPagesPerSeq = oc.maxPages;
      void* oo = perfAlloc((size_t)n1 * Hq * Dv * es);
      float* ol = perfAlloc(sizeof(float) * (size_t)n1 * Hq);
      void* oqR = perfDup(oq, (size_t)n1 * Hq * o.Dqk * es);
      void* okR = perfDup(ok, (size_t)n1 * kRow * es);
      void* ovR = perfDup(ov, (size_t)n1 * (vRow ? vRow : 1) * es);
      stepArgs_t a = {op, &ob, oqR, okR, vRow ? ovR : NULL, oc.k, oc.v, oo, ol};
      perf_t solo = perf; /* rank 0 alone: no barrier, no reduction */
      solo.barrier = NULL, solo.reduceMax = NULL;
      perfStats_t s1;
      if (timeStep(&solo, &a, &s1)) MPI_Abort(world, 1);
      oneUs = s1.median;
      if (ref) perfCopyOut(ref, oo, (size_t)n1 * Hq * Dv * es);
      perfFree(oo), perfFree(ol), perfFree(oqR), perfFree(okR), perfFree(ovR);
      free(oq), free(ok), free(ov), free(oqs), free(opos);
      perfCacheFree(&oc);
      PERF_CHECK(cpclAttnPlanDestroy(op));
    }
    MPI_Bcast(&oneUs, 1, MPI_DOUBLE, 0, world);
    void* myRef = NULL; /* this rank's rows of ref, [T][Hq][Dv] */
    if (perf.check) {
      MPI_Bcast(ref, (int)((size_t)n1 * Hq * Dv * es), MPI_BYTE, 0, world);
      const size_t rowB = (size_t)Hq * Dv * es;
      myRef = malloc((size_t)(T + 1) * rowB);
      for (int s = 0; s < B; s++)
        for (int t = qs[s]; t < qs[s + 1]; t++)
          memcpy((char*)myRef + (size_t)t * rowB, (char*)ref + ((size_t)s * N + (myPos[t] - C)) * rowB, rowB);
    }

    char algos[PERF_LIST_MAX];
    snprintf(algos, sizeof(algos), "%s", o.algos);
    char* save = NULL;
    for (char* a = strtok_r(algos, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
      desc.prefillAlgo = a;
      cpclAttnPlan_t plan;
      PERF_CHECK(cpclAttnPlanCreate(&plan, comm, &desc, maxRows > B ? maxRows : B));
      stepArgs_t sa = {plan, &batch, qRun, kRun, vRow ? vRun : NULL, c.k, c.v, out, lse};
      perfStats_t t;
      if (timeStep(&perf, &sa, &t)) MPI_Abort(world, 1);
      long wrong = 0;
      if (perf.check) {
        wrong = perfCheckStep(&kv, prefillStep, &sa, out, myRef, T, H, Hq, dr, world);
        totalWrong += wrong;
      }
      perfValue_t row[] = {PERF_I(B),
                           PERF_I(C),
                           PERF_I(N),
                           PERF_S(a),
                           PERF_D(t.min),
                           PERF_D(t.median),
                           PERF_D(t.max),
                           PERF_D(n1 / (t.median * 1e-6)),
                           PERF_D(flops / W / (t.median * 1e-6) / 1e9),
                           PERF_D(bytes / 1e6),
                           PERF_D(oneUs),
                           PERF_D(oneUs / t.median),
                           perf.check ? PERF_I(wrong) : PERF_NONE,
                           PERF_D(flops / (oneUs * 1e-6) / 1e12),
                           PERF_S(perfCheckStatus(perf.check, wrong))};
      perfRow(&perf, row, wrong != 0);
      PERF_CHECK(cpclAttnPlanDestroy(plan));
    }
    free(ref), free(myRef), free(pos), free(qs), free(ctx), free(nw), free(myPos), free(q), free(k), free(v);
    perfFree(qRun), perfFree(kRun), perfFree(vRun);
    perfFree(out);
    perfFree(lse);
    perfCacheFree(&c);
  }
  PERF_CHECK(cpclCommDestroy(self));
  PERF_CHECK(cpclCommDestroy(comm));
  if (perf.check) perfComment(&perf, "total wrong elements: %ld", totalWrong);
  int status = perfFinish(&perf);
  MPI_Finalize();
  return status;
}
