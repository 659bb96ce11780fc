/*
 * dcp_decode_perf -- the fused DCP decode (cpclAttnDecode) per schedule, side by side, in the
 * style of nccl-tests, over the shared perf driver (perf/driver.h: flags, timing, check verdict,
 * table, -J results) and the tools' shared data (perf/data.h: buffers, test data, paged
 * caches). Run under mpirun, one process per rank (CPU ranks over UCX on host memory). Every
 * rank holds its shard of a paged KV cache; each row is one timed step.
 *
 *   mpirun -np 4 dcp_decode_perf -b 1 -e 16 -f 4 -l 1024 -L 4096 -F 4 -H 8 -K 1 -c 1 -J out.json
 *
 * Columns: batch, context (global tokens per sequence), local tokens on rank 0, schedule,
 * min/median/max time over iterations of the slowest rank (us), bare = the median of the same
 * rank's local attention alone (one-rank communicator, no transfer, the same gathered queries;
 * slowest rank), KV GB/s per
 * rank (local KV bytes read / median), speed-up of the median over agrs, #wrong (elements off
 * the single-rank reference, all ranks; -c 1), status (ok, FAILED: wrong elements, error: the
 * plan could not be made; either makes the run exit 1). Uses only the public header.
 *
 * On GPUs (-g 1; builds with CUDA): one process per GPU, or several sharing one GPU for
 * correctness (-X ipc; their times mean nothing). Every step, the bare kernel's included, is
 * captured once in a CUDA graph and the graph replayed, as engines run decode; the times are
 * those of the slowest rank's replay (CUDA events after an MPI barrier).
 *
 * Sparse attention (-k K, DeepSeek-V3.2 DSA, issue 16): every row lists K distinct positions of
 * its sequence (the same lists on every rank); each rank attends to the listed positions it owns.
 * KV GB/s then counts the K rows this rank attends; bare is the same rank's attention over the
 * same keys on a one-rank communicator (the lists as local positions). For the shape:
 *   mpirun -np 8 dcp_decode_perf -g 1 -m 1 -H 16 -k 2048 -b 64 -e 128 -f 2 -l 32768 -L 32768 -p 64 -c 1
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
  int minB, maxB, stepB;     /* -b -e -f */
  int minL, maxL, stepL;     /* -l -L -F */
  int H, Hkv, Dqk, Dv, mla;  /* -H -K -d -v -m */
  int dcp, interleave, page; /* -D -i -p */
  int type;                  /* -t: a cpclDataType_t (the choices are in its order) */
  int rows;                  /* -r rows per sequence (MTP) */
  char algos[PERF_LIST_MAX]; /* -a */
  int gpu;                   /* -g 1: CUDA memory, graph-timed */
  const char* transport;     /* -X: the communicator's transport (NULL: automatic) */
  int topk;                  /* -k: sparse attention over K listed positions a row (0: dense) */
} opts_t;

static perf_t perf;

static perfStats_t timeOp(int (*step)(void*, int), void* arg) {
  perfStats_t s;
  int err =
#ifdef PERF_CUDA
      perfGpu ? perfTimeGraph(&perf, perfGpuStream, step, arg, &s) :
#endif
              perfTimeHost(&perf, step, arg, &s);
  if (err) {
    fprintf(stderr, "rank %d: timing failed\n", rank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return s;
}

typedef struct {
  cpclAttnPlan_t plan;
  cpclBatch_t* batch;
  const void *q, *k, *v;
  void* out;
  float* lse;
} stepArgs_t;

static int decodeStep(void* a, int launch) {
  stepArgs_t* s = a;
  PERF_CHECK(cpclAttnDecode(s->plan, s->batch, s->q, s->k, s->v, s->out, s->lse, perfRunStream()));
  return 0;
}

static int partialStep(void* a, int launch) {
  stepArgs_t* s = a;
  PERF_CHECK(cpclAttnPartial(s->plan, s->batch, s->q, s->k, s->v, s->out, s->lse, perfRunStream()));
  return 0;
}

#define MAXI 1000000000L
static opts_t o = {1, 64, 4, 4096, 4096, 2, 8, 1, 128, 128, 0, 0, 1, 16, cpclBfloat16, 1, "", 0, NULL, 0};
static const perfOpt_t options[] = {
    {'b', "minBatch", PERF_OPT_INT, &o.minB, "N", "batch: smallest", 1, MAXI, NULL, NULL, NULL},
    {'e', "maxBatch", PERF_OPT_INT, &o.maxB, "N", "batch: largest", 1, MAXI, NULL, NULL, NULL},
    {'f', "batchFactor", PERF_OPT_INT, &o.stepB, "N", "batch: factor between rows", 2, 1024, NULL, NULL, NULL},
    {'l', "minContext", PERF_OPT_INT, &o.minL, "N", "context (global tokens per sequence): smallest", 1, MAXI, NULL,
     NULL, NULL},
    {'L', "maxContext", PERF_OPT_INT, &o.maxL, "N", "context: largest", 1, MAXI, NULL, NULL, NULL},
    {'F', "contextFactor", PERF_OPT_INT, &o.stepL, "N", "context: factor between rows", 2, 1024, NULL, NULL, NULL},
    {'H', "headsPerRank", PERF_OPT_INT, &o.H, "N", "query heads per rank", 1, 65536, NULL, NULL, NULL},
    {'K', "kvHeads", PERF_OPT_INT, &o.Hkv, "N", "KV heads", 1, 65536, NULL, NULL, NULL},
    {'d', "headDimQk", PERF_OPT_INT, &o.Dqk, "N", "head dim of q and k", 1, 65536, NULL, NULL, NULL},
    {'v', "headDimVo", PERF_OPT_INT, &o.Dv, "N", "head dim of v and out", 1, 65536, NULL, NULL, NULL},
    {'m', "mla", PERF_OPT_INT, &o.mla, "0|1", "1: MLA, latent KV 576/512, 1 KV head", 0, 1, NULL, NULL, NULL},
    {'D', "dcpSize", PERF_OPT_INT, &o.dcp, "N", "ranks on the DCP axis (0: all)", 0, 65536, NULL, NULL, NULL},
    {'i', "interleave", PERF_OPT_INT, &o.interleave, "N", "KV interleave (tokens per run)", 1, 65536, NULL, NULL, NULL},
    {'p', "pageSize", PERF_OPT_INT, &o.page, "N", "tokens per KV page", 1, 65536, NULL, NULL, NULL},
    {'t', "dtype", PERF_OPT_CHOICE, &o.type, "TYPE", "q, KV and out dtype", 0, 0, "bf16,fp16,fp32", NULL, NULL},
    {'r', "rowsPerSeq", PERF_OPT_INT, &o.rows, "N", "query rows per sequence (MTP)", 1, 65536, NULL, NULL, NULL},
    {'a', "schedules", PERF_OPT_LIST, o.algos, "LIST", "schedules (default agrs,a2a,pipelined; with -g 1 also fused)",
     0, 0, "agrs,a2a,pipelined,fused", NULL, NULL},
    {'g', "gpu", PERF_OPT_INT, &o.gpu, "0|1", "1: GPU ranks (CUDA memory, graph replays)", 0, 1, NULL, NULL, NULL},
    {'X', "transport", PERF_OPT_STRING, &o.transport, "NAME", "transport (automatic: ucx on the host, ipc on GPUs)", 0,
     0, "ucx,nccl,ipc,self", NULL, NULL},
    {'k', "topk", PERF_OPT_INT, &o.topk, "K", "sparse attention: K listed positions a row (0: dense)", 0, 65536, NULL,
     NULL, NULL},
};

/* Row t's list: K distinct positions of [0, pos] (a partial shuffle keyed by t, the same on every
 * rank), -1 where pos + 1 < K. */
static void topkList(int32_t* row, int K, int64_t pos, int t, int32_t* scratch) {
  const int64_t n = pos + 1;
  for (int64_t i = 0; i < n; i++) scratch[i] = (int32_t)i;
  uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(t + 1);
  for (int i = 0; i < K; i++) {
    if (i >= n) {
      row[i] = -1;
      continue;
    }
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const int64_t j = i + (int64_t)(x % (uint64_t)(n - i));
    const int32_t tmp = scratch[i];
    scratch[i] = scratch[j];
    scratch[j] = tmp;
    row[i] = scratch[i];
  }
}

static int parse(int argc, char** argv) {
  perfInit(&perf, "dcp_decode_perf",
           "cpclAttnDecode, every schedule side by side, one row per (batch, context, schedule); run under mpirun",
           options, (int)(sizeof(options) / sizeof(options[0])));
  perf.hasCheck = 1;
  perfUseMpi(&perf, &world);
  int r = perfParse(&perf, argc, argv);
  if (r) return r;
  if (o.maxB < o.minB) return perfArgError(&perf, "-e %d is below -b %d", o.maxB, o.minB);
  if (o.maxL < o.minL) return perfArgError(&perf, "-L %d is below -l %d", o.maxL, o.minL);
#ifndef PERF_CUDA
  if (o.gpu) return perfArgError(&perf, "-g 1 needs a build with CUDA");
#endif
  if (o.mla && (r = perfMlaShape(&perf, &o.Dqk, &o.Dv, &o.Hkv))) return r;
  if (!o.algos[0]) snprintf(o.algos, sizeof(o.algos), "%s", o.gpu ? "agrs,a2a,pipelined,fused" : "agrs,a2a,pipelined");
  return 0;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &W);
  int pr = parse(argc, argv);
  if (pr) {
    MPI_Finalize();
    return pr == 1 ? 0 : 2;
  }
  perfDataInit(o.gpu, rank);
  const perfKv_t kv = {o.Hkv, o.Dqk, o.Dv, o.mla, o.page, o.interleave, o.type};
  cpclComm_t comm = perfMpiComm(&world, o.dcp, o.interleave, o.transport);
  int D, dr;
  PERF_CHECK(cpclCommAxes(comm, &D, &dr, NULL, NULL));
  cpclComm_t self = perfSelfComm(&kv, perfGpu ? cpclMemCuda : cpclMemHost); /* the bare kernel, on the run's memory */
  cpclComm_t hostSelf = perfSelfComm(&kv, cpclMemHost);                     /* the reference, on the host */
  const int H = o.H, Hq = D * H, Dv = o.Dv;
  const size_t es = perfElemSize(o.type);
  const char* tname = o.type == cpclFloat32 ? "fp32" : o.type == cpclFloat16 ? "fp16" : "bf16";
  perfParamInt(&perf, "ranks", W);
  perfParamInt(&perf, "dcp", D);
  perfParamInt(&perf, "pcp", W / D);
  perfParamStr(&perf, "memory", perfGpu ? "cuda" : "host");
  perfComment(&perf,
              "dcp_decode_perf%s%s: W %d (dcp %d, pcp %d), %s, H %d per rank (%d gathered), Hkv %d, D %d/%d%s, "
              "interleave %d, page %d, rows/seq %d, top-k %d%s, %d warm-up + %d iterations, check %s, %s",
              perf.label[0] ? " " : "", perf.label, W, D, W / D, tname, H, Hq, o.Hkv, o.Dqk, Dv,
              o.mla ? " (MLA latent)" : "", o.interleave, o.page, o.rows, o.topk, o.topk ? " (sparse)" : " (dense)",
              perf.warmup, perf.iters, perf.check ? "on" : "off",
              perfGpu ? "GPU ranks, CUDA-graph replays" : "CPU ranks, host memory");
  static const perfColumn_t cols[] = {
      {"batch", PERF_INT, 7, 0},         {"context", PERF_INT, 8, 0},    {"local", PERF_INT, 8, 0},
      {"schedule", PERF_STRING, -10, 0}, {"min_us", PERF_DOUBLE, 9, 1},  {"median_us", PERF_DOUBLE, 9, 1},
      {"max_us", PERF_DOUBLE, 9, 1},     {"bare_us", PERF_DOUBLE, 9, 1}, {"KV_GB/s", PERF_DOUBLE, 9, 2},
      {"vs_agrs", PERF_DOUBLE, 7, 2},    {"#wrong", PERF_INT, 7, 0},     {"status", PERF_STRING, -1, 0},
  };
  perfColumns(&perf, cols, (int)(sizeof(cols) / sizeof(cols[0])));
  perfPrintHeader(&perf);
  long totalWrong = 0;
  for (long B = o.minB; B <= o.maxB; B *= o.stepB) {
    for (long L = o.minL; L <= o.maxL; L *= o.stepL) {
      const int T = (int)B * o.rows;
      cpclAttnDesc_t desc = perfDesc(&kv, H);
      cpclAttnPlan_t storePlan;
      PERF_CHECK(cpclAttnPlanCreate(&storePlan, comm, &desc, T));
      perfCache_t c;
      perfCacheBuild(&kv, storePlan, W, rank, (int)B, (int)L, &c, 1);
      PERF_CHECK(cpclAttnPlanDestroy(storePlan));
      int32_t* qs = malloc(sizeof(int32_t) * (size_t)(B + 1));
      int32_t* lens = malloc(sizeof(int32_t) * (size_t)B);
      for (int s = 0; s <= B; s++) qs[s] = s * o.rows;
      for (int s = 0; s < B; s++) lens[s] = (int32_t)L;
      int32_t* qsRun = perfDup(qs, sizeof(int32_t) * (size_t)(B + 1));
      int32_t* lensRun = perfDup(lens, sizeof(int32_t) * (size_t)B);
      cpclBatch_t batch = perfBatch((int)B, T, qsRun, lensRun, c.btRun, c.maxPages);
      /* sparse: the lists (every rank's), and this rank's owned entries as its local positions */
      const int K = o.topk, Wi = W * o.interleave;
      int32_t *tk = NULL, *tkLocal = NULL, *tkRun = NULL, *tkLocalRun = NULL;
      double ownedKeys = 0;
      if (K > 0) {
        tk = malloc(sizeof(int32_t) * (size_t)T * K);
        tkLocal = malloc(sizeof(int32_t) * (size_t)T * K);
        int32_t* scratch = malloc(sizeof(int32_t) * (size_t)L);
        for (int t = 0; t < T; t++) {
          const int64_t pos = L - o.rows + t % o.rows;
          topkList(tk + (size_t)t * K, K, pos, t, scratch);
          int c2 = 0;
          for (int k = 0; k < K; k++) {
            const int64_t p = tk[(size_t)t * K + k];
            if (p >= 0 && (p / o.interleave) % W == rank) /* owner and local index of DESIGN.md §2 */
              tkLocal[(size_t)t * K + c2++] = (int32_t)((p / Wi) * o.interleave + p % o.interleave);
          }
          ownedKeys += c2;
          for (int k = c2; k < K; k++) tkLocal[(size_t)t * K + k] = -1;
        }
        free(scratch);
        tkRun = perfDup(tk, sizeof(int32_t) * (size_t)T * K);
        tkLocalRun = perfDup(tkLocal, sizeof(int32_t) * (size_t)T * K);
        batch.topkIndices = tkRun;
        desc.topk = K;
      }
      /* q: [T][H][Dqk] for this rank's heads; row t, gathered head g keyed by (t, g) */
      void* q = malloc((size_t)T * H * o.Dqk * es);
      for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
          perfGenRow(q, ((size_t)t * H + h) * o.Dqk, o.Dqk, (uint64_t)1 << 40 | (uint64_t)t, (uint64_t)(dr * H + h),
                     o.type);
      void* qRun = perfDup(q, (size_t)T * H * o.Dqk * es);
      void* out = perfAlloc((size_t)T * H * Dv * es);
      float* lse = perfAlloc(sizeof(float) * (size_t)T * H);
      int64_t local = cpclKvLocalLen(L, W, rank, o.interleave);
      double kvBytes = (K > 0 ? ownedKeys : (double)B * local) * o.Hkv * (o.Dqk + (o.mla ? 0 : Dv)) * es;

      /* bare: this rank's attention over its shard alone, all gathered heads, no transfer */
      perfStats_t bare;
      {
        cpclAttnDesc_t bd = perfDesc(&kv, Hq);
        bd.topk = K;
        cpclAttnPlan_t bp;
        PERF_CHECK(cpclAttnPlanCreate(&bp, self, &bd, T));
        int32_t* llens = malloc(sizeof(int32_t) * (size_t)B);
        for (int s = 0; s < B; s++) llens[s] = (int32_t)local > o.rows ? (int32_t)local : o.rows;
        int32_t* llensRun = perfDup(llens, sizeof(int32_t) * (size_t)B);
        cpclBatch_t lb = perfBatch((int)B, T, qsRun, llensRun, c.btRun, c.maxPages);
        lb.topkIndices = tkLocalRun; /* one rank: local positions are positions */
        /* the gathered queries the schedules attend with, generated as every rank does its own
         * (row t, gathered head g keyed by (t, g)): zero queries would make every score equal, so
         * the online softmax would never rescale and the bare time would flatter (session 18) */
        void* qh = malloc((size_t)T * Hq * o.Dqk * es);
        for (int t = 0; t < T; t++)
          for (int g = 0; g < Hq; g++)
            perfGenRow(qh, ((size_t)t * Hq + g) * o.Dqk, o.Dqk, (uint64_t)1 << 40 | (uint64_t)t, (uint64_t)g, o.type);
        void* qa = perfDup(qh, (size_t)T * Hq * o.Dqk * es);
        free(qh);
        void* pa = perfAlloc((size_t)T * Hq * Dv * es);
        float* la = perfAlloc(sizeof(float) * (size_t)T * Hq);
        stepArgs_t a = {bp, &lb, qa, c.k, c.v, pa, la};
        bare = timeOp(partialStep, &a);
        perfFree(qa);
        perfFree(pa);
        perfFree(la);
        perfFree(llensRun);
        free(llens);
        PERF_CHECK(cpclAttnPlanDestroy(bp));
      }

      /* the single-rank reference for -c: the whole cache on one rank */
      void* ref = NULL;
      if (perf.check) {
        cpclAttnDesc_t rd = perfDesc(&kv, Hq);
        rd.topk = K;
        cpclAttnPlan_t rp;
        PERF_CHECK(cpclAttnPlanCreate(&rp, hostSelf, &rd, T));
        perfCache_t full;
        perfCacheBuild(&kv, rp, 1, 0, (int)B, (int)L, &full, 0);
        void* qa = malloc((size_t)T * Hq * o.Dqk * es);
        for (int t = 0; t < T; t++)
          for (int g = 0; g < Hq; g++)
            perfGenRow(qa, ((size_t)t * Hq + g) * o.Dqk, o.Dqk, (uint64_t)1 << 40 | (uint64_t)t, (uint64_t)g, o.type);
        ref = malloc((size_t)T * Hq * Dv * es);
        cpclBatch_t fb = perfBatch((int)B, T, qs, lens, full.blockTable, full.maxPages);
        fb.topkIndices = tk;
        PERF_CHECK(cpclAttnDecode(rp, &fb, qa, full.k, full.v, ref, NULL, NULL));
        free(qa);
        perfCacheFree(&full);
        PERF_CHECK(cpclAttnPlanDestroy(rp));
      }

      double agrsTime = 0;
      char algos[PERF_LIST_MAX];
      snprintf(algos, sizeof(algos), "%s", o.algos);
      char* save = NULL;
      for (char* a = strtok_r(algos, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        cpclAttnPlan_t plan;
        desc.algo = a;
        cpclResult_t pr = cpclAttnPlanCreate(&plan, comm, &desc, T);
        if (pr != cpclSuccess) {
          char status[512];
          snprintf(status, sizeof(status), "error: %s", cpclGetLastError(NULL));
          perfValue_t v[] = {PERF_I(B), PERF_I(L), PERF_I(local), PERF_S(a), PERF_NONE, PERF_NONE,
                             PERF_NONE, PERF_NONE, PERF_NONE,     PERF_NONE, PERF_NONE, PERF_S(status)};
          perfRow(&perf, v, 1);
          continue;
        }
        stepArgs_t sa = {plan, &batch, qRun, c.k, c.v, out, lse};
        perfStats_t t = timeOp(decodeStep, &sa);
        if (strcmp(a, "agrs") == 0) agrsTime = t.median;
        long wrong = 0;
        if (perf.check) {
          wrong = perfCheckStep(&kv, decodeStep, &sa, out, ref, T, H, Hq, dr, world);
          totalWrong += wrong;
        }
        perfValue_t v[] = {PERF_I(B),
                           PERF_I(L),
                           PERF_I(local),
                           PERF_S(a),
                           PERF_D(t.min),
                           PERF_D(t.median),
                           PERF_D(t.max),
                           PERF_D(bare.median),
                           PERF_D(kvBytes / (t.median * 1e-6) / 1e9),
                           agrsTime > 0 ? PERF_D(agrsTime / t.median) : PERF_NONE,
                           perf.check ? PERF_I(wrong) : PERF_NONE,
                           PERF_S(perfCheckStatus(perf.check, wrong))};
        perfRow(&perf, v, wrong != 0);
        PERF_CHECK(cpclAttnPlanDestroy(plan));
      }
      free(ref);
      free(tk);
      free(tkLocal);
      if (tkRun) perfFree(tkRun);
      if (tkLocalRun) perfFree(tkLocalRun);
      free(q);
      perfFree(qRun);
      perfFree(out);
      perfFree(lse);
      perfFree(qsRun);
      perfFree(lensRun);
      free(qs);
      free(lens);
      perfCacheFree(&c);
    }
  }
  PERF_CHECK(cpclCommDestroy(self));
  PERF_CHECK(cpclCommDestroy(hostSelf));
  PERF_CHECK(cpclCommDestroy(comm));
  if (perf.check) perfComment(&perf, "total wrong elements: %ld", totalWrong);
  int status = perfFinish(&perf);
  MPI_Finalize();
  return status;
}
