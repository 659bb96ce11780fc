/*
 * gqa_sm90.h -- parameters and launcher of the Hopper GQA decode body (gqa_sm90.cuh). Plain C.
 * GqaParams is the body's own view (the standalone bench fills it); the library's path
 * (cpclGqaSm90Attn, attn.cu) fills it from cpclAttnParams_t and the plan's split constants.
 */
#ifndef CPCL_CUDA_GQA_SM90_H_
#define CPCL_CUDA_GQA_SM90_H_

#include <stddef.h>
#include <stdint.h>

#include "attn_params.h"
#include "fused_params.h"

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
  int numHeads, numKvHeads;       /* heads of this call and the cache's KV heads */
  int groupSize;                  /* G: head g reads KV head g / G (0: numHeads / numKvHeads) */
  int headBegin;                  /* heads [headBegin, headBegin + numHeads) of the G x Hkv */
  int headsPerBlock;              /* Hb of the block layout below (0: numHeads, one block) */
  int headDim;                    /* 64 or 128 (Qk == Vo) */
  int dtype;                      /* 0 bf16, 1 fp16: q, K, V and out */
  float smScale;
  int lseBase2;
  /* head g, row t (elements): q + (g / Hb) * qBlockStride + t * qTokenStride + (g % Hb) * headDim,
   * out and lse alike (attn_params.h) */
  const void* q;
  int64_t qBlockStride, qTokenStride;
  const void* kCache; /* [pages][pageSize][numKvHeads][headDim] */
  const void* vCache;
  void* out;
  int64_t oBlockStride, oTokenStride;
  float* lse; /* may be NULL */
  int64_t lseBlockStride, lseTokenStride;
  int* errorFlag; /* cpclKError_t record of the first bad batch datum (params_common.h), or NULL */
  /* plan constants: a row's splits depend on its own length and these only (batch-invariant) */
  int clusterSplits; /* CL: most splits of a row, the cluster size, 1..16 (1..64 unclustered, wsO) */
  int chunkMin;      /* fewest keys a split is cut to before CL caps the count; a multiple of 64 */
  int stages;        /* shared-memory stages of 64 keys, 2..16 */
  int copyMode;      /* how the producer warp fills a stage: 0 16-byte cp.async (any page size),
                      * 1 one cp.async.bulk per K/V row (issue-bound, kept to measure),
                      * 2 TMA tensor boxes (needs maps; pageSize % 8 == 0 and 64 % pageSize == 0
                      *   or pageSize % 64 == 0) */
  int consumer;      /* 0: 4 mma.sync warps; 1: one wgmma warpgroup (G > 32 heads a KV head, TMA
                      * copies only; the library takes it wherever it applies) */
  int pdl;           /* 1: a programmatic dependent launch (its prologue overlaps the previous
                      * kernel's tail; the bench's variant P: within noise on the H200, off in the
                      * library) */
  /* Workspace merge (variant "S", the library's form where the plan says so): when wsO is set, the CTAs
   * are not clustered and clusterSplits may be 1 .. 64; a row of ns > 1 splits leaves split j's
   * normalised fp32 partial at wsO[(u * clusterSplits + j) * headDim] and its base-2 LSE at
   * wsLse[u * clusterSplits + j] (NaN: the split met a bad page), u = t * numHeads + g - headBegin,
   * and a second kernel (a programmatic dependent) merges them into out / lse. Bytes:
   * cpclGqaSm90WorkspaceBytes. */
  float* wsO;
  float* wsLse;
  /* The tail merge (variant "F", with wsO): arrival counters, one per (row, KV head, head block)
   * of the launch, cpclGqaSm90CounterCount of them, zero before the launch and left zero after it.
   * Each split CTA of a row of ns > 1 splits stores its partial as above, then counts itself in;
   * the ns-th to arrive merges the unit's partials (the same operations as the merge kernel, so the same
   * bits), re-arms the counter, and no merge kernel is launched. NULL: the merge kernel. */
  unsigned* wsCount;
  /* The fused kernel's split merge (gqa_sm90_fused.cu, with wsCount, for the plans whose partials
   * are too many for one CTA's tail): the ns-th arrival of a unit re-arms its count and stores the
   * unit's head count in wsReady[t * grid y + by] instead of merging; wsMergeCtas CTAs after the
   * attention ones (the launcher's count, at most the room cpclGqaSm90Fused gives in it) merge a head a warp once the
   * word is set, in gqaMergeKernel's order (the same bits), each warp counting its head out again, so the word is zero
   * after the launch. NULL: the tail merge. */
  unsigned* wsReady;
  int wsMergeCtas;
  /* 1: the TMA boxes of K and V carry an L2 evict-first policy (each byte is read once a step);
   * 0: no policy (docs/GQA_SM90.md "Session 15"). Time only: the bits are the same. */
  int l2Hint;
} GqaParams;

/* The diagnostic timeline's table (GQA90_MARK in gqa_sm90.cuh; built in with CPCL_GQA_TRACE only):
 * CPCL_GQA_TRACE_SLOTS rows of CPCL_GQA_TRACE_MARKS global-timer values, attention CTAs at their
 * linear block index, merge CTAs from CPCL_GQA_TRACE_MERGE on */
#define CPCL_GQA_TRACE_SLOTS 2048
#define CPCL_GQA_TRACE_MERGE 1024
#define CPCL_GQA_TRACE_MARKS 16

/* The TMA tensor maps of the K and V caches (copyMode 2): 128-byte CUtensorMap objects, made
 * once per cache (pointer, numPages, pageSize, Hkv, headDim, dtype), passed by value to the kernel. */
typedef struct {
  uint64_t words[2][16];
} GqaKvMaps;
/* 0 or a cudaError_t; -1: not covered (page size). Any upper bound of the page count works (TMA
 * checks coordinates against the extent only). */
int cpclGqaSm90KvMaps(GqaKvMaps* maps, const GqaParams* p, int64_t numPages);
/* page sizes the TMA copy mode covers: a multiple of 8 dividing 64, or a multiple of 64 */
int cpclGqaSm90TmaPageSizeOk(int pageSize);

/* 0 or a cudaError_t; -1: shape not covered (dtype, headDim, group, splits). maps: NULL unless
 * copyMode == 2. */
int cpclGqaSm90Decode(const GqaParams* p, const GqaKvMaps* maps, void* stream);
/* bytes of the workspace (wsO, then wsLse) of numTokens rows of numHeads heads and clusterSplits
 * splits */
size_t cpclGqaSm90WorkspaceBytes(const GqaParams* p);
/* arrival counters (wsCount) the tail merge of this launch indexes: numTokens x KV heads x head
 * blocks; at most cpclSplitCounterCount(numTokens, numHeads) (peer_sync.h), the library's buffer */
size_t cpclGqaSm90CounterCount(const GqaParams* p);
/* bytes of dynamic shared memory one CTA takes (0 when not covered) */
size_t cpclGqaSm90SmemBytes(const GqaParams* p);
/* clusters of this launch the device holds at once (cudaOccupancyMaxActiveClusters); < 0: error */
int cpclGqaSm90MaxActiveClusters(const GqaParams* p);

/* The library's path (attn.cu): -1 when p does not take this body (p->gqaSm90Splits == 0, another
 * shape or dtype, block bases (qBlock / outBlock), or a device other than compute capability 9.0),
 * else the launch's result: TMA copies where the page size and the caches' alignment allow (the
 * maps cached per cache), cp.async otherwise; wgmma consumers where a head block is 64 heads wide
 * (more than 32 of a group in the call) and the copies are TMA; with p->gqaSm90Workspace the
 * splits merge through p->workspace (cpclCudaAttnGqaSm90WorkspaceBytes): 1 in the merge kernel, 2
 * in the last split's tail with p->splitCounters as the arrival counters (the merge kernel when
 * splitCounters is NULL: the same bits), else (0) in a cluster. */
int cpclGqaSm90Attn(const cpclAttnParams_t* p, void* stream);
/* The same body inside the fused decode kernel (fused_params.h; attn.cu's cpclCudaFused): -1 where
 * cpclGqaSm90Attn would not take f->attn, or where the plan merges a row's splits in a cluster
 * (gqaSm90Workspace 0) or has no splitCounters for a row of several splits (the fused kernel then
 * keeps the tensor-core body), else the launch's result. The splits merge where the plan's form
 * says: in the last one's tail (2) or in split-merge CTAs after the attention ones (1; the same
 * bits), q / out / lse through f->attn's qBlock / outBlock / lseBlock. */
int cpclGqaSm90Fused(const cpclFusedParams_t* f, void* stream);
/* the plan's split constants for maxTokens rows of groupSize heads a KV head over numKvHeads KV
 * heads of headDim dims on a device of numSms SMs: CL (the most splits of a row), chunkMin, and
 * *workspace: 0 clusters, 1 the workspace merge in a second kernel, 2 the workspace merge in the
 * last split's tail (wsCount). A function of these alone, never of a batch (the rule: gqa_sm90.cu,
 * docs/GQA_SM90.md "Session 3b", "Session 4" and "Session 4b"); the merge's place never changes CL or chunkMin,
 * so forms 1 and 2 give the same bits. CPCL_GQA_SM90_MERGE=kernel|tail forces form 1 or 2 where
 * the rule says 1 or 2 (read once per process; the bench's and kernel_perf's side-by-side timing). */
void cpclGqaSm90Plan(int maxTokens, int numKvHeads, int groupSize, int headDim, int numSms, int* clusterSplits,
                     int* chunkMin, int* workspace);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_CUDA_GQA_SM90_H_ */
