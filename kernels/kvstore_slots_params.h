/* kvstore_slots_params.h -- the KV store by slot (vLLM's reshape_and_cache_flash slot_mapping): row t
 * of the new K/V goes to slot slotMapping[t] of the paged cache (page slot / pageSize, offset
 * slot % pageSize), or nowhere when slotMapping[t] < 0. A raw copy: the cache has the rows'
 * dtype. Rows of the sources may be strided (views into an engine's fused qkv buffer); each row
 * [numKvHeads][headDim] is contiguous. */
#ifndef CPCL_KVSTORE_SLOTS_PARAMS_H_
#define CPCL_KVSTORE_SLOTS_PARAMS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int64_t numTokens;
  const int64_t* slotMapping; /* [numTokens]; < 0 skips the row */
  int64_t numSlots;           /* pages x pageSize: slots at or past it are skipped (CUDA) */
  const void* kNew;           /* row t at kNew + t * kNewStride elements, [numKvHeads][headDimQk] */
  const void* vNew;           /* row t at vNew + t * vNewStride elements, [numKvHeads][headDimVo]; NULL when latentKv */
  int64_t kNewStride, vNewStride;
  void* kCache; /* [numSlots][numKvHeads][headDimQk] */
  void* vCache; /* [numSlots][numKvHeads][headDimVo]; NULL when latentKv */
  size_t kRowBytes, vRowBytes, elemBytes;
  int copyUnit; /* CUDA: bytes per copy (16, 8, 4 or 2), dividing every address, stride and row */
} cpclKvSlotsParams_t;

void cpclHostKvStoreSlots(const cpclKvSlotsParams_t* p);
int cpclCudaKvStoreSlots(const cpclKvSlotsParams_t* p, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_KVSTORE_SLOTS_PARAMS_H_ */
