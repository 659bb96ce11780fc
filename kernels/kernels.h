/*
 * kernels.h -- the compute of cpcl as plain parameter structs and launchers, one host (C
 * reference, also the CPU backend) and one CUDA implementation each. No communication, nothing
 * from src/ or transport/: pointers, shapes and strides only.
 *
 * Strides are in elements of the pointed-to type. Heads are addressed in blocks of
 * `headsPerBlock` (the H heads of one DCP rank), so one call can read queries laid out as
 * received from each peer and write each peer's partial straight into its send buffer:
 *
 *   q   (gathered head g, row t) = q   + (g / Hb) * qBlockStride   + t * qTokenStride   + (g % Hb) * headDimQk
 *   out (g, t)                   = out + (g / Hb) * oBlockStride   + t * oTokenStride   + (g % Hb) * headDimVo
 *   lse (g, t)                   = lse + (g / Hb) * lseBlockStride + t * lseTokenStride + (g % Hb)
 */
#ifndef CPCL_KERNELS_H_
#define CPCL_KERNELS_H_

#include <stddef.h>
#include <stdint.h>

#include "rank_limit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* element types: the values of cpclDataType_t */
enum { CPCL_K_BF16 = 0, CPCL_K_FP16 = 1, CPCL_K_FP32 = 2 };

#if defined(__CUDACC__)
__host__ __device__
#endif
    static inline size_t
    cpclKDtypeSize(int t) {
  return t == CPCL_K_FP32 ? 4 : 2;
}

/* Prefix attention with LSE over a paged local KV shard. Row t of sequence s (n rows) sits at
 * global position seqLens[s] - n + j and attends to this rank's local prefix of length
 * localLen(cpRank, position + 1). Rows with an empty prefix get out = 0, lse = -inf. */
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
  unsigned* splitCounters; /* CUDA: cpclCudaAttnCounterCount() zeros; kernels leave them zero */
  int splitChunkMin;       /* CUDA: keys per split at least (0: 512); fixed per plan */
  int pipelineStages;      /* CUDA tensor-core kernel: cp.async stages, 2 or 3 (0: 2) */
  int narrowOnly;          /* CUDA: 1 = 16 heads a CTA even for larger groups (tests compare) */
  int* errorFlag;          /* CUDA: cpclKError_t record of the first bad batch datum, or NULL */
  /* CUDA: when outBlock[0] is set, block j's out / lse start at outBlock[j] / lseBlock[j] (token
   * strides as above) instead of out + j * oBlockStride: the fused kernel stores each block's
   * partial straight into its owner's receive slot. */
  void* outBlock[CPCL_MAX_PARTS];
  float* lseBlock[CPCL_MAX_PARTS];
  /* CUDA: when qBlock[0] is set, block j's queries start at qBlock[j] (qTokenStride as above):
   * the fused kernel reads this rank's own block where the caller left it */
  const void* qBlock[CPCL_MAX_PARTS];
} cpclAttnParams_t;

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

/* Store of this step's new tokens into the local paged cache, owned tokens only. */
typedef struct {
  int numSeqs, numTokens;
  const int32_t* queryStart;
  const int32_t* seqLens;
  const int32_t* blockTable;
  int maxPagesPerSeq;
  int cpSize, cpRank, interleave;
  int pageSize, numKvHeads, headDimQk, headDimVo, latentKv, kvType;
  const void* kNew; /* [numTokens][numKvHeads][headDimQk] */
  const void* vNew; /* [numTokens][numKvHeads][headDimVo]; NULL when latentKv */
  void* kCache;
  void* vCache;
  int* errorFlag; /* CUDA: as in cpclAttnParams_t */
} cpclKvStoreParams_t;

/* Device-side validation (batch data in device memory cannot be checked by the host). A kernel
 * that meets a bad datum treats that row as empty (no key read, out = 0, lse = -inf; nothing
 * stored) and records the first such datum in errorFlag[5] = {code, seq, value, limit, claim}:
 * the claim word is taken with atomicCAS, the details written, then the code, with a system
 * fence, so a host that sees the code sees the details. */
typedef enum {
  CPCL_KERR_NONE = 0,
  CPCL_KERR_QUERY_START = 1, /* row not inside queryStart[seq] .. queryStart[seq + 1]: value, limit */
  CPCL_KERR_SEQ_LEN = 2,     /* seqLens[seq] = value is fewer than its limit query rows */
  CPCL_KERR_CAPACITY = 3,    /* local length value exceeds maxPagesPerSeq x pageSize = limit */
  CPCL_KERR_TIMEOUT = 4,     /* a wait on rank seq for epoch value saw only limit (cpclPeerSync_t) */
  CPCL_KERR_PAGE = 5         /* blockTable[seq][limit] = value is negative, among the pages a row walks */
} cpclKError_t;
#define CPCL_KERR_WORDS 5

/* ---- CUDA (kernels/cuda; stream is a cudaStream_t; return 0 or a cudaError_t) ---- */
#define CPCL_CUDA_MAX_SPLITS 64 /* KV splits a row may be cut into (maxSplits <= this) */
/* KV splits a row may be cut into for a plan of maxTokens rows of numHeads heads: up to
 * CPCL_CUDA_MAX_SPLITS, fewer when the split workspace would pass 256 MiB. Fixed per plan, so a
 * row's result never depends on the rest of its batch. */
int cpclCudaAttnMaxSplits(int maxTokens, int numHeads, int headDimVo);
/* bytes of split workspace the CUDA attention needs for maxTokens rows of numHeads heads */
size_t cpclCudaAttnWorkspaceBytes(int maxTokens, int numHeads, int headDimVo, int maxSplits);
/* counters the split merge needs (one per row, KV head and head chunk), zeroed once */
size_t cpclCudaAttnCounterCount(int maxTokens, int numHeads);
int cpclCudaAttn(const cpclAttnParams_t* p, void* stream);
int cpclCudaMerge(const cpclMergeParams_t* p, void* stream);
int cpclCudaCorrect(const cpclCorrectParams_t* p, void* stream);
int cpclCudaKvStore(const cpclKvStoreParams_t* p, void* stream);

/* ---- peer synchronisation on one node (CUDA: kernels/cuda/p2p.cu, fused.cuh) ----
 * Ranks see each other's buffers through peer pointers (CUDA IPC or NCCL windows) and
 * synchronise through flags in those buffers, with no host step:
 *   epoch     this rank's count of exchanges begun (device memory, advanced by the kernels)
 *   readyIn   [nranks], written by rank p: p has consumed every exchange before the value, so its
 *             buffers may be written again
 *   dataIn[k] [nranks], written by rank p: p's data of exchange `value` is in place (k: plain
 *             exchanges, the fused kernel's queries, its partials)
 * Values only grow, so buffers are reused without a reset, and a CUDA graph that replays the
 * launches advances the epoch on the device. Every wait is bounded by timeoutNs: one that
 * expires records CPCL_KERR_TIMEOUT in the plan's error flag and gives up (later waits give up at
 * once), so a dead or stalled peer costs one timeout, never a hang. */
enum { CPCL_SYNC_XCHG = 0, CPCL_SYNC_Q = 1, CPCL_SYNC_PART = 2, CPCL_SYNC_KINDS = 3 };
#define CPCL_SYNC_COUNTERS (8 + 3 * CPCL_MAX_PARTS) /* scratch counters and local epoch marks */
typedef struct {
  int nranks, rank;
  int* epoch;
  int* readyIn;
  int* dataIn[CPCL_SYNC_KINDS];
  int* readyOut[CPCL_MAX_PARTS];                 /* &readyIn[rank] as rank p maps it; NULL for self */
  int* dataOut[CPCL_SYNC_KINDS][CPCL_MAX_PARTS]; /* &dataIn[k][rank] as rank p maps it (self: own) */
  unsigned* counters;                            /* CPCL_SYNC_COUNTERS, local */
  unsigned long long timeoutNs;
} cpclPeerSync_t;

/* One stream-ordered exchange step: with `advance`, begin exchange E = epoch + 1 (tell every peer
 * this rank is ready for it, and count it at the end); copy each put (after its peer is ready)
 * and raise dataIn at that peer; then wait until every rank in waitMask has raised its flag to
 * E (the current epoch without advance). */
typedef struct {
  cpclPeerSync_t sync;
  int advance;
  int numPuts;
  const void* src[CPCL_MAX_PARTS];
  void* dst[CPCL_MAX_PARTS]; /* mapped address at the peer */
  size_t bytes[CPCL_MAX_PARTS];
  int peer[CPCL_MAX_PARTS];
  int firstBlock[CPCL_MAX_PARTS + 1]; /* set by the launcher */
  unsigned long long waitMask;        /* ranks whose data this launch waits for */
  int* errorFlag;
} cpclXchgParams_t;
int cpclCudaExchange(const cpclXchgParams_t* x, void* stream);

/* The fused decode (DESIGN.md §5), one kernel on each of the D ranks of a DCP group: CTAs take
 * tickets in launch order, and the first numPutCtas store this rank's queries into block dcpRank
 * of every peer's gathered queries and raise their flag; the next ones run the attention of
 * cpclCudaAttn over the gathered queries once their owner's flag is up, storing each head's
 * partial straight into its owner's receive slot (attn.outBlock) and raising the owner's flag
 * once a block is complete; the last numMergeCtas wait for the D partials of this rank's heads
 * and merge them (merge). A CTA waits only for work that CTAs with smaller tickets, here or at
 * the peers, have already taken, so the kernel cannot deadlock whatever the residency. */
typedef struct {
  cpclAttnParams_t attn; /* q = this rank's gathered queries; outBlock/lseBlock = owners' slots */
  cpclPeerSync_t sync;
  int dcpSize, dcpRank;
  const void* qSrc;
  size_t qBytes;                /* multiple of 16 */
  void* qDst[CPCL_MAX_PARTS];   /* block dcpRank of peer j's gathered queries (mapped) */
  cpclMergeParams_t merge;      /* this rank's D received partials -> out, lse */
  int numPutCtas, numMergeCtas; /* both 0 with one rank: the attention writes out/lse itself */
  int attnGrid[3];              /* set by the launcher */
} cpclFusedParams_t;
int cpclCudaFused(const cpclFusedParams_t* f, void* stream);

/* ---- host (C reference) ---- */
size_t cpclHostAttnWorkspaceBytes(int headDimQk, int headDimVo);
void cpclHostAttn(const cpclAttnParams_t* p);
void cpclHostMerge(const cpclMergeParams_t* p);
void cpclHostCorrect(const cpclCorrectParams_t* p);
void cpclHostKvStore(const cpclKvStoreParams_t* p);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_KERNELS_H_ */
