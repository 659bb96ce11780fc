/*
 * gqa_sm90.cu -- launcher of the Hopper GQA decode body (gqa_sm90.cuh): picks the head-block
 * width HB from the group size and launches one cluster of clusterSplits CTAs per (row, KV head,
 * head block).
 */
#include "gqa_sm90.cuh"

namespace cpcl {
namespace gqa90 {

static int headBlockWidth(int G) { return G <= 16 ? 1 : G <= 32 ? 2 : 4; }

template <typename T, int D, int HB>
static int launch(const GqaParams* p, cudaStream_t stream, bool occupancyOnly) {
  const size_t smem = smemBytes<D, HB>(p->stages);
  auto kern = gqaDecodeKernel<T, D, HB>;
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
  e = cudaLaunchKernelEx(&cfg, kern, *p);
  return (int)e;
}

template <typename T, int D>
static int launchD(const GqaParams* p, cudaStream_t s, bool occ) {
  switch (headBlockWidth(p->numHeads / p->numKvHeads)) {
    case 1: return launch<T, D, 1>(p, s, occ);
    case 2: return launch<T, D, 2>(p, s, occ);
    default: return launch<T, D, 4>(p, s, occ);
  }
}

static bool covered(const GqaParams* p) {
  return p->numKvHeads > 0 && p->numHeads % p->numKvHeads == 0 && (p->headDim == 64 || p->headDim == 128) &&
         (p->dtype == 0 || p->dtype == 1) && p->clusterSplits >= 1 && p->clusterSplits <= kMaxCluster &&
         p->chunkMin >= kTile && p->chunkMin % kTile == 0 && p->stages >= 2 && p->stages <= 16 && p->pageSize >= 1 &&
         p->numTokens >= 0 && p->numTokens <= 65535;
}

}  // namespace gqa90
}  // namespace cpcl

extern "C" size_t cpclGqaSm90SmemBytes(const GqaParams* p) {
  using namespace cpcl::gqa90;
  if (!covered(p)) return 0;
  const int hb = headBlockWidth(p->numHeads / p->numKvHeads);
  if (p->headDim == 128)
    return hb == 1 ? smemBytes<128, 1>(p->stages) : hb == 2 ? smemBytes<128, 2>(p->stages) : smemBytes<128, 4>(p->stages);
  return hb == 1 ? smemBytes<64, 1>(p->stages) : hb == 2 ? smemBytes<64, 2>(p->stages) : smemBytes<64, 4>(p->stages);
}

extern "C" int cpclGqaSm90Decode(const GqaParams* p, void* stream) {
  using namespace cpcl::gqa90;
  if (!covered(p)) return -1;
  if (p->numTokens == 0) return 0;
  if (cpclGqaSm90SmemBytes(p) > 227 * 1024) return -1;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p->dtype == 0)
    return p->headDim == 128 ? launchD<__nv_bfloat16, 128>(p, s, false) : launchD<__nv_bfloat16, 64>(p, s, false);
  return p->headDim == 128 ? launchD<__half, 128>(p, s, false) : launchD<__half, 64>(p, s, false);
}

extern "C" int cpclGqaSm90MaxActiveClusters(const GqaParams* p) {
  using namespace cpcl::gqa90;
  if (!covered(p) || p->numTokens == 0) return -1;
  if (p->dtype == 0)
    return p->headDim == 128 ? launchD<__nv_bfloat16, 128>(p, 0, true) : launchD<__nv_bfloat16, 64>(p, 0, true);
  return p->headDim == 128 ? launchD<__half, 128>(p, 0, true) : launchD<__half, 64>(p, 0, true);
}
