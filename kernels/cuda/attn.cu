/*
 * attn.cu -- the attention launchers (attn_params.h, fused_params.h): pick the kernel for the
 * shape: the Hopper MLA and GQA bodies (mla_sm90.h, gqa_sm90.h, sm_90a units of their own) for
 * the plans that ask for them,
 * tensor cores (attn_mma.cuh) where they cover it, CUDA cores (attn_split.cuh) otherwise, and
 * call its instantiation (attn_instances.cuh). No kernel body is compiled here.
 */
#include <cuda_runtime.h>

#include "attn_instances.cuh"
#include "dispatch.cuh"
#include "gqa_sm90.h"
#include "mla_sm90.h"
#include "peer_sync.h"
#include "topk_params.h"

extern "C" size_t cpclCudaAttnWorkspaceBytes(int maxTokens, int numHeads, int headDimVo, int maxSplits) {
  return (size_t)maxSplits * maxTokens * numHeads * (headDimVo + 1) * sizeof(float);
}

extern "C" int cpclCudaAttnMaxSplits(int maxTokens, int numHeads, int headDimVo) {
  const size_t perSplit = cpclCudaAttnWorkspaceBytes(maxTokens, numHeads, headDimVo, 1);
  const size_t splits = ((size_t)256 << 20) / perSplit;
  return (int)(splits < 1 ? 1 : splits > CPCL_CUDA_MAX_SPLITS ? CPCL_CUDA_MAX_SPLITS : splits);
}

extern "C" size_t cpclCudaAttnCounterCount(int maxTokens, int numHeads) {
  return cpclSplitCounterCount(maxTokens, numHeads);
}

namespace cpcl {

/* -1: shape not covered by the tensor-core kernel (the caller uses the CUDA-core one) */
static int attnMma(const cpclAttnParams_t* p, const cpclFusedParams_t* f, cudaStream_t s) {
  if (p->qType != p->kvType || p->qType == CPCL_K_FP32 || p->latentKv || p->headDimQk != p->headDimVo) return -1;
  if (p->qType == CPCL_K_BF16) {
    if (p->headDimQk == 128) return launchMma<__nv_bfloat16, 128>(p, f, s);
    if (p->headDimQk == 64) return launchMma<__nv_bfloat16, 64>(p, f, s);
  } else if (p->qType == CPCL_K_FP16) {
    if (p->headDimQk == 128) return launchMma<__half, 128>(p, f, s);
    if (p->headDimQk == 64) return launchMma<__half, 64>(p, f, s);
  }
  return -1;
}

static int attnSplit(const cpclAttnParams_t* p, const cpclFusedParams_t* f, cudaStream_t s) {
  const size_t es = cpclKDtypeSize(p->kvType);
  if ((p->headDimQk * es) % 16)
    return invalidValue("headDimQk = %d: its rows of KV type %d are not a multiple of 16 bytes", p->headDimQk,
                        p->kvType);
  if (!p->latentKv && (p->headDimVo * es) % 16)
    return invalidValue("headDimVo = %d: its rows of KV type %d are not a multiple of 16 bytes", p->headDimVo,
                        p->kvType);
  CPCL_DISPATCH_DTYPE(p->qType, TQ, CPCL_DISPATCH_DTYPE(p->kvType, TKV, return launchSplit<TQ, TKV>(p, f, s)));
  return 0;
}

static int attnDispatch(const cpclAttnParams_t* p, const cpclFusedParams_t* f, void* stream) {
  if (p->maxSplits < 1 || p->maxSplits > CPCL_CUDA_MAX_SPLITS)
    return invalidValue("maxSplits = %d is outside 1 .. %d", p->maxSplits, CPCL_CUDA_MAX_SPLITS);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p->topkRaw && !p->sparseIdx)
    return invalidValue("topkRaw = %p without sparseIdx: the filter inside the attention writes its lists there",
                        (const void*)p->topkRaw);
  if (p->sparseIdx) { /* a key list (attn_params.h): the Hopper MLA body's sparse form, else CUDA cores */
    int err = p->cudaCoresOnly || f ? -1 : cpclMlaSm90Attn(p, stream);
    if (err < 0 && p->topkRaw) {
      /* the Hopper body does not take the call (cudaCoresOnly, inside the fused kernel, q rows off 16
       * bytes, a sparse schedule that does not filter, another device): the filter kernel writes the
       * lists into the call's scratch (row t at sparseIdx + t sparseStride), then the CUDA-core body
       * reads them, as a plan without topkRaw would */
      const cpclTopkFilterParams_t tf = {.numSeqs = p->numSeqs,
                                         .numTokens = p->numTokens,
                                         .queryStart = p->queryStart,
                                         .seqLens = p->seqLens,
                                         .topk = p->sparseStride,
                                         .topkIndices = p->topkRaw,
                                         .cpSize = p->cpSize,
                                         .cpRank = p->cpRank,
                                         .interleave = p->interleave,
                                         .localIdx = const_cast<int32_t*>(p->sparseIdx),
                                         .count = const_cast<int32_t*>(p->sparseCount),
                                         .errorFlag = p->errorFlag};
      err = cpclCudaTopkFilter(&tf, stream);
      if (err) return err;
      cpclAttnParams_t lp = *p;
      lp.topkRaw = nullptr;
      err = attnSplit(&lp, f, s);
      return err ? err : (int)cudaGetLastError();
    }
    if (err < 0) err = attnSplit(p, f, s);
    return err ? err : (int)cudaGetLastError();
  }
  /* the Hopper MLA body, alone (a merge kernel after it) or inside the fused kernel
   * (mla_sm90_fused.cu: its splits merged by split-merge CTAs after the attention ones) */
  int err = p->cudaCoresOnly ? -1 : f ? cpclMlaSm90Fused(f, stream) : cpclMlaSm90Attn(p, stream);
  if (err >= 0) return err ? err : (int)cudaGetLastError();
  /* the Hopper GQA body, alone or inside the fused kernel (gqa_sm90_fused.cu: its splits merged in
   * the last one's tail or by split-merge CTAs after the attention ones); a plan that merges them
   * in clusters keeps the tensor-core body there */
  err = p->cudaCoresOnly ? -1 : f ? cpclGqaSm90Fused(f, stream) : cpclGqaSm90Attn(p, stream);
  if (err >= 0) return err ? err : (int)cudaGetLastError();
  err = p->cudaCoresOnly ? -1 : attnMma(p, f, s);
  if (err < 0) err = attnSplit(p, f, s);
  if (err) return err;
  return (int)cudaGetLastError();
}

}  // namespace cpcl

extern "C" int cpclCudaAttn(const cpclAttnParams_t* p, void* stream) {
  cpcl::clearErrorDetail();
  if (p->numTokens == 0 || p->numHeads == 0) return 0;
  return cpcl::attnDispatch(p, nullptr, stream);
}

extern "C" int cpclCudaFused(const cpclFusedParams_t* f, void* stream) {
  cpcl::clearErrorDetail();
  if (f->attn.numTokens == 0) return 0;
  return cpcl::attnDispatch(&f->attn, f, stream);
}
