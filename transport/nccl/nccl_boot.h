/* nccl_boot.h -- how cpclCommInitNccl hands an engine's NCCL communicator to the nccl transport:
 * the communicator is created through cpclCommInitOob with an out-of-band all-gather that runs
 * over that NCCL communicator, and the transport recognises this shim and adopts it. */
#ifndef CPCL_NCCL_BOOT_H_
#define CPCL_NCCL_BOOT_H_

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "cpcl.h"

typedef struct {
  ncclComm_t nc;
  int nranks, rank, timeoutMs;
  cudaStream_t stream;
  char* buf;
  size_t cap;
} cpclNcclBoot_t;

/* the shim's all-gather (cpclOob_t.allgather), ctx = cpclNcclBoot_t */
int cpclNcclBootAllgather(const void* send, void* recv, size_t bytes, void* ctx);
/* the engine's communicator when oob is the shim, else NULL */
ncclComm_t cpclNcclBootComm(const cpclOob_t* oob);
/* blocking all-gather of host bytes over nc, bounded by timeoutMs (transport/nccl/nccl.c) */
cpclResult_t cpclNcclHostAllgather(ncclComm_t nc, int W, int timeoutMs, cudaStream_t stream, char** buf, size_t* cap,
                                   const void* send, void* recv, size_t bytes);

#endif /* CPCL_NCCL_BOOT_H_ */
