/*
 * topk_host.c -- the top-k filter of sparse attention on the host (topk_params.h): the C
 * reference of kernels/cuda/topk.cu, and the CPU backend's filter. One pass over each row's list,
 * keeping the owned, causal entries in list order.
 */
#include "kv_layout.h"
#include "topk_params.h"

void cpclHostTopkFilter(const cpclTopkFilterParams_t* p) {
  const int64_t K = p->topk;
  for (int s = 0; s < p->numSeqs; s++) {
    const int r0 = p->queryStart ? p->queryStart[s] : s;
    const int n = (p->queryStart ? p->queryStart[s + 1] : s + 1) - r0;
    const int64_t L = p->seqLens[s];
    for (int j = 0; j < n; j++) {
      const int64_t t = r0 + j, pos = L - n + j; /* padding (L == 0): pos < 0, nothing kept */
      const int32_t* in = p->topkIndices + t * K;
      int32_t* out = p->localIdx + t * K;
      int c = 0;
      for (int64_t k = 0; k < K; k++) {
        const int64_t g = in[k];
        if (g < 0 || g > pos || cpclKvOwner(g, p->cpSize, p->interleave) != p->cpRank) continue;
        out[c++] = (int32_t)cpclKvLocalIndex(g, p->cpSize, p->interleave);
      }
      p->count[t] = c;
    }
  }
}
