/* exec_cuda.c -- the CUDA executor: kernels/cuda launchers on the caller's stream, device memory
 * from cudaMalloc. Nothing here synchronises the host. */
#include <cuda_runtime_api.h>

#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "exec.h"

#define CUDACHECK(call, what)                                                                            \
  do {                                                                                                   \
    cudaError_t e_ = (call);                                                                             \
    if (e_ != cudaSuccess)                                                                               \
      return CPCL_ERR(NULL, cpclUnhandledCudaError, "%s: %s (%s)", what, cudaGetErrorString(e_), #call); \
  } while (0)

static cpclResult_t cudaAllocZero(struct cpclComm* comm, void* ptrOut, size_t bytes, const char* what) {
  void* p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
  if (e != cudaSuccess)
    return CPCL_ERR(comm, cpclUnhandledCudaError, "cudaMalloc of %zu bytes for %s failed: %s", bytes, what,
                    cudaGetErrorString(e));
  /* cudaMemset runs on the legacy stream, which orders nothing on the engine's non-blocking
   * streams, and peers may store into this buffer as soon as it is registered: wait for it */
  e = cudaMemset(p, 0, bytes ? bytes : 16);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    cudaFree(p);
    return CPCL_ERR(comm, cpclUnhandledCudaError, "cudaMemset of %s failed: %s", what, cudaGetErrorString(e));
  }
  *(void**)ptrOut = p;
  return cpclSuccess;
}

static void cudaFreePtr(void* p) {
  if (p) cudaFree(p);
}

static cpclResult_t launched(int err, const char* what) {
  if (err == 0) return cpclSuccess;
  const char* detail = cpclCudaKernelErrorDetail(); /* the launcher's own check, if it refused */
  if (err == cudaErrorInvalidValue && detail[0])
    return CPCL_ERR(NULL, cpclUnhandledCudaError, "%s: %s (%s)", what, cudaGetErrorString((cudaError_t)err), detail);
  return CPCL_ERR(NULL, cpclUnhandledCudaError, "%s: %s", what, cudaGetErrorString((cudaError_t)err));
}

static cpclResult_t cudaAttend(const cpclAttnParams_t* p, cpclStream_t s) {
  CPCL_NVTX_PUSH("cpcl attend");
  cpclResult_t r = launched(cpclCudaAttn(p, s), "attention kernel");
  CPCL_NVTX_POP();
  return r;
}
static cpclResult_t cudaMergeOp(const cpclMergeParams_t* p, cpclStream_t s) {
  CPCL_NVTX_PUSH("cpcl merge");
  cpclResult_t r = launched(cpclCudaMerge(p, s), "merge kernel");
  CPCL_NVTX_POP();
  return r;
}
static cpclResult_t cudaCorrectOp(const cpclCorrectParams_t* p, cpclStream_t s) {
  CPCL_NVTX_PUSH("cpcl correct");
  cpclResult_t r = launched(cpclCudaCorrect(p, s), "correction kernel");
  CPCL_NVTX_POP();
  return r;
}
static cpclResult_t cudaKvStoreOp(const cpclKvStoreParams_t* p, cpclStream_t s) {
  return launched(cpclCudaKvStore(p, s), "KV store kernel");
}
static cpclResult_t cudaCopy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                               cpclStream_t s) {
  if (width == 0 || height == 0) return cpclSuccess;
  CUDACHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice, (cudaStream_t)s),
            "device copy");
  return cpclSuccess;
}
static cpclResult_t cudaFusedOp(const cpclFusedParams_t* p, cpclStream_t s) {
  return launched(cpclCudaFused(p, s), "fused decode kernel");
}
/* The shape fields of a plan's launches, which the Hopper bodies' planners read (the rest zero). */
static cpclAttnParams_t shapeOf(const cpclAttnDesc_t* d, int numHeads) {
  cpclAttnParams_t shape;
  memset(&shape, 0, sizeof(shape));
  shape.qType = d->qType;
  shape.kvType = d->kvType;
  shape.latentKv = d->latentKv;
  shape.headDimQk = d->headDimQk;
  shape.headDimVo = d->headDimVo;
  shape.numKvHeads = d->numKvHeads;
  shape.pageSize = d->pageSize;
  shape.numHeads = numHeads;
  return shape;
}

/* The Hopper MLA body's splits for a plan of this shape on the current device (0: the plan does
 * not run it: another shape or device, or CPCL_MLA_SM90=0). */
static int mlaSm90Splits(const cpclAttnDesc_t* d, int maxTokens, int numHeads) {
  if (cpclParamInt(CPCL_PARAM_MLA_SM90) == 0) return 0;
  const cpclAttnParams_t shape = shapeOf(d, numHeads);
  return cpclCudaAttnMlaSm90Splits(&shape, maxTokens);
}

/* The Hopper GQA body's cluster size and chunk for a plan of this shape on the current device (0:
 * the plan does not run it: another shape or device, or CPCL_GQA_SM90=0). */
static int gqaSm90Splits(const cpclAttnDesc_t* d, int maxTokens, int numHeads, int* chunkMin, int* workspace) {
  *chunkMin = 0;
  *workspace = 0;
  /* sparse plans walk key lists, which only the CUDA-core body (and the Hopper MLA body) take */
  if (cpclParamInt(CPCL_PARAM_GQA_SM90) == 0 || d->topk > 0) return 0;
  const cpclAttnParams_t shape = shapeOf(d, numHeads);
  return cpclCudaAttnGqaSm90Plan(&shape, maxTokens, chunkMin, workspace);
}

/* Sized for every body the plan can run: the fused kernel keeps the CUDA-core or tensor-core body
 * for MLA and cluster-form GQA plans (and the launcher falls back to them on another device), the
 * Hopper MLA body and the Hopper GQA body's workspace form (alone or fused) leave their split
 * partials here too (one attention at a time on the
 * step's stream: one buffer serves all). */
static size_t cudaAttnWorkspace(const cpclAttnDesc_t* d, int maxTokens, int numHeads, int* maxSplits, int* mlaSm90,
                                int* gqaSm90, int* gqaSm90ChunkMin, int* gqaSm90Ws) {
  *maxSplits = cpclCudaAttnMaxSplits(maxTokens, numHeads, d->headDimVo);
  *mlaSm90 = mlaSm90Splits(d, maxTokens, numHeads);
  *gqaSm90 = gqaSm90Splits(d, maxTokens, numHeads, gqaSm90ChunkMin, gqaSm90Ws);
  const size_t cores = cpclCudaAttnWorkspaceBytes(maxTokens, numHeads, d->headDimVo, *maxSplits);
  const size_t sm90 = *mlaSm90 ? cpclCudaAttnMlaSm90WorkspaceBytes(maxTokens, numHeads, *mlaSm90) : 0;
  const size_t gqa =
      *gqaSm90 && *gqaSm90Ws ? cpclCudaAttnGqaSm90WorkspaceBytes(maxTokens, numHeads, d->headDimVo, *gqaSm90) : 0;
  const size_t most = cores > sm90 ? cores : sm90;
  return most > gqa ? most : gqa;
}

/* The Hopper GQA body runs inside the fused kernel too (gqa_sm90_fused.cu; a plan whose workspace
 * would pass its cap merges in clusters and keeps the tensor-core body there): only MLA's is its own */
static const char* cudaAttnOwnBody(const cpclAttnDesc_t* d, int numHeads) {
  int chunkMin, ws;
  if (mlaSm90Splits(d, 1, numHeads) > 0) return "the Hopper MLA body (mla_sm90)";
  if (cpclParamInt(CPCL_PARAM_GQA_SM90_FUSED) != 0) return NULL;
  return gqaSm90Splits(d, 1, numHeads, &chunkMin, &ws) > 0 ? "the Hopper GQA body (gqa_sm90, CPCL_GQA_SM90_FUSED=0)"
                                                           : NULL;
}

static cpclResult_t cudaZeroSync(struct cpclComm* comm, void* ptr, size_t bytes, const char* what) {
  /* the legacy stream orders nothing on the engine's streams: wait for the device (as at alloc) */
  cudaError_t e = cudaMemset(ptr, 0, bytes);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess)
    return CPCL_ERR(comm, cpclUnhandledCudaError, "cudaMemset of %zu bytes for %s failed: %s", bytes, what,
                    cudaGetErrorString(e));
  return cpclSuccess;
}
static size_t cudaAttnCounterCount(int maxTokens, int numHeads) {
  return cpclCudaAttnCounterCount(maxTokens, numHeads);
}

/* the CUDA prefill's scratch: the row counter of the Hopper body's fused store (prefill_params.h) */
static size_t cudaPrefillWorkspace(int headDimQk, int headDimVo) {
  (void)headDimQk, (void)headDimVo;
  return 16;
}
static cpclResult_t cudaPrefillOp(const cpclPrefillParams_t* p, cpclStream_t s) {
  CPCL_NVTX_PUSH("cpcl prefill");
  cpclResult_t r = launched(cpclCudaPrefill(p, s), "prefill kernel");
  CPCL_NVTX_POP();
  return r;
}

/* exec.h stageAlloc: areas 0 and 1 alternate for eager calls, 2 serves a stream under capture */
typedef struct {
  size_t bytes;
  void* host[3];
  cudaEvent_t copied[3];
  int pending[3]; /* copied[i] was recorded after area i's last copy */
  int next, cur;
  void* dev;
  cudaStream_t side; /* sideFork / sideJoin */
  cudaEvent_t forked, joined;
} cudaStager_t;

static void cudaStageFree(void* v) {
  cudaStager_t* s = v;
  if (s == NULL) return;
  for (int i = 0; i < 3; i++) {
    if (s->copied[i]) {
      cudaEventSynchronize(s->copied[i]);
      cudaEventDestroy(s->copied[i]);
    }
    if (s->host[i]) cudaFreeHost(s->host[i]);
  }
  if (s->dev) cudaFree(s->dev);
  if (s->side) {
    cudaStreamSynchronize(s->side);
    cudaStreamDestroy(s->side);
  }
  if (s->forked) cudaEventDestroy(s->forked);
  if (s->joined) cudaEventDestroy(s->joined);
  free(s);
}

static cpclResult_t cudaStageAlloc(struct cpclComm* comm, size_t bytes, void** out) {
  cudaStager_t* s = calloc(1, sizeof(*s));
  if (s == NULL) return CPCL_ERR(comm, cpclSystemError, "allocation of the prefill layout stager failed");
  s->bytes = bytes ? bytes : 16;
  cudaError_t e = cudaMalloc(&s->dev, s->bytes);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&s->side, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&s->forked, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&s->joined, cudaEventDisableTiming);
  for (int i = 0; i < 3 && e == cudaSuccess; i++) {
    e = cudaHostAlloc(&s->host[i], s->bytes, cudaHostAllocDefault);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&s->copied[i], cudaEventDisableTiming);
  }
  if (e != cudaSuccess) {
    cudaStageFree(s);
    return CPCL_ERR(comm, cpclUnhandledCudaError, "allocating the prefill layout staging (%zu bytes): %s", bytes,
                    cudaGetErrorString(e));
  }
  *out = s;
  return cpclSuccess;
}

static cpclResult_t cudaStageBegin(void* v, cpclStream_t stream, void** host) {
  cudaStager_t* s = v;
  enum cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  CUDACHECK(cudaStreamIsCapturing((cudaStream_t)stream, &cap), "prefill layout staging");
  if (cap == cudaStreamCaptureStatusActive) {
    s->cur = 2;
  } else {
    s->cur = s->next;
    s->next ^= 1;
    /* the copy of two steps ago read this area: wait until it has (usually long done) */
    if (s->pending[s->cur]) CUDACHECK(cudaEventSynchronize(s->copied[s->cur]), "prefill layout staging");
    s->pending[s->cur] = 0;
  }
  *host = s->host[s->cur];
  return cpclSuccess;
}

static cpclResult_t cudaStageEnd(void* v, cpclStream_t stream, const cpclStageRange_t* r, int n, const void** view) {
  cudaStager_t* s = v;
  /* the ranges' span and bytes: one copy of the span where it moves at most twice the bytes plus
   * 16 KB (a one-rank step: rows, positions and lengths nearly back to back). Each copy is a node
   * of its own in a graph, with a few microseconds of latency before the attention can start;
   * what lies between the ranges is the staging's own unused part */
  size_t lo = SIZE_MAX, hi = 0, bytes = 0;
  for (int i = 0; i < n; i++) {
    if (r[i].width == 0 || r[i].height == 0) continue;
    const size_t end = r[i].off + (r[i].height - 1) * r[i].pitch + r[i].width;
    if (end > s->bytes)
      return CPCL_ERR(NULL, cpclInternalError, "prefill layout range %d past the %zu bytes of the staging", i,
                      s->bytes);
    lo = r[i].off < lo ? r[i].off : lo;
    hi = end > hi ? end : hi;
    bytes += r[i].width * r[i].height;
  }
  const int one = hi > lo && hi - lo <= 2 * bytes + ((size_t)16 << 10);
  if (one)
    CUDACHECK(cudaMemcpyAsync((char*)s->dev + lo, (const char*)s->host[s->cur] + lo, hi - lo, cudaMemcpyHostToDevice,
                              (cudaStream_t)stream),
              "prefill layout copy");
  for (int i = 0; i < n && !one; i++) {
    if (r[i].width == 0 || r[i].height == 0) continue;
    CUDACHECK(cudaMemcpy2DAsync((char*)s->dev + r[i].off, r[i].pitch, (const char*)s->host[s->cur] + r[i].off,
                                r[i].pitch, r[i].width, r[i].height, cudaMemcpyHostToDevice, (cudaStream_t)stream),
              "prefill layout copy");
  }
  if (s->cur < 2) {
    CUDACHECK(cudaEventRecord(s->copied[s->cur], (cudaStream_t)stream), "prefill layout copy");
    s->pending[s->cur] = 1;
  }
  *view = s->dev;
  return cpclSuccess;
}

static cpclResult_t cudaSideFork(void* v, cpclStream_t stream, cpclStream_t* side) {
  cudaStager_t* s = v;
  CUDACHECK(cudaEventRecord(s->forked, (cudaStream_t)stream), "side stream fork");
  CUDACHECK(cudaStreamWaitEvent(s->side, s->forked, 0), "side stream fork");
  *side = s->side;
  return cpclSuccess;
}
static cpclResult_t cudaSideJoin(void* v, cpclStream_t stream) {
  cudaStager_t* s = v;
  CUDACHECK(cudaEventRecord(s->joined, s->side), "side stream join");
  CUDACHECK(cudaStreamWaitEvent((cudaStream_t)stream, s->joined, 0), "side stream join");
  return cpclSuccess;
}

static cpclResult_t cudaTopkFilterOp(const cpclTopkFilterParams_t* p, cpclStream_t s) {
  return launched(cpclCudaTopkFilter(p, s), "top-k filter kernel");
}
/* A sparse plan that runs the Hopper MLA body with a gather that filters: CPCL_MLA_SM90_TOPK 1 always,
 * 2 (the default) where the body's grid fits one wave of the SMs (cpclCudaAttnMlaSm90OneWave), 0
 * never. The bits are the same either way (test_gpu_kernels compares them). Measured (docs/MLA_SM90.md
 * "Session 20", H100, K 2048, page 64, filter kernel / in the attention, us): B64 H128 (128 CTAs) W1
 * 128.8 / 122.2, W8 40.1 / 37.0; B128 (256 CTAs) W1 241.0 / 239.5, W8 71.9 / 76.4. Each CTA scans its
 * row's whole list twice before its first gather; one reading is that a second wave pays that again,
 * where the filter kernel pays it once for every row. */
static int cudaTopkInAttention(const cpclAttnDesc_t* d, int maxTokens, int numHeads) {
  const int mode = cpclParamInt(CPCL_PARAM_MLA_SM90_TOPK);
  if (d->topk <= 0 || mode == 0 || !cpclCudaMlaSm90SparseFilters() || mlaSm90Splits(d, maxTokens, numHeads) <= 0)
    return 0;
  return mode == 1 || cpclCudaAttnMlaSm90OneWave(maxTokens, numHeads);
}

const cpclExecOps_t cpclExecCuda = {
    .name = "cuda",
    .alloc = cudaAllocZero,
    .free = cudaFreePtr,
    .attnWorkspaceBytes = cudaAttnWorkspace,
    .attnOwnBody = cudaAttnOwnBody,
    .attend = cudaAttend,
    .merge = cudaMergeOp,
    .correct = cudaCorrectOp,
    .kvStore = cudaKvStoreOp,
    .copy2d = cudaCopy2d,
    .fused = cudaFusedOp,
    .zeroSync = cudaZeroSync,
    .attnCounterCount = cudaAttnCounterCount,
    .errorFlagAlloc = cpclCudaErrorFlagAlloc,
    .errorFlagFree = cpclCudaErrorFlagFree,
    .prefillWorkspaceBytes = cudaPrefillWorkspace,
    .prefill = cudaPrefillOp,
    .topkFilter = cudaTopkFilterOp,
    .topkInAttention = cudaTopkInAttention,
    .stageAlloc = cudaStageAlloc,
    .stageFree = cudaStageFree,
    .stageBegin = cudaStageBegin,
    .stageEnd = cudaStageEnd,
    .sideFork = cudaSideFork,
    .sideJoin = cudaSideJoin,
};

cpclResult_t cpclCudaErrorFlagAlloc(struct cpclComm* comm, int** hostPtr, int** devPtr) {
  int* h = NULL;
  cudaError_t e = cudaHostAlloc((void**)&h, CPCL_KERR_WORDS * sizeof(int), cudaHostAllocMapped);
  if (e != cudaSuccess)
    return CPCL_ERR(comm, cpclUnhandledCudaError, "cudaHostAlloc of the error flag failed: %s", cudaGetErrorString(e));
  memset(h, 0, CPCL_KERR_WORDS * sizeof(int));
  e = cudaHostGetDevicePointer((void**)devPtr, h, 0);
  if (e != cudaSuccess) {
    cudaFreeHost(h);
    return CPCL_ERR(comm, cpclUnhandledCudaError, "cudaHostGetDevicePointer of the error flag failed: %s",
                    cudaGetErrorString(e));
  }
  *hostPtr = h;
  return cpclSuccess;
}

void cpclCudaErrorFlagFree(int* hostPtr) {
  if (hostPtr) cudaFreeHost(hostPtr);
}
