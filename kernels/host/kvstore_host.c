/* kvstore_host.c -- this step's new K/V rows into the local paged cache, owned tokens only
 * (kv_layout.h). A raw copy: the cache has the new tokens' dtype. */
#include <string.h>

#include "kv_layout.h"
#include "kvstore_params.h"

void cpclHostKvStore(const cpclKvStoreParams_t* p) {
  const size_t es = cpclKDtypeSize(p->kvType);
  const size_t kRow = (size_t)p->numKvHeads * p->headDimQk * es, vRow = (size_t)p->numKvHeads * p->headDimVo * es;
  for (int s = 0; s < p->numSeqs; s++) {
    const int r0 = p->queryStart ? p->queryStart[s] : s;
    const int n = (p->queryStart ? p->queryStart[s + 1] : s + 1) - r0;
    for (int j = 0; j < n; j++) {
      const int64_t pos = (int64_t)p->seqLens[s] - n + j;
      if (pos < 0 || cpclKvOwner(pos, p->cpSize, p->interleave) != p->cpRank) continue;
      const int64_t li = cpclKvLocalIndex(pos, p->cpSize, p->interleave);
      const int64_t slot =
          (int64_t)p->blockTable[(int64_t)s * p->maxPagesPerSeq + li / p->pageSize] * p->pageSize + li % p->pageSize;
      memcpy((char*)p->kCache + slot * kRow, (const char*)p->kNew + (int64_t)(r0 + j) * kRow, kRow);
      if (!p->latentKv) memcpy((char*)p->vCache + slot * vRow, (const char*)p->vNew + (int64_t)(r0 + j) * vRow, vRow);
    }
  }
}
