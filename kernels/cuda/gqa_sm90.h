/*
 * gqa_sm90.h -- parameters and launcher of the Hopper GQA decode body (gqa_sm90.cuh). Plain C.
 */
#ifndef CPCL_CUDA_GQA_SM90_H_
#define CPCL_CUDA_GQA_SM90_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int numSeqs, numTokens;
  const int32_t* queryStart; /* [numSeqs + 1] or NULL: one row per sequence */
  const int32_t* seqLens;    /* [numSeqs] global lengths, this step's rows included */
  const int32_t* blockTable; /* [numSeqs][maxPagesPerSeq] local page ids */
  int maxPagesPerSeq;
  int cpSize, cpRank, interleave; /* KV sharding (DESIGN.md §2); 1, 0, 1 on one rank */
  int pageSize;                   /* any >= 1 */
  int numHeads, numKvHeads;       /* H (rows of q, out, lse) and Hkv; H % Hkv == 0 */
  int headDim;                    /* 64 or 128 (Qk == Vo) */
  int dtype;                      /* 0 bf16, 1 fp16: q, K, V and out */
  float smScale;
  int lseBase2;
  const void* q; /* q + t * qTokenStride + h * headDim (elements) */
  int64_t qTokenStride;
  const void* kCache; /* [pages][pageSize][numKvHeads][headDim] */
  const void* vCache;
  void* out; /* out + t * oTokenStride + h * headDim */
  int64_t oTokenStride;
  float* lse; /* lse + t * lseTokenStride + h; may be NULL */
  int64_t lseTokenStride;
  /* plan constants: a row's splits depend on its own length and these only (batch-invariant) */
  int clusterSplits; /* CL: most splits of a row, the cluster size, 1..16 */
  int chunkMin;      /* fewest keys a split is cut to before CL caps the count; a multiple of 64 */
  int stages;        /* shared-memory stages of 64 keys, 2..16 */
  int copyMode;      /* how the producer warp fills a stage: 0 16-byte cp.async (any page size),
                      * 1 one cp.async.bulk per K/V row (issue-bound, kept to measure),
                      * 2 TMA tensor boxes (needs maps; pageSize % 8 == 0 and 64 % pageSize == 0
                      *   or pageSize % 64 == 0) */
} GqaParams;

/* The TMA tensor maps of the K and V caches (copyMode 2): 128-byte CUtensorMap objects, made
 * once per cache (pointer, numPages, pageSize, Hkv, headDim, dtype), passed by value to the kernel. */
typedef struct {
  uint64_t words[2][16];
} GqaKvMaps;
/* 0 or a cudaError_t; -1: not covered (page size) */
int cpclGqaSm90KvMaps(GqaKvMaps* maps, const GqaParams* p, int64_t numPages);

/* 0 or a cudaError_t; -1: shape not covered (dtype, headDim, group, splits). maps: NULL unless
 * copyMode == 2. */
int cpclGqaSm90Decode(const GqaParams* p, const GqaKvMaps* maps, void* stream);
/* bytes of dynamic shared memory one CTA takes (0 when not covered) */
size_t cpclGqaSm90SmemBytes(const GqaParams* p);
/* clusters of this launch the device holds at once (cudaOccupancyMaxActiveClusters); < 0: error */
int cpclGqaSm90MaxActiveClusters(const GqaParams* p);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_CUDA_GQA_SM90_H_ */
