/*
 * merge_params.h -- the merge of partial attention states and the correction of one partial
 * (kernels/host/merge_host.c, kernels/cuda/merge.cu). The merge arithmetic itself is written
 * once per language: kernels/host/merge_state.h and kernels/cuda/merge_state.cuh.
 */
#ifndef CPCL_MERGE_PARAMS_H_
#define CPCL_MERGE_PARAMS_H_

#include "params_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Merge of numParts partial states, in part order, fp32 (DESIGN.md §1):
 *   mode LSE: m = max lse_p; lse = m + log sum exp(lse_p - m); out = sum exp(lse_p - lse) o_p.
 *             Parts with lse = -inf are skipped (NaN-safe); all -inf gives out = 0, lse = -inf.
 *             o may be NULL (LSE only).
 *   mode SUM: out = sum o_p (the reduce of a reduce-scatter); lse ignored.
 * Each part has its own base pointer (a partial may sit in a receive slot or a send buffer):
 *   o(p, t, h)   = o[p]   + t * oTokenStride   + h * headDim
 *   lse(p, t, h) = lse[p] + t * lseTokenStride + h                                          */
enum { CPCL_MERGE_LSE = 0, CPCL_MERGE_SUM = 1 };
typedef struct {
  int mode;
  int numParts, numTokens, numHeads, headDim;
  int dtype; /* of o and out */
  int lseBase2;
  const void* o[CPCL_MAX_PARTS];
  int64_t oTokenStride;
  const float* lse[CPCL_MAX_PARTS];
  int64_t lseTokenStride;
  void* out; /* may be NULL in LSE mode (LSE only) */
  int64_t outTokenStride;
  float* outLse; /* may be NULL */
  int64_t outLseTokenStride;
} cpclMergeParams_t;
CPCL_KPARAM_CHECK(cpclMergeParams_t, CPCL_KPARAM_BYTES);

/* In-place correction of one partial (the engines' "correct" kernel of all-gather +
 * reduce-scatter): o(t, h) *= exp(lse(t, h) - lseGlobal(t, h)); 0 where lse = -inf. */
typedef struct {
  int numTokens, numHeads, headDim;
  int dtype, lseBase2;
  void* o;
  int64_t oTokenStride;
  const float* lse;
  int64_t lseTokenStride;
  const float* lseGlobal;
  int64_t lseGlobalTokenStride;
} cpclCorrectParams_t;
CPCL_KPARAM_CHECK(cpclCorrectParams_t, CPCL_KPARAM_BYTES);

/* CUDA: stream is a cudaStream_t; return 0 or a cudaError_t */
int cpclCudaMerge(const cpclMergeParams_t* p, void* stream);
int cpclCudaCorrect(const cpclCorrectParams_t* p, void* stream);

void cpclHostMerge(const cpclMergeParams_t* p);
void cpclHostCorrect(const cpclCorrectParams_t* p);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_MERGE_PARAMS_H_ */
