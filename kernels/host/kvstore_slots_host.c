/* kvstore_slots_host.c -- the C reference of the KV store by slot (kvstore_slots_params.h). */
#include <string.h>

#include "kvstore_slots_params.h"

void cpclHostKvStoreSlots(const cpclKvSlotsParams_t* p) {
  const size_t es = p->elemBytes;
  for (int64_t t = 0; t < p->numTokens; t++) {
    const int64_t slot = p->slotMapping[t];
    if (slot < 0 || slot >= p->numSlots) continue; /* the caller rejected out-of-range slots */
    memcpy((char*)p->kCache + slot * p->kRowBytes, (const char*)p->kNew + t * p->kNewStride * es, p->kRowBytes);
    if (p->vNew)
      memcpy((char*)p->vCache + slot * p->vRowBytes, (const char*)p->vNew + t * p->vNewStride * es, p->vRowBytes);
  }
}
