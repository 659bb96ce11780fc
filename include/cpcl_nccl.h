/*
 * cpcl_nccl.h -- opt-in: build a cpcl communicator over an engine's existing NCCL communicator.
 * Installed only when cpcl is built with NCCL. Includes <nccl.h>.
 */
#ifndef CPCL_NCCL_H_
#define CPCL_NCCL_H_

#include <nccl.h>
#include "cpcl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates a cpcl communicator of the same ranks as `nccl` (rank and size taken from it), with
 * transfers issued on the NCCL communicator (stream-ordered, capturable in CUDA graphs).
 * Collective over `nccl`. config->memType must be cpclMemCuda. The NCCL communicator must
 * outlive the cpcl one; destroy CUDA graphs that captured cpcl calls before ncclCommDestroy.
 * The control plane (agreement at init and plan creation) is ncclAllGather on a private stream,
 * its wait bounded by timeoutMs. Schedules: agrs, a2a and pipelined (its partial exchange is one
 * grouped send/receive); fused needs peer-mapped memory ("ipc"), except with one rank.
 * Errors: as cpclCommInitOob. */
CPCL_API cpclResult_t cpclCommInitNccl(cpclComm_t* comm, ncclComm_t nccl, const cpclConfig_t* config);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_NCCL_H_ */
