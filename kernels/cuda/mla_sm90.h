/*
 * mla_sm90.h -- C interface of the Hopper MLA decode body (mla_sm90.cuh has the index math):
 * bf16 q and latent KV, 576/512 dims, one KV head, on sm_90a (wgmma, TMA, setmaxnreg; 222 KB of
 * shared memory per CTA). It reads the library's cpclAttnParams_t (attn_params.h) plus the split
 * constants of its plan, which differ from the CUDA-core body's.
 * Measured on an H200 (docs/MLA_SM90.md): the library runs variant 12 or 19 (early stage release,
 * a producer lane a TMA box; 19, 13's seesaw without the waits for the other warpgroup's stage, at
 * 64+ heads with pages of 64+) and 20 (18 likewise) for sparse rows (11, 17, 18 by
 * cpclMlaSm90SetSparseVariant / CPCL_MLA_SM90_SPARSE); every variant but the control (2) passes
 * the checks.
 */
#ifndef CPCL_CUDA_MLA_SM90_H_
#define CPCL_CUDA_MLA_SM90_H_

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "attn_params.h"
#include "fused_params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* page sizes the body's TMA boxes cover: a power of two from 8 to 64, or a multiple of 64 */
int cpclMlaSm90PageSizeOk(int pageSize);
/* tensor map over the latent cache [numPages][pageSize][576] bf16 (one KV head); any upper bound
 * of the page count works (TMA checks coordinates against the extent only) */
int cpclMlaSm90KvMap(CUtensorMap* map, const void* kvCache, int64_t numPages, int pageSize);
/* the plan's split constants for maxTokens rows of numHeads heads on numSms multiprocessors */
void cpclMlaSm90Plan(int maxTokens, int numHeads, int numSms, int* maxSplits, int* chunkMin);
/* split workspace (wsO then wsLse, in p->workspace) for maxTokens rows of numHeads heads */
size_t cpclMlaSm90WorkspaceBytes(int maxTokens, int numHeads, int maxSplits);
/* Schedules (mla_sm90.cuh): 0 seesaw; 1 both warpgroups compute S; 2 = 1 with the V descriptor's
 * strides swapped (a control that must fail the check); 3 seesaw with warpgroup 1's S issued late;
 * 4 = 3 with per-tile TMA barriers (S starts when its first tile lands); 5 = 0 with per-tile
 * barriers; 6 = 1 with per-tile barriers; 7 = 4 and 8 = 5 with per-tile release (each 64-dim tile
 * of a stage is refilled as soon as its last reader is done with it, not the whole stage); 9 FlashMLA's
 * seesaw in 256 threads, no producer warpgroup (mlaSm90Seesaw); 10 = 4 with one producer lane a
 * page (a page-16 block's 36 boxes issued by 4 lanes); 11-15 early release (mla_sm90.cu lists
 * them); 16 FlashMLA's schedule read from its source (mla_sm90_halves.cuh: 256 threads, each
 * half-stage refilled by its last reader, mbarrier hand-offs); 17, 18 sparse only (session 4's
 * gather: 11's and 13's schedules); 19 = 13 and the sparse 20 = 18 with kFlagHandOrder (a
 * warpgroup does not wait for the stage the other one waited for before their hand-off). */
enum { kMlaSm90Variants = 20 };
/* or-ed into a variant: the KV copies carry an L2 evict-first policy (64: variant numbers past 19
 * exist, below 64) */
enum { kMlaSm90EvictFirst = 64 };
/* The attention of p (bf16 MLA 576/512, heads [headBegin, +numHeads) in p's block layout) with
 * maxSplits / chunkMin (cpclMlaSm90Plan; fixed per plan), then the split merge as a programmatic
 * dependent launch. p->workspace holds cpclMlaSm90WorkspaceBytes(numTokens, numHeads, maxSplits).
 * Returns 0 or a cudaError_t (cudaErrorInvalidValue with cpclCudaKernelErrorDetail for bad
 * arguments). */
int cpclMlaSm90Launch(const cpclAttnParams_t* p, const CUtensorMap* kvMap, int maxSplits, int chunkMin, int variant,
                      void* stream);

/* Sparse attention (issue 16): row t attends to the local KV indices sparseIdx[t][0 ..
 * sparseCount[t]) (compacted by the top-k filter, list order kept; index i is slot
 * blockTable[seq][i / pageSize] * pageSize + i % pageSize), with the schedule of variant 1, 4 or
 * 11 (session 2's gather), 17 (11's schedule), 18 (13's seesaw) or 20 (19's) with session 4's gather (list
 * entries two blocks ahead, slots one ahead, rows prefetched into L2; launched as a programmatic
 * dependent of the kernel before it, the filter); the splits cut each row's list. The rows are
 * gathered with cp.async from p->kCache (no tensor map; the evict-first flag does nothing). */
int cpclMlaSm90LaunchSparse(const cpclAttnParams_t* p, int maxSplits, int chunkMin, int variant,
                            const int32_t* sparseIdx, const int32_t* sparseCount, int sparseStride, void* stream);

/* The sparse schedule cpclMlaSm90Attn runs for the calls that follow in this process: 11, 17, 18
 * or 20 (any other value: unchanged); returns the one before. The default comes from
 * CPCL_MLA_SM90_SPARSE (read once: 11, 17, 18 or 20), else 20. All give the host reference's answer
 * within bf16 tolerance; not for use while another thread launches. */
int cpclMlaSm90SetSparseVariant(int variant);

/* A timing probe for the bench (not thread-safe, never called by the library): later launches
 * record clock64 at the seesaw schedules' events of the grid's first CTA into buf (4096 u64,
 * device memory: consumer warpgroup w, pair j < 64, event e < 16 at (2 j + w) 16 + e; producer
 * block i < 512 at kMlaSm90TraceProducer + 2 i + e; the CTA's entry, work known, Q loaded, epilogue
 * start and end at kMlaSm90TraceCta + 0 .. 4); NULL turns it off. */
void cpclMlaSm90Trace(void* buf);
enum { kMlaSm90TraceSlots = 4096, kMlaSm90TraceProducer = 2048, kMlaSm90TraceCta = 3072 };

/* The library's path (attn.cu): -1 when p does not take this body (p->mlaSm90Splits == 0,
 * another shape or dtype, or a device other than compute capability 9.0), else the launch's
 * result, with the cached tensor map of p->kCache and the variant for p's heads. */
int cpclMlaSm90Attn(const cpclAttnParams_t* p, void* stream);
/* The same body inside the fused decode kernel (fused_params.h; attn.cu's cpclCudaFused,
 * mla_sm90_fused.cu): -1 where cpclMlaSm90Attn would not take f->attn (sparse lists included: the
 * fused kernel keeps the CUDA-core body there), where a row may take several splits and the plan
 * has no splitCounters, or where f asks for more merge CTAs than half the SMs; else the launch's
 * result. A row's splits merge in the kernel's split-merge CTAs (mlaSm90Combine's bits). */
int cpclMlaSm90Fused(const cpclFusedParams_t* f, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_CUDA_MLA_SM90_H_ */
