/*
 * gqa_sm90.cu -- host side of the Hopper GQA decode body (gqa_sm90.cuh): the launch (head-block
 * width HB from the group size, clusterSplits CTAs per (row, KV head, head block): one cluster, or
 * unclustered with the workspace merge kernel after them or the merge in the last split's tail),
 * the TMA maps, the plan's split
 * constants (cpclGqaSm90Plan), and the library's entry (cpclGqaSm90Attn, cpclCudaAttnGqaSm90Plan). Built for sm_90a
 * only (kernels/cuda/meson.build); the entry checks the device. Host statics are atomics or behind a pthread mutex
 * (engines launch from several threads; the build has -fno-threadsafe-statics and links as C), as mla_sm90.cu.
 */
#include <cudaTypedefs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <type_traits>

#include "dispatch.cuh"
#include "env_setting.h"
#include "gqa_sm90.cuh"
#include "pdl_launch.cuh"

namespace cpcl {
namespace gqa90 {

/* per device: compute capability (major * 10 + minor, 0 = not yet asked), and which
 * instantiations have their attributes raised (devRaised, gqa_sm90.cuh); racing threads write the same */
std::atomic<int> devCc[kMaxDevices];
std::atomic<int> devSms[kMaxDevices]; /* SM count, stored before devCc */
std::atomic<unsigned long long> devRaised[kMaxDevices][3];
std::atomic<unsigned> devMergeRaised[kMaxDevices]; /* bit (dtype, D) of gqaMergeKernel's carveout */
std::atomic<void*> encodeFn{nullptr};

/* the shared-memory and cluster-size attributes, once per device and instantiation: never on
 * the steps of a plan that raised them at creation (cpclCudaAttnGqaSm90Plan), so no attribute
 * call lands inside a stream capture */
template <typename T, int D, int HB, int kMode, bool kWg, bool kTail>
static cudaError_t raise() {
  const int dev = currentDevice();
  const unsigned long long bit = 1ull << instIndex<T, D, HB, kMode, kWg>();
  if (dev >= 0 && (devRaised[dev][kTail].load(std::memory_order_acquire) & bit)) return cudaSuccess;
  auto kern = gqaDecodeKernel<T, D, HB, kMode, kWg, kTail>;
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
  if (e == cudaSuccess) e = cudaFuncSetAttribute(kern, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  if (e == cudaSuccess && dev >= 0) devRaised[dev][kTail].fetch_or(bit, std::memory_order_acq_rel);
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
  cudaError_t e = cudaFuncSetAttribute(gqaMergeKernel<T, D>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                       cudaSharedmemCarveoutMaxShared);
  if (e == cudaSuccess)
    e = cudaFuncSetAttribute(gqaMergeKernel<T, D, true>, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared);
  if (e == cudaSuccess && dev >= 0) devMergeRaised[dev].fetch_or(bit, std::memory_order_acq_rel);
  return e;
}

template <typename T, int D, int HB, int kMode, bool kWg, bool kTail>
static int launch(const GqaParams* p, const GqaKvMaps* maps, cudaStream_t stream, bool occupancyOnly) {
  const size_t smem = smemBytes<D, HB, kMode == 2>(p->stages);
  auto kern = gqaDecodeKernel<T, D, HB, kMode, kWg, kTail>;
  CUtensorMap km, vm;
  memset(&km, 0, sizeof km);
  memset(&vm, 0, sizeof vm);
  if (maps) {
    memcpy(&km, maps->words[0], sizeof km);
    memcpy(&vm, maps->words[1], sizeof vm);
  }
  cudaError_t e = raise<T, D, HB, kMode, kWg, kTail>();
  if (e != cudaSuccess) return (int)e;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)(p->clusterSplits * p->numTokens), (unsigned)gridY(p), 1);
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
  /* the tail merge (wsCount) leaves nothing for a second kernel */
  if (e != cudaSuccess || !ws || p->clusterSplits == 1 || p->wsCount) return (int)e;
  /* the merge: a programmatic dependent, its launch overlapping the attention's last wave */
  e = raiseMerge<T, D>();
  if (e != cudaSuccess) return (int)e;
  const int64_t units = (int64_t)p->numTokens * p->numHeads;
  /* the spread form for few units (session 11, calls 4-5: B1 H16 11.7 -> 10.9 us, B64 / B16 H16
   * (1024 / 256 units) ~1 us faster; B32 H64 (2048 units) 1.7 us slower with it, so main's form) */
  if (units <= kMergeSpreadUnits)
    return (int)launchPdl(gqaMergeKernel<T, D, true>, dim3((unsigned)units), dim3(32), 0, stream, true, *p);
  return (int)launchPdl(gqaMergeKernel<T, D>, dim3((unsigned)((units + kMergeWarps - 1) / kMergeWarps)),
                        dim3(32 * kMergeWarps), 0, stream, true, *p);
}

/* f set: the fused kernel's instantiation (gqa_sm90_fused.cu; occ raises its attribute only);
 * form 2 (wsCount) launches the kTail instantiation, everything else the one without the merge code */
template <typename T, int D, int HB, int kMode, bool kWg = false>
static int launchT(const GqaParams* p, const GqaKvMaps* m, const cpclFusedParams_t* f, cudaStream_t s, bool occ) {
  if (f) {
    if constexpr (kMode != 1) return launchFused<T, D, HB, kMode, kWg>(p, m, f, s, occ);
    return -1; /* the per-row bulk copies: a measurement mode, never the library's */
  }
  return p->wsCount ? launch<T, D, HB, kMode, kWg, true>(p, m, s, occ)
                    : launch<T, D, HB, kMode, kWg, false>(p, m, s, occ);
}
template <typename T, int D, int kMode>
static int launchM(const GqaParams* p, const GqaKvMaps* m, const cpclFusedParams_t* f, cudaStream_t s, bool occ) {
  switch (headBlockWidth(p->groupSize < p->numHeads ? p->groupSize : p->numHeads)) {
    case 1:
      return launchT<T, D, 1, kMode>(p, m, f, s, occ);
    case 2:
      return launchT<T, D, 2, kMode>(p, m, f, s, occ);
    default:
      if (p->consumer == 1) {
        if constexpr (kMode == 2) return launchT<T, D, 4, 2, true>(p, m, f, s, occ);
        return -1;
      }
      return launchT<T, D, 4, kMode>(p, m, f, s, occ);
  }
}
template <typename T, int D>
static int launchD(const GqaParams* p, const GqaKvMaps* m, const cpclFusedParams_t* f, cudaStream_t s, bool occ) {
  if (p->copyMode == 2) return launchM<T, D, 2>(p, m, f, s, occ);
  if (p->copyMode == 1) return launchM<T, D, 1>(p, m, f, s, occ);
  return launchM<T, D, 0>(p, m, f, s, occ);
}
static int dispatch(const GqaParams* p, const GqaKvMaps* m, cudaStream_t s, bool occ,
                    const cpclFusedParams_t* f = nullptr) {
  if (p->dtype == 0)
    return p->headDim == 128 ? launchD<__nv_bfloat16, 128>(p, m, f, s, occ)
                             : launchD<__nv_bfloat16, 64>(p, m, f, s, occ);
  return p->headDim == 128 ? launchD<__half, 128>(p, m, f, s, occ) : launchD<__half, 64>(p, m, f, s, occ);
}
static bool tmaPageSize(int ps) { return ps > 0 && ((ps % 8 == 0 && 64 % ps == 0) || ps % 64 == 0); }

/* p normalised: the shape and constants the kernel covers */
static bool covered(const GqaParams* p) {
  return p->numKvHeads > 0 && p->numHeads > 0 && p->groupSize > 0 && p->headBegin >= 0 && p->headsPerBlock > 0 &&
         p->headBegin + p->numHeads <= p->groupSize * p->numKvHeads && (p->headDim == 64 || p->headDim == 128) &&
         (p->dtype == 0 || p->dtype == 1) && p->clusterSplits >= 1 &&
         p->clusterSplits <= (p->wsO ? kMaxWsSplits : kMaxCluster) && (!p->wsO || p->wsLse) &&
         (!p->wsCount || p->wsO) && p->chunkMin >= kTile && p->chunkMin % kTile == 0 && p->stages >= 2 &&
         p->stages <= 16 && p->pageSize >= 1 && p->numTokens >= 0 &&
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

/* the current device's compute capability (and SM count); -1 when it cannot be asked */
int deviceCc(int* sms = nullptr) {
  const int dev = currentDevice();
  if (dev < 0) return -1;
  int cc = devCc[dev].load(std::memory_order_acquire);
  if (cc == 0) {
    int major = 0, minor = 0, n = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      return -1;
    }
    cc = major * 10 + minor;
    devSms[dev].store(n, std::memory_order_relaxed);
    devCc[dev].store(cc, std::memory_order_release);
  }
  if (sms) *sms = devSms[dev].load(std::memory_order_relaxed);
  return cc;
}

/* the merge kernel's carveout for a plan's (dtype, D), raised at plan creation (not in a capture) */
static cudaError_t raiseMergeOf(int dtype, int D) {
  if (dtype == 0) return D == 128 ? raiseMerge<__nv_bfloat16, 128>() : raiseMerge<__nv_bfloat16, 64>();
  return D == 128 ? raiseMerge<__half, 128>() : raiseMerge<__half, 64>();
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

/* wsO ([rows][heads][splits][D] fp32), then wsLse ([rows][heads][splits]) */
static size_t cpclGqaSm90WorkspaceBytesOf(int64_t rows, int64_t heads, int headDim, int splits) {
  if (rows <= 0 || heads <= 0 || splits <= 0 || headDim <= 0) return 0;
  return (size_t)rows * (size_t)heads * (size_t)splits * ((size_t)headDim + 1) * sizeof(float);
}

extern "C" size_t cpclGqaSm90WorkspaceBytes(const GqaParams* p) {
  return cpclGqaSm90WorkspaceBytesOf(p->numTokens, p->numHeads, p->headDim, p->clusterSplits);
}

extern "C" size_t cpclGqaSm90CounterCount(const GqaParams* in) {
  using namespace cpcl::gqa90;
  const GqaParams p = normalised(in);
  if (p.numTokens <= 0 || p.numHeads <= 0 || p.groupSize <= 0) return 0;
  return (size_t)p.numTokens * (size_t)gridY(&p);
}

extern "C" size_t cpclCudaAttnGqaSm90WorkspaceBytes(int maxTokens, int numHeads, int headDimVo, int splits) {
  return splits > 1 ? cpclGqaSm90WorkspaceBytesOf(maxTokens, numHeads, headDimVo, splits) : 0;
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

#ifdef CPCL_GQA_TRACE
/* the timeline's table (GQA90_MARK, gqa_sm90.cuh): kTraceSlots x kTraceMarks global-timer values,
 * zeroed after the copy; 0 or a cudaError_t */
extern "C" int cpclGqaSm90TraceRead(unsigned long long* dst) {
  using namespace cpcl::gqa90;
  const size_t bytes = sizeof(unsigned long long) * kTraceSlots * kTraceMarks;
  cudaError_t e = cudaMemcpyFromSymbol(dst, gqaTrace, bytes);
  if (e == cudaSuccess) {
    void* a = nullptr;
    e = cudaGetSymbolAddress(&a, gqaTrace);
    if (e == cudaSuccess) e = cudaMemset(a, 0, bytes);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
  }
  return (int)e;
}
#endif

extern "C" int cpclGqaSm90MaxActiveClusters(const GqaParams* in) {
  using namespace cpcl::gqa90;
  const GqaParams p = normalised(in);
  if (!covered(&p) || p.numTokens == 0) return -1;
  return dispatch(&p, nullptr, 0, true);
}

/* The plan rule (docs/GQA_SM90.md "Session 3b"), measured on the H200 (run 4, page 16, graph
 * replays; library before -> this rule): B64 H16/1 L8k 104.5 -> 77.4 us (S, CL 4); B16 H16/1
 * L32k 81.7 -> 77-78 (S, CL 16; CL 8 was 75.4); B128 H64/8 L4k 633.4 -> 562.6 (S, CL 4); B1
 * H16/1 L4k 14.7 -> 11.5 (S, CL 64, chunk 128); B32 H64/1 L32k 253.4 -> 148.1 (S + W, CL 8); B8
 * H64/1 L128k 332.4 -> 147.8 (S + W, CL 32). A full wave is kCtasPerSm CTAs an SM (2: ~100 KB of
 * shared memory and 168 registers each); a plan of maxTokens rows launches maxTokens x Hkv x
 * head-block CTAs a split, so CL is the power of two nearest (in log scale) to one wave over
 * that count, 1 .. 64. The floor was 4 until session 20 timed fewer (H100, kernel_perf, library
 * plan, CPCL_GQA_SM90_SPLITS forced, us, CL 4 / 2 / 1): B128 H64/8 L4k (1024 CTAs a split) 736.4 /
 * 723.6 / 703.9, B128 H16/1 L4k (128) 104.4 / 101.8 / 95.8; the bench's S form the same (734.6 /
 * 712.6 / 698.0): a split's prologue, partials and merge cost more than the wave they fill. The
 * rule so gives those two CL 1 and 2, and every shape of at most ~93 CTAs a split (one wave /
 * 2.83) its old CL.
 * chunkMin 256 (at 64 splits 128: B1 L4k in 32 splits of 128 keys beat 16 of 256 and 64 of 64).
 * Only the plan's own figures enter, never the batch: a row's split layout (so its bits) depends
 * on its own length and these constants alone. The workspace form (unclustered splits, fp32
 * partials, a merge kernel) won every timed shape over the clusters, which lose to cluster
 * placement (62 clusters of 4 or 30 of 8 resident, where 64 were launched); the clusters stay
 * only where the workspace for maxTokens rows would pass kMaxWsBytes (the cap of the CUDA-core
 * body's split workspace, cpclCudaAttnMaxSplits): they need none. */
constexpr int kCtasPerSm = 2, kMinSplits = 1;
constexpr size_t kMaxWsBytes = (size_t)256 << 20;
/* Where the workspace form merges (docs/GQA_SM90.md "Session 4" and "Session 4b"): in the last
 * split's tail (form 2) when the partials one CTA then reads, a unit's min(G, head block) heads x CL
 * x D x 4 bytes, stay within kTailMergeBytes, else in the merge kernel (form 1). H200 (2026-12-01d,
 * the tail code then compiled into form 1's kernels too): B128 H64/8 L4k (16 KB) gained 562 -> 538
 * us, B64 H16/1 L8k (32 KB) lost 79.6 -> 81.0, B16 H16/1 L32k (128 KB: one CTA streams 4 batches of
 * 16 loads a lane, where the merge kernel's 64 CTAs take one) lost 79.9 -> 88.5; so 16 KB, the
 * measured gain only. The rule only moves the merge; CL and chunkMin stay, so both forms give the
 * same bits and forcing one (CPCL_GQA_SM90_MERGE) changes time only. */
constexpr size_t kTailMergeBytes = (size_t)16 << 10;
/* Inside the fused kernel (gqa_sm90_fused.cu) form 1's merge runs in split-merge CTAs that start as
 * the attention CTAs leave, so a unit's partials take a CTA launch more than the tail's; the tail
 * stays up to kFusedTailBytes (H200, session 17, fused / a2a median us, split-merge CTAs or tail:
 * B64 H16/1 L8k (32 KB) 84.1 or 80.2-80.8 / 77.1; B16 H16/1 L32k (128 KB) 80.1-80.3 or 87.1-87.5 /
 * 77.0; B32 H64/1 L32k (256 KB) 163.0-163.6 or 210-211; B8 H64/1 L128k (1 MB) 156.6-157.2 or 254-255) */
constexpr size_t kFusedTailBytes = (size_t)32 << 10;

/* CPCL_GQA_SM90_MERGE, read once per process: 0 the rule, 1 "kernel", 2 "tail" (anything else 0) */
static std::atomic<int> mergeForm{-1};
static int mergeFormForced() {
  return cpcl::settingNow(mergeForm, "CPCL_GQA_SM90_MERGE", [](const char* e) {
    return e == nullptr ? 0 : strcmp(e, "kernel") == 0 ? 1 : strcmp(e, "tail") == 0 ? 2 : 0;
  });
}
/* the body's stages: 3 measured best or tied everywhere (run 3) */
constexpr int kStages = 3;
/* Measurement knobs (docs/GQA_SM90.md "Session 19"), each read once per process; unset or out of
 * range: the rule's value. CPCL_GQA_SM90_SPLITS = 1 .. 64: every plan's split count (CL); its
 * chunkMin and merge form follow from it by the rule. CPCL_GQA_SM90_STAGES = 2 .. kMaxStages: the
 * body's stages (above 3 at D 128 one CTA an SM fits, and the plan's wave and the fused kernel's
 * waiting-CTA room follow ctasPerSm). A forced value changes a row's split layout, so its bits,
 * for every row alike: batch invariance holds under any one setting. */
constexpr int kMaxStages = 6; /* 6 x 34 KB cp.async stages of D 128 fit 227 KB; 7 would not */
static std::atomic<int> splitsSet{-1}, stagesSet{-1};
static int splitsForced() {
  return cpcl::settingNow(splitsSet, "CPCL_GQA_SM90_SPLITS", [](const char* e) {
    const int v = e ? atoi(e) : 0;
    return v >= 1 && v <= cpcl::gqa90::kMaxWsSplits ? v : 0;
  });
}
static int stagesNow() {
  return cpcl::settingNow(stagesSet, "CPCL_GQA_SM90_STAGES", [](const char* e) {
    const int v = e ? atoi(e) : 0;
    return v >= 2 && v <= kMaxStages ? v : kStages;
  });
}
/* CTAs of the body an SM holds at `stages` (head dim D): the launch bound's 2 (registers) unless
 * the shared memory (227 KB a CTA at most, 228 KB an SM, 1 KB of it reserved a CTA) holds fewer */
static int ctasPerSm(int stages, int D) {
  using namespace cpcl::gqa90;
  const size_t smem = D == 64 ? smemBytes<64, 4, false>(stages) : smemBytes<128, 4, false>(stages);
  const int n = (int)((size_t)228 * 1024 / (smem + 1024));
  return n < 1 ? 1 : n > kCtasPerSm ? kCtasPerSm : n;
}
extern "C" void cpclGqaSm90Plan(int maxTokens, int numKvHeads, int groupSize, int headDim, int numSms,
                                int* clusterSplits, int* chunkMin, int* workspace) {
  using namespace cpcl::gqa90;
  const int64_t rows = maxTokens > 0 ? maxTokens : 1, hkv = numKvHeads > 0 ? numKvHeads : 1;
  const int G = groupSize > 0 ? groupSize : 1, hc = 16 * headBlockWidth(G);
  const int64_t ctas = rows * hkv * ((G + hc - 1) / hc);
  const int dims = headDim > 0 ? headDim : 128;
  const double wave = (double)ctasPerSm(stagesNow(), dims) * (numSms > 0 ? numSms : 132),
               splitsForWave = wave / (double)ctas;
  int cl = kMinSplits;
  while (cl < kMaxWsSplits && splitsForWave >= cl * 1.4142135623730951) cl *= 2;
  if (const int forced = splitsForced()) cl = forced;
  const size_t ws = cpclGqaSm90WorkspaceBytesOf(rows, (int64_t)G * hkv, dims, cl);
  *workspace = ws <= kMaxWsBytes;
  if (!*workspace && cl > kMaxCluster) cl = kMaxCluster;
  if (*workspace) {
    const size_t tail = (size_t)(G < hc ? G : hc) * cl * dims * sizeof(float);
    const int forced = mergeFormForced();
    *workspace = forced ? forced : tail <= kTailMergeBytes ? 2 : 1;
  }
  *clusterSplits = cl;
  *chunkMin = cl >= 64 ? 128 : 256;
}

/* CPCL_GQA_SM90_L2, read once per process: GqaParams.l2Hint of the library's launches, 1 (K/V boxes
 * evict-first) unless the variable is "0" (the measurement knob of docs/GQA_SM90.md "Session 15") */
static std::atomic<int> l2HintSet{-1};
static int l2HintOf(const char* e) { return e != nullptr && strcmp(e, "0") == 0 ? 0 : 1; }
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
  p.stages = stagesNow();
  p.copyMode = copyMode;
  p.l2Hint = cpcl::settingNow(l2HintSet, "CPCL_GQA_SM90_L2", l2HintOf);
  return p;
}

/* The launch of a's call (cpclGqaSm90Attn, and cpclGqaSm90Fused with fused): -1 where the body does
 * not take it, an error, or 0 with *p and *maps (copyMode 2) ready */
static int prepare(const cpclAttnParams_t* a, bool fused, GqaParams* out, GqaKvMaps* maps) {
  using namespace cpcl::gqa90;
  if (a->gqaSm90Splits < 1 || !shapeOk(a)) return -1;
  /* the fused kernel addresses every block by its base, the plain launch by the strided layout */
  if (fused ? !a->qBlock[0] || !a->outBlock[0] : a->qBlock[0] || a->outBlock[0]) return -1;
  /* inside the fused kernel a row's splits merge in the last one's tail (form 2) or in its
   * split-merge CTAs (form 1): a workspace and, for several splits, the arrival counters (form 0's
   * clusters cannot be hosted) */
  if (fused && (a->gqaSm90Workspace == 0 || (a->gqaSm90Splits > 1 && !a->splitCounters))) return -1;
  if (deviceCc() != 90) return -1;
  const bool wsForm = a->gqaSm90Workspace != 0;
  const int maxSplits = wsForm ? kMaxWsSplits : kMaxCluster;
  if (a->gqaSm90Splits > maxSplits || a->gqaSm90ChunkMin < kTile || a->gqaSm90ChunkMin % kTile)
    return invalidValue(
        "gqaSm90Splits = %d, gqaSm90ChunkMin = %d: the Hopper GQA body takes 1 .. %d splits (%s) and a "
        "chunk of a multiple of %d keys",
        a->gqaSm90Splits, a->gqaSm90ChunkMin, maxSplits, wsForm ? "workspace merge" : "one cluster a row", kTile);
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
  GqaParams& p = *out;
  p = fromAttn(a, tma ? 2 : 0);
  if (wsForm && p.clusterSplits > 1) {
    /* the plan sized its workspace for maxTokens rows of every head (cpclCudaAttnGqaSm90WorkspaceBytes);
     * this call's rows and heads (a sub-range) take the first part of it, wsLse after wsO */
    const size_t need = cpclGqaSm90WorkspaceBytes(&p);
    if (a->workspace == nullptr || a->workspaceBytes < need || ((uintptr_t)a->workspace & 15) != 0)
      return invalidValue(
          "workspace %p of %zu bytes: the Hopper GQA body needs %zu (16-byte aligned) for %d rows of %d heads in "
          "%d splits",
          a->workspace, a->workspaceBytes, need, a->numTokens, a->numHeads, p.clusterSplits);
    p.wsO = static_cast<float*>(a->workspace);
    p.wsLse = p.wsO + (size_t)p.numTokens * p.numHeads * p.clusterSplits * p.headDim;
    /* form 2: the arrival counters are the plan's split counters (zeroed at plan creation, left zero
     * by every body that counts in them; one attention at a time on the step's stream, as for the
     * partials). numTokens x grid y <= cpclSplitCounterCount(numTokens, numHeads) (peer_sync.h):
     * grid y = KV heads touched x head blocks <= numHeads. Without them, form 1: the same bits. */
    if ((a->gqaSm90Workspace == 2 || fused) && a->splitCounters) p.wsCount = a->splitCounters;
    /* the fused kernel's form 1: its split-merge CTAs merge (gqa_sm90_fused.cu), the ready words
     * after the counters, 2 numTokens x grid y <= 2 numTokens (numHeads + 1) words in all */
    if (fused && a->gqaSm90Workspace == 1 && p.wsCount) {
      const int nh = p.groupSize < p.numHeads ? p.groupSize : p.numHeads, hc = 16 * headBlockWidth(nh);
      const size_t tail = (size_t)(nh < hc ? nh : hc) * p.clusterSplits * p.headDim * sizeof(float);
      if (tail > kFusedTailBytes) p.wsReady = p.wsCount + (int64_t)p.numTokens * gridY(&p);
    }
  }
  if (tma) {
    if (int e = cachedMaps(maps, &p)) {
      if (e > 0)
        return invalidValue("the TMA maps of kCache %p / vCache %p (page %d) failed: %s", a->kCache, a->vCache,
                            a->pageSize, cudaGetErrorString((cudaError_t)e));
      p.copyMode = 0;
    }
  }
  /* wgmma consumers wherever they apply (64-head blocks, swizzled TMA stages): 148 against 253 /
   * 176 us (B32 H64/1 L32k, mma.sync clusters / workspace) on the H200. A plan's calls of one head
   * range always take the same consumers, so a row's bits still depend on its length only. */
  p.consumer = p.copyMode == 2 && headBlockWidth(p.groupSize < p.numHeads ? p.groupSize : p.numHeads) == 4;
  return 0;
}

extern "C" int cpclGqaSm90Attn(const cpclAttnParams_t* a, void* stream) {
  GqaParams p;
  GqaKvMaps maps;
  if (int e = prepare(a, false, &p, &maps)) return e;
  if (p.numTokens == 0) return 0;
  return cpcl::gqa90::dispatch(&p, p.copyMode == 2 ? &maps : nullptr, static_cast<cudaStream_t>(stream), false);
}

/* CTAs of the fused kernel that wait for others of the grid (split-merge and merge CTAs): fewer
 * than the 2 a SM of the smallest sm_90 part (H20: 78 SMs, 156 slots), and than the device's own
 * slots, so whatever order the CTAs start in, an attention CTA finds a slot (it waits for nothing
 * these do). The merge CTAs are the schedule's (at most 64), not capped here. */
constexpr int kMaxWaitingCtas = 150;

extern "C" int cpclGqaSm90Fused(const cpclFusedParams_t* f, void* stream) {
  GqaParams p;
  GqaKvMaps maps;
  if (int e = prepare(&f->attn, true, &p, &maps)) return e;
  if (p.numTokens == 0) return 0;
  if (p.wsReady) { /* the split-merge CTAs' room: launchFused takes at most this many */
    int sms = 0;
    cpcl::gqa90::deviceCc(&sms);
    const int slots = sms * ctasPerSm(p.stages, p.headDim);
    const int cap = sms > 0 && slots - 2 < kMaxWaitingCtas ? slots - 2 : kMaxWaitingCtas;
    p.wsMergeCtas = cap - f->numMergeCtas;
    /* no room for a split-merge CTA beside the merge CTAs (a small part, or one CTA an SM): the
     * units merge in their last split's tail instead (the same bits), so no launch of waiting CTAs
     * can take every slot */
    if (p.wsMergeCtas < 1) p.wsReady = nullptr;
  }
  return cpcl::gqa90::dispatch(&p, p.copyMode == 2 ? &maps : nullptr, static_cast<cudaStream_t>(stream), false, f);
}

extern "C" int cpclCudaAttnGqaSm90Plan(const cpclAttnParams_t* shape, int maxTokens, int* chunkMin, int* workspace) {
  using namespace cpcl::gqa90;
  *chunkMin = 0;
  *workspace = 0;
  int sms = 0;
  if (!shapeOk(shape) || shape->numHeads < 1 || shape->numHeads % shape->numKvHeads || deviceCc(&sms) != 90) return 0;
  const int G = shape->groupSize > 0 ? shape->groupSize : shape->numHeads / shape->numKvHeads;
  int cl, cm, ws;
  cpclGqaSm90Plan(maxTokens, shape->numKvHeads, G, shape->headDimVo, sms, &cl, &cm, &ws);
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
  p.stages = stagesNow();
  p.pageSize = shape->pageSize;
  p.numTokens = 1;
  /* the occupancy query of the unclustered form reads no workspace: any non-null address selects it */
  static float wsProbe[1];
  if (ws && cl > 1) {
    p.wsO = wsProbe;
    p.wsLse = wsProbe;
    if (raiseMergeOf(p.dtype, p.headDim) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
  }
  /* every head-block width a call of this plan can take (a schedule's sub-range of fewer heads
   * than G takes a narrower one), both copy modes, the wgmma consumers where they apply; form 2's
   * tail instantiations too, and form 1's (its fallback without splitCounters) */
  static unsigned ctrProbe[1];
  static cpclFusedParams_t fusedProbe; /* selects the fused kernel's instantiations; never read */
  const int heads = G < shape->numHeads ? G : shape->numHeads;
  /* pass 0: form 1 (or 0); 1: form 2's tail; 2: the fused kernel's (any workspace form) */
  for (int pass = 0; pass <= (ws ? 2 : 0); pass++) {
    if (pass == 1 && !(ws == 2 && cl > 1)) continue;
    p.wsCount = pass == 1 ? ctrProbe : nullptr;
    for (int w = 16; w <= 64; w *= 2) {
      if (w > 16 && heads <= w / 2) break;
      p.numHeads = heads < w ? heads : w;
      p.headsPerBlock = p.numHeads;
      for (int mode = 0; mode <= 2; mode += 2) {
        if (mode == 2 && !tmaPageSize(shape->pageSize)) continue;
        p.copyMode = mode;
        p.consumer = mode == 2 && w == 64;
        const int r = dispatch(&p, nullptr, 0, true, pass == 2 ? &fusedProbe : nullptr);
        if (r <= 0 && pass == 2) { /* the fused form only: the plan keeps the body for every other schedule */
          cudaGetLastError();
          continue;
        }
        if (r <= 0) {
          cudaGetLastError();
          return 0;
        }
      }
    }
  }
  *chunkMin = cm;
  *workspace = ws;
  return cl;
}
