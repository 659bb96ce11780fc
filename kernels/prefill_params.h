/*
 * prefill_params.h -- causal attention with LSE for prefill: query rows at known global
 * positions against blocks of new K/V rows at known global positions and, optionally, this
 * rank's shard of the paged cache. One plain struct for the host reference (kernels/host/
 * prefill_host.c) and the CUDA kernel; pointers, shapes and strides only, nothing from src/.
 *
 * Row t of sequence s (queryStart[s] <= t < queryStart[s+1]) sits at queryPos[t] and attends to
 * every key of s whose global position is <= queryPos[t], among:
 *   (a) rows kv[b].rowStart[s] .. kv[b].rowStart[s+1]-1 of each block b (positions kv[b].pos),
 *   (b) when cacheLens is set: the local cache tokens i < localLen(cpRank, cacheLens[s]), whose
 *       global positions are (i / I) * W * I + cpRank * I + i % I (DESIGN.md §2).
 * out is normalised over those keys and lse = log sum exp(s) over them; a row that sees none
 * gets out = 0, lse = -inf, so partials of disjoint key sets merge exactly (cpclMergeParams_t).
 * Positions need not be contiguous (PCP head-tail chunks are not); within a sequence they
 * increase, which lets the kernel skip whole key tiles past a query tile.
 *
 * Heads are addressed in blocks of headsPerBlock as in cpclAttnParams_t, so gathered queries
 * can be read and partials written where they are sent (strides in elements):
 *   q   (head g, row t) = q   + (g / Hb) * qBlockStride   + t * qTokenStride   + (g % Hb) * headDimQk
 *   out (g, t)          = out + (g / Hb) * oBlockStride   + t * oTokenStride   + (g % Hb) * headDimVo
 *   lse (g, t)          = lse + (g / Hb) * lseBlockStride + t * lseTokenStride + (g % Hb)
 * Head g reads KV head g / groupSize. K/V rows: k + row * numKvHeads * headDimQk + kh * headDimQk.
 */
#ifndef CPCL_PREFILL_PARAMS_H_
#define CPCL_PREFILL_PARAMS_H_

#include <stddef.h>
#include <stdint.h>

#include "params_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CPCL_PREFILL_MAX_BLOCKS 64 /* K/V blocks one call attends to (one per PCP rank, at most) */

/* One block of new K/V rows, sequence-major, e.g. what one PCP rank holds of every sequence. */
typedef struct {
  const void* k;           /* [rows][numKvHeads][headDimQk], kvType */
  const void* v;           /* [rows][numKvHeads][headDimVo], kvType; NULL when latentKv */
  const int32_t* rowStart; /* [numSeqs + 1]: rows of sequence s are rowStart[s] .. rowStart[s+1]-1 */
  const int32_t* pos;      /* [rows] global position of each row, increasing within a sequence */
} cpclPrefillKvBlock_t;

typedef struct {
  int numSeqs;
  int numTokens;             /* query rows (a CUDA grid bound; the host reads queryStart) */
  const int32_t* queryStart; /* [numSeqs + 1], never NULL */
  const int32_t* queryPos;   /* [numTokens] global position of each row, increasing within a sequence */

  /* keys (a): new K/V rows */
  int numKvBlocks; /* 0 .. CPCL_PREFILL_MAX_BLOCKS */
  cpclPrefillKvBlock_t kv[CPCL_PREFILL_MAX_BLOCKS];

  /* keys (b): this rank's shard of the paged cache; cacheLens NULL = none */
  const int32_t* cacheLens;  /* [numSeqs] global tokens of s in the (sharded) cache */
  const int32_t* blockTable; /* [numSeqs][maxPagesPerSeq] local page ids */
  int maxPagesPerSeq, pageSize;
  int cpSize, cpRank, interleave; /* W, r, I of the sharding */
  const void* kCache;             /* [pages][pageSize][numKvHeads][headDimQk], kvType */
  const void* vCache;             /* [pages][pageSize][numKvHeads][headDimVo]; NULL when latentKv */

  int numKvHeads, headDimQk, headDimVo;
  int latentKv;            /* 1: MLA, V is the first headDimVo elements of each K row */
  int groupSize;           /* G: head g reads KV head g / G */
  int headBegin, numHeads; /* heads [headBegin, headBegin + numHeads) */
  int headsPerBlock;       /* Hb */
  float smScale;
  int lseBase2;               /* 1: lse in base 2 */
  int qType, kvType, outType; /* values of cpclDataType_t; outType may be fp32 for partials */
  const void* q;              /* qType */
  int64_t qBlockStride, qTokenStride;
  void* out; /* [..][headDimVo], outType */
  int64_t oBlockStride, oTokenStride;
  float* lse; /* may be NULL */
  int64_t lseBlockStride, lseTokenStride;
  void* workspace; /* host: cpclHostPrefillWorkspaceBytes() of scratch; CUDA: optional, see below */
  size_t workspaceBytes;
  /* the store (NULL storeK: none): the call also writes every row of kv[0 .. numKvBlocks) that
   * this rank owns into storeK / storeV (NULL when latentKv), exactly as cpclPrefillStore of
   * cpclPrefillStoreOf(p, b) would, with this call's blockTable, pageSize, W, r and I. The
   * attention never reads those slots (they hold positions past every cached one), so the body
   * may write them while it runs: the Hopper body's copy warps do, under the tensor work. */
  void* storeK;
  void* storeV;
  /* host: called after each query tile when non-NULL, so a schedule can drive its transport
   * while the kernel runs (the ring moves block i+1 during block i); changes no result */
  void (*progress)(void* ctx);
  void* progressCtx;
} cpclPrefillParams_t;

/* Store of new K/V rows at known positions into this rank's shard of the paged cache: a row of
 * sequence s at position p is written when this rank owns p ((p / I) % W == cpRank), at local
 * index (p / (W*I)) * I + p % I, page blockTable[s][local / pageSize], slot local % pageSize;
 * other rows are skipped. A raw copy (the cache has kvType). The positions need not be
 * contiguous, so a ring schedule can store each passing block's owned rows. */
typedef struct {
  int numSeqs;
  cpclPrefillKvBlock_t kv;   /* the rows */
  const int32_t* blockTable; /* [numSeqs][maxPagesPerSeq] */
  int maxPagesPerSeq, pageSize;
  int cpSize, cpRank, interleave;
  int numKvHeads, headDimQk, headDimVo, latentKv, kvType;
  void* kCache; /* [pages][pageSize][numKvHeads][headDimQk] */
  void* vCache; /* [pages][pageSize][numKvHeads][headDimVo]; NULL when latentKv */
} cpclPrefillStoreParams_t;

/* the store of block b of a prefill call (its storeK / storeV) */
static inline cpclPrefillStoreParams_t cpclPrefillStoreOf(const cpclPrefillParams_t* p, int b) {
  cpclPrefillStoreParams_t s;
  s.numSeqs = p->numSeqs;
  s.kv = p->kv[b];
  s.blockTable = p->blockTable;
  s.maxPagesPerSeq = p->maxPagesPerSeq;
  s.pageSize = p->pageSize;
  s.cpSize = p->cpSize;
  s.cpRank = p->cpRank;
  s.interleave = p->interleave;
  s.numKvHeads = p->numKvHeads;
  s.headDimQk = p->headDimQk;
  s.headDimVo = p->headDimVo;
  s.latentKv = p->latentKv;
  s.kvType = p->kvType;
  s.kCache = p->storeK;
  s.vCache = p->latentKv ? NULL : p->storeV;
  return s;
}

/* passed by value to the CUDA kernels */
CPCL_KPARAM_CHECK(cpclPrefillParams_t, CPCL_KPARAM_BYTES);
CPCL_KPARAM_CHECK(cpclPrefillStoreParams_t, CPCL_KPARAM_BYTES);

/* ---- host (C reference, also the CPU backend) ---- */
size_t cpclHostPrefillWorkspaceBytes(int headDimQk, int headDimVo);
void cpclHostPrefill(const cpclPrefillParams_t* p);
void cpclHostPrefillStore(const cpclPrefillStoreParams_t* p);

/* ---- CUDA (kernels/cuda/prefill.cu): every pointer in device memory, stream a cudaStream_t;
 * return 0 or a cudaError_t (cudaErrorInvalidValue: cpclCudaKernelErrorDetail says why). The
 * workspace (device memory, optional): with at least 4 bytes, the Hopper body's fused store keeps
 * its row counter there (so the calls that share it must be ordered, as a plan's steps are on its
 * stream); without it the store kernel follows the attention. No host synchronisation; progress is
 * not called (the GPU transports move data on their own). Blocked table entries < 0 read and
 * write nothing. ---- */
int cpclCudaPrefill(const cpclPrefillParams_t* p, void* stream);
int cpclCudaPrefillStore(const cpclPrefillStoreParams_t* p, void* stream);
/* the store kernel for each of p's blocks (cpclPrefillStoreOf), after whatever is on the stream:
 * what cpclCudaPrefill runs after a body that does not store */
int cpclCudaPrefillStoreBlocks(const cpclPrefillParams_t* p, void* stream);
/* The body cpclCudaPrefill runs for p, in the order it tries them:
 *  CPCL_PREFILL_BODY_SM90: the Hopper wgmma/TMA body (kernels/cuda/prefill_sm90_lib.cuh) when the
 *    device is compute capability 9.0 and p fits it (cpclPrefillSm90Fits in
 *    kernels/cuda/prefill_sm90.h: qType == kvType bf16 or fp16, any outType, separate V with
 *    Dqk/Dvo 128/128 or 192/128, up to 8 K/V blocks and the cache shard, 16-byte aligned rows);
 *  CPCL_PREFILL_BODY_MMA: the mma.sync tensor-core body (bf16/fp16 alike, separate V, Dqk/Dvo
 *    64/64, 128/128 or 192/128, 16-byte aligned rows; the cache shard too);
 *  CPCL_PREFILL_BODY_CUDA_CORE: everything else.
 * Host values and the current device only. */
#define CPCL_PREFILL_BODY_CUDA_CORE 0
#define CPCL_PREFILL_BODY_MMA 1
#define CPCL_PREFILL_BODY_SM90 2
int cpclCudaPrefillBody(const cpclPrefillParams_t* p);
const char* cpclCudaPrefillBodyName(int body); /* "Hopper wgmma", "mma.sync", "CUDA-core" */
/* 1 when cpclCudaPrefill runs a tensor-core body (Hopper or mma.sync) for p, 0 for the CUDA-core one */
int cpclCudaPrefillUsesMma(const cpclPrefillParams_t* p);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_PREFILL_PARAMS_H_ */
