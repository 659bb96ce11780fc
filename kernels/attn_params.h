/*
 * attn_params.h -- paged prefix attention with LSE over a local KV shard: one host (C reference,
 * also the CPU backend) and one CUDA implementation (kernels/host/attn_host.c,
 * kernels/cuda/attn*.cu).
 *
 * Strides are in elements of the pointed-to type. Heads are addressed in blocks of
 * `headsPerBlock` (the H heads of one DCP rank), so one call can read queries laid out as
 * received from each peer and write each peer's partial straight into its send buffer:
 *
 *   q   (gathered head g, row t) = q   + (g / Hb) * qBlockStride   + t * qTokenStride   + (g % Hb) * headDimQk
 *   out (g, t)                   = out + (g / Hb) * oBlockStride   + t * oTokenStride   + (g % Hb) * headDimVo
 *   lse (g, t)                   = lse + (g / Hb) * lseBlockStride + t * lseTokenStride + (g % Hb)
 */
#ifndef CPCL_ATTN_PARAMS_H_
#define CPCL_ATTN_PARAMS_H_

#include "params_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Row t of sequence s (n rows) sits at global position seqLens[s] - n + j and attends to this
 * rank's local prefix of length localLen(cpRank, position + 1) (kv_layout.h), or with sparseIdx
 * to its listed local keys. Rows with no key get out = 0, lse = -inf. */
typedef struct {
  int numSeqs;
  int numTokens;
  const int32_t* queryStart; /* [numSeqs + 1] or NULL (one row per sequence) */
  const int32_t* seqLens;    /* [numSeqs] */
  const int32_t* blockTable; /* [numSeqs][maxPagesPerSeq] */
  int maxPagesPerSeq;
  int cpSize, cpRank, interleave;
  int pageSize, numKvHeads, headDimQk, headDimVo, latentKv;
  int groupSize;           /* G: gathered head g reads KV head g / G */
  int headBegin, numHeads; /* gathered heads [headBegin, headBegin + numHeads) */
  int headsPerBlock;       /* Hb */
  float smScale;
  int lseBase2;
  int qType, kvType; /* q and out share qType */
  const void* q;
  int64_t qBlockStride, qTokenStride;
  const void* kCache; /* [pages][pageSize][numKvHeads][headDimQk] */
  const void* vCache; /* [pages][pageSize][numKvHeads][headDimVo]; NULL when latentKv */
  void* out;
  int64_t oBlockStride, oTokenStride;
  float* lse;
  int64_t lseBlockStride, lseTokenStride;
  void* workspace; /* host: scratch of cpclHostAttnWorkspaceBytes(); CUDA: split partials */
  size_t workspaceBytes;
  int maxSplits;           /* CUDA: most KV splits per row (fixed per plan: batch-invariant) */
  int cudaCoresOnly;       /* CUDA: 1 = skip the tensor-core kernel (tests compare the two) */
  unsigned* splitCounters; /* CUDA: cpclCudaAttnCounterCount() zeros (peer_sync.h); left zero */
  int splitChunkMin;       /* CUDA: keys per split at least (0: 512); fixed per plan */
  int pipelineStages;      /* CUDA tensor-core kernel: cp.async stages, 2 or 3 (0: 2) */
  int narrowOnly;          /* CUDA: 1 = 16 heads a CTA even for larger groups (tests compare) */
  /* CUDA: the Hopper MLA body (kernels/cuda/mla_sm90.h) with at most this many KV splits a row
   * (cpclCudaAttnMlaSm90Splits, fixed per plan), where it applies: bf16 MLA 576/512 on one KV
   * head, a page size it covers, a device of compute capability 9.0, not inside the fused kernel,
   * not cudaCoresOnly; 0 = never (the CUDA-core MLA body). Its split partials use the workspace
   * too (cpclCudaAttnMlaSm90WorkspaceBytes). */
  int mlaSm90Splits;
  /* CUDA: the Hopper GQA body (kernels/cuda/gqa_sm90.h) with at most this many KV splits a row
   * and chunks of at least gqaSm90ChunkMin keys (cpclCudaAttnGqaSm90Plan, fixed per plan), where
   * it applies: q, KV and out of one type, bf16 or fp16, Dqk == Dvo in {64, 128}, not latent, a
   * device of compute capability 9.0, not inside the fused kernel, not cudaCoresOnly; 0 = never
   * (the tensor-core or CUDA-core body). gqaSm90Workspace (fixed per plan): 1 = the splits (up to
   * 64) leave fp32 partials in the workspace (cpclCudaAttnGqaSm90WorkspaceBytes) and a second
   * kernel merges them; 2 = the same partials, merged by the split that finishes last, counted in
   * splitCounters (one kernel; the second kernel when splitCounters is NULL; the same bits as 1);
   * 0 = one thread-block cluster a row (up to 16 splits, no workspace, no counters). */
  int gqaSm90Splits, gqaSm90ChunkMin, gqaSm90Workspace;
  int* errorFlag; /* CUDA: cpclKError_t record of the first bad batch datum, or NULL */
  /* CUDA: when outBlock[0] is set, block j's out / lse start at outBlock[j] / lseBlock[j] (token
   * strides as above) instead of out + j * oBlockStride: the fused kernel stores each block's
   * partial straight into its owner's receive slot. */
  void* outBlock[CPCL_MAX_PARTS];
  float* lseBlock[CPCL_MAX_PARTS];
  /* CUDA: when qBlock[0] is set, block j's queries start at qBlock[j] (qTokenStride as above):
   * the fused kernel reads this rank's own block where the caller left it */
  const void* qBlock[CPCL_MAX_PARTS];
  /* Sparse attention (topk_params.h): when sparseIdx is set, row t attends to exactly the local
   * keys sparseIdx[t * sparseStride + k], k < sparseCount[t] (in that order; each an index into
   * the local shard, < the row's local prefix), instead of to its local prefix. The CUDA launcher
   * runs it on the Hopper MLA body's sparse form where mlaSm90Splits applies (outside the fused
   * kernel, not cudaCoresOnly), else on the CUDA-core body; never on the tensor-core bodies. */
  const int32_t* sparseIdx;
  const int32_t* sparseCount;
  int sparseStride;
  /* Sparse, filtered inside the attention (the Hopper MLA body's gathers 17, 18, 20 only;
   * CPCL_MLA_SM90_TOPK=1 plans, docs/MLA_SM90.md "Session 19"): when set, row t's list is
   * topkRaw[t * sparseStride + k] of global positions (the batch's topkIndices), and the body keeps
   * the filter kernel's entries itself (topk_own.cuh: listed, not past the row, owned by this rank),
   * in list order. sparseIdx and sparseCount are then its scratch, written by it: the kept local
   * indices of row t for head chunk c (64 heads of the call each) at sparseIdx[(t ceil(numHeads /
   * 64) + c) sparseStride ..], and row t's count at sparseCount[t]. Where the Hopper body does not take
   * the call, the CUDA launcher runs the filter kernel into that scratch first (row t at sparseIdx + t
   * sparseStride) and the CUDA-core body over it; the host body ignores it (the library sets it on
   * CUDA plans only). */
  const int32_t* topkRaw;
} cpclAttnParams_t;
CPCL_KPARAM_CHECK(cpclAttnParams_t, CPCL_KPARAM_BYTES);

/* ---- CUDA (stream is a cudaStream_t; return 0 or a cudaError_t) ---- */
#define CPCL_CUDA_MAX_SPLITS 64 /* KV splits a row may be cut into (maxSplits <= this) */
/* KV splits a row may be cut into for a plan of maxTokens rows of numHeads heads: up to
 * CPCL_CUDA_MAX_SPLITS, fewer when the split workspace would pass 256 MiB. Fixed per plan, so a
 * row's result never depends on the rest of its batch. */
int cpclCudaAttnMaxSplits(int maxTokens, int numHeads, int headDimVo);
/* bytes of split workspace the CUDA attention needs for maxTokens rows of numHeads heads */
size_t cpclCudaAttnWorkspaceBytes(int maxTokens, int numHeads, int headDimVo, int maxSplits);
/* counters the split merge needs (peer_sync.h, cpclSplitCounterCount), zeroed once */
size_t cpclCudaAttnCounterCount(int maxTokens, int numHeads);
/* The Hopper MLA body's KV splits for a plan of maxTokens rows of shape->numHeads heads on the
 * current device (shape: qType, kvType, latentKv, headDimQk/Vo, numKvHeads, pageSize, numHeads),
 * or 0 where the body does not apply (another shape, or not a compute capability 9.0 device):
 * the value of cpclAttnParams_t.mlaSm90Splits. */
int cpclCudaAttnMlaSm90Splits(const cpclAttnParams_t* shape, int maxTokens);
/* 1 when that body's grid for a plan of maxTokens rows of numHeads heads fits one wave of the
 * current device's SMs (one CTA an SM) */
int cpclCudaAttnMlaSm90OneWave(int maxTokens, int numHeads);
/* 1 when the Hopper MLA body's sparse schedule now (cpclMlaSm90SetSparseVariant /
 * CPCL_MLA_SM90_SPARSE) is a gather that filters inside the attention (topkRaw: 17, 18, 20) */
int cpclCudaMlaSm90SparseFilters(void);
/* The Hopper GQA body's most splits a row for a plan of maxTokens rows (shape: qType, kvType,
 * latentKv, headDimQk/Vo, numKvHeads, pageSize, numHeads = all gathered heads, groupSize or 0 for
 * numHeads / numKvHeads), with *chunkMin its chunk and *workspace its form, or 0 where the body
 * does not apply: the values of cpclAttnParams_t.gqaSm90Splits / gqaSm90ChunkMin /
 * gqaSm90Workspace. Raises the body's launch attributes on the current device (call it at plan
 * creation, outside any stream capture). */
int cpclCudaAttnGqaSm90Plan(const cpclAttnParams_t* shape, int maxTokens, int* chunkMin, int* workspace);
/* bytes of split workspace that body's workspace form needs for maxTokens rows of numHeads heads
 * of headDimVo dims in at most splits splits (0 for one split); form 2's arrival counters are the
 * plan's splitCounters (cpclCudaAttnCounterCount covers them), not part of this */
size_t cpclCudaAttnGqaSm90WorkspaceBytes(int maxTokens, int numHeads, int headDimVo, int splits);
/* bytes of split workspace that body needs for maxTokens rows of numHeads heads */
size_t cpclCudaAttnMlaSm90WorkspaceBytes(int maxTokens, int numHeads, int splits);
int cpclCudaAttn(const cpclAttnParams_t* p, void* stream);
/* The bf16 tensor-core rate the Hopper bodies can reach on the current device (kernel_perf's
 * matrix ceiling, next to the copy ceiling): every SM runs two warpgroups issuing back-to-back
 * wgmma m64n256k16 on shared-memory operands (the P V shape of the MLA body), timed with events.
 * *tflops is 0 and the result -1 on a device other than compute capability 9.0. */
int cpclCudaTensorRateProbe(double* tflops);

/* ---- host (C reference) ---- */
size_t cpclHostAttnWorkspaceBytes(int headDimQk, int headDimVo);
void cpclHostAttn(const cpclAttnParams_t* p);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_ATTN_PARAMS_H_ */
