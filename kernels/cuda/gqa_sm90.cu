/*
 * gqa_sm90.cu -- host side of the Hopper GQA decode body (gqa_sm90.cuh): the launch (head-block
 * width HB from the group size, one cluster of clusterSplits CTAs per (row, KV head, head block)),
 * the TMA maps, the plan's split constants, and the library's entry (cpclGqaSm90Attn,
 * cpclCudaAttnGqaSm90Plan). Built for sm_90a only (kernels/cuda/meson.build); the entry checks the
 * device. Host statics are atomics or behind a pthread mutex (engines launch from several
 * threads; the build has -fno-threadsafe-statics and links as C), as mla_sm90.cu.
 */
#include <cudaTypedefs.h>
#include <pthread.h>
#include <string.h>

#include <atomic>
#include <type_traits>

#include "dispatch.cuh"
#include "gqa_sm90.cuh"

namespace cpcl {
namespace gqa90 {

static int headBlockWidth(int G) { return G <= 16 ? 1 : G <= 32 ? 2 : 4; }

constexpr int kMaxDevices = 64;
/* per device: compute capability (major * 10 + minor, 0 = not yet asked), and which
 * instantiations have their attributes raised (bit instIndex); racing threads write the same */
std::atomic<int> devCc[kMaxDevices];
std::atomic<unsigned long long> devRaised[kMaxDevices];
std::atomic<unsigned> devMergeRaised[kMaxDevices]; /* bit (dtype, D) of gqaMergeKernel's carveout */
std::atomic<void*> encodeFn{nullptr};

/* bit of (dtype, D, HB, mode) in devRaised: 2 x 2 x 3 x 3 = 36, then the 4 wgmma ones */
template <typename T, int D, int HB, int kMode, bool kWg>
constexpr int instIndex() {
  return kWg ? 36 + std::is_same<T, __half>::value * 2 + (D == 128)
             : ((std::is_same<T, __half>::value * 2 + (D == 128)) * 3 + (HB == 1   ? 0
                                                                         : HB == 2 ? 1
                                                                                   : 2)) *
                       3 +
                   kMode;
}

static int currentDevice() {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    cudaGetLastError();
    return -1;
  }
  return dev;
}

/* the shared-memory and cluster-size attributes, once per device and instantiation: never on
 * the steps of a plan that raised them at creation (cpclCudaAttnGqaSm90Plan), so no attribute
 * call lands inside a stream capture */
template <typename T, int D, int HB, int kMode, bool kWg>
static cudaError_t raise() {
  const int dev = currentDevice();
  const unsigned long long bit = 1ull << instIndex<T, D, HB, kMode, kWg>();
  if (dev >= 0 && (devRaised[dev].load(std::memory_order_acquire) & bit)) return cudaSuccess;
  auto kern = gqaDecodeKernel<T, D, HB, kMode, kWg>;
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
  if (e == cudaSuccess) e = cudaFuncSetAttribute(kern, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  if (e == cudaSuccess && dev >= 0) devRaised[dev].fetch_or(bit, std::memory_order_acq_rel);
  return e;
}

/* the params the kernel reads: the bench's defaults (one block, G from the head counts) filled in */
static GqaParams normalised(const GqaParams* in) {
  GqaParams p = *in;
  if (p.groupSize <= 0) p.groupSize = p.numHeads / p.numKvHeads;
  if (p.headsPerBlock <= 0) p.headsPerBlock = p.headBegin + p.numHeads;
  return p;
}

/* the workspace merge's carveout: the attention's, so the SMs are not reconfigured between the two
 * kernels (as mla_sm90.cu); once per device, on the first launch (outside a capture in the bench) */
template <typename T, int D>
static cudaError_t raiseMerge() {
  const int dev = currentDevice();
  const unsigned bit = 1u << (std::is_same<T, __half>::value * 2 + (D == 128));
  if (dev >= 0 && (devMergeRaised[dev].load(std::memory_order_acquire) & bit)) return cudaSuccess;
  const cudaError_t e = cudaFuncSetAttribute(gqaMergeKernel<T, D>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                             cudaSharedmemCarveoutMaxShared);
  if (e == cudaSuccess && dev >= 0) devMergeRaised[dev].fetch_or(bit, std::memory_order_acq_rel);
  return e;
}

template <typename T, int D, int HB, int kMode, bool kWg = false>
static int launch(const GqaParams* p, const GqaKvMaps* maps, cudaStream_t stream, bool occupancyOnly) {
  const size_t smem = smemBytes<D, HB, kMode == 2>(p->stages);
  auto kern = gqaDecodeKernel<T, D, HB, kMode, kWg>;
  CUtensorMap km, vm;
  memset(&km, 0, sizeof km);
  memset(&vm, 0, sizeof vm);
  if (maps) {
    memcpy(&km, maps->words[0], sizeof km);
    memcpy(&vm, maps->words[1], sizeof vm);
  }
  cudaError_t e = raise<T, D, HB, kMode, kWg>();
  if (e != cudaSuccess) return (int)e;
  const int G = p->groupSize, headEnd = p->headBegin + p->numHeads;
  const int headBlocks = ((G < p->numHeads ? G : p->numHeads) + 16 * HB - 1) / (16 * HB);
  const int nKv = (headEnd - 1) / G - p->headBegin / G + 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)(p->clusterSplits * p->numTokens), (unsigned)(headBlocks * nKv), 1);
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  /* the workspace merge launches no cluster: its splits are independent CTAs */
  const bool ws = p->wsO != nullptr;
  cudaLaunchAttribute attr[2];
  int na = 0;
  if (!ws) {
    attr[na].id = cudaLaunchAttributeClusterDimension;
    attr[na].val.clusterDim.x = (unsigned)p->clusterSplits;
    attr[na].val.clusterDim.y = 1;
    attr[na].val.clusterDim.z = 1;
    na++;
  }
  if (p->pdl && !occupancyOnly) {
    attr[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[na].val.programmaticStreamSerializationAllowed = 1;
    na++;
  }
  cfg.attrs = attr;
  cfg.numAttrs = na;
  if (occupancyOnly) {
    int n = 0;
    if (!ws) {
      e = cudaOccupancyMaxActiveClusters(&n, kern, &cfg);
      return e == cudaSuccess ? n : -(int)e;
    }
    /* resident CTAs of the device (each its own "cluster") */
    int dev = 0, sms = 0;
    e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kern, kThreads, smem);
    return e == cudaSuccess ? n * sms : -(int)e;
  }
  e = cudaLaunchKernelEx(&cfg, kern, km, vm, *p);
  if (e != cudaSuccess || !ws || p->clusterSplits == 1) return (int)e;
  /* the merge: a programmatic dependent, its launch overlapping the attention's last wave */
  e = raiseMerge<T, D>();
  if (e != cudaSuccess) return (int)e;
  const int64_t units = (int64_t)p->numTokens * p->numHeads;
  cudaLaunchConfig_t mc = {};
  mc.gridDim = dim3((unsigned)((units + kMergeWarps - 1) / kMergeWarps), 1, 1);
  mc.blockDim = dim3(32 * kMergeWarps, 1, 1);
  mc.stream = stream;
  cudaLaunchAttribute ma[1];
  ma[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  ma[0].val.programmaticStreamSerializationAllowed = 1;
  mc.attrs = ma;
  mc.numAttrs = 1;
  return (int)cudaLaunchKernelEx(&mc, gqaMergeKernel<T, D>, *p);
}

template <typename T, int D, int kMode>
static int launchM(const GqaParams* p, const GqaKvMaps* m, cudaStream_t s, bool occ) {
  switch (headBlockWidth(p->groupSize < p->numHeads ? p->groupSize : p->numHeads)) {
    case 1:
      return launch<T, D, 1, kMode>(p, m, s, occ);
    case 2:
      return launch<T, D, 2, kMode>(p, m, s, occ);
    default:
      if (p->consumer == 1) {
        if constexpr (kMode == 2) return launch<T, D, 4, 2, true>(p, m, s, occ);
        return -1;
      }
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

/* p normalised: the shape and constants the kernel covers */
static bool covered(const GqaParams* p) {
  return p->numKvHeads > 0 && p->numHeads > 0 && p->groupSize > 0 && p->headBegin >= 0 && p->headsPerBlock > 0 &&
         p->headBegin + p->numHeads <= p->groupSize * p->numKvHeads && (p->headDim == 64 || p->headDim == 128) &&
         (p->dtype == 0 || p->dtype == 1) && p->clusterSplits >= 1 &&
         p->clusterSplits <= (p->wsO ? kMaxWsSplits : kMaxCluster) && (!p->wsO || p->wsLse) && p->chunkMin >= kTile &&
         p->chunkMin % kTile == 0 && p->stages >= 2 && p->stages <= 16 && p->pageSize >= 1 && p->numTokens >= 0 &&
         (int64_t)p->numTokens * p->clusterSplits <= 0x7fffffffLL && p->copyMode >= 0 && p->copyMode <= 2 &&
         (p->copyMode != 2 || tmaPageSize(p->pageSize)) && p->consumer >= 0 && p->consumer <= 1 &&
         (p->consumer == 0 ||
          (p->copyMode == 2 && headBlockWidth(p->groupSize < p->numHeads ? p->groupSize : p->numHeads) == 4));
}

static size_t smemOf(const GqaParams* p) {
  const int hb = headBlockWidth(p->groupSize < p->numHeads ? p->groupSize : p->numHeads);
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

int deviceCc() {
  const int dev = currentDevice();
  if (dev < 0) return -1;
  int cc = devCc[dev].load(std::memory_order_acquire);
  if (cc == 0) {
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
      cudaGetLastError();
      return -1;
    }
    cc = major * 10 + minor;
    devCc[dev].store(cc, std::memory_order_release);
  }
  return cc;
}

/* the library's shapes: q, KV and out of one 16-bit type, 64 or 128 dims, not latent */
bool shapeOk(const cpclAttnParams_t* p) {
  return (p->qType == CPCL_K_BF16 || p->qType == CPCL_K_FP16) && p->kvType == p->qType && !p->latentKv &&
         p->headDimQk == p->headDimVo && (p->headDimQk == 64 || p->headDimQk == 128) && p->numKvHeads > 0;
}

/* Tensor maps by (caches, page size, KV heads, dims, dtype), as mla_sm90.cu: encoding is a driver
 * call, an engine passes the same few caches every step, and the map's extent is the largest a
 * coordinate can name, so an entry never goes stale; a full table replaces round robin. */
struct MapEntry {
  const void *k, *v;
  int pageSize, hkv, d, dtype;
  GqaKvMaps maps;
};
constexpr int kMapEntries = 128;
MapEntry mapCache[kMapEntries];
int mapCount, mapNext;
pthread_mutex_t mapLock = PTHREAD_MUTEX_INITIALIZER;

int cachedMaps(GqaKvMaps* out, const GqaParams* p) {
  pthread_mutex_lock(&mapLock);
  for (int i = 0; i < mapCount; i++) {
    const MapEntry& m = mapCache[i];
    if (m.k == p->kCache && m.v == p->vCache && m.pageSize == p->pageSize && m.hkv == p->numKvHeads &&
        m.d == p->headDim && m.dtype == p->dtype) {
      *out = m.maps;
      pthread_mutex_unlock(&mapLock);
      return 0;
    }
  }
  pthread_mutex_unlock(&mapLock);
  /* slots (page * pageSize + offset) the body's int coordinates can name */
  if (int e = cpclGqaSm90KvMaps(out, p, (int64_t)INT32_MAX / p->pageSize)) return e;
  pthread_mutex_lock(&mapLock);
  const int i = mapCount < kMapEntries ? mapCount++ : (mapNext++ % kMapEntries);
  mapCache[i] = MapEntry{p->kCache, p->vCache, p->pageSize, p->numKvHeads, p->headDim, p->dtype, *out};
  pthread_mutex_unlock(&mapLock);
  return 0;
}

}  // namespace gqa90
}  // namespace cpcl

using cpcl::invalidValue;

extern "C" int cpclGqaSm90TmaPageSizeOk(int pageSize) { return cpcl::gqa90::tmaPageSize(pageSize); }

extern "C" size_t cpclGqaSm90WorkspaceBytes(const GqaParams* p) {
  return (size_t)(p->numTokens > 0 ? p->numTokens : 0) * (size_t)(p->numHeads > 0 ? p->numHeads : 0) *
         (size_t)(p->clusterSplits > 0 ? p->clusterSplits : 0) * ((size_t)p->headDim + 1) * sizeof(float);
}

extern "C" size_t cpclGqaSm90SmemBytes(const GqaParams* in) {
  using namespace cpcl::gqa90;
  const GqaParams p = normalised(in);
  return covered(&p) ? smemOf(&p) : 0;
}

extern "C" int cpclGqaSm90KvMaps(GqaKvMaps* maps, const GqaParams* p, int64_t numPages) {
  using namespace cpcl::gqa90;
  void* fn = encodeFn.load(std::memory_order_acquire);
  if (!fn) {
    cudaDriverEntryPointQueryResult q;
#if CUDART_VERSION >= 12050
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
#else /* the build takes nvcc 12.1 on (meson.build); ByVersion came with 12.5 */
    cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &q);
#endif
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn) {
      cudaGetLastError();
      return e != cudaSuccess ? (int)e : (int)cudaErrorNotSupported;
    }
    encodeFn.store(fn, std::memory_order_release);
  }
  const auto encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
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

extern "C" int cpclGqaSm90Decode(const GqaParams* in, const GqaKvMaps* maps, void* stream) {
  using namespace cpcl::gqa90;
  const GqaParams p = normalised(in);
  if (!covered(&p) || (p.copyMode == 2 && !maps)) return -1;
  if (p.numTokens == 0) return 0;
  if (smemOf(&p) > 227 * 1024) return -1;
  return dispatch(&p, maps, static_cast<cudaStream_t>(stream), false);
}

extern "C" int cpclGqaSm90MaxActiveClusters(const GqaParams* in) {
  using namespace cpcl::gqa90;
  const GqaParams p = normalised(in);
  if (!covered(&p) || p.numTokens == 0) return -1;
  return dispatch(&p, nullptr, 0, true);
}

extern "C" void cpclGqaSm90Plan(int maxTokens, int numKvHeads, int groupSize, int* clusterSplits, int* chunkMin) {
  /* measured on the H200 (docs/GQA_SM90.md, run 3): the winners per shape, picked by what the
   * plan knows (never the batch: a row's split layout, so its bits, must not depend on it) */
  const int64_t work = (int64_t)(maxTokens > 0 ? maxTokens : 1) * (numKvHeads > 0 ? numKvHeads : 1);
  if (groupSize > 16 || work < 16) {
    *clusterSplits = 16;
    *chunkMin = 256;
  } else if (work >= 512) {
    *clusterSplits = 4;
    *chunkMin = 1024;
  } else {
    *clusterSplits = 8;
    *chunkMin = 256;
  }
}

/* the body's stages: 3 measured best or tied everywhere (run 3) */
constexpr int kStages = 3;

static GqaParams fromAttn(const cpclAttnParams_t* a, int copyMode) {
  GqaParams p;
  memset(&p, 0, sizeof p);
  p.numSeqs = a->numSeqs;
  p.numTokens = a->numTokens;
  p.queryStart = a->queryStart;
  p.seqLens = a->seqLens;
  p.blockTable = a->blockTable;
  p.maxPagesPerSeq = a->maxPagesPerSeq;
  p.cpSize = a->cpSize;
  p.cpRank = a->cpRank;
  p.interleave = a->interleave;
  p.pageSize = a->pageSize;
  p.numHeads = a->numHeads;
  p.numKvHeads = a->numKvHeads;
  p.groupSize = a->groupSize;
  p.headBegin = a->headBegin;
  p.headsPerBlock = a->headsPerBlock;
  p.headDim = a->headDimQk;
  p.dtype = a->qType == CPCL_K_BF16 ? 0 : 1;
  p.smScale = a->smScale;
  p.lseBase2 = a->lseBase2;
  p.q = a->q;
  p.qBlockStride = a->qBlockStride;
  p.qTokenStride = a->qTokenStride;
  p.kCache = a->kCache;
  p.vCache = a->vCache;
  p.out = a->out;
  p.oBlockStride = a->oBlockStride;
  p.oTokenStride = a->oTokenStride;
  p.lse = a->lse;
  p.lseBlockStride = a->lseBlockStride;
  p.lseTokenStride = a->lseTokenStride;
  p.errorFlag = a->errorFlag;
  p.clusterSplits = a->gqaSm90Splits;
  p.chunkMin = a->gqaSm90ChunkMin;
  p.stages = kStages;
  p.copyMode = copyMode;
  return p;
}

extern "C" int cpclGqaSm90Attn(const cpclAttnParams_t* a, void* stream) {
  using namespace cpcl::gqa90;
  if (a->gqaSm90Splits < 1 || !shapeOk(a) || a->qBlock[0] || a->outBlock[0]) return -1;
  if (deviceCc() != 90) return -1;
  if (a->gqaSm90Splits > kMaxCluster || a->gqaSm90ChunkMin < kTile || a->gqaSm90ChunkMin % kTile)
    return invalidValue(
        "gqaSm90Splits = %d, gqaSm90ChunkMin = %d: the Hopper GQA body takes 1 .. %d splits and a "
        "chunk of a multiple of %d keys",
        a->gqaSm90Splits, a->gqaSm90ChunkMin, kMaxCluster, kTile);
  if (a->groupSize < 1 || a->headBegin < 0 || a->numHeads < 1 || a->headsPerBlock < 1 ||
      a->headBegin + a->numHeads > a->groupSize * a->numKvHeads)
    return invalidValue(
        "heads [%d, +%d) of groups of %d over %d KV heads, blocks of %d: not a range the Hopper GQA "
        "body covers",
        a->headBegin, a->numHeads, a->groupSize, a->numKvHeads, a->headsPerBlock);
  if ((int64_t)a->numTokens * a->gqaSm90Splits > 0x7fffffffLL)
    return invalidValue("numTokens = %d: %d rows of %d splits exceed the Hopper GQA body's grid", a->numTokens,
                        a->numTokens, a->gqaSm90Splits);
  /* TMA where the boxes fit the pages and the caches are 16-byte aligned; cp.async reads any */
  const bool tma = tmaPageSize(a->pageSize) && ((uintptr_t)a->kCache & 15) == 0 && ((uintptr_t)a->vCache & 15) == 0;
  GqaParams p = fromAttn(a, tma ? 2 : 0);
  GqaKvMaps maps;
  if (tma) {
    if (int e = cachedMaps(&maps, &p)) {
      if (e > 0)
        return invalidValue("the TMA maps of kCache %p / vCache %p (page %d) failed: %s", a->kCache, a->vCache,
                            a->pageSize, cudaGetErrorString((cudaError_t)e));
      p.copyMode = 0;
    }
  }
  if (p.numTokens == 0) return 0;
  return dispatch(&p, p.copyMode == 2 ? &maps : nullptr, static_cast<cudaStream_t>(stream), false);
}

extern "C" int cpclCudaAttnGqaSm90Plan(const cpclAttnParams_t* shape, int maxTokens, int* chunkMin) {
  using namespace cpcl::gqa90;
  *chunkMin = 0;
  if (!shapeOk(shape) || shape->numHeads < 1 || shape->numHeads % shape->numKvHeads || deviceCc() != 90) return 0;
  const int G = shape->groupSize > 0 ? shape->groupSize : shape->numHeads / shape->numKvHeads;
  int cl, cm;
  cpclGqaSm90Plan(maxTokens, shape->numKvHeads, G, &cl, &cm);
  /* a driver that cannot load the sm_90a code: plans keep the other bodies rather than fail every
   * step; the attributes of this shape's instantiations are raised here, at plan creation */
  GqaParams p;
  memset(&p, 0, sizeof p);
  p.numHeads = shape->numHeads;
  p.numKvHeads = shape->numKvHeads;
  p.groupSize = G;
  p.headsPerBlock = shape->numHeads;
  p.headDim = shape->headDimQk;
  p.dtype = shape->qType == CPCL_K_BF16 ? 0 : 1;
  p.clusterSplits = cl;
  p.chunkMin = cm;
  p.stages = kStages;
  p.pageSize = shape->pageSize;
  p.numTokens = 1;
  /* every head-block width a call of this plan can take (a schedule's sub-range of fewer heads
   * than G takes a narrower one), both copy modes */
  const int heads = G < shape->numHeads ? G : shape->numHeads;
  for (int w = 16; w <= 64; w *= 2) {
    if (w > 16 && heads <= w / 2) break;
    p.numHeads = heads < w ? heads : w;
    p.headsPerBlock = p.numHeads;
    for (int mode = 0; mode <= 2; mode += 2) {
      if (mode == 2 && !tmaPageSize(shape->pageSize)) continue;
      p.copyMode = mode;
      if (dispatch(&p, nullptr, 0, true) <= 0) {
        cudaGetLastError();
        return 0;
      }
    }
  }
  *chunkMin = cm;
  return cl;
}
