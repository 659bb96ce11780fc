/*
 * mla_sm90.cu -- host side of the Hopper MLA decode body (mla_sm90.cuh): the KV tensor map, the
 * plan's split constants, and the launch (attention, then the split merge as a programmatic
 * dependent launch). Standalone for now; see mla_sm90.h for what the library passes.
 */
#include <cudaTypedefs.h>

#include "mla_sm90.cuh"
#include "mla_sm90.h"

namespace cpcl {
namespace mla90 {

template __global__ void mlaSm90Kernel<1, 0, false>(const __grid_constant__ CUtensorMap, const Params);
template __global__ void mlaSm90Kernel<0, 0, false>(const __grid_constant__ CUtensorMap, const Params);
template __global__ void mlaSm90Kernel<0, 1, false>(const __grid_constant__ CUtensorMap, const Params);
template __global__ void mlaSm90Kernel<2, 0, false>(const __grid_constant__ CUtensorMap, const Params);
template __global__ void mlaSm90Kernel<2, 0, true>(const __grid_constant__ CUtensorMap, const Params);
template __global__ void mlaSm90Kernel<1, 0, true>(const __grid_constant__ CUtensorMap, const Params);
template __global__ void mlaSm90Kernel<0, 0, true>(const __grid_constant__ CUtensorMap, const Params);

}  // namespace mla90
}  // namespace cpcl

using cpcl::mla90::Params;

extern "C" int cpclMlaSm90KvMap(CUtensorMap* map, const void* kvCache, int64_t numPages, int pageSize) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  if (!encode) {
    cudaDriverEntryPointQueryResult q;
    void* fn = nullptr;
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn)
      return e != cudaSuccess ? (int)e : (int)cudaErrorNotSupported;
    encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }
  if (pageSize <= 0 || (pageSize % 64 != 0 && (64 % pageSize != 0 || pageSize < 8))) return (int)cudaErrorInvalidValue;
  if (((uintptr_t)kvCache & 15) != 0) return (int)cudaErrorInvalidValue;
  const cuuint64_t dims[2] = {576, (cuuint64_t)numPages * pageSize};
  const cuuint64_t strides[1] = {576 * 2};
  const cuuint32_t box[2] = {64, (cuuint32_t)(pageSize < 64 ? pageSize : 64)};
  const cuuint32_t estr[2] = {1, 1};
  CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(kvCache), dims, strides, box, estr,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? 0 : (int)cudaErrorInvalidValue;
}

extern "C" void cpclMlaSm90Plan(int maxTokens, int numHeads, int numSms, int* maxSplits, int* chunkMin) {
  /* enough CTAs for about one wave at the plan's largest batch, never more than 64 splits; fixed
   * per plan so a row's result does not depend on the rest of its batch */
  const int ctas = (maxTokens > 0 ? maxTokens : 1) * ((numHeads + 63) / 64);
  int s = numSms / ctas;
  s = s < 1 ? 1 : s > 64 ? 64 : s;
  *maxSplits = s;
  *chunkMin = 128;
}

extern "C" size_t cpclMlaSm90WorkspaceBytes(int maxTokens, int numHeads, int maxSplits) {
  if (maxSplits <= 1) return 0;
  return (size_t)maxTokens * numHeads * maxSplits * (512 + 1) * sizeof(float);
}

extern "C" int cpclMlaSm90Launch(const cpclMlaSm90Params_t* p, const CUtensorMap* kvMap, int variant, void* stream) {
  using namespace cpcl::mla90;
  if (p->numHeads < 1 || p->numTokens < 0 || p->maxSplits < 1 || p->maxSplits > 64 || p->chunkMin < 64 ||
      p->chunkMin % 64 != 0)
    return (int)cudaErrorInvalidValue;
  if (p->numTokens == 0) return 0;
  static_assert(sizeof(cpclMlaSm90Params_t) == sizeof(Params), "params mirror");
  const Params& kp = *reinterpret_cast<const Params*>(p);
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (variant < 0 || variant >= kMlaSm90Variants) return (int)cudaErrorInvalidValue;
  void (*const kerns[kMlaSm90Variants])(const CUtensorMap, const Params) = {
      mlaSm90Kernel<1, 0, false>, mlaSm90Kernel<0, 0, false>, mlaSm90Kernel<0, 1, false>, mlaSm90Kernel<2, 0, false>,
      mlaSm90Kernel<2, 0, true>,  mlaSm90Kernel<1, 0, true>,  mlaSm90Kernel<0, 0, true>};
  auto kern = kerns[variant];
  static bool raised[kMlaSm90Variants] = {}; /* once per variant: not on the per-step path */
  cudaError_t e;
  if (!raised[variant]) {
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (e != cudaSuccess) return (int)e;
    raised[variant] = true;
  }
  const dim3 grid((p->numHeads + 63) / 64, p->numTokens, p->maxSplits);
  kern<<<grid, kThreads, kSmemBytes, st>>>(*kvMap, kp);
  e = cudaGetLastError();
  if (e != cudaSuccess || p->maxSplits == 1) return (int)e;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)(((int64_t)p->numTokens * p->numHeads + 7) / 8));
  cfg.blockDim = dim3(256);
  cfg.stream = st;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return (int)cudaLaunchKernelEx(&cfg, mlaSm90Combine, kp);
}
