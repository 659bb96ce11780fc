/* self.c -- the transport of a one-rank communicator: there is no peer to talk to, so it
 * declares no capability; the layers above never send to their own rank. */
#include "base/checks.h"
#include "transport.h"

static int selfUsable(void) { return 1; }

static cpclResult_t selfInit(const cpclTransportInitArgs_t* args, void** ctx) {
  if (args->nranks != 1)
    return CPCL_SINK_ERR(args->errors, cpclInvalidArgument, "transport \"self\" serves one rank, not %d", args->nranks);
  *ctx = NULL;
  INFO(CPCL_NET, "self: one rank, nothing to connect");
  return cpclSuccess;
}

static cpclResult_t selfFini(void* ctx) {
  (void)ctx;
  return cpclSuccess;
}

const cpclTransportOps_t cpclTransportSelf = {
    CPCL_TP_NO_HOST_P2P,
    CPCL_TP_NO_PEER_MAP,
    CPCL_TP_NO_CTRL,
    CPCL_TP_NO_STREAM_XCHG,
    CPCL_TP_NO_STREAM_P2P,
    .name = "self",
    .memTypes = (1u << cpclMemHost) | (1u << cpclMemCuda),
    .caps = 0,
    .usable = selfUsable,
    .init = selfInit,
    .fini = selfFini,
};
