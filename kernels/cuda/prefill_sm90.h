/*
 * prefill_sm90.h -- C interface of the Hopper causal prefill body (prefill_sm90.cuh has the
 * design) on sm_90a (wgmma, TMA, mbarriers, setmaxnreg): the standalone interface over dense
 * bf16 new-token Q/K/V, which tools/kernel_bench/prefill_sm90_bench.sh checks and times, and the
 * library's (cpclPrefillParams_t, prefill_sm90_lib.cuh), which cpclCudaPrefill dispatches to
 * (docs/PREFILL_SM90.md, "Wired"). Plain C so the library's C code can include it.
 */
#ifndef CPCL_CUDA_PREFILL_SM90_H_
#define CPCL_CUDA_PREFILL_SM90_H_

#include <cuda_runtime.h>
#include <stdint.h>

#include "prefill_params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One causal prefill step over the new tokens only (no cached context yet): sequence s owns rows
 * [cuSeqlens[s], cuSeqlens[s + 1]) of q, k, v, out and lse, and its local row i attends to its
 * own keys 0 .. i. All tensors are row-major and dense:
 *   q   [totalRows][numHeads][headDimQk]     bf16
 *   k   [totalRows][numKvHeads][headDimQk]   bf16
 *   v   [totalRows][numKvHeads][headDimV]    bf16
 *   out [totalRows][numHeads][headDimV]      bf16
 *   lse [totalRows][numHeads]                fp32, natural log (base 2 with lseBase2) of the
 *                                            softmax denominator of the scaled scores (NULL:
 *                                            not written)
 * Head h reads KV head h / (numHeads / numKvHeads). Shapes: (headDimQk, headDimV) = (128, 128)
 * or (192, 128); numHeads a multiple of numKvHeads; base addresses 16-byte aligned. */
typedef struct {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* lse;
  /* device, [numSeqs + 1], non-decreasing, cuSeqlens[0] == 0; a sequence that breaks this is
   * clipped to [0, totalRows) and maxSeqLen rows, never read or written past the tensors */
  const int32_t* cuSeqlens;
  int numSeqs;
  int totalRows; /* cuSeqlens[numSeqs] */
  int maxSeqLen; /* host bound of every sequence's length (the grid's tile count) */
  int numHeads;
  int numKvHeads;
  int headDimQk;
  int headDimV;
  float smScale; /* softmax scale, > 0 (usually 1 / sqrt(headDimQk)) */
  int lseBase2;  /* 1: lse in base 2 (the library's lseBase2, FlashInfer's convention) */
} cpclPrefillSm90Params_t;

/* Variants (flags): kPrefillSm90ThreeStages: three K/V stages instead of two (headDimQk 128 only:
 * 224 KB of shared memory); kPrefillSm90Overlap: FlashAttention-3's intra-warpgroup overlap (S of
 * tile i and P V of tile i - 1 issued together, the softmax of tile i under that P V) on top of the
 * ping-pong of the two consumer warpgroups, which every variant has. */
enum { kPrefillSm90ThreeStages = 1, kPrefillSm90Overlap = 2, kPrefillSm90Variants = 4 };

/* Launches the attention of p on stream. Returns cudaSuccess, cudaErrorInvalidValue for bad
 * arguments (cpclPrefillSm90ErrorDetail says which), or the CUDA error of the launch. Tensor maps
 * are encoded on the host on every call (about a microsecond each; capturable in a graph, the
 * maps travel by value as kernel parameters). */
cudaError_t cpclPrefillSm90Launch(const cpclPrefillSm90Params_t* p, int variant, cudaStream_t stream);

/* the message of the last cudaErrorInvalidValue returned by cpclPrefillSm90Launch or
 * cpclPrefillSm90Run on this thread */
const char* cpclPrefillSm90ErrorDetail(void);

/* 1 when cpclPrefillSm90Run takes p: the current device is compute capability 9.0; qType ==
 * kvType, bf16 or fp16; outType bf16, fp16 or fp32; separate V with (headDimQk, headDimVo)
 * (128, 128) or (192, 128); 0 .. 8 K/V blocks, each with k, v, rowStart and pos set, and at
 * least one unless cacheLens is set; with cacheLens: blockTable, kCache and vCache set (the
 * caches 16-byte aligned), pageSize, maxPagesPerSeq, cpSize, interleave >= 1 and 0 <= cpRank <
 * cpSize; smScale > 0; numSeqs + numTokens / 128 + 1 <= 65535 (the grid); q, out and every
 * block's k and v 16-byte aligned, lse 4-byte aligned; qTokenStride and qBlockStride multiples
 * of 8 elements, oTokenStride and oBlockStride even. Host values only. */
int cpclPrefillSm90Fits(const cpclPrefillParams_t* p);
/* runs p on the Hopper body (prefill_params.h's contract, the store of p->storeK included: the
 * grid form's copy warps store the blocks' rows under the tensor work, 16-byte aligned rows and
 * caches given, and a short kernel behind it takes what they leave; otherwise the store kernel
 * follows); cudaErrorInvalidValue when p does not fit, else 0 or the CUDA error of the encoding
 * or a launch. Capturable in a graph (the tensor maps travel by value as kernel parameters). */
int cpclPrefillSm90Run(const cpclPrefillParams_t* p, cudaStream_t stream);

/* The form cpclPrefillSm90Run launches (docs/PREFILL_SM90.md, "Persistent form"):
 * kPrefillSm90Grid, one CTA per (128-row query tile, head); kPrefillSm90Persistent, one CTA per
 * SM looping over the tiles in the grid form's order, each taking the next from a work counter;
 * kPrefillSm90Static, the same with tile blockIdx + k gridDim; kPrefillSm90ByShape (the default),
 * the faster of the first two for the call's head dim as measured on the H200: the persistent form
 * at D128 (session 6, call 4: 1.8-4.3% faster than the grid form on its six rows) and at D192
 * (session 8, call 1, one call: 1.6-8.3% faster by the medians of four rows; the persistent form
 * fuses the store too now). All of them give the same bits. The default comes from
 * CPCL_PREFILL_SM90_PERSISTENT (read once: 0, 1, 2 or 3 select the form of that number; unset or
 * anything else, by shape). */
enum { kPrefillSm90Grid = 0, kPrefillSm90Persistent = 1, kPrefillSm90Static = 2, kPrefillSm90ByShape = 3 };
/* sets the form for the calls that follow in this process (form -1, or any value not a form:
 * unchanged) and returns the one before; not for use while another thread launches */
int cpclPrefillSm90SetForm(int form);
/* caps the persistent forms' grid at ctas CTAs (0, the default: one per SM; a negative value:
 * unchanged) and returns the cap before, so that a test's few tiles give every CTA several items;
 * the same bits whatever the cap */
int cpclPrefillSm90SetCtas(int ctas);
/* 1 (the default): the fused store launches its rest kernel as a programmatic dependent of the
 * attention, under its last wave; 0: after it, so the copy warps store all they can (tests, on
 * grids too small for the copy warps to store much otherwise); 2: no rest kernel at all, so the
 * cache holds only the rows the copy warps stored (tests only: the store is then incomplete);
 * 3: no fused store, prefill.cu's store kernels after the attention (to measure the fusion);
 * any other value: unchanged. Returns the setting before; 0, 1 and 3 give the same bits. The
 * default comes from CPCL_PREFILL_SM90_REST (read once: 0, 1 or 3; unset or anything else, 1). */
int cpclPrefillSm90SetRestOverlap(int overlap);
/* the order of the work items (both forms; libItemOf in prefill_sm90_lib.cuh): 0, tile slot by
 * slot from the heaviest, a slot's heads together; n > 0 (up to 65535), bands of n slots from the
 * heaviest, one KV head's query heads over a band at a time (L2 reuse of K/V across the CTAs that
 * run at once); kPrefillSm90BandByShape (the default), bands of one wave (SMs / heads per KV head
 * slots) in the persistent form when the call's new K/V exceed 48 MiB and a band's heaviest tile
 * is at most 3% of an SM's share of the work, 0 otherwise (session 7, call 4: GQA B1 64k 59018 us
 * banded against 60433 in slot order; B1 4k 273 against 265, a heavy last band). The default
 * comes from CPCL_PREFILL_SM90_BAND (read once; unset or not a number: by shape). Any other
 * value: unchanged. Returns the setting before; every order gives the same bits. */
enum { kPrefillSm90BandByShape = -2 };
int cpclPrefillSm90SetBand(int band);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_CUDA_PREFILL_SM90_H_ */
