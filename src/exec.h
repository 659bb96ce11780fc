/* exec.h -- the compute side of a schedule: a table of kernel launchers and memory helpers,
 * one per memory type (host now, CUDA next), so each schedule is written once (UCC's executor
 * pattern). Launchers are stream-ordered on CUDA and synchronous on the host. */
#ifndef CPCL_EXEC_H_
#define CPCL_EXEC_H_

#include <stddef.h>

#include "attn_params.h"
#include "cpcl.h"
#include "fused_params.h"
#include "kvstore_params.h"
#include "merge_params.h"

struct cpclComm;

typedef struct cpclExecOps {
  const char* name;
  cpclResult_t (*alloc)(struct cpclComm* comm, void* ptrOut, size_t bytes, const char* what);
  void (*free)(void* ptr);
  /* bytes of workspace the attention kernel needs for a plan of maxTokens rows of numHeads heads,
   * and the KV splits a row may be cut into (1 where the kernel does not split) */
  size_t (*attnWorkspaceBytes)(int maxTokens, int numHeads, int headDimQk, int headDimVo, int* maxSplits);
  cpclResult_t (*attend)(const cpclAttnParams_t* p, cpclStream_t stream);
  cpclResult_t (*merge)(const cpclMergeParams_t* p, cpclStream_t stream);
  cpclResult_t (*correct)(const cpclCorrectParams_t* p, cpclStream_t stream);
  cpclResult_t (*kvStore)(const cpclKvStoreParams_t* p, cpclStream_t stream);
  /* height rows of width bytes, from src (row pitch spitch) to dst (row pitch dpitch) */
  cpclResult_t (*copy2d)(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cpclStream_t stream);
  /* the fused decode kernel (fused_params.h); unsupported on the host */
  cpclResult_t (*fused)(const cpclFusedParams_t* p, cpclStream_t stream);
} cpclExecOps_t;

extern const cpclExecOps_t cpclExecHost;
#ifdef CPCL_HAVE_CUDA
extern const cpclExecOps_t cpclExecCuda;
/* CPCL_KERR_WORDS ints of host memory mapped into the device, zeroed: the kernels' record of bad
 * batch data (params_common.h, cpclKError_t), read by the host without synchronising. */
cpclResult_t cpclCudaErrorFlagAlloc(struct cpclComm* comm, int** hostPtr, int** devPtr);
void cpclCudaErrorFlagFree(int* hostPtr);
#endif

#endif /* CPCL_EXEC_H_ */
