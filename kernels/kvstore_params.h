/*
 * kvstore_params.h -- the store of this step's new tokens into the local paged cache, owned
 * tokens only (kv_layout.h): kernels/host/kvstore_host.c, kernels/cuda/kvstore.cu.
 */
#ifndef CPCL_KVSTORE_PARAMS_H_
#define CPCL_KVSTORE_PARAMS_H_

#include "params_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int numSeqs, numTokens;
  const int32_t* queryStart;
  const int32_t* seqLens;
  const int32_t* blockTable;
  int maxPagesPerSeq;
  int cpSize, cpRank, interleave;
  int pageSize, numKvHeads, headDimQk, headDimVo, latentKv, kvType;
  const void* kNew; /* [numTokens][numKvHeads][headDimQk] */
  const void* vNew; /* [numTokens][numKvHeads][headDimVo]; NULL when latentKv */
  void* kCache;
  void* vCache;
  int* errorFlag; /* CUDA: as in cpclAttnParams_t */
} cpclKvStoreParams_t;
CPCL_KPARAM_CHECK(cpclKvStoreParams_t, CPCL_KPARAM_BYTES);

/* CUDA: stream is a cudaStream_t; return 0 or a cudaError_t */
int cpclCudaKvStore(const cpclKvStoreParams_t* p, void* stream);
void cpclHostKvStore(const cpclKvStoreParams_t* p);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_KVSTORE_PARAMS_H_ */
