/* attn_ext.c -- per-step entry points for engine bindings (python/cpcl, cpcl.vllm): the KV store
 * by slot mapping, the form vLLM's reshape_and_cache_flash takes. Purely local, like cpclKvStore. */
#include <limits.h>
#include <stdint.h>

#include "core.h"
#include "kvstore_slots_params.h"
#include "plan.h"

#ifdef CPCL_HAVE_CUDA
static int64_t gcdOf(int64_t a, int64_t b) {
  while (b) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}
#endif

/* The store itself, arguments checked: the host reference or the CUDA kernel. */
static cpclResult_t storeSlots(cpclAttnPlan_t plan, int64_t numTokens, const int64_t* slotMapping, const void* kNew,
                               const void* vNew, int64_t kNewRowStride, int64_t vNewRowStride, void* kCache,
                               void* vCache, int64_t numSlots, size_t es, cpclStream_t stream) {
  struct cpclComm* c = plan->comm;
  const cpclAttnDesc_t* d = &plan->desc;
  const int64_t kElems = (int64_t)d->numKvHeads * d->headDimQk, vElems = (int64_t)d->numKvHeads * d->headDimVo;
  cpclKvSlotsParams_t p = {.numTokens = numTokens,
                           .slotMapping = slotMapping,
                           .numSlots = numSlots,
                           .kNew = kNew,
                           .vNew = d->latentKv ? NULL : vNew,
                           .kNewStride = kNewRowStride,
                           .vNewStride = vNewRowStride,
                           .kCache = kCache,
                           .vCache = d->latentKv ? NULL : vCache,
                           .kRowBytes = (size_t)kElems * es,
                           .vRowBytes = (size_t)vElems * es,
                           .elemBytes = es};
  if (c->memType == cpclMemHost) {
    cpclHostKvStoreSlots(&p);
    return cpclSuccess;
  }
#ifdef CPCL_HAVE_CUDA
  /* the widest copy that every address, stride and row size allows */
  int64_t g = gcdOf((int64_t)(uintptr_t)kNew, (int64_t)(uintptr_t)kCache);
  g = gcdOf(g, kNewRowStride * (int64_t)es);
  g = gcdOf(g, (int64_t)p.kRowBytes);
  if (!d->latentKv) {
    g = gcdOf(g, (int64_t)(uintptr_t)vNew);
    g = gcdOf(g, (int64_t)(uintptr_t)vCache);
    g = gcdOf(g, vNewRowStride * (int64_t)es);
    g = gcdOf(g, (int64_t)p.vRowBytes);
  }
  p.copyUnit = g % 16 == 0 ? 16 : g % 8 == 0 ? 8 : g % 4 == 0 ? 4 : 2;
  const int err = cpclCudaKvStoreSlots(&p, stream);
  if (err != 0)
    return CPCL_ERR(c, cpclUnhandledCudaError, "cpclKvStoreSlots: KV slot store kernel failed (cuda error %d)", err);
  return cpclSuccess;
#else
  return CPCL_ERR(c, cpclUnsupported, "cpclKvStoreSlots: CUDA memory, but this library was built without CUDA");
#endif
}

CPCL_API cpclResult_t cpclKvStoreSlots(cpclAttnPlan_t plan, int64_t numTokens, const int64_t* slotMapping,
                                       const void* kNew, const void* vNew, int64_t kNewRowStride, int64_t vNewRowStride,
                                       void* kCache, void* vCache, int64_t numPages, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclKvStoreSlots: plan is NULL");
  struct cpclComm* c = plan->comm;
  const cpclAttnDesc_t* d = &plan->desc;
  if (numTokens < 0 || numTokens > INT_MAX)
    return CPCL_ERR(c, cpclInvalidArgument, "cpclKvStoreSlots: numTokens is %lld: it must be in [0, %d]",
                    (long long)numTokens, INT_MAX);
  if (numTokens == 0) return cpclSuccess;
  if (slotMapping == NULL || kNew == NULL || kCache == NULL)
    return CPCL_ERR(c, cpclInvalidArgument, "cpclKvStoreSlots: slotMapping (%p), kNew (%p) and kCache (%p) are needed",
                    (const void*)slotMapping, kNew, kCache);
  if (!d->latentKv && (vNew == NULL || vCache == NULL))
    return CPCL_ERR(c, cpclInvalidArgument, "cpclKvStoreSlots: vNew (%p) and vCache (%p) are needed (latentKv = 0)",
                    vNew, vCache);
  if (numPages < 1) return CPCL_ERR(c, cpclInvalidArgument, "cpclKvStoreSlots: numPages is %lld", (long long)numPages);
  const int64_t kElems = (int64_t)d->numKvHeads * d->headDimQk, vElems = (int64_t)d->numKvHeads * d->headDimVo;
  if (kNewRowStride == 0) kNewRowStride = kElems;
  if (vNewRowStride == 0) vNewRowStride = vElems;
  if (kNewRowStride < kElems)
    return CPCL_ERR(c, cpclInvalidArgument,
                    "cpclKvStoreSlots: kNewRowStride is %lld elements, less than a row (numKvHeads x headDimQk = %lld)",
                    (long long)kNewRowStride, (long long)kElems);
  if (!d->latentKv && vNewRowStride < vElems)
    return CPCL_ERR(c, cpclInvalidArgument,
                    "cpclKvStoreSlots: vNewRowStride is %lld elements, less than a row (numKvHeads x headDimVo = %lld)",
                    (long long)vNewRowStride, (long long)vElems);
  const size_t es = cpclKDtypeSize(d->kvType);
  const int64_t numSlots = numPages * d->pageSize;
  if (c->memType == cpclMemHost) {
    /* every slot is checked before anything is written: a bad mapping changes nothing */
    for (int64_t t = 0; t < numTokens; t++)
      if (slotMapping[t] >= numSlots)
        return CPCL_ERR(c, cpclInvalidArgument,
                        "cpclKvStoreSlots: slotMapping[%lld] is %lld, past the cache (numPages %lld x pageSize %d)",
                        (long long)t, (long long)slotMapping[t], (long long)numPages, d->pageSize);
  }
  /* as every operation (op.c): an aborted or broken communicator refuses it, and bad device
   * data an earlier step's kernels met is reported here, once */
  CPCLCHECK(cpclCommEnter(c, "cpclKvStoreSlots"));
  cpclResult_t res = cpclPlanDeviceError(plan, 1);
  if (res == cpclSuccess)
    res = storeSlots(plan, numTokens, slotMapping, kNew, vNew, kNewRowStride, vNewRowStride, kCache, vCache, numSlots,
                     es, stream);
  cpclCommLeave(c);
  return res;
}
