/*
 * attn_instances.cuh -- the attention launchers attn.cu dispatches to, each explicitly
 * instantiated in its own file under inst/ (one per dtype pair, or per dtype and head dimension),
 * so the kernels compile in parallel and attn.cu sees no kernel body. f == nullptr: the attention
 * alone; otherwise the fused kernel around it.
 */
#ifndef CPCL_CUDA_ATTN_INSTANCES_CUH_
#define CPCL_CUDA_ATTN_INSTANCES_CUH_

#include <cuda_runtime.h>

#include "attn_params.h"
#include "fused_params.h"

namespace cpcl {

/* CUDA cores, any shape the dispatch macros cover (attn_split.cuh; inst/attn_split_<q>_<kv>.cu) */
template <typename TQ, typename TKV>
int launchSplit(const cpclAttnParams_t* p, const cpclFusedParams_t* f, cudaStream_t s);

/* tensor cores, qType == kvType == T, headDimQk == headDimVo == D (attn_mma.cuh;
 * inst/attn_mma_<t>_d<D>.cu) */
template <typename T, int D>
int launchMma(const cpclAttnParams_t* p, const cpclFusedParams_t* f, cudaStream_t s);

}  // namespace cpcl

/* Explicit instantiations, one line per file under inst/. */
#define CPCL_INSTANTIATE_SPLIT(TQ, TKV) \
  template int cpcl::launchSplit<TQ, TKV>(const cpclAttnParams_t*, const cpclFusedParams_t*, cudaStream_t)
#define CPCL_INSTANTIATE_MMA(T, D) \
  template int cpcl::launchMma<T, D>(const cpclAttnParams_t*, const cpclFusedParams_t*, cudaStream_t)

#endif /* CPCL_CUDA_ATTN_INSTANCES_CUH_ */
