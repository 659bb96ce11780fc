/*
 * topk_params.h -- the top-k filter of sparse attention (DESIGN.md §4.3): each rank keeps the
 * listed global positions it owns and turns them into local key indices, so its attention walks
 * only what it owns. One host (kernels/host/topk_host.c) and one CUDA implementation
 * (kernels/cuda/topk.cu); the attention kernels read the result through
 * cpclAttnParams_t.sparseIdx / sparseCount.
 *
 * Row t (row j of the n rows of sequence s, position pos = seqLens[s] - n + j), entry k:
 *   p = topkIndices[t * topk + k]
 *   kept when 0 <= p <= pos and owner(p) == cpRank (kv_layout.h), seqLens[s] > 0
 *   localIdx[t * topk + c] = localIndex(p), c = the kept entries before it (list order kept)
 *   count[t] = kept entries of row t (0 .. topk)
 * Entries past count[t] are left as they were (never read). Duplicates are kept as listed.
 *
 * The compacted format is the one every sparse attention body reads, so it stays simple: one
 * int32 local index per key (its page is blockTable[s][idx / pageSize], slot idx % pageSize) and
 * one count per row, [maxTokens][topk] in the plan's workspace.
 */
#ifndef CPCL_TOPK_PARAMS_H_
#define CPCL_TOPK_PARAMS_H_

#include "params_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CPCL_MAX_TOPK 65536 /* desc.topk at most (DeepSeek-V3.2 uses 2048) */

typedef struct {
  int numSeqs;
  int numTokens;
  const int32_t* queryStart;  /* [numSeqs + 1] or NULL (one row per sequence) */
  const int32_t* seqLens;     /* [numSeqs] */
  int topk;                   /* K: entries per row, in and out */
  const int32_t* topkIndices; /* [numTokens][topk] global positions, -1 = none */
  int cpSize, cpRank, interleave;
  int32_t* localIdx; /* [numTokens][topk] out: local indices, the first count[t] of row t valid */
  int32_t* count;    /* [numTokens] out */
  int* errorFlag;    /* CUDA: cpclKError_t record of a bad queryStart / seqLens (row left empty) */
} cpclTopkFilterParams_t;
CPCL_KPARAM_CHECK(cpclTopkFilterParams_t, CPCL_KPARAM_BYTES);

/* bytes of workspace a plan of maxTokens rows and K = topk needs for the compacted lists */
static inline size_t cpclTopkWorkspaceBytes(int maxTokens, int topk) {
  return ((size_t)maxTokens * (size_t)topk + (size_t)maxTokens) * sizeof(int32_t);
}

/* CUDA: stream is a cudaStream_t; returns 0 or a cudaError_t. Launches nothing for 0 rows. */
int cpclCudaTopkFilter(const cpclTopkFilterParams_t* p, void* stream);
/* host (C reference, and the CPU backend's filter) */
void cpclHostTopkFilter(const cpclTopkFilterParams_t* p);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_TOPK_PARAMS_H_ */
