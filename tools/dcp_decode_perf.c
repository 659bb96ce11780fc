/*
 * dcp_decode_perf -- the fused DCP decode (cpclAttnDecode) per schedule, side by side, in the
 * style of nccl-tests, over the shared perf driver (perf/driver.h: flags, timing, check verdict,
 * table, -J results). Run under mpirun, one process per rank (CPU ranks over UCX on host
 * memory). Every rank holds its shard of a paged KV cache; each row is one timed step.
 *
 *   mpirun -np 4 dcp_decode_perf -b 1 -e 16 -f 4 -l 1024 -L 4096 -F 4 -H 8 -K 1 -c 1 -J out.json
 *
 * Columns: batch, context (global tokens per sequence), local tokens on rank 0, schedule,
 * min/median/max time over iterations of the slowest rank (us), bare = the median of the same
 * rank's local attention alone (one-rank communicator, no transfer; slowest rank), KV GB/s per
 * rank (local KV bytes read / median), speed-up of the median over agrs, #wrong (elements off
 * the single-rank reference, all ranks; -c 1), status (ok, FAILED: wrong elements, error: the
 * plan could not be made; either makes the run exit 1). Uses only the public header.
 *
 * On GPUs (-g 1; builds with CUDA): one process per GPU, or several sharing one GPU for
 * correctness (-X ipc; their times mean nothing). Every step, the bare kernel's included, is
 * captured once in a CUDA graph and the graph replayed, as engines run decode; the times are
 * those of the slowest rank's replay (CUDA events after an MPI barrier).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpcl.h"
#include "mpi_oob.h"
#include "perf/driver.h"
#include "perf/driver_mpi.h"
#ifdef PERF_CUDA
#include <cuda_runtime_api.h>
#endif

#define CHECK(call)                                                                                                   \
  do {                                                                                                                \
    cpclResult_t r_ = (call);                                                                                         \
    if (r_ != cpclSuccess) {                                                                                          \
      fprintf(stderr, "rank %d: %s:%d %s failed: %s (%s)\n", rank, __FILE__, __LINE__, #call, cpclGetErrorString(r_), \
              cpclGetLastError(NULL));                                                                                \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                                                   \
    }                                                                                                                 \
  } while (0)

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
} opts_t;

/* Batches are built field by field so this file compiles against the header before and after
 * cpclBatch_t gained its size (CPCL_BATCH_INITIALIZER). */
static cpclBatch_t makeBatch(int numSeqs, int numTokens, const int32_t* queryStart, const int32_t* seqLens,
                             const int32_t* blockTable, int maxPagesPerSeq) {
#ifdef CPCL_BATCH_INITIALIZER
  cpclBatch_t b = CPCL_BATCH_INITIALIZER;
#else
  cpclBatch_t b;
  memset(&b, 0, sizeof(b));
#endif
  b.numSeqs = numSeqs;
  b.numTokens = numTokens;
  b.queryStart = queryStart;
  b.seqLens = seqLens;
  b.blockTable = blockTable;
  b.maxPagesPerSeq = maxPagesPerSeq;
  return b;
}
static int gpuMode; /* the run's memory: 0 host, 1 CUDA */
#ifdef PERF_CUDA
static cudaStream_t gpuStream;
#define CUDA_CHECK(call)                                                                                   \
  do {                                                                                                     \
    cudaError_t e_ = (call);                                                                               \
    if (e_ != cudaSuccess) {                                                                               \
      fprintf(stderr, "rank %d: %s:%d %s: %s\n", rank, __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                                        \
    }                                                                                                      \
  } while (0)
#endif

/* memory of the run's type: zeroed; a copy of host data; freed */
static void* memAlloc(size_t bytes) {
#ifdef PERF_CUDA
  if (gpuMode) {
    void* p = NULL;
    CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 16));
    CUDA_CHECK(cudaMemset(p, 0, bytes ? bytes : 16));
    return p;
  }
#endif
  return calloc(bytes ? bytes : 16, 1);
}
static void* memCopyIn(void* dst, const void* src, size_t bytes) {
#ifdef PERF_CUDA
  if (gpuMode) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return dst;
  }
#endif
  memcpy(dst, src, bytes);
  return dst;
}
static void* memDup(const void* src, size_t bytes) { return memCopyIn(memAlloc(bytes), src, bytes); }
static void memFree(void* p) {
#ifdef PERF_CUDA
  if (gpuMode) {
    cudaFree(p);
    return;
  }
#endif
  free(p);
}
static void memCopyOut(void* dst, const void* src, size_t bytes) {
#ifdef PERF_CUDA
  if (gpuMode) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return;
  }
#endif
  memcpy(dst, src, bytes);
}
static void memPoison(void* p, size_t bytes) {
#ifdef PERF_CUDA
  if (gpuMode) {
    CUDA_CHECK(cudaMemset(p, 0xff, bytes));
    return;
  }
#endif
  memset(p, 0xff, bytes);
}
static cpclStream_t runStream(void) {
#ifdef PERF_CUDA
  if (gpuMode) return gpuStream;
#endif
  return NULL;
}

static size_t esize(cpclDataType_t t) { return t == cpclFloat32 ? 4 : 2; }

static uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

/* row of n values in [-1, 1) keyed by (a, b): the same wherever and however it is generated */
static void genRow(void* dst, size_t off, int n, uint64_t a, uint64_t b, cpclDataType_t t) {
  uint64_t s = mix(a * 0x9e3779b97f4a7c15ULL ^ mix(b + 0x1234567ULL));
  for (int i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    float v = (float)((double)(s >> 11) / (double)(1ULL << 52) - 1.0);
    if (t == cpclFloat32) {
      ((float*)dst)[off + i] = v;
    } else if (t == cpclBfloat16) {
      uint32_t u;
      memcpy(&u, &v, 4);
      ((uint16_t*)dst)[off + i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    } else { /* fp16 of a value in [-1, 1): normal or zero, truncation is fine for test data */
      uint32_t u;
      memcpy(&u, &v, 4);
      int e = (int)((u >> 23) & 0xff) - 112;
      ((uint16_t*)dst)[off + i] = e <= 0 ? (uint16_t)((u >> 16) & 0x8000u)
                                         : (uint16_t)(((u >> 16) & 0x8000u) | (e << 10) | ((u >> 13) & 0x3ffu));
    }
  }
}

typedef struct {
  int maxPages, numPages;
  int32_t* blockTable; /* host */
  int32_t* btRun;      /* in the memory of the cache */
  void *k, *v;
  int run; /* 1: in the run's memory (CUDA with -g 1), 0: host */
} cache_t;

/* A paged cache of the shard of (cpSize, cpRank) for B sequences of L tokens, filled through
 * cpclKvStore in chunks (the placement under test is the library's own). */
static void buildCache(const opts_t* o, cpclAttnPlan_t plan, int cpSize, int cpRank, int B, int L, cache_t* c,
                       int onRun) {
  const int saved = gpuMode;
  gpuMode = onRun ? gpuMode : 0;
  int64_t local = cpclKvLocalLen(L, cpSize, cpRank, o->interleave);
  c->maxPages = (int)((local + o->page - 1) / o->page) + 1;
  c->numPages = B * c->maxPages;
  c->blockTable = malloc(sizeof(int32_t) * (size_t)c->numPages);
  for (int i = 0; i < c->numPages; i++) c->blockTable[i] = (int32_t)(((int64_t)i * 7 + 3) % c->numPages);
  if (c->numPages % 7 == 0)
    for (int i = 0; i < c->numPages; i++) c->blockTable[i] = i;
  size_t es = esize(o->type), kRow = (size_t)o->Hkv * o->Dqk, vRow = (size_t)o->Hkv * o->Dv;
  c->k = memAlloc((size_t)c->numPages * o->page * kRow * es);
  c->v = o->mla ? NULL : memAlloc((size_t)c->numPages * o->page * vRow * es);
  int32_t* btRun = memDup(c->blockTable, sizeof(int32_t) * (size_t)c->numPages);
  const int chunk = 4096;
  void* kNew = malloc((size_t)chunk * kRow * es);
  void* vNew = malloc((size_t)chunk * vRow * es);
  void* kRun = memAlloc((size_t)chunk * kRow * es);
  void* vRun = memAlloc((size_t)chunk * vRow * es);
  int32_t* meta = memAlloc(3 * sizeof(int32_t));
  for (int s = 0; s < B; s++)
    for (int p0 = 0; p0 < L; p0 += chunk) {
      int n = L - p0 < chunk ? L - p0 : chunk;
      for (int j = 0; j < n; j++) {
        genRow(kNew, (size_t)j * kRow, (int)kRow, (uint64_t)s, (uint64_t)(p0 + j) * 2, o->type);
        if (!o->mla) genRow(vNew, (size_t)j * vRow, (int)vRow, (uint64_t)s, (uint64_t)(p0 + j) * 2 + 1, o->type);
      }
      int32_t m[3] = {0, n, p0 + n}; /* queryStart [2], seqLen */
      memCopyIn(meta, m, sizeof(m));
      memCopyIn(kRun, kNew, (size_t)n * kRow * es);
      if (!o->mla) memCopyIn(vRun, vNew, (size_t)n * vRow * es);
      cpclBatch_t b = makeBatch(1, n, meta, meta + 2, btRun + (size_t)s * c->maxPages, c->maxPages);
      CHECK(cpclKvStore(plan, &b, kRun, vRun, c->k, c->v, NULL));
#ifdef PERF_CUDA
      if (gpuMode) CUDA_CHECK(cudaDeviceSynchronize());
#endif
    }
  free(kNew);
  free(vNew);
  memFree(kRun);
  memFree(vRun);
  memFree(meta);
  c->run = onRun;
  c->btRun = btRun;
  gpuMode = saved;
}

static void freeCache(cache_t* c) {
  const int saved = gpuMode;
  gpuMode = c->run ? gpuMode : 0;
  free(c->blockTable);
  memFree(c->btRun);
  memFree(c->k);
  memFree(c->v);
  gpuMode = saved;
}

static int selfAllgather(const void* s, void* r, size_t bytes, void* ctx) {
  (void)ctx;
  memcpy(r, s, bytes);
  return 0;
}

static cpclComm_t selfComm(const opts_t* o, cpclMemType_t memType) {
  cpclOob_t oob = {selfAllgather, NULL, 0, 1};
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.transport = "self";
  cfg.memType = memType;
  cfg.kvInterleave = o->interleave;
  cpclComm_t c;
  CHECK(cpclCommInitOob(&c, &oob, &cfg));
  return c;
}

static cpclAttnDesc_t descOf(const opts_t* o, int H) {
  cpclAttnDesc_t d = CPCL_ATTN_DESC_INITIALIZER;
  d.numQoHeads = H;
  d.numKvHeads = o->Hkv;
  d.headDimQk = o->Dqk;
  d.headDimVo = o->Dv;
  d.pageSize = o->page;
  d.smScale = 1.0f / sqrtf((float)o->Dqk);
  d.qType = d.kvType = o->type;
  d.latentKv = o->mla;
  return d;
}

static perf_t perf;

static perfStats_t timeOp(int (*step)(void*, int), void* arg) {
  perfStats_t s;
  int err =
#ifdef PERF_CUDA
      gpuMode ? perfTimeGraph(&perf, gpuStream, step, arg, &s) :
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
  CHECK(cpclAttnDecode(s->plan, s->batch, s->q, s->k, s->v, s->out, s->lse, runStream()));
  return 0;
}

static int partialStep(void* a, int launch) {
  stepArgs_t* s = a;
  CHECK(cpclAttnPartial(s->plan, s->batch, s->q, s->k, s->v, s->out, s->lse, runStream()));
  return 0;
}

/* |x - y| <= tol per element, out [T][H][Dv] against ref [T][Hq][Dv] at this rank's heads */
static long countWrong(const opts_t* o, const void* outHost, const void* ref, int T, int H, int Hq, int dr) {
  const int Dv = o->Dv;
  const double tol = o->type == cpclFloat32 ? 1e-4 : o->type == cpclFloat16 ? 1.5e-3 : 6e-3;
  long wrong = 0;
  for (int tk = 0; tk < T; tk++)
    for (int h = 0; h < H; h++)
      for (int d = 0; d < Dv; d++) {
        size_t io = ((size_t)tk * H + h) * Dv + d, ir = ((size_t)tk * Hq + dr * H + h) * Dv + d;
        double x, y;
        if (o->type == cpclFloat32) {
          x = ((const float*)outHost)[io];
          y = ((const float*)ref)[ir];
        } else {
          uint16_t a16 = ((const uint16_t*)outHost)[io], b16 = ((const uint16_t*)ref)[ir];
          if (o->type == cpclBfloat16) {
            uint32_t ua = (uint32_t)a16 << 16, ub = (uint32_t)b16 << 16;
            float fa, fb;
            memcpy(&fa, &ua, 4);
            memcpy(&fb, &ub, 4);
            x = fa;
            y = fb;
          } else {
            x = ldexp((double)((a16 & 0x3ff) | ((a16 >> 10 & 0x1f) ? 0x400 : 0)),
                      ((a16 >> 10 & 0x1f) ? (a16 >> 10 & 0x1f) : 1) - 25) *
                ((a16 & 0x8000) ? -1 : 1);
            y = ldexp((double)((b16 & 0x3ff) | ((b16 >> 10 & 0x1f) ? 0x400 : 0)),
                      ((b16 >> 10 & 0x1f) ? (b16 >> 10 & 0x1f) : 1) - 25) *
                ((b16 & 0x8000) ? -1 : 1);
          }
        }
        if (!(fabs(x - y) <= tol)) wrong++;
      }
  return wrong;
}

#define MAXI 1000000000L
static opts_t o = {1, 64, 4, 4096, 4096, 2, 8, 1, 128, 128, 0, 0, 1, 16, cpclBfloat16, 1, "", 0, NULL};
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
};

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
  if (o.mla) { /* MLA fixes the shape: a conflicting explicit one is a mistake, not a default */
    if ((perfGiven(&perf, 'd') && o.Dqk != 576) || (perfGiven(&perf, 'v') && o.Dv != 512) ||
        (perfGiven(&perf, 'K') && o.Hkv != 1))
      return perfArgError(&perf, "-m 1 is headDimQk 576, headDimVo 512, 1 KV head: drop -d/-v/-K");
    o.Dqk = 576;
    o.Dv = 512;
    o.Hkv = 1;
  }
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
  gpuMode = o.gpu;
#ifdef PERF_CUDA
  if (gpuMode) {
    int n = 0;
    CUDA_CHECK(cudaGetDeviceCount(&n));
    CUDA_CHECK(cudaSetDevice(rank % n));
    CUDA_CHECK(cudaStreamCreateWithFlags(&gpuStream, cudaStreamNonBlocking));
  }
#endif
  cpclOob_t oob;
  cpclMpiOob(&oob, &world);
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.dcpSize = o.dcp;
  cfg.kvInterleave = o.interleave;
  cfg.memType = gpuMode ? cpclMemCuda : cpclMemHost;
  cfg.transport = o.transport;
  cpclComm_t comm;
  CHECK(cpclCommInitOob(&comm, &oob, &cfg));
  int D, dr;
  CHECK(cpclCommAxes(comm, &D, &dr, NULL, NULL));
  cpclComm_t self = selfComm(&o, cfg.memType);     /* the bare kernel, on the run's memory */
  cpclComm_t hostSelf = selfComm(&o, cpclMemHost); /* the reference, on the host */
  const int H = o.H, Hq = D * H, Dv = o.Dv;
  const size_t es = esize(o.type);
  const char* tname = o.type == cpclFloat32 ? "fp32" : o.type == cpclFloat16 ? "fp16" : "bf16";
  perfParamInt(&perf, "ranks", W);
  perfParamInt(&perf, "dcp", D);
  perfParamInt(&perf, "pcp", W / D);
  perfParamStr(&perf, "memory", gpuMode ? "cuda" : "host");
  perfComment(&perf,
              "dcp_decode_perf%s%s: W %d (dcp %d, pcp %d), %s, H %d per rank (%d gathered), Hkv %d, D %d/%d%s, "
              "interleave %d, page %d, rows/seq %d, %d warm-up + %d iterations, check %s, %s",
              perf.label[0] ? " " : "", perf.label, W, D, W / D, tname, H, Hq, o.Hkv, o.Dqk, Dv,
              o.mla ? " (MLA latent)" : "", o.interleave, o.page, o.rows, perf.warmup, perf.iters,
              perf.check ? "on" : "off", gpuMode ? "GPU ranks, CUDA-graph replays" : "CPU ranks, host memory");
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
      cpclAttnDesc_t desc = descOf(&o, H);
      cpclAttnPlan_t storePlan;
      CHECK(cpclAttnPlanCreate(&storePlan, comm, &desc, T));
      cache_t c;
      buildCache(&o, storePlan, W, rank, (int)B, (int)L, &c, 1);
      CHECK(cpclAttnPlanDestroy(storePlan));
      int32_t* qs = malloc(sizeof(int32_t) * (size_t)(B + 1));
      int32_t* lens = malloc(sizeof(int32_t) * (size_t)B);
      for (int s = 0; s <= B; s++) qs[s] = s * o.rows;
      for (int s = 0; s < B; s++) lens[s] = (int32_t)L;
      int32_t* qsRun = memDup(qs, sizeof(int32_t) * (size_t)(B + 1));
      int32_t* lensRun = memDup(lens, sizeof(int32_t) * (size_t)B);
      cpclBatch_t batch = makeBatch((int)B, T, qsRun, lensRun, c.btRun, c.maxPages);
      /* q: [T][H][Dqk] for this rank's heads; row t, gathered head g keyed by (t, g) */
      void* q = malloc((size_t)T * H * o.Dqk * es);
      for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
          genRow(q, ((size_t)t * H + h) * o.Dqk, o.Dqk, (uint64_t)1 << 40 | (uint64_t)t, (uint64_t)(dr * H + h),
                 o.type);
      void* qRun = memDup(q, (size_t)T * H * o.Dqk * es);
      void* out = memAlloc((size_t)T * H * Dv * es);
      float* lse = memAlloc(sizeof(float) * (size_t)T * H);
      void* outHost = malloc((size_t)T * H * Dv * es);
      int64_t local = cpclKvLocalLen(L, W, rank, o.interleave);
      double kvBytes = (double)B * local * o.Hkv * (o.Dqk + (o.mla ? 0 : Dv)) * es;

      /* bare: this rank's attention over its shard alone, all gathered heads, no transfer */
      perfStats_t bare;
      {
        cpclAttnDesc_t bd = descOf(&o, Hq);
        cpclAttnPlan_t bp;
        CHECK(cpclAttnPlanCreate(&bp, self, &bd, T));
        int32_t* llens = malloc(sizeof(int32_t) * (size_t)B);
        for (int s = 0; s < B; s++) llens[s] = (int32_t)local > o.rows ? (int32_t)local : o.rows;
        int32_t* llensRun = memDup(llens, sizeof(int32_t) * (size_t)B);
        cpclBatch_t lb = makeBatch((int)B, T, qsRun, llensRun, c.btRun, c.maxPages);
        void* qa = memAlloc((size_t)T * Hq * o.Dqk * es);
        void* pa = memAlloc((size_t)T * Hq * Dv * es);
        float* la = memAlloc(sizeof(float) * (size_t)T * Hq);
        stepArgs_t a = {bp, &lb, qa, c.k, c.v, pa, la};
        bare = timeOp(partialStep, &a);
        memFree(qa);
        memFree(pa);
        memFree(la);
        memFree(llensRun);
        free(llens);
        CHECK(cpclAttnPlanDestroy(bp));
      }

      /* the single-rank reference for -c: the whole cache on one rank */
      void* ref = NULL;
      if (perf.check) {
        cpclAttnDesc_t rd = descOf(&o, Hq);
        cpclAttnPlan_t rp;
        CHECK(cpclAttnPlanCreate(&rp, hostSelf, &rd, T));
        cache_t full;
        buildCache(&o, rp, 1, 0, (int)B, (int)L, &full, 0);
        void* qa = malloc((size_t)T * Hq * o.Dqk * es);
        for (int t = 0; t < T; t++)
          for (int g = 0; g < Hq; g++)
            genRow(qa, ((size_t)t * Hq + g) * o.Dqk, o.Dqk, (uint64_t)1 << 40 | (uint64_t)t, (uint64_t)g, o.type);
        ref = malloc((size_t)T * Hq * Dv * es);
        cpclBatch_t fb = makeBatch((int)B, T, qs, lens, full.blockTable, full.maxPages);
        CHECK(cpclAttnDecode(rp, &fb, qa, full.k, full.v, ref, NULL, NULL));
        free(qa);
        freeCache(&full);
        CHECK(cpclAttnPlanDestroy(rp));
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
          memPoison(out, (size_t)T * H * Dv * es);
          decodeStep(&sa, 0);
#ifdef PERF_CUDA
          if (gpuMode) CUDA_CHECK(cudaStreamSynchronize(gpuStream));
#endif
          memCopyOut(outHost, out, (size_t)T * H * Dv * es);
          wrong = countWrong(&o, outHost, ref, T, H, Hq, dr);
          MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG, MPI_SUM, world);
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
                           PERF_S(!perf.check ? "-"
                                  : wrong     ? "FAILED"
                                              : "ok")};
        perfRow(&perf, v, wrong != 0);
        CHECK(cpclAttnPlanDestroy(plan));
      }
      free(ref);
      free(q);
      free(outHost);
      memFree(qRun);
      memFree(out);
      memFree(lse);
      memFree(qsRun);
      memFree(lensRun);
      free(qs);
      free(lens);
      freeCache(&c);
    }
  }
  CHECK(cpclCommDestroy(self));
  CHECK(cpclCommDestroy(hostSelf));
  CHECK(cpclCommDestroy(comm));
  if (perf.check) perfComment(&perf, "total wrong elements: %ld", totalWrong);
  int status = perfFinish(&perf);
  MPI_Finalize();
  return status;
}
