/* ucx.c -- host-memory transport over UCP tagged messages (shared memory between processes of a
 * node, TCP or RDMA between nodes: UCX picks). Worker addresses travel through the caller's
 * out-of-band all-gather; endpoints use peer error handling, so a dead peer fails its requests
 * (cpclRemoteError) instead of hanging them. */
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>

#include "base/alloc.h"
#include "base/checks.h"
#include "transport.h"

typedef struct {
  int W;
  cpclErrorSink_t* errors;
  ucp_context_h context;
  ucp_worker_h worker;
  ucp_ep_h* eps;          /* [nranks], NULL for self */
  ucs_status_t* epStatus; /* [nranks]: UCS_OK until the peer fails */
  ucp_err_handling_mode_t errMode;
} ucxCtx_t;

static void epErrorCallback(void* arg, ucp_ep_h ep, ucs_status_t status) {
  (void)ep;
  ucs_status_t* slot = arg;
  *slot = status;
}

static int ucxUsable(void) {
  ucp_config_t* config = NULL;
  if (ucp_config_read(NULL, NULL, &config) != UCS_OK) return 0;
  ucp_params_t params = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_TAG};
  ucp_context_h ctx = NULL;
  ucs_status_t st = ucp_init(&params, config, &ctx);
  ucp_config_release(config);
  if (st != UCS_OK) return 0;
  ucp_cleanup(ctx);
  return 1;
}

static cpclResult_t ucxFini(void* p) {
  ucxCtx_t* u = p;
  if (u == NULL) return cpclSuccess;
  if (u->eps) {
    for (int i = 0; i < u->W; i++) {
      if (u->eps[i] == NULL) continue;
      /* Force-close: a flush would wait on peers that may be gone. Every operation of cpcl has
       * completed on both sides before it returns, so nothing in flight is lost. */
      ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE};
      ucs_status_ptr_t req = ucp_ep_close_nbx(u->eps[i], &prm);
      if (UCS_PTR_IS_PTR(req)) {
        for (int spin = 0; spin < 1000000 && ucp_request_check_status(req) == UCS_INPROGRESS; spin++)
          ucp_worker_progress(u->worker);
        ucp_request_free(req);
      }
    }
  }
  if (u->worker) ucp_worker_destroy(u->worker);
  if (u->context) ucp_cleanup(u->context);
  free(u->eps);
  free(u->epStatus);
  free(u);
  return cpclSuccess;
}

static cpclResult_t ucxInit(const cpclTransportInitArgs_t* args, void** ctxOut) {
  cpclResult_t res = cpclSuccess;
  ucxCtx_t* u = NULL;
  ucp_address_t* addr = NULL;
  size_t addrLen = 0;
  size_t* lens = NULL;
  char* addrs = NULL;
  const int W = args->nranks;
  const cpclOob_t* oob = args->oob;
  cpclErrorSink_t* errs = args->errors;
  ucp_config_t* config = NULL;

  CPCLCHECKGOTO(cpclCallocSink(errs, &u, 1, sizeof(*u), "ucx context"), res, fail);
  u->W = W;
  u->errors = errs;
  CPCLCHECKGOTO(cpclCallocSink(errs, &u->eps, (size_t)W, sizeof(ucp_ep_h), "ucx endpoints"), res, fail);
  CPCLCHECKGOTO(cpclCallocSink(errs, &u->epStatus, (size_t)W, sizeof(ucs_status_t), "ucx endpoint status"), res, fail);

  ucs_status_t st = ucp_config_read(NULL, NULL, &config);
  if (st != UCS_OK) {
    res = CPCL_SINK_ERR(errs, cpclSystemError, "ucx: ucp_config_read failed: %s", ucs_status_string(st));
    goto fail;
  }
  ucp_params_t params = {.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED,
                         .features = UCP_FEATURE_TAG,
                         .mt_workers_shared = 0};
  st = ucp_init(&params, config, &u->context);
  ucp_config_release(config);
  if (st != UCS_OK) {
    res = CPCL_SINK_ERR(errs, cpclSystemError, "ucx: ucp_init failed: %s", ucs_status_string(st));
    goto fail;
  }
  ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE, .thread_mode = UCS_THREAD_MODE_SINGLE};
  st = ucp_worker_create(u->context, &wp, &u->worker);
  if (st != UCS_OK) {
    res = CPCL_SINK_ERR(errs, cpclSystemError, "ucx: ucp_worker_create failed: %s", ucs_status_string(st));
    goto fail;
  }
  st = ucp_worker_get_address(u->worker, &addr, &addrLen);
  if (st != UCS_OK) {
    res = CPCL_SINK_ERR(errs, cpclSystemError, "ucx: ucp_worker_get_address failed: %s", ucs_status_string(st));
    goto fail;
  }

  /* two OOB rounds: the address lengths, then the addresses padded to the longest */
  CPCLCHECKGOTO(cpclCallocSink(errs, &lens, (size_t)W, sizeof(size_t), "ucx address lengths"), res, fail);
  if (oob->allgather(&addrLen, lens, sizeof(size_t), oob->ctx) != 0) {
    res = CPCL_SINK_ERR(errs, cpclSystemError, "ucx: the out-of-band all-gather of address lengths failed");
    goto fail;
  }
  size_t maxLen = 0;
  for (int i = 0; i < W; i++) maxLen = CPCL_MAX(maxLen, lens[i]);
  char* mine = NULL;
  CPCLCHECKGOTO(cpclCallocSink(errs, &mine, maxLen, 1, "ucx address"), res, fail);
  memcpy(mine, addr, addrLen);
  res = cpclCallocSink(errs, &addrs, (size_t)W, maxLen, "ucx addresses");
  if (res == cpclSuccess && oob->allgather(mine, addrs, maxLen, oob->ctx) != 0)
    res = CPCL_SINK_ERR(errs, cpclSystemError, "ucx: the out-of-band all-gather of worker addresses failed");
  free(mine);
  if (res != cpclSuccess) goto fail;

  /* Peer error handling restricts UCX to transports that can report a dead peer, which on some
   * builds leaves only TCP (and loopback TCP may be refused). Shared memory without it is the
   * better default; dead peers are then found by the wait loop's liveness checks. */
  u->errMode = UCP_ERR_HANDLING_MODE_NONE;
  for (int i = 0; i < W; i++) {
    if (i == args->rank) continue;
    u->epStatus[i] = UCS_OK;
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLER,
                          .address = (const ucp_address_t*)(addrs + (size_t)i * maxLen),
                          .err_mode = u->errMode,
                          .err_handler = {.cb = epErrorCallback, .arg = &u->epStatus[i]}};
    st = ucp_ep_create(u->worker, &ep, &u->eps[i]);
    if (st != UCS_OK) {
      res = CPCL_SINK_ERR(errs, cpclSystemError, "ucx: ucp_ep_create to rank %d failed: %s", i, ucs_status_string(st));
      goto fail;
    }
  }
  ucp_worker_release_address(u->worker, addr);
  addr = NULL;
  free(lens);
  free(addrs);
  *ctxOut = u;
  INFO(CPCL_NET,
       "ucx: rank %d connected to %d peers (worker address %zu bytes, no peer error handling: dead peers are found by "
       "the liveness checks)",
       args->rank, W - 1, addrLen);
  return cpclSuccess;
fail:
  if (addr) ucp_worker_release_address(u->worker, addr);
  free(lens);
  free(addrs);
  ucxFini(u);
  return res;
}

static cpclResult_t ucxPost(ucxCtx_t* u, int peer, ucs_status_ptr_t sp, cpclRequest_t* req, const char* what) {
  if (UCS_PTR_IS_ERR(sp))
    return CPCL_SINK_ERR(u->errors, cpclRemoteError, "ucx: %s with rank %d failed: %s", what, peer,
                         ucs_status_string(UCS_PTR_STATUS(sp)));
  req->handle = sp; /* NULL: completed in place */
  req->peer = peer;
  req->active = 1;
  return cpclSuccess;
}

static cpclResult_t ucxIsend(void* ctx, int peer, uint64_t tag, const void* buf, size_t bytes, cpclRequest_t* req,
                             cpclStream_t stream) {
  (void)stream;
  ucxCtx_t* u = ctx;
  if (u->epStatus[peer] != UCS_OK)
    return CPCL_SINK_ERR(u->errors, cpclRemoteError, "ucx: rank %d has failed: %s", peer,
                         ucs_status_string(u->epStatus[peer]));
  ucp_request_param_t prm = {.op_attr_mask = 0};
  return ucxPost(u, peer, ucp_tag_send_nbx(u->eps[peer], buf, bytes, tag, &prm), req, "send");
}

static cpclResult_t ucxIrecv(void* ctx, int peer, uint64_t tag, void* buf, size_t bytes, cpclRequest_t* req,
                             cpclStream_t stream) {
  (void)stream;
  ucxCtx_t* u = ctx;
  ucp_request_param_t prm = {.op_attr_mask = 0};
  return ucxPost(u, peer, ucp_tag_recv_nbx(u->worker, buf, bytes, tag, (ucp_tag_t)-1, &prm), req, "receive");
}

static cpclResult_t ucxProgress(void* ctx) {
  ucxCtx_t* u = ctx;
  ucp_worker_progress(u->worker);
  return cpclSuccess;
}

static cpclResult_t ucxTest(void* ctx, cpclRequest_t* req, int* done) {
  ucxCtx_t* u = ctx;
  *done = 0;
  if (req->handle == NULL) {
    *done = 1;
    return cpclSuccess;
  }
  ucs_status_t st = ucp_request_check_status(req->handle);
  if (st == UCS_INPROGRESS) {
    /* a receive from a dead peer never completes by itself: the endpoint's status says so */
    if (req->peer >= 0 && u->epStatus[req->peer] != UCS_OK)
      return CPCL_SINK_ERR(u->errors, cpclRemoteError, "ucx: rank %d has failed: %s", req->peer,
                           ucs_status_string(u->epStatus[req->peer]));
    return cpclSuccess;
  }
  ucp_request_free(req->handle);
  req->handle = NULL;
  if (st != UCS_OK)
    return CPCL_SINK_ERR(u->errors, cpclRemoteError, "ucx: transfer with rank %d failed: %s", req->peer,
                         ucs_status_string(st));
  *done = 1;
  return cpclSuccess;
}

static cpclResult_t ucxCancel(void* ctx, cpclRequest_t* req) {
  ucxCtx_t* u = ctx;
  if (req->handle) {
    ucp_request_cancel(u->worker, req->handle);
    ucp_request_free(req->handle);
    req->handle = NULL;
  }
  req->active = 0;
  return cpclSuccess;
}

const cpclTransportOps_t cpclTransportUcx = {
    CPCL_TP_NO_PEER_MAP,
    CPCL_TP_NO_CTRL,
    CPCL_TP_NO_STREAM_XCHG,
    CPCL_TP_NO_STREAM_P2P,
    .name = "ucx",
    .memTypes = 1u << cpclMemHost,
    .caps = CPCL_TP_CAP_HOST_P2P,
    .usable = ucxUsable,
    .init = ucxInit,
    .fini = ucxFini,
    .isend = ucxIsend,
    .irecv = ucxIrecv,
    .progress = ucxProgress,
    .test = ucxTest,
    .cancel = ucxCancel,
};
