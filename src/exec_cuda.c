/* exec_cuda.c -- the CUDA executor: kernels/cuda launchers on the caller's stream, device memory
 * from cudaMalloc. Nothing here synchronises the host. */
#include <cuda_runtime_api.h>

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
/* The Hopper MLA body's splits for a plan of this shape on the current device (0: the plan does
 * not run it: another shape or device, or CPCL_MLA_SM90=0). */
static int mlaSm90Splits(const cpclAttnDesc_t* d, int maxTokens, int numHeads) {
  if (cpclParamInt(CPCL_PARAM_MLA_SM90) == 0) return 0;
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
  return cpclCudaAttnMlaSm90Splits(&shape, maxTokens);
}

/* The Hopper GQA body's cluster size and chunk for a plan of this shape on the current device (0:
 * the plan does not run it: another shape or device, or CPCL_GQA_SM90=0). */
static int gqaSm90Splits(const cpclAttnDesc_t* d, int maxTokens, int numHeads, int* chunkMin) {
  *chunkMin = 0;
  /* sparse plans walk key lists, which only the CUDA-core body (and the Hopper MLA body) take */
  if (cpclParamInt(CPCL_PARAM_GQA_SM90) == 0 || d->topk > 0) return 0;
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
  return cpclCudaAttnGqaSm90Plan(&shape, maxTokens, chunkMin);
}

/* Sized for both MLA bodies where the plan runs the Hopper one: the fused kernel keeps the
 * CUDA-core body (and the launcher falls back to it on another device). The Hopper GQA body
 * needs no workspace (its splits merge in the cluster's shared memory). */
static size_t cudaAttnWorkspace(const cpclAttnDesc_t* d, int maxTokens, int numHeads, int* maxSplits, int* mlaSm90,
                                int* gqaSm90, int* gqaSm90ChunkMin) {
  *maxSplits = cpclCudaAttnMaxSplits(maxTokens, numHeads, d->headDimVo);
  *mlaSm90 = mlaSm90Splits(d, maxTokens, numHeads);
  *gqaSm90 = gqaSm90Splits(d, maxTokens, numHeads, gqaSm90ChunkMin);
  const size_t cores = cpclCudaAttnWorkspaceBytes(maxTokens, numHeads, d->headDimVo, *maxSplits);
  const size_t sm90 = *mlaSm90 ? cpclCudaAttnMlaSm90WorkspaceBytes(maxTokens, numHeads, *mlaSm90) : 0;
  return cores > sm90 ? cores : sm90;
}

static const char* cudaAttnOwnBody(const cpclAttnDesc_t* d, int numHeads) {
  int chunkMin;
  if (mlaSm90Splits(d, 1, numHeads) > 0) return "the Hopper MLA body (mla_sm90)";
  return gqaSm90Splits(d, 1, numHeads, &chunkMin) > 0 ? "the Hopper GQA body (gqa_sm90)" : NULL;
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

/* The CUDA prefill kernel is issue 15: until then cpclAttnPrefill refuses CUDA plans before a
 * schedule runs, and these slots say so if anything reaches them. */
static size_t cudaPrefillWorkspace(int headDimQk, int headDimVo) { return 0; }
static cpclResult_t cudaPrefillOp(const cpclPrefillParams_t* p, cpclStream_t s) {
  (void)p, (void)s;
  return CPCL_ERR(NULL, cpclUnsupported, "prefill on GPUs is not built yet (issue 15)");
}
static cpclResult_t cudaPrefillStoreOp(const cpclPrefillStoreParams_t* p, cpclStream_t s) {
  (void)p, (void)s;
  return CPCL_ERR(NULL, cpclUnsupported, "prefill on GPUs is not built yet (issue 15)");
}

static cpclResult_t cudaTopkFilterOp(const cpclTopkFilterParams_t* p, cpclStream_t s) {
  return launched(cpclCudaTopkFilter(p, s), "top-k filter kernel");
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
    .prefillStore = cudaPrefillStoreOp,
    .topkFilter = cudaTopkFilterOp,
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
