/*
 * kv_layout.h -- where a token of a sequence lives when W ranks shard the KV cache in runs of I
 * tokens (DESIGN.md §2). The one place this arithmetic is written; used by src/, the host
 * kernels and the CUDA kernels (hence CPCL_HD).
 *
 *   owner(p)       = (p / I) % W
 *   localIndex(p)  = (p / (W*I)) * I + p % I
 *   localLen(r, L) = (L / (W*I)) * I + clamp(L % (W*I) - r*I, 0, I)
 *
 * Local token i sits in page blockTable[seq][i / pageSize], slot i % pageSize. With
 * pageSize % I == 0 this is vLLM's slot mapping for cp_kv_cache_interleave_size = I.
 */
#ifndef CPCL_KV_LAYOUT_H_
#define CPCL_KV_LAYOUT_H_

#include <stdint.h>

#include "params_common.h" /* CPCL_HD */

CPCL_HD int cpclKvOwner(int64_t p, int W, int I) { return (int)((p / I) % W); }

CPCL_HD int64_t cpclKvLocalIndex(int64_t p, int W, int I) { return (p / ((int64_t)W * I)) * I + p % I; }

CPCL_HD int64_t cpclKvLocalLenOf(int64_t L, int W, int r, int I) {
  int64_t WI = (int64_t)W * I;
  int64_t rem = L % WI - (int64_t)r * I;
  rem = rem < 0 ? 0 : rem > I ? I : rem;
  return (L / WI) * I + rem;
}

#endif /* CPCL_KV_LAYOUT_H_ */
