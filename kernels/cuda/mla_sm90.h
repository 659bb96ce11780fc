/*
 * mla_sm90.h -- C interface of the Hopper MLA decode body (mla_sm90.cuh has the index math).
 * Standalone: not yet called by cpclCudaAttn. The fields mirror cpcl::mla90::Params.
 * Measured on an H200 (docs/mla_sm90_h200.txt, docs/MLA_SM90.md): variant 4 was the fastest
 * schedule at 64 and 128 heads, variant 1 tied or led at 16 heads; every variant but the control
 * (2) passed the checks. Needs sm_90a (wgmma, setmaxnreg) and 222 KB of shared memory per CTA.
 */
#ifndef CPCL_CUDA_MLA_SM90_H_
#define CPCL_CUDA_MLA_SM90_H_

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int numSeqs, numTokens;
  const int32_t* queryStart; /* [numSeqs + 1] or NULL */
  const int32_t* seqLens;    /* [numSeqs] global lengths */
  const int32_t* blockTable; /* [numSeqs][maxPagesPerSeq] */
  int maxPagesPerSeq;
  int cpSize, cpRank, interleave;
  int pageSize;
  int numHeads;
  float smScale;
  int lseBase2;
  const void* q; /* bf16 [numTokens][qTokenStride], head h at h * 576 */
  int64_t qTokenStride;
  void* out; /* bf16, head h at h * 512 */
  int64_t oTokenStride;
  float* lse;
  int64_t lseTokenStride;
  int maxSplits, chunkMin;
  float* wsO;   /* [numTokens][numHeads][maxSplits][512] */
  float* wsLse; /* [numTokens][numHeads][maxSplits] */
} cpclMlaSm90Params_t;

/* tensor map over the latent cache [numPages][pageSize][576] bf16 (one KV head) */
int cpclMlaSm90KvMap(CUtensorMap* map, const void* kvCache, int64_t numPages, int pageSize);
/* the plan's split constants for maxTokens rows of numHeads heads on numSms multiprocessors */
void cpclMlaSm90Plan(int maxTokens, int numHeads, int numSms, int* maxSplits, int* chunkMin);
size_t cpclMlaSm90WorkspaceBytes(int maxTokens, int numHeads, int maxSplits);
/* Schedules (mla_sm90.cuh): 0 seesaw; 1 both warpgroups compute S; 2 = 1 with the V descriptor's
 * strides swapped (a control that must fail the check); 3 seesaw with warpgroup 1's S issued late;
 * 4 = 3 with per-tile TMA barriers (S starts when its first tile lands); 5 = 0 with per-tile
 * barriers; 6 = 1 with per-tile barriers. */
enum { kMlaSm90Variants = 7 };
int cpclMlaSm90Launch(const cpclMlaSm90Params_t* p, const CUtensorMap* kvMap, int variant, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_CUDA_MLA_SM90_H_ */
