/* comm_nccl.c -- cpclCommInitNccl: a communicator over an engine's NCCL communicator. The
 * generic init (cpclCommInitAdopt) runs with an out-of-band all-gather made of ncclAllGather on
 * that communicator (so no other bootstrap is needed), and hands the communicator to the nccl
 * transport to adopt instead of creating one. */
#include <string.h>

#include "base/checks.h"
#include "base/param.h"
#include "cpcl_nccl.h"
#include "nccl_boot.h"
#include "transport.h"

/* the out-of-band all-gather of cpclCommInitNccl (cpclOob_t.allgather), ctx = cpclNcclBoot_t */
static int bootAllgather(const void* send, void* recv, size_t bytes, void* ctx) {
  cpclNcclBoot_t* b = ctx;
  return cpclNcclHostAllgather(b->nc, b->nranks, b->timeoutMs, b->stream, &b->buf, &b->cap, send, recv, bytes) ==
                 cpclSuccess
             ? 0
             : 1;
}

CPCL_API cpclResult_t cpclCommInitNccl(cpclComm_t* comm, ncclComm_t nccl, const cpclConfig_t* config) {
  if (comm == NULL) return CPCL_SINK_ERR(NULL, cpclInvalidArgument, "comm is NULL");
  if (nccl == NULL) return CPCL_SINK_ERR(NULL, cpclInvalidArgument, "nccl is NULL");
  if (config && config->size != sizeof(cpclConfig_t))
    return CPCL_SINK_ERR(NULL, cpclInvalidArgument, "config->size is %zu, expected %zu: use CPCL_CONFIG_INITIALIZER",
                         config->size, sizeof(cpclConfig_t));
  if (config && config->transport && config->transport[0] && strcmp(config->transport, "nccl") != 0)
    return CPCL_SINK_ERR(NULL, cpclInvalidArgument, "config->transport is \"%.32s\": cpclCommInitNccl uses \"nccl\"",
                         config->transport);
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  if (config) cfg = *config;
  cfg.transport = "nccl";
  cpclNcclBoot_t boot;
  memset(&boot, 0, sizeof(boot));
  boot.nc = nccl;
  ncclResult_t r = ncclCommCount(nccl, &boot.nranks);
  if (r == ncclSuccess) r = ncclCommUserRank(nccl, &boot.rank);
  if (r != ncclSuccess)
    return CPCL_SINK_ERR(NULL, cpclInvalidArgument, "nccl: the communicator's rank and size: %s",
                         ncclGetErrorString(r));
  boot.timeoutMs = cfg.timeoutMs > 0 ? cfg.timeoutMs : (int)CPCL_MIN(cpclParamInt(CPCL_PARAM_TIMEOUT_MS), 1 << 30);
  if (boot.timeoutMs <= 0) boot.timeoutMs = CPCL_DEFAULT_TIMEOUT_MS;
  if (cudaStreamCreateWithFlags(&boot.stream, cudaStreamNonBlocking) != cudaSuccess)
    return CPCL_SINK_ERR(NULL, cpclUnhandledCudaError, "cpclCommInitNccl: creating a stream failed");
  cpclOob_t oob = {.allgather = bootAllgather, .ctx = &boot, .rank = boot.rank, .nranks = boot.nranks};
  cpclResult_t res = cpclCommInitAdopt(comm, &oob, &cfg, nccl);
  cudaStreamSynchronize(boot.stream);
  if (boot.buf) cudaFree(boot.buf);
  cudaStreamDestroy(boot.stream);
  return res;
}
