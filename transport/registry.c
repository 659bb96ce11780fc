/* registry.c -- the list of transports (compiled in or not), the stubs of the slots a transport
 * leaves out, and the check that a table's capabilities match its slots. */
#include <stdio.h>
#include <string.h>

#include "base/checks.h"
#include "transport.h"

static cpclResult_t unsupported(const char* slot) {
  return CPCL_SINK_ERR(NULL, cpclUnsupported, "this transport does not support %s", slot);
}

cpclResult_t cpclTransportUnsupportedIsend(void* ctx, int peer, uint64_t tag, const void* buf, size_t bytes,
                                           cpclRequest_t* req, cpclStream_t stream) {
  (void)ctx, (void)peer, (void)tag, (void)buf, (void)bytes, (void)req, (void)stream;
  return unsupported("isend (tagged host messages)");
}
cpclResult_t cpclTransportUnsupportedIrecv(void* ctx, int peer, uint64_t tag, void* buf, size_t bytes,
                                           cpclRequest_t* req, cpclStream_t stream) {
  (void)ctx, (void)peer, (void)tag, (void)buf, (void)bytes, (void)req, (void)stream;
  return unsupported("irecv (tagged host messages)");
}
cpclResult_t cpclTransportUnsupportedProgress(void* ctx) {
  (void)ctx;
  return unsupported("progress (tagged host messages)");
}
cpclResult_t cpclTransportUnsupportedTest(void* ctx, cpclRequest_t* req, int* done) {
  (void)ctx, (void)req, (void)done;
  return unsupported("test (tagged host messages)");
}
cpclResult_t cpclTransportUnsupportedCancel(void* ctx, cpclRequest_t* req) {
  (void)ctx, (void)req;
  return unsupported("cancel (tagged host messages)");
}
cpclResult_t cpclTransportUnsupportedRegMem(void* ctx, void* buf, size_t bytes, void** handle) {
  (void)ctx, (void)buf, (void)bytes, (void)handle;
  return unsupported("regMem (peer-mapped buffers)");
}
cpclResult_t cpclTransportUnsupportedDeregMem(void* ctx, void* handle) {
  (void)ctx, (void)handle;
  return unsupported("deregMem (peer-mapped buffers)");
}
cpclResult_t cpclTransportUnsupportedPeerPtr(void* ctx, void* handle, int peer, void** ptr) {
  (void)ctx, (void)handle, (void)peer, (void)ptr;
  return unsupported("peerPtr (peer-mapped buffers)");
}
cpclResult_t cpclTransportUnsupportedPeerSync(void* ctx, cpclPeerSync_t* sync) {
  (void)ctx, (void)sync;
  return unsupported("peerSync (peer-mapped buffers)");
}
cpclResult_t cpclTransportUnsupportedCtrlAllgather(void* ctx, const void* send, void* recv, size_t bytes) {
  (void)ctx, (void)send, (void)recv, (void)bytes;
  return unsupported("ctrlAllgather (a control plane)");
}
cpclResult_t cpclTransportUnsupportedAlltoallv(void* ctx, const cpclXfer_t* x) {
  (void)ctx, (void)x;
  return unsupported("alltoallv (stream-ordered exchange)");
}
cpclResult_t cpclTransportUnsupportedWaitFrom(void* ctx, int peer, int* errorFlag, cpclStream_t stream) {
  (void)ctx, (void)peer, (void)errorFlag, (void)stream;
  return unsupported("waitFrom (stream-ordered exchange)");
}
cpclResult_t cpclTransportUnsupportedSendrecv(void* ctx, int sendPeer, const void* sendbuf, size_t sendBytes,
                                              int recvPeer, void* recvbuf, size_t recvBytes, int* errorFlag,
                                              cpclStream_t stream) {
  (void)ctx, (void)sendPeer, (void)sendbuf, (void)sendBytes, (void)recvPeer, (void)recvbuf, (void)recvBytes,
      (void)errorFlag, (void)stream;
  return unsupported("sendrecv (stream-ordered send/receive)");
}

/* One slot of a table: whether it is wired (not its stub, and not NULL). */
typedef struct {
  const char* name;
  unsigned cap;
  int wired;
  int null;
} slotState_t;

int cpclTransportCheckCaps(const cpclTransportOps_t* t, char* msg, size_t msgLen) {
#define SLOT(field, capBit, stub) \
  { #field, capBit, t->field != NULL && t->field != stub, t->field == NULL }
  const slotState_t slots[] = {
      SLOT(isend, CPCL_TP_CAP_HOST_P2P, cpclTransportUnsupportedIsend),
      SLOT(irecv, CPCL_TP_CAP_HOST_P2P, cpclTransportUnsupportedIrecv),
      SLOT(progress, CPCL_TP_CAP_HOST_P2P, cpclTransportUnsupportedProgress),
      SLOT(test, CPCL_TP_CAP_HOST_P2P, cpclTransportUnsupportedTest),
      SLOT(cancel, CPCL_TP_CAP_HOST_P2P, cpclTransportUnsupportedCancel),
      SLOT(regMem, CPCL_TP_CAP_PEER_MAP, cpclTransportUnsupportedRegMem),
      SLOT(deregMem, CPCL_TP_CAP_PEER_MAP, cpclTransportUnsupportedDeregMem),
      SLOT(peerPtr, CPCL_TP_CAP_PEER_MAP, cpclTransportUnsupportedPeerPtr),
      SLOT(peerSync, CPCL_TP_CAP_PEER_MAP, cpclTransportUnsupportedPeerSync),
      SLOT(ctrlAllgather, CPCL_TP_CAP_CTRL, cpclTransportUnsupportedCtrlAllgather),
      SLOT(alltoallv, CPCL_TP_CAP_STREAM_XCHG, cpclTransportUnsupportedAlltoallv),
      SLOT(waitFrom, CPCL_TP_CAP_STREAM_XCHG, cpclTransportUnsupportedWaitFrom),
      SLOT(sendrecv, CPCL_TP_CAP_STREAM_P2P, cpclTransportUnsupportedSendrecv),
  };
#undef SLOT
  const unsigned known =
      CPCL_TP_CAP_HOST_P2P | CPCL_TP_CAP_CTRL | CPCL_TP_CAP_STREAM_XCHG | CPCL_TP_CAP_PEER_MAP | CPCL_TP_CAP_STREAM_P2P;
  if (t->caps & ~known) {
    snprintf(msg, msgLen, "transport \"%s\" declares unknown capability bits 0x%x", t->name, t->caps & ~known);
    return -1;
  }
  if (t->usable == NULL || t->init == NULL || t->fini == NULL) {
    snprintf(msg, msgLen, "transport \"%s\" leaves usable, init or fini NULL", t->name);
    return -1;
  }
  for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
    const slotState_t* s = &slots[i];
    const int declared = (t->caps & s->cap) != 0;
    if (s->null) {
      snprintf(msg, msgLen, "transport \"%s\" leaves %s NULL: point it at its cpclTransportUnsupported stub", t->name,
               s->name);
      return -1;
    }
    if (declared != s->wired) {
      snprintf(msg, msgLen, "transport \"%s\" %s the capability of %s but %s it", t->name,
               declared ? "declares" : "does not declare", s->name, s->wired ? "wires" : "does not wire");
      return -1;
    }
  }
  msg[0] = 0;
  return 0;
}

const cpclTransportEntry_t cpclTransports[] = {
    {"self", &cpclTransportSelf},
#ifdef CPCL_HAVE_UCX
    {"ucx", &cpclTransportUcx},
#else
    {"ucx", NULL},
#endif
#ifdef CPCL_HAVE_NCCL
    {"nccl", &cpclTransportNccl},
#else
    {"nccl", NULL},
#endif
#ifdef CPCL_HAVE_CUDA
    {"ipc", &cpclTransportIpc},
#else
    {"ipc", NULL},
#endif
};
const int cpclNumTransports = sizeof(cpclTransports) / sizeof(cpclTransports[0]);

const cpclTransportEntry_t* cpclTransportFind(const char* name) {
  for (int i = 0; i < cpclNumTransports; i++)
    if (strcmp(cpclTransports[i].name, name) == 0) return &cpclTransports[i];
  return NULL;
}

CPCL_API cpclResult_t cpclGetTransportInfo(int index, const char** name, int* compiledIn, int* usable) {
  if (index < 0 || index >= cpclNumTransports)
    return CPCL_SINK_ERR(NULL, cpclInvalidArgument, "index %d is not a transport (0..%d)", index,
                         cpclNumTransports - 1);
  const cpclTransportEntry_t* e = &cpclTransports[index];
  if (name) *name = e->name;
  if (compiledIn) *compiledIn = e->ops != NULL;
  if (usable) *usable = e->ops != NULL && e->ops->usable();
  return cpclSuccess;
}
