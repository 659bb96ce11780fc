/*
 * exchange_params.h -- one stream-ordered exchange step between ranks of one node
 * (kernels/cuda/p2p.cu): the device transports' all-to-all without the host.
 */
#ifndef CPCL_EXCHANGE_PARAMS_H_
#define CPCL_EXCHANGE_PARAMS_H_

#include "peer_sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* With `advance`, begin exchange E = epoch + 1 (tell every peer this rank is ready for it, and
 * count it at the end); copy each put (after its peer is ready) and raise data[CPCL_SYNC_XCHG]
 * at that peer; then wait until every rank in waitMask has raised its flag to E (the current
 * epoch without advance). */
typedef struct {
  cpclPeerSync_t sync;
  int advance;
  int numPuts;
  const void* src[CPCL_MAX_PARTS];
  void* dst[CPCL_MAX_PARTS]; /* mapped address at the peer */
  size_t bytes[CPCL_MAX_PARTS];
  int peer[CPCL_MAX_PARTS];
  int firstBlock[CPCL_MAX_PARTS + 1]; /* set by the launcher */
  unsigned long long waitMask;        /* ranks whose data this launch waits for */
  int* errorFlag;
} cpclXchgParams_t;
/* over 4096 bytes with the peer tables: needs CUDA >= 12.1 (kernels/cuda/meson.build checks) */
CPCL_KPARAM_CHECK(cpclXchgParams_t, CPCL_KPARAM_BYTES_LARGE);

/* stream is a cudaStream_t; returns 0 or a cudaError_t */
int cpclCudaExchange(const cpclXchgParams_t* x, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_EXCHANGE_PARAMS_H_ */
