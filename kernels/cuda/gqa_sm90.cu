/*
 * gqa_sm90.cu -- launcher of the Hopper GQA decode body (gqa_sm90.cuh): picks the head-block
 * width HB from the group size and launches one cluster of clusterSplits CTAs per (row, KV head,
 * head block).
 */
#include <cudaTypedefs.h>
#include <string.h>

#include "gqa_sm90.cuh"

namespace cpcl {
namespace gqa90 {

static int headBlockWidth(int G) { return G <= 16 ? 1 : G <= 32 ? 2 : 4; }

template <typename T, int D, int HB, int kMode>
static int launch(const GqaParams* p, const GqaKvMaps* maps, cudaStream_t stream, bool occupancyOnly) {
  const size_t smem = smemBytes<D, HB, kMode == 2>(p->stages);
  auto kern = gqaDecodeKernel<T, D, HB, kMode>;
  CUtensorMap km, vm;
  memset(&km, 0, sizeof km);
  memset(&vm, 0, sizeof vm);
  if (maps) {
    memcpy(&km, maps->words[0], sizeof km);
    memcpy(&vm, maps->words[1], sizeof vm);
  }
  /* once per instantiation (and per process: the lead's plan creation is the place for this),
   * so no attribute call lands inside a stream capture */
  static cudaError_t attrs = [&] {
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(kern, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    return e;
  }();
  if (attrs != cudaSuccess) return (int)attrs;
  cudaError_t e;
  const int G = p->numHeads / p->numKvHeads, headBlocks = (G + 16 * HB - 1) / (16 * HB);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)p->clusterSplits, (unsigned)(headBlocks * p->numKvHeads), (unsigned)p->numTokens);
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = (unsigned)p->clusterSplits;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  if (occupancyOnly) {
    int n = 0;
    e = cudaOccupancyMaxActiveClusters(&n, kern, &cfg);
    return e == cudaSuccess ? n : -(int)e;
  }
  e = cudaLaunchKernelEx(&cfg, kern, km, vm, *p);
  return (int)e;
}

template <typename T, int D, int kMode>
static int launchM(const GqaParams* p, const GqaKvMaps* m, cudaStream_t s, bool occ) {
  switch (headBlockWidth(p->numHeads / p->numKvHeads)) {
    case 1:
      return launch<T, D, 1, kMode>(p, m, s, occ);
    case 2:
      return launch<T, D, 2, kMode>(p, m, s, occ);
    default:
      return launch<T, D, 4, kMode>(p, m, s, occ);
  }
}
template <typename T, int D>
static int launchD(const GqaParams* p, const GqaKvMaps* m, cudaStream_t s, bool occ) {
  if (p->copyMode == 2) return launchM<T, D, 2>(p, m, s, occ);
  if (p->copyMode == 1) return launchM<T, D, 1>(p, m, s, occ);
  return launchM<T, D, 0>(p, m, s, occ);
}
static int dispatch(const GqaParams* p, const GqaKvMaps* m, cudaStream_t s, bool occ) {
  if (p->dtype == 0)
    return p->headDim == 128 ? launchD<__nv_bfloat16, 128>(p, m, s, occ) : launchD<__nv_bfloat16, 64>(p, m, s, occ);
  return p->headDim == 128 ? launchD<__half, 128>(p, m, s, occ) : launchD<__half, 64>(p, m, s, occ);
}
static bool tmaPageSize(int ps) { return ps > 0 && ((ps % 8 == 0 && 64 % ps == 0) || ps % 64 == 0); }

static bool covered(const GqaParams* p) {
  return p->numKvHeads > 0 && p->numHeads % p->numKvHeads == 0 && (p->headDim == 64 || p->headDim == 128) &&
         (p->dtype == 0 || p->dtype == 1) && p->clusterSplits >= 1 && p->clusterSplits <= kMaxCluster &&
         p->chunkMin >= kTile && p->chunkMin % kTile == 0 && p->stages >= 2 && p->stages <= 16 && p->pageSize >= 1 &&
         p->numTokens >= 0 && p->numTokens <= 65535 && p->copyMode >= 0 && p->copyMode <= 2 &&
         (p->copyMode != 2 || tmaPageSize(p->pageSize));
}

}  // namespace gqa90
}  // namespace cpcl

extern "C" size_t cpclGqaSm90SmemBytes(const GqaParams* p) {
  using namespace cpcl::gqa90;
  if (!covered(p)) return 0;
  const int hb = headBlockWidth(p->numHeads / p->numKvHeads);
  const bool tma = p->copyMode == 2;
#define GQA_SMEM(D_)                                     \
  (tma ? (hb == 1   ? smemBytes<D_, 1, true>(p->stages)  \
          : hb == 2 ? smemBytes<D_, 2, true>(p->stages)  \
                    : smemBytes<D_, 4, true>(p->stages)) \
       : (hb == 1   ? smemBytes<D_, 1, false>(p->stages) \
          : hb == 2 ? smemBytes<D_, 2, false>(p->stages) \
                    : smemBytes<D_, 4, false>(p->stages)))
  return p->headDim == 128 ? GQA_SMEM(128) : GQA_SMEM(64);
#undef GQA_SMEM
}

extern "C" int cpclGqaSm90KvMaps(GqaKvMaps* maps, const GqaParams* p, int64_t numPages) {
  using namespace cpcl::gqa90;
  static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  if (!encode) {
    cudaDriverEntryPointQueryResult q;
    void* fn = nullptr;
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn)
      return e != cudaSuccess ? (int)e : (int)cudaErrorNotSupported;
    encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }
  if (!tmaPageSize(p->pageSize) || (p->headDim != 64 && p->headDim != 128)) return -1;
  memset(maps, 0, sizeof *maps);
  const void* base[2] = {p->kCache, p->vCache};
  for (int i = 0; i < 2; i++) {
    if (((uintptr_t)base[i] & 15) != 0) return (int)cudaErrorInvalidValue;
    /* dims: head dim, KV head, slot (page * pageSize + offset); a box is 64 dims of one KV head
     * over min(pageSize, 64) slots of one page */
    const cuuint64_t dims[3] = {(cuuint64_t)p->headDim, (cuuint64_t)p->numKvHeads, (cuuint64_t)numPages * p->pageSize};
    const cuuint64_t strides[2] = {(cuuint64_t)p->headDim * 2, (cuuint64_t)p->numKvHeads * p->headDim * 2};
    const cuuint32_t box[3] = {64, 1, (cuuint32_t)(p->pageSize < kTile ? p->pageSize : kTile)};
    const cuuint32_t estr[3] = {1, 1, 1};
    CUresult r =
        encode(reinterpret_cast<CUtensorMap*>(maps->words[i]),
               p->dtype == 0 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3,
               const_cast<void*>(base[i]), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
               CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) return (int)cudaErrorInvalidValue;
  }
  return 0;
}

extern "C" int cpclGqaSm90Decode(const GqaParams* p, const GqaKvMaps* maps, void* stream) {
  using namespace cpcl::gqa90;
  if (!covered(p) || (p->copyMode == 2 && !maps)) return -1;
  if (p->numTokens == 0) return 0;
  if (cpclGqaSm90SmemBytes(p) > 227 * 1024) return -1;
  return dispatch(p, maps, static_cast<cudaStream_t>(stream), false);
}

extern "C" int cpclGqaSm90MaxActiveClusters(const GqaParams* p) {
  using namespace cpcl::gqa90;
  if (!covered(p) || p->numTokens == 0) return -1;
  return dispatch(p, nullptr, 0, true);
}
