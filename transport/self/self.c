/* self.c -- the transport of a one-rank communicator: there is no peer to talk to, so every
 * transfer slot is unsupported; the layers above never send to their own rank. */
#include "comm.h"
#include "core.h"
#include "transport.h"

static int selfUsable(void) { return 1; }

static cpclResult_t selfInit(struct cpclComm* comm, const cpclOob_t* oob, void** ctx) {
  (void)oob;
  if (comm->nranks != 1)
    return CPCL_ERR(comm, cpclInvalidArgument, "transport \"self\" serves one rank, not %d", comm->nranks);
  *ctx = NULL;
  return cpclSuccess;
}

static cpclResult_t selfFini(void* ctx) {
  (void)ctx;
  return cpclSuccess;
}

static cpclResult_t selfProgress(void* ctx) {
  (void)ctx;
  return cpclSuccess;
}

const cpclTransportOps_t cpclTransportSelf = {
    .name = "self",
    .memTypes = (1u << cpclMemHost) | (1u << cpclMemCuda),
    .usable = selfUsable,
    .init = selfInit,
    .fini = selfFini,
    .isend = cpclTransportUnsupported,
    .irecv = cpclTransportUnsupported,
    .progress = selfProgress,
    .test = cpclTransportUnsupported,
    .cancel = cpclTransportUnsupported,
    .regMem = cpclTransportUnsupported,
    .deregMem = cpclTransportUnsupported,
    .peerPtr = cpclTransportUnsupported,
    .ctrlAllgather = cpclTransportUnsupported,
    .alltoallv = cpclTransportUnsupported,
    .waitFrom = cpclTransportUnsupported,
    .peerSync = cpclTransportUnsupported,
};
