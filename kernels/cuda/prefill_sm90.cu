/*
 * prefill_sm90.cu -- host side of the standalone Hopper causal prefill body (prefill_sm90.cuh):
 * argument checks, the three tensor maps, the launch. Not part of the library's build yet.
 */
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <stdarg.h>
#include <stdio.h>

#include <atomic>

#include "prefill_sm90.cuh"
#include "prefill_sm90.h"

namespace {

using cpcl::pf90::kBM;
using cpcl::pf90::kBN;
using cpcl::pf90::kThreads;
using cpcl::pf90::prefillSm90Kernel;
using cpcl::pf90::Shape;

thread_local char detail[256];

cudaError_t invalid(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  return cudaErrorInvalidValue;
}

std::atomic<void*> encodeFn{nullptr};

/* a 3-d map over [rows][heads][dim] bf16, boxes of 64 dims x 1 head x boxRows rows, 128-byte
 * swizzled (the wgmma K-major / MN-major layout of the kernel's tiles); rows past the tensor are
 * zero-filled by TMA */
cudaError_t encode3d(CUtensorMap* map, const void* base, int rows, int heads, int dim, int boxRows, const char* what) {
  void* fn = encodeFn.load(std::memory_order_acquire);
  if (fn == nullptr) {
    cudaDriverEntryPointQueryResult q;
#if CUDART_VERSION >= 12050
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
#else
    cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &q);
#endif
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || fn == nullptr)
      return invalid("the driver has no cuTensorMapEncodeTiled (%s, query result %d)", cudaGetErrorString(e), (int)q);
    encodeFn.store(fn, std::memory_order_release);
  }
  const auto enc = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  const cuuint64_t dims[3] = {(cuuint64_t)dim, (cuuint64_t)heads, (cuuint64_t)rows};
  const cuuint64_t strides[2] = {(cuuint64_t)dim * 2, (cuuint64_t)heads * dim * 2};
  const cuuint32_t box[3] = {64, 1, (cuuint32_t)boxRows}, estr[3] = {1, 1, 1};
  const CUresult r = enc(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dims, strides, box, estr,
                         CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                         CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return invalid("cuTensorMapEncodeTiled of %s %p ([%d][%d][%d]) failed: CUresult %d", what, base, rows, heads, dim,
                   (int)r);
  return cudaSuccess;
}

template <int kDqk, int kDv, int kStages, bool kOverlap>
cudaError_t launchOne(const cpclPrefillSm90Params_t* p, const CUtensorMap& qm, const CUtensorMap& km,
                      const CUtensorMap& vm, cudaStream_t stream) {
  constexpr int smem = Shape<kDqk, kDv, kStages>::kSmemBytes;
  auto kern = prefillSm90Kernel<kDqk, kDv, kStages, kOverlap>;
  /* on every call: the attribute is per device, and a process may drive several (about a
   * microsecond, against milliseconds of attention) */
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return e;
  const dim3 grid(p->numHeads, p->numSeqs, (p->maxSeqLen + kBM - 1) / kBM);
  kern<<<grid, kThreads, smem, stream>>>(qm, km, vm, *p);
  return cudaGetLastError();
}

bool aligned16(const void* x) { return ((uintptr_t)x & 15) == 0; }

}  // namespace

extern "C" const char* cpclPrefillSm90ErrorDetail(void) { return detail; }

extern "C" cudaError_t cpclPrefillSm90Launch(const cpclPrefillSm90Params_t* p, int variant, cudaStream_t stream) {
  static_assert(kBM == kBN, "the tile count per query tile assumes square tiles");
  if (p == nullptr) return invalid("p is NULL");
  if (p->q == nullptr || p->k == nullptr || p->v == nullptr || p->out == nullptr || p->cuSeqlens == nullptr)
    return invalid("q %p, k %p, v %p, out %p, cuSeqlens %p: each must be set", p->q, p->k, p->v, p->out, p->cuSeqlens);
  if (!aligned16(p->q) || !aligned16(p->k) || !aligned16(p->v) || !aligned16(p->out))
    return invalid("q %p, k %p, v %p, out %p: each must be 16-byte aligned", p->q, p->k, p->v, p->out);
  const bool d128 = p->headDimQk == 128 && p->headDimV == 128, d192 = p->headDimQk == 192 && p->headDimV == 128;
  if (!d128 && !d192)
    return invalid("headDimQk %d / headDimV %d: supported are 128/128 and 192/128", p->headDimQk, p->headDimV);
  if (variant < 0 || variant >= kPrefillSm90Variants || ((variant & kPrefillSm90ThreeStages) && !d128))
    return invalid("variant %d (headDimQk %d): 0 .. %d, three stages with headDimQk 128 only", variant, p->headDimQk,
                   kPrefillSm90Variants - 1);
  if (p->numKvHeads <= 0 || p->numHeads <= 0 || p->numHeads % p->numKvHeads != 0)
    return invalid("numHeads %d, numKvHeads %d: positive, numHeads a multiple of numKvHeads", p->numHeads,
                   p->numKvHeads);
  if (p->numSeqs <= 0 || p->numSeqs > 65535) return invalid("numSeqs %d: 1 .. 65535", p->numSeqs);
  if (p->totalRows <= 0 || p->maxSeqLen <= 0 || p->maxSeqLen > p->totalRows || (p->maxSeqLen + kBM - 1) / kBM > 65535)
    return invalid("totalRows %d, maxSeqLen %d: positive, maxSeqLen <= totalRows and < 65536 tiles", p->totalRows,
                   p->maxSeqLen);
  if (!(p->smScale > 0.f)) return invalid("smScale %g: must be > 0", (double)p->smScale);
  if (p->lse != nullptr && ((uintptr_t)p->lse & 3) != 0) return invalid("lse %p: must be 4-byte aligned", p->lse);
  CUtensorMap qm, km, vm;
  cudaError_t e;
  if ((e = encode3d(&qm, p->q, p->totalRows, p->numHeads, p->headDimQk, kBM, "q")) != cudaSuccess) return e;
  if ((e = encode3d(&km, p->k, p->totalRows, p->numKvHeads, p->headDimQk, kBN, "k")) != cudaSuccess) return e;
  if ((e = encode3d(&vm, p->v, p->totalRows, p->numKvHeads, p->headDimV, kBN, "v")) != cudaSuccess) return e;
  switch ((d192 ? 4 : 0) | variant) {
    case 0:
      return launchOne<128, 128, 2, false>(p, qm, km, vm, stream);
    case 1:
      return launchOne<128, 128, 3, false>(p, qm, km, vm, stream);
    case 2:
      return launchOne<128, 128, 2, true>(p, qm, km, vm, stream);
    case 3:
      return launchOne<128, 128, 3, true>(p, qm, km, vm, stream);
    case 4:
      return launchOne<192, 128, 2, false>(p, qm, km, vm, stream);
    default:
      return launchOne<192, 128, 2, true>(p, qm, km, vm, stream); /* 6 */
  }
}
