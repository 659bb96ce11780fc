/*
 * ipc.c -- GPU ranks of one node that map each other's buffers (CUDA IPC).
 *
 * Buffers are registered collectively (regMem: cudaIpcGetMemHandle, handles all-gathered over
 * the caller's out-of-band all-gather, opened by every peer), so a kernel can store into a peer's
 * buffer and raise a flag there. The transport owns one flag block per communicator
 * (peer_sync.h: epoch, ready and data flags, kernel counters), mapped into every
 * peer the same way. Transfers are kernels (kernels/cuda/p2p.cu) on the caller's stream: nothing
 * on the host waits, so a step can be captured in a CUDA graph, and every device-side wait is
 * bounded by the communicator's timeout.
 *
 * The control plane (plan agreement, registration) is the out-of-band all-gather the
 * communicator was created with: it must stay usable while the communicator lives.
 * One process per rank: CUDA IPC cannot map a buffer into the process that owns it.
 */
#include <cuda_runtime_api.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/checks.h"
#include "exchange_params.h"
#include "transport.h"

#define IPCCHECK(call, what)                                                                                       \
  do {                                                                                                             \
    cudaError_t e_ = (call);                                                                                       \
    if (e_ != cudaSuccess)                                                                                         \
      return CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "ipc: %s: %s (%s)", what, cudaGetErrorString(e_), #call); \
  } while (0)

typedef struct ipcRegion {
  char* base;
  size_t bytes;
  char** peer; /* [nranks] base as mapped here; peer[rank] = base */
  struct ipcRegion* next;
} ipcRegion_t;

/* the flag block: peer_sync.h */
typedef struct {
  int W, rank;
  int timeoutMs;
  cpclOob_t oob;
  int* flags;
  ipcRegion_t* flagRegion;
  ipcRegion_t* regions;
} ipcCtx_t;

static int ipcUsable(void) {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static cpclResult_t ipcCtrlAllgather(void* vctx, const void* send, void* recv, size_t bytes) {
  ipcCtx_t* c = vctx;
  if (c->oob.allgather((void*)send, recv, bytes, c->oob.ctx) != 0)
    return CPCL_SINK_ERR(NULL, cpclSystemError, "ipc: the out-of-band all-gather (oob->allgather) returned an error");
  return cpclSuccess;
}

typedef struct {
  cudaIpcMemHandle_t handle;
  uint64_t bytes;
  int32_t pid;
  int32_t ok;
} ipcExport_t;

static void regionFree(ipcRegion_t* r, int rank, int W) {
  if (r == NULL) return;
  for (int p = 0; p < W; p++)
    if (p != rank && r->peer[p]) cudaIpcCloseMemHandle(r->peer[p]);
  free(r->peer);
  free(r);
}

/* Collective: maps every rank's `buf` into this process. */
static cpclResult_t ipcRegMem(void* vctx, void* buf, size_t bytes, void** handleOut) {
  ipcCtx_t* c = vctx;
  ipcExport_t mine;
  memset(&mine, 0, sizeof(mine));
  mine.bytes = bytes;
  mine.pid = (int32_t)getpid();
  cudaError_t ge = cudaIpcGetMemHandle(&mine.handle, buf);
  mine.ok = ge == cudaSuccess;
  ipcExport_t* all = calloc((size_t)c->W, sizeof(*all));
  ipcRegion_t* r = calloc(1, sizeof(*r));
  char** peer = calloc((size_t)c->W, sizeof(char*));
  if (all == NULL || r == NULL || peer == NULL) {
    free(all);
    free(r);
    free(peer);
    return CPCL_SINK_ERR(NULL, cpclSystemError, "ipc: allocation of a registration failed");
  }
  r->base = buf;
  r->bytes = bytes;
  r->peer = peer;
  cpclResult_t res = ipcCtrlAllgather(c, &mine, all, sizeof(mine));
  if (res != cpclSuccess) goto fail;
  for (int p = 0; p < c->W; p++) {
    if (!all[p].ok) {
      res = CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "ipc: rank %d could not export a buffer of %llu bytes (%s)", p,
                          (unsigned long long)all[p].bytes, p == c->rank ? cudaGetErrorString(ge) : "see its error");
      goto fail;
    }
    if (p == c->rank) {
      peer[p] = buf;
      continue;
    }
    if (all[p].pid == mine.pid) {
      res = CPCL_SINK_ERR(NULL, cpclInvalidUsage,
                          "ipc: ranks %d and %d are one process; CUDA IPC maps buffers between processes only (one "
                          "process per rank)",
                          c->rank, p);
      goto fail;
    }
    cudaError_t e = cudaIpcOpenMemHandle((void**)&peer[p], all[p].handle, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      peer[p] = NULL;
      res = CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "ipc: mapping rank %d's buffer failed: %s", p,
                          cudaGetErrorString(e));
      goto fail;
    }
  }
  free(all);
  r->next = c->regions;
  c->regions = r;
  *handleOut = r;
  return cpclSuccess;
fail:
  free(all);
  regionFree(r, c->rank, c->W);
  return res;
}

static cpclResult_t ipcDeregMem(void* vctx, void* handle) {
  ipcCtx_t* c = vctx;
  for (ipcRegion_t** pp = &c->regions; *pp; pp = &(*pp)->next)
    if (*pp == handle) {
      *pp = ((ipcRegion_t*)handle)->next;
      regionFree(handle, c->rank, c->W);
      return cpclSuccess;
    }
  return CPCL_SINK_ERR(NULL, cpclInternalError, "ipc: deregistration of an unknown buffer");
}

static cpclResult_t ipcPeerPtr(void* vctx, void* handle, int peer, void** ptr) {
  ipcCtx_t* c = vctx;
  if (peer < 0 || peer >= c->W) return CPCL_SINK_ERR(NULL, cpclInternalError, "ipc: peer %d out of range", peer);
  *ptr = ((ipcRegion_t*)handle)->peer[peer];
  return cpclSuccess;
}

/* local address inside a registered buffer -> the same place in peer's copy, as mapped here */
static void* translate(ipcCtx_t* c, const void* addr, int peer) {
  for (ipcRegion_t* r = c->regions; r; r = r->next)
    if ((const char*)addr >= r->base && (const char*)addr < r->base + r->bytes)
      return r->peer[peer] + ((const char*)addr - r->base);
  return NULL;
}

static cpclResult_t ipcPeerSync(void* vctx, cpclPeerSync_t* s) {
  ipcCtx_t* c = vctx;
  const int W = c->W;
  cpclPeerSyncInit(s, W, c->rank, c->flags, (unsigned long long)c->timeoutMs * 1000000ull);
  for (int p = 0; p < W; p++) cpclPeerSyncSetPeer(s, p, (int*)c->flagRegion->peer[p]);
  return cpclSuccess;
}

static cpclResult_t ipcAlltoallv(void* vctx, const cpclXfer_t* x) {
  ipcCtx_t* c = vctx;
  cpclXchgParams_t p;
  memset(&p, 0, sizeof(p));
  CPCLCHECK(ipcPeerSync(c, &p.sync));
  p.advance = 1;
  p.errorFlag = x->errorFlag;
  for (int k = 1; k < c->W; k++) {
    const int q = (c->rank + k) % c->W; /* start at the next rank: the ranks do not all hit rank 0 first */
    if (x->sendBytes[q]) {
      void* dst = x->remote ? translate(c, x->remote, q) : NULL;
      if (dst == NULL)
        return CPCL_SINK_ERR(NULL, cpclInternalError,
                             "ipc: the destination of rank %d's block is not in a registered buffer", q);
      p.src[p.numPuts] = x->sendbufs[q];
      p.dst[p.numPuts] = dst;
      p.bytes[p.numPuts] = x->sendBytes[q];
      p.peer[p.numPuts] = q;
      p.numPuts++;
    }
    if (x->recvBytes[q] && !x->postOnly) p.waitMask |= 1ull << q;
  }
  int e = cpclCudaExchange(&p, x->stream);
  if (e)
    return CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "ipc: exchange kernel: %s", cudaGetErrorString((cudaError_t)e));
  return cpclSuccess;
}

static cpclResult_t ipcWaitFrom(void* vctx, int peer, int* errorFlag, cpclStream_t stream) {
  ipcCtx_t* c = vctx;
  if (peer == c->rank) return cpclSuccess;
  cpclXchgParams_t p;
  memset(&p, 0, sizeof(p));
  CPCLCHECK(ipcPeerSync(c, &p.sync));
  p.waitMask = 1ull << peer;
  p.errorFlag = errorFlag;
  int e = cpclCudaExchange(&p, stream);
  if (e) return CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "ipc: wait kernel: %s", cudaGetErrorString((cudaError_t)e));
  return cpclSuccess;
}

/* One ring step, one-sided: the receiver's buffer is where this rank receives (recvbuf), at the
 * same place of a buffer registered on every rank (the prefill ring's K/V slots alternate in step
 * on every rank), so this rank stores into sendPeer's copy of recvbuf. One exchange epoch per
 * call on every rank, sizes 0 included: the put waits until sendPeer has begun the same step (its
 * earlier reads of that slot are done, stream-ordered), and the kernels after it see recvPeer's
 * bytes. */
static cpclResult_t ipcSendrecv(void* vctx, int sendPeer, const void* sendbuf, size_t sendBytes, int recvPeer,
                                void* recvbuf, size_t recvBytes, int* errorFlag, cpclStream_t stream) {
  ipcCtx_t* c = vctx;
  if (sendPeer == c->rank || recvPeer == c->rank || sendPeer < 0 || recvPeer < 0 || sendPeer >= c->W ||
      recvPeer >= c->W)
    return CPCL_SINK_ERR(NULL, cpclInternalError, "ipc: sendrecv with peers %d and %d on rank %d of %d", sendPeer,
                         recvPeer, c->rank, c->W);
  cpclXchgParams_t p;
  memset(&p, 0, sizeof(p));
  CPCLCHECK(ipcPeerSync(c, &p.sync));
  p.advance = 1;
  p.errorFlag = errorFlag;
  if (sendBytes) {
    void* dst = translate(c, recvbuf, sendPeer);
    if (dst == NULL)
      return CPCL_SINK_ERR(NULL, cpclInternalError, "ipc: sendrecv: the receive buffer is not in a registered buffer");
    p.src[0] = sendbuf;
    p.dst[0] = dst;
    p.bytes[0] = sendBytes;
    p.peer[0] = sendPeer;
    p.numPuts = 1;
  }
  if (recvBytes) p.waitMask = 1ull << recvPeer;
  int e = cpclCudaExchange(&p, stream);
  if (e)
    return CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "ipc: sendrecv kernel: %s", cudaGetErrorString((cudaError_t)e));
  return cpclSuccess;
}

static cpclResult_t ipcFini(void* vctx) {
  ipcCtx_t* c = vctx;
  if (c == NULL) return cpclSuccess;
  /* the peers may still be storing into our flags: let our own stream work drain first */
  cudaDeviceSynchronize();
  while (c->regions) {
    ipcRegion_t* r = c->regions;
    c->regions = r->next;
    regionFree(r, c->rank, c->W);
  }
  if (c->flags) cudaFree(c->flags);
  free(c);
  return cpclSuccess;
}

static cpclResult_t ipcInit(const cpclTransportInitArgs_t* args, void** ctxOut) {
  cpclErrorSink_t* errs = args->errors;
  if (args->memType != cpclMemCuda)
    return CPCL_SINK_ERR(errs, cpclInvalidArgument,
                         "transport \"ipc\" moves CUDA memory: set config->memType = cpclMemCuda");
  if (args->nranks > CPCL_MAX_RANKS)
    return CPCL_SINK_ERR(errs, cpclUnsupported, "transport \"ipc\" serves at most %d ranks, not %d", CPCL_MAX_RANKS,
                         args->nranks);
  for (int p = 0; p < args->nranks; p++)
    if (p != args->rank && !args->peerLocal[p])
      return CPCL_SINK_ERR(errs, cpclInvalidUsage,
                           "transport \"ipc\" needs every rank on this node, and rank %d is elsewhere: use \"nccl\"",
                           p);
  if (args->oob == NULL)
    return CPCL_SINK_ERR(errs, cpclInvalidUsage, "transport \"ipc\" needs an out-of-band all-gather (cpclCommInitOob)");
  ipcCtx_t* c = calloc(1, sizeof(*c));
  if (c == NULL) return CPCL_SINK_ERR(errs, cpclSystemError, "ipc: allocation failed");
  c->W = args->nranks;
  c->rank = args->rank;
  c->timeoutMs = args->timeoutMs;
  c->oob = *args->oob;
  cpclResult_t res = cpclSuccess;
  const size_t bytes = cpclSyncBlockInts(c->W) * sizeof(int);
  cudaError_t e = cudaMalloc((void**)&c->flags, bytes);
  if (e == cudaSuccess) e = cudaMemset(c->flags, 0, bytes);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    res =
        CPCL_SINK_ERR(errs, cpclUnhandledCudaError, "ipc: allocating the flag block failed: %s", cudaGetErrorString(e));
    goto fail;
  }
  void* h = NULL;
  CPCLCHECKGOTO(ipcRegMem(c, c->flags, bytes, &h), res, fail);
  c->flagRegion = h;
  *ctxOut = c;
  int dev = -1;
  cudaGetDevice(&dev);
  INFO(CPCL_NET, "ipc: rank %d (device %d) mapped the flag block of %d local peers (%zu bytes), waits bounded by %d ms",
       c->rank, dev, c->W - 1, bytes, c->timeoutMs);
  return cpclSuccess;
fail:
  ipcFini(c);
  return res;
}

const cpclTransportOps_t cpclTransportIpc = {
    CPCL_TP_NO_HOST_P2P,
    .name = "ipc",
    .memTypes = 1u << cpclMemCuda,
    .caps = CPCL_TP_CAP_CTRL | CPCL_TP_CAP_STREAM_XCHG | CPCL_TP_CAP_PEER_MAP | CPCL_TP_CAP_STREAM_P2P,
    .usable = ipcUsable,
    .init = ipcInit,
    .fini = ipcFini,
    .regMem = ipcRegMem,
    .deregMem = ipcDeregMem,
    .peerPtr = ipcPeerPtr,
    .peerSync = ipcPeerSync,
    .ctrlAllgather = ipcCtrlAllgather,
    .alltoallv = ipcAlltoallv,
    .waitFrom = ipcWaitFrom,
    .sendrecv = ipcSendrecv,
};
