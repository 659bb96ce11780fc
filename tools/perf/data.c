/* data.c -- the perf tools' shared data (data.h). */
#include "data.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PERF_CUDA
#include <cuda_runtime_api.h>
#endif

#include "mpi_oob.h"

static int rank;

void perfCheckFailed(cpclResult_t r, const char* file, int line, const char* call) {
  int worldRank = 0; /* not the saved rank: a tool may fail before perfDataInit */
  MPI_Comm_rank(MPI_COMM_WORLD, &worldRank);
  fprintf(stderr, "rank %d: %s:%d %s failed: %s (%s)\n", worldRank, file, line, call, cpclGetErrorString(r),
          cpclGetLastError(NULL));
  MPI_Abort(MPI_COMM_WORLD, 1);
}

cpclBatch_t perfBatch(int numSeqs, int numTokens, const int32_t* queryStart, const int32_t* seqLens,
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

int perfGpu;
void* perfGpuStream;
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
void* perfAlloc(size_t bytes) {
#ifdef PERF_CUDA
  if (perfGpu) {
    void* p = NULL;
    CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 16));
    CUDA_CHECK(cudaMemset(p, 0, bytes ? bytes : 16));
    return p;
  }
#endif
  return calloc(bytes ? bytes : 16, 1);
}
void* perfCopyIn(void* dst, const void* src, size_t bytes) {
#ifdef PERF_CUDA
  if (perfGpu) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    return dst;
  }
#endif
  memcpy(dst, src, bytes);
  return dst;
}
void* perfDup(const void* src, size_t bytes) { return perfCopyIn(perfAlloc(bytes), src, bytes); }
void perfFree(void* p) {
#ifdef PERF_CUDA
  if (perfGpu) {
    cudaFree(p);
    return;
  }
#endif
  free(p);
}
void perfCopyOut(void* dst, const void* src, size_t bytes) {
#ifdef PERF_CUDA
  if (perfGpu) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    return;
  }
#endif
  memcpy(dst, src, bytes);
}
void perfPoison(void* p, size_t bytes) {
#ifdef PERF_CUDA
  if (perfGpu) {
    CUDA_CHECK(cudaMemset(p, 0xff, bytes));
    return;
  }
#endif
  memset(p, 0xff, bytes);
}
cpclStream_t perfRunStream(void) {
#ifdef PERF_CUDA
  if (perfGpu) return gpuStream;
#endif
  return NULL;
}

size_t perfElemSize(cpclDataType_t t) { return t == cpclFloat32 ? 4 : 2; }

static uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

/* row of n values in [-1, 1) keyed by (a, b): the same wherever and however it is generated */
void perfGenRow(void* dst, size_t off, int n, uint64_t a, uint64_t b, cpclDataType_t t) {
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

/* A paged cache of the shard of (cpSize, cpRank) for B sequences of L tokens, filled through
 * cpclKvStore in chunks (the placement under test is the library's own). */
void perfCacheBuild(const perfKv_t* o, cpclAttnPlan_t plan, int cpSize, int cpRank, int B, int L, perfCache_t* c,
                    int onRun) {
  const int saved = perfGpu;
  perfGpu = onRun ? perfGpu : 0;
  int64_t local = cpclKvLocalLen(L, cpSize, cpRank, o->interleave);
  c->maxPages = (int)((local + o->page - 1) / o->page) + 1;
  c->numPages = B * c->maxPages;
  c->blockTable = malloc(sizeof(int32_t) * (size_t)c->numPages);
  for (int i = 0; i < c->numPages; i++) c->blockTable[i] = (int32_t)(((int64_t)i * 7 + 3) % c->numPages);
  if (c->numPages % 7 == 0)
    for (int i = 0; i < c->numPages; i++) c->blockTable[i] = i;
  size_t es = perfElemSize(o->type), kRow = (size_t)o->Hkv * o->Dqk, vRow = (size_t)o->Hkv * o->Dv;
  c->k = perfAlloc((size_t)c->numPages * o->page * kRow * es);
  c->v = o->mla ? NULL : perfAlloc((size_t)c->numPages * o->page * vRow * es);
  int32_t* btRun = perfDup(c->blockTable, sizeof(int32_t) * (size_t)c->numPages);
  const int chunk = 4096;
  void* kNew = malloc((size_t)chunk * kRow * es);
  void* vNew = malloc((size_t)chunk * vRow * es);
  void* kRun = perfAlloc((size_t)chunk * kRow * es);
  void* vRun = perfAlloc((size_t)chunk * vRow * es);
  int32_t* meta = perfAlloc(3 * sizeof(int32_t));
  for (int s = 0; s < B; s++)
    for (int p0 = 0; p0 < L; p0 += chunk) {
      int n = L - p0 < chunk ? L - p0 : chunk;
      for (int j = 0; j < n; j++) {
        perfGenRow(kNew, (size_t)j * kRow, (int)kRow, (uint64_t)s, (uint64_t)(p0 + j) * 2, o->type);
        if (!o->mla) perfGenRow(vNew, (size_t)j * vRow, (int)vRow, (uint64_t)s, (uint64_t)(p0 + j) * 2 + 1, o->type);
      }
      int32_t m[3] = {0, n, p0 + n}; /* queryStart [2], seqLen */
      perfCopyIn(meta, m, sizeof(m));
      perfCopyIn(kRun, kNew, (size_t)n * kRow * es);
      if (!o->mla) perfCopyIn(vRun, vNew, (size_t)n * vRow * es);
      cpclBatch_t b = perfBatch(1, n, meta, meta + 2, btRun + (size_t)s * c->maxPages, c->maxPages);
      PERF_CHECK(cpclKvStore(plan, &b, kRun, vRun, c->k, c->v, NULL));
#ifdef PERF_CUDA
      if (perfGpu) CUDA_CHECK(cudaDeviceSynchronize());
#endif
    }
  free(kNew);
  free(vNew);
  perfFree(kRun);
  perfFree(vRun);
  perfFree(meta);
  c->run = onRun;
  c->btRun = btRun;
  perfGpu = saved;
}

void perfCacheFree(perfCache_t* c) {
  const int saved = perfGpu;
  perfGpu = c->run ? perfGpu : 0;
  free(c->blockTable);
  perfFree(c->btRun);
  perfFree(c->k);
  perfFree(c->v);
  perfGpu = saved;
}

static int selfAllgather(const void* s, void* r, size_t bytes, void* ctx) {
  (void)ctx;
  memcpy(r, s, bytes);
  return 0;
}

cpclComm_t perfSelfComm(const perfKv_t* o, cpclMemType_t memType) {
  cpclOob_t oob = {selfAllgather, NULL, 0, 1};
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.transport = "self";
  cfg.memType = memType;
  cfg.kvInterleave = o->interleave;
  cpclComm_t c;
  PERF_CHECK(cpclCommInitOob(&c, &oob, &cfg));
  return c;
}

cpclComm_t perfMpiComm(MPI_Comm* world, int dcpSize, int interleave, const char* transport) {
  cpclOob_t oob;
  cpclMpiOob(&oob, world);
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.dcpSize = dcpSize;
  cfg.kvInterleave = interleave;
  cfg.memType = perfGpu ? cpclMemCuda : cpclMemHost;
  cfg.transport = transport;
  cpclComm_t c;
  PERF_CHECK(cpclCommInitOob(&c, &oob, &cfg));
  return c;
}

int perfMlaShape(perf_t* perf, int* Dqk, int* Dv, int* Hkv) {
  if ((perfGiven(perf, 'd') && *Dqk != 576) || (perfGiven(perf, 'v') && *Dv != 512) ||
      (perfGiven(perf, 'K') && *Hkv != 1))
    return perfArgError(perf, "-m 1 is headDimQk 576, headDimVo 512, 1 KV head: drop -d/-v/-K");
  *Dqk = 576;
  *Dv = 512;
  *Hkv = 1;
  return 0;
}

cpclAttnDesc_t perfDesc(const perfKv_t* o, int H) {
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
/* |x - y| <= tol per element, out [T][H][Dv] against ref [T][Hq][Dv] at this rank's heads */
long perfCountWrong(const perfKv_t* o, const void* outHost, const void* ref, int T, int H, int Hq, int dr) {
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

void perfDataInit(int gpu, int r) {
  rank = r;
  perfGpu = gpu;
#ifdef PERF_CUDA
  if (gpu) {
    int n = 0;
    CUDA_CHECK(cudaGetDeviceCount(&n));
    CUDA_CHECK(cudaSetDevice(rank % n));
    CUDA_CHECK(cudaStreamCreateWithFlags(&gpuStream, cudaStreamNonBlocking));
    perfGpuStream = gpuStream;
  }
#endif
}

void perfSync(void) {
#ifdef PERF_CUDA
  if (perfGpu) CUDA_CHECK(cudaStreamSynchronize(gpuStream));
#endif
}

long perfCheckStep(const perfKv_t* kv, int (*step)(void*, int), void* arg, void* out, const void* ref, int T, int H,
                   int Hq, int dr, MPI_Comm world) {
  const size_t bytes = (size_t)T * H * kv->Dv * perfElemSize(kv->type);
  perfPoison(out, bytes);
  step(arg, 0);
  perfSync();
  void* outHost = malloc(bytes ? bytes : 1);
  perfCopyOut(outHost, out, bytes);
  long wrong = perfCountWrong(kv, outHost, ref, T, H, Hq, dr);
  free(outHost);
  MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_LONG, MPI_SUM, world);
  return wrong;
}

const char* perfCheckStatus(int check, long wrong) { return !check ? "-" : wrong ? "FAILED" : "ok"; }
