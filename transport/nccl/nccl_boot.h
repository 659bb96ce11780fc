/* nccl_boot.h -- what cpclCommInitNccl (comm_nccl.c) shares with the nccl transport (nccl.c):
 * the communicator is created with an out-of-band all-gather that runs over the engine's NCCL
 * communicator, which the transport then adopts (cpclTransportInitArgs_t.adopt). */
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

/* blocking all-gather of host bytes over nc, bounded by timeoutMs (transport/nccl/nccl.c) */
cpclResult_t cpclNcclHostAllgather(ncclComm_t nc, int W, int timeoutMs, cudaStream_t stream, char** buf, size_t* cap,
                                   const void* send, void* recv, size_t bytes);

#endif /* CPCL_NCCL_BOOT_H_ */
