/*
 * nccl.c -- GPU ranks on any nodes, through NCCL: grouped send/receive on the caller's stream
 * (stream-ordered, capturable in CUDA graphs). The NCCL communicator is either the engine's own
 * (cpclCommInitNccl, comm_nccl.c, which hands it over as cpclTransportInitArgs_t.adopt) or one
 * this transport creates over the caller's out-of-band all-gather (cpclCommInitOob with
 * transport "nccl"). The control plane is ncclAllGather on a private stream, its wait bounded
 * by the communicator's timeout (then the NCCL communicator is aborted and cpclTimeout returned).
 */
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/checks.h"
#include "nccl_boot.h"
#include "transport.h"

typedef struct {
  ncclComm_t nc;
  int owned; /* created here: destroyed at fini */
  int W, rank, timeoutMs;
  cudaStream_t ctrlStream;
  char* ctrlBuf; /* device staging of the control all-gather */
  size_t ctrlBytes;
} ncclCtx_t;

static int ncclUsable(void) {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static double nowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* Blocking all-gather of host bytes over nc, bounded by timeoutMs. */
cpclResult_t cpclNcclHostAllgather(ncclComm_t nc, int W, int timeoutMs, cudaStream_t stream, char** buf, size_t* cap,
                                   const void* send, void* recv, size_t bytes) {
  const size_t need = bytes * (size_t)(W + 1);
  if (need > *cap) {
    if (*buf) cudaFree(*buf);
    *buf = NULL;
    *cap = 0;
    cudaError_t e = cudaMalloc((void**)buf, need);
    if (e != cudaSuccess)
      return CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "nccl: staging for the control all-gather: %s",
                           cudaGetErrorString(e));
    *cap = need;
  }
  char* dsend = *buf + bytes * (size_t)W;
  if (cudaMemcpyAsync(dsend, send, bytes, cudaMemcpyHostToDevice, stream) != cudaSuccess)
    return CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "nccl: control all-gather copy in failed");
  ncclResult_t nr = ncclAllGather(dsend, *buf, bytes, ncclUint8, nc, stream);
  if (nr != ncclSuccess) return CPCL_SINK_ERR(NULL, cpclRemoteError, "nccl: ncclAllGather: %s", ncclGetErrorString(nr));
  if (cudaMemcpyAsync(recv, *buf, bytes * (size_t)W, cudaMemcpyDeviceToHost, stream) != cudaSuccess)
    return CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "nccl: control all-gather copy out failed");
  const double start = nowMs();
  for (;;) {
    cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return cpclSuccess;
    if (q != cudaErrorNotReady)
      return CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "nccl: control all-gather: %s", cudaGetErrorString(q));
    ncclResult_t ae = ncclSuccess;
    ncclCommGetAsyncError(nc, &ae);
    if (ae != ncclSuccess && ae != ncclInProgress)
      return CPCL_SINK_ERR(NULL, cpclRemoteError, "nccl: control all-gather: %s", ncclGetErrorString(ae));
    if (nowMs() - start > timeoutMs) {
      return CPCL_SINK_ERR(NULL, cpclTimeout, "nccl: control all-gather: no answer within %d ms", timeoutMs);
    }
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
  }
}

static cpclResult_t ncclCtrlAllgather(void* vctx, const void* send, void* recv, size_t bytes) {
  ncclCtx_t* c = vctx;
  return cpclNcclHostAllgather(c->nc, c->W, c->timeoutMs, c->ctrlStream, &c->ctrlBuf, &c->ctrlBytes, send, recv, bytes);
}

static cpclResult_t ncclAlltoallv(void* vctx, const cpclXfer_t* x) {
  ncclCtx_t* c = vctx;
  cudaStream_t s = (cudaStream_t)x->stream;
  ncclResult_t r = ncclGroupStart();
  for (int k = 1; k < c->W && r == ncclSuccess; k++) {
    const int q = (c->rank + k) % c->W;
    if (x->sendBytes[q]) r = ncclSend(x->sendbufs[q], x->sendBytes[q], ncclUint8, q, c->nc, s);
    if (r == ncclSuccess && x->recvBytes[q]) r = ncclRecv(x->recvbufs[q], x->recvBytes[q], ncclUint8, q, c->nc, s);
  }
  ncclResult_t r2 = ncclGroupEnd();
  if (r == ncclSuccess) r = r2;
  if (r != ncclSuccess && r != ncclInProgress)
    return CPCL_SINK_ERR(NULL, cpclRemoteError, "nccl: grouped send/receive: %s", ncclGetErrorString(r));
  return cpclSuccess;
}

static cpclResult_t ncclSendrecv(void* vctx, int sendPeer, const void* sendbuf, size_t sendBytes, int recvPeer,
                                 void* recvbuf, size_t recvBytes, int* errorFlag, cpclStream_t stream) {
  ncclCtx_t* c = vctx;
  (void)errorFlag; /* NCCL's own waits: nothing lands there */
  cudaStream_t s = (cudaStream_t)stream;
  if (sendPeer < 0 || sendPeer >= c->W || sendPeer == c->rank || recvPeer < 0 || recvPeer >= c->W ||
      recvPeer == c->rank)
    return CPCL_SINK_ERR(NULL, cpclInternalError, "nccl: sendrecv with peers %d and %d on rank %d of %d", sendPeer,
                         recvPeer, c->rank, c->W);
  /* grouped, so that a ring of ranks that all send before they receive cannot deadlock */
  ncclResult_t r = ncclGroupStart();
  if (r == ncclSuccess && sendBytes) r = ncclSend(sendbuf, sendBytes, ncclUint8, sendPeer, c->nc, s);
  if (r == ncclSuccess && recvBytes) r = ncclRecv(recvbuf, recvBytes, ncclUint8, recvPeer, c->nc, s);
  ncclResult_t r2 = ncclGroupEnd();
  if (r == ncclSuccess) r = r2;
  if (r != ncclSuccess && r != ncclInProgress)
    return CPCL_SINK_ERR(NULL, cpclRemoteError, "nccl: send to rank %d / receive from rank %d: %s", sendPeer, recvPeer,
                         ncclGetErrorString(r));
  return cpclSuccess;
}

/* every receive of alltoallv completes with it: nothing left to wait for */
static cpclResult_t ncclWaitFrom(void* vctx, int peer, int* errorFlag, cpclStream_t stream) {
  (void)vctx, (void)peer, (void)errorFlag, (void)stream;
  return cpclSuccess;
}

static cpclResult_t ncclFini(void* vctx) {
  ncclCtx_t* c = vctx;
  if (c == NULL) return cpclSuccess;
  if (c->ctrlStream) cudaStreamSynchronize(c->ctrlStream);
  if (c->ctrlBuf) cudaFree(c->ctrlBuf);
  if (c->ctrlStream) cudaStreamDestroy(c->ctrlStream);
  if (c->owned && c->nc) ncclCommDestroy(c->nc);
  free(c);
  return cpclSuccess;
}

static cpclResult_t ncclInit(const cpclTransportInitArgs_t* args, void** ctxOut) {
  cpclErrorSink_t* errs = args->errors;
  if (args->memType != cpclMemCuda)
    return CPCL_SINK_ERR(errs, cpclInvalidArgument,
                         "transport \"nccl\" moves CUDA memory: set config->memType = cpclMemCuda");
  ncclCtx_t* c = calloc(1, sizeof(*c));
  if (c == NULL) return CPCL_SINK_ERR(errs, cpclSystemError, "nccl: allocation failed");
  c->W = args->nranks;
  c->rank = args->rank;
  c->timeoutMs = args->timeoutMs;
  cpclResult_t res = cpclSuccess;
  if (cudaStreamCreateWithFlags(&c->ctrlStream, cudaStreamNonBlocking) != cudaSuccess) {
    res = CPCL_SINK_ERR(errs, cpclUnhandledCudaError, "nccl: creating the control stream failed");
    goto fail;
  }
  if (args->adopt) { /* cpclCommInitNccl: the engine's communicator */
    c->nc = (ncclComm_t)args->adopt;
  } else {
    const cpclOob_t* oob = args->oob;
    ncclUniqueId id, *all = calloc((size_t)c->W, sizeof(ncclUniqueId));
    if (all == NULL) {
      res = CPCL_SINK_ERR(errs, cpclSystemError, "nccl: allocation failed");
      goto fail;
    }
    ncclResult_t r = c->rank == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
    if (c->rank != 0) memset(&id, 0, sizeof(id));
    if (oob->allgather(&id, all, sizeof(id), oob->ctx) != 0) {
      free(all);
      res = CPCL_SINK_ERR(errs, cpclSystemError, "nccl: the out-of-band all-gather of the NCCL id failed");
      goto fail;
    }
    id = all[0];
    free(all);
    if (r == ncclSuccess) r = ncclCommInitRank(&c->nc, c->W, id, c->rank);
    if (r != ncclSuccess) {
      res = CPCL_SINK_ERR(errs, cpclSystemError, "nccl: ncclCommInitRank: %s (%s)", ncclGetErrorString(r),
                          ncclGetLastError(NULL));
      goto fail;
    }
    c->owned = 1;
  }
  *ctxOut = c;
  INFO(CPCL_NET, "nccl: rank %d of %d on %s NCCL communicator %p, control all-gather bounded by %d ms", c->rank, c->W,
       c->owned ? "its own" : "the engine's", (void*)c->nc, c->timeoutMs);
  return cpclSuccess;
fail:
  ncclFini(c);
  return res;
}

const cpclTransportOps_t cpclTransportNccl = {
    CPCL_TP_NO_HOST_P2P,
    CPCL_TP_NO_PEER_MAP,
    .name = "nccl",
    .memTypes = 1u << cpclMemCuda,
    .caps = CPCL_TP_CAP_CTRL | CPCL_TP_CAP_STREAM_XCHG | CPCL_TP_CAP_STREAM_P2P,
    .usable = ncclUsable,
    .init = ncclInit,
    .fini = ncclFini,
    .ctrlAllgather = ncclCtrlAllgather,
    .alltoallv = ncclAlltoallv,
    .waitFrom = ncclWaitFrom,
    .sendrecv = ncclSendrecv,
};
