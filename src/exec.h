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
#include "prefill_params.h"
#include "topk_params.h"

struct cpclComm;

/* The parts of a staging area a step wrote: height rows of width bytes, pitch apart, from off. */
typedef struct {
  size_t off, pitch, width, height;
} cpclStageRange_t;

typedef struct cpclExecOps {
  const char* name;
  cpclResult_t (*alloc)(struct cpclComm* comm, void* ptrOut, size_t bytes, const char* what);
  void (*free)(void* ptr);
  /* bytes of workspace the attention kernel needs for a plan of desc's shape, maxTokens rows of
   * numHeads gathered heads, and the plan's constants: the KV splits a row may be cut into (1
   * where the kernel does not split), the Hopper MLA body's (attn_params.h mlaSm90Splits; 0
   * where the plan does not run it) and the Hopper GQA body's (gqaSm90Splits / gqaSm90ChunkMin /
   * gqaSm90Workspace; 0 where the plan does not run it) */
  size_t (*attnWorkspaceBytes)(const cpclAttnDesc_t* d, int maxTokens, int numHeads, int* maxSplits, int* mlaSm90Splits,
                               int* gqaSm90Splits, int* gqaSm90ChunkMin, int* gqaSm90Workspace);
  /* The attention body a plan of desc's shape runs as a launch of its own, which the fused kernel
   * cannot host (it keeps another body), or NULL when the fused kernel runs the same body. */
  const char* (*attnOwnBody)(const cpclAttnDesc_t* d, int numHeads);
  cpclResult_t (*attend)(const cpclAttnParams_t* p, cpclStream_t stream);
  cpclResult_t (*merge)(const cpclMergeParams_t* p, cpclStream_t stream);
  cpclResult_t (*correct)(const cpclCorrectParams_t* p, cpclStream_t stream);
  cpclResult_t (*kvStore)(const cpclKvStoreParams_t* p, cpclStream_t stream);
  /* height rows of width bytes, from src (row pitch spitch) to dst (row pitch dpitch) */
  cpclResult_t (*copy2d)(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cpclStream_t stream);
  /* the fused decode kernel (fused_params.h); unsupported on the host */
  cpclResult_t (*fused)(const cpclFusedParams_t* p, cpclStream_t stream);
  /* zeroes bytes at ptr and returns once that is done (peers may store into the buffer as soon
   * as it is registered): workspace carved from a caller's buffer */
  cpclResult_t (*zeroSync)(struct cpclComm* comm, void* ptr, size_t bytes, const char* what);
  /* unsigned counters the attention kernel of a plan of maxTokens rows of numHeads heads needs,
   * zeroed once; 0 when it needs none */
  size_t (*attnCounterCount)(int maxTokens, int numHeads);
  /* the kernels' record of bad batch data (kernels.h, CPCL_KERR_WORDS ints, zeroed), readable by
   * the host without synchronising; both NULL where kernels check nothing on the device */
  cpclResult_t (*errorFlagAlloc)(struct cpclComm* comm, int** hostPtr, int** devPtr);
  void (*errorFlagFree)(int* hostPtr);
  /* prefill (prefill_params.h): bytes of scratch the prefill kernel needs (0 where it is not
   * built); the causal attention over new K/V blocks and the cache shard, with the store of the
   * blocks' owned rows when p->storeK is set */
  size_t (*prefillWorkspaceBytes)(int headDimQk, int headDimVo);
  cpclResult_t (*prefill)(const cpclPrefillParams_t* p, cpclStream_t stream);
  /* sparse attention: each row's owned top-k keys as local indices (topk_params.h) */
  cpclResult_t (*topkFilter)(const cpclTopkFilterParams_t* p, cpclStream_t stream);
  /* 1 when the attention of a sparse plan of desc's shape (maxTokens rows, numHeads gathered heads)
   * filters the rows' top-k lists itself (attn_params.h topkRaw), so a step runs no topkFilter; NULL
   * or 0: it does not */
  int (*topkInAttention)(const cpclAttnDesc_t* d, int maxTokens, int numHeads);
  /* Host-built arrays the kernels read (the prefill layout), `bytes` of them per step: stageBegin
   * gives this step's host area to fill, stageEnd the kernels' view of it once it is there (the
   * host: the same memory; CUDA: a device copy, made on stream). The CUDA stager alternates two
   * pinned areas and, before rewriting one, waits for its copy of two steps ago (so the host runs
   * up to a step ahead without waiting); a stream under graph capture gets a third area of its
   * own, which the graph reads at every replay. */
  cpclResult_t (*stageAlloc)(struct cpclComm* comm, size_t bytes, void** stager);
  void (*stageFree)(void* stager);
  cpclResult_t (*stageBegin)(void* stager, cpclStream_t stream, void** host);
  cpclResult_t (*stageEnd)(void* stager, cpclStream_t stream, const cpclStageRange_t* ranges, int numRanges,
                           const void** kernelView);
  /* A second stream of the stager's plan, so a transfer runs while stream computes: sideFork
   * gives a stream that starts after all of stream's work so far, sideJoin makes stream wait for
   * everything issued on it since (events; capturable: a fork and join inside a graph). The host:
   * the same stream, nothing to do. */
  cpclResult_t (*sideFork)(void* stager, cpclStream_t stream, cpclStream_t* side);
  cpclResult_t (*sideJoin)(void* stager, cpclStream_t stream);
} cpclExecOps_t;

extern const cpclExecOps_t cpclExecHost;
/* The executor of memType, or NULL when cpcl was built without it (CUDA). */
const cpclExecOps_t* cpclExecOf(cpclMemType_t memType);
#ifdef CPCL_HAVE_CUDA
extern const cpclExecOps_t cpclExecCuda;
/* CPCL_KERR_WORDS ints of host memory mapped into the device, zeroed: the kernels' record of bad
 * batch data (params_common.h, cpclKError_t), read by the host without synchronising. */
cpclResult_t cpclCudaErrorFlagAlloc(struct cpclComm* comm, int** hostPtr, int** devPtr);
void cpclCudaErrorFlagFree(int* hostPtr);
#endif

#endif /* CPCL_EXEC_H_ */
