/* exec_host.c -- the host executor: the C kernels of kernels/host, run synchronously. */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "exec.h"
#include "transport.h"

static cpclResult_t hostAlloc(struct cpclComm* comm, void* ptrOut, size_t bytes, const char* what) {
  /* 64-byte aligned so vector loads never straddle lines */
  void* p = NULL;
  if (posix_memalign(&p, 64, bytes ? CPCL_ALIGN_UP(bytes, 64) : 64) != 0)
    return CPCL_ERR(comm, cpclSystemError, "allocation of %zu bytes for %s failed", bytes, what);
  memset(p, 0, bytes);
  *(void**)ptrOut = p;
  return cpclSuccess;
}

static size_t hostAttnWorkspace(const cpclAttnDesc_t* d, int maxTokens, int numHeads, int* maxSplits,
                                int* mlaSm90Splits, int* gqaSm90Splits, int* gqaSm90ChunkMin, int* gqaSm90Workspace) {
  (void)maxTokens;
  (void)numHeads;
  *maxSplits = 1; /* one pass per (sequence, KV head): scratch only */
  *mlaSm90Splits = 0;
  *gqaSm90Splits = 0;
  *gqaSm90ChunkMin = 0;
  *gqaSm90Workspace = 0;
  return cpclHostAttnWorkspaceBytes(d->headDimQk, d->headDimVo);
}

static const char* hostAttnOwnBody(const cpclAttnDesc_t* d, int numHeads) {
  (void)d;
  (void)numHeads;
  return NULL; /* no fused kernel on the host */
}

/* The C kernels cannot fail and run to completion on the caller's thread: the stream is unused. */
#define HOST_KERNEL(name, kernel, params_t)                     \
  static cpclResult_t name(const params_t* p, cpclStream_t s) { \
    (void)s;                                                    \
    kernel(p);                                                  \
    return cpclSuccess;                                         \
  }
HOST_KERNEL(hostAttend, cpclHostAttn, cpclAttnParams_t)
HOST_KERNEL(hostMerge, cpclHostMerge, cpclMergeParams_t)
HOST_KERNEL(hostCorrect, cpclHostCorrect, cpclCorrectParams_t)
HOST_KERNEL(hostKvStore, cpclHostKvStore, cpclKvStoreParams_t)
HOST_KERNEL(hostPrefill, cpclHostPrefill, cpclPrefillParams_t)
HOST_KERNEL(hostTopkFilter, cpclHostTopkFilter, cpclTopkFilterParams_t)

static cpclResult_t hostCopy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                               cpclStream_t s) {
  if (dpitch == width && spitch == width) {
    memcpy(dst, src, width * height);
  } else {
    for (size_t r = 0; r < height; r++) memcpy((char*)dst + r * dpitch, (const char*)src + r * spitch, width);
  }
  return cpclSuccess;
}

static cpclResult_t hostFused(const cpclFusedParams_t* p, cpclStream_t s) {
  (void)p, (void)s;
  return CPCL_ERR(NULL, cpclUnsupported, "the fused kernel runs on CUDA only");
}
static cpclResult_t hostZeroSync(struct cpclComm* comm, void* ptr, size_t bytes, const char* what) {
  memset(ptr, 0, bytes);
  return cpclSuccess;
}
static size_t hostAttnCounterCount(int maxTokens, int numHeads) { return 0; }
/* host batches are checked before a step runs: no device record */
static cpclResult_t hostErrorFlagAlloc(struct cpclComm* comm, int** hostPtr, int** devPtr) {
  *hostPtr = *devPtr = NULL;
  return cpclSuccess;
}
static void hostErrorFlagFree(int* hostPtr) {}
static size_t hostPrefillWorkspace(int headDimQk, int headDimVo) {
  return cpclHostPrefillWorkspaceBytes(headDimQk, headDimVo);
}

static cpclResult_t hostStageAlloc(struct cpclComm* comm, size_t bytes, void** stager) {
  return hostAlloc(comm, stager, bytes, "prefill layout");
}
static cpclResult_t hostStageBegin(void* stager, cpclStream_t s, void** host) {
  *host = stager;
  return cpclSuccess;
}
static cpclResult_t hostStageEnd(void* stager, cpclStream_t s, const cpclStageRange_t* r, int n, const void** view) {
  *view = stager;
  return cpclSuccess;
}

static cpclResult_t hostSideFork(void* stager, cpclStream_t s, cpclStream_t* side) {
  *side = s;
  return cpclSuccess;
}
static cpclResult_t hostSideJoin(void* stager, cpclStream_t s) { return cpclSuccess; }

const cpclExecOps_t cpclExecHost = {
    .name = "host",
    .alloc = hostAlloc,
    .free = free,
    .attnWorkspaceBytes = hostAttnWorkspace,
    .attnOwnBody = hostAttnOwnBody,
    .attend = hostAttend,
    .merge = hostMerge,
    .correct = hostCorrect,
    .kvStore = hostKvStore,
    .copy2d = hostCopy2d,
    .fused = hostFused,
    .zeroSync = hostZeroSync,
    .attnCounterCount = hostAttnCounterCount,
    .errorFlagAlloc = hostErrorFlagAlloc,
    .errorFlagFree = hostErrorFlagFree,
    .prefillWorkspaceBytes = hostPrefillWorkspace,
    .prefill = hostPrefill,
    .topkFilter = hostTopkFilter,
    .topkInAttention = NULL,
    .stageAlloc = hostStageAlloc,
    .stageFree = free,
    .stageBegin = hostStageBegin,
    .stageEnd = hostStageEnd,
    .sideFork = hostSideFork,
    .sideJoin = hostSideJoin,
};
