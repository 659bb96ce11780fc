/*
 * mla_sm90.cu -- host side of the Hopper MLA decode body (mla_sm90.cuh): the KV tensor map (cached
 * per cache pointer and page size), the plan's split constants, the launch (attention, then the
 * split merge as a programmatic dependent launch), and the library's entry (cpclMlaSm90Attn,
 * cpclCudaAttnMlaSm90Splits). Built for sm_90a only (kernels/cuda/meson.build); the entry checks
 * the device. Host statics are atomics or behind a mutex: engines launch from several threads,
 * and the build has -fno-threadsafe-statics (a pthread mutex, not std::mutex: the library links
 * as C, without libstdc++).
 */
#include <cudaTypedefs.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>

#include "dispatch.cuh"
#include "env_setting.h"
#include "mla_sm90.cuh"
#include "mla_sm90.h"
#include "mla_sm90_halves.cuh"
#include "pdl_launch.cuh"

namespace cpcl {
namespace mla90 {

/* The schedules kept (docs/MLA_SM90.md has every measured one, the removed ones included):
 *   1 S twice (kKind 0), 2 its control (the V descriptor's strides swapped: must fail the check),
 *   4 late S1 with per-tile barriers (the library's until session 3), 9 FlashMLA's seesaw in 256
 *   threads (mlaSm90Seesaw), 11-13 the library's: early release, a producer lane a page (11) or a
 *   TMA box (12, 13), late S1 (11, 12) or the seesaw (13); 14, 15: 12 and 13 with the P hand-offs
 *   through mbarriers (kMbarHand: what racecheck can follow); 16 FlashMLA's schedule read from its
 *   source (mlaSm90Halves, mla_sm90_halves.cuh: half-stage refills by the last reader, mbarrier
 *   hand-offs); 19 (the library's seesaw since session 12) = 13 without a warpgroup's wait for the
 *   stage the other one waited for before their hand-off (kFlagHandOrder). Sparse: the schedules of
 *   1, 4 and 11 with session 2's gather, and 17 (11's schedule), 18 (13's seesaw) and 20 (19's, the
 *   library's) with session 4's gather (kLanes 1 with kSparse: indices and slots prefetched, rows
 *   into L2 ahead, a programmatic dependent of the filter). */
#define CPCL_MLA_INSTANCE(...)                                                             \
  template __global__ void mlaSm90Kernel<__VA_ARGS__>(const __grid_constant__ CUtensorMap, \
                                                      const __grid_constant__ cpclAttnParams_t, const Split);
CPCL_MLA_INSTANCE(0, 0, false)
CPCL_MLA_INSTANCE(0, 1, false)
CPCL_MLA_INSTANCE(2, 0, true)
CPCL_MLA_INSTANCE(2, 0, true, false, 1, true)
CPCL_MLA_INSTANCE(2, 0, true, false, 2, true)
CPCL_MLA_INSTANCE(1, 0, true, false, 2, true)
CPCL_MLA_INSTANCE(2, 0, true, false, 2, true, true)
CPCL_MLA_INSTANCE(1, 0, true, false, 2, true, true)
CPCL_MLA_INSTANCE(0, 0, false, true)
CPCL_MLA_INSTANCE(2, 0, true, true)
CPCL_MLA_INSTANCE(2, 0, true, true, 0, true)
CPCL_MLA_INSTANCE(2, 0, true, true, 1, true)
CPCL_MLA_INSTANCE(1, 0, true, true, 1, true)
CPCL_MLA_INSTANCE(1, 0, true, false, 2, true, false, kFlagHandOrder)
CPCL_MLA_INSTANCE(1, 0, true, true, 1, true, false, kFlagHandOrder)
#undef CPCL_MLA_INSTANCE

/* the sparse schedule cpclMlaSm90Attn runs (cpclMlaSm90SetSparseVariant; CPCL_MLA_SM90_SPARSE,
 * read once: 11, 17, 18 or 20; unset or anything else: kSparseDefault). 18 measured fastest of the
 * first three on the H200 (kernel_perf -k 2048 -W 8 -p 64, B64 H128: filter + attention 154.3 /
 * 137.2 / 133.8 us for 11 / 17 / 18; docs/MLA_SM90.md, Session 4), 20 (18 without the waits for the
 * other warpgroup's stage) faster than 18 (bench, B128 H128 K2048: 231.6 / 238.2 us at page 16,
 * 219.2 / 224.4 at 64; Session 12) */
constexpr int kSparseDefault = 20;
std::atomic<int> libSparse{-1};
bool sparseVariantOk(int v) { return v == 1 || v == 4 || v == 11 || v == 17 || v == 18 || v == 20; }
/* the sparse schedules the library may be set to run (cpclMlaSm90SetSparseVariant; the environment's
 * text is matched against the same four below) */
bool libSparseOk(int v) { return v == 11 || v == 17 || v == 18 || v == 20; }
int libSparseNow() {
  return cpcl::settingNow(libSparse, "CPCL_MLA_SM90_SPARSE", [](const char* e) {
    return e != nullptr &&
                   (strcmp(e, "11") == 0 || strcmp(e, "17") == 0 || strcmp(e, "18") == 0 || strcmp(e, "20") == 0)
               ? atoi(e)
               : kSparseDefault;
  });
}

constexpr int kChunkMin = 128; /* keys per split at least (docs/MLA_SM90.md: measured with 64-256) */
/* the sparse rows' keys per split at least: CPCL_MLA_SM90_SPARSE_CHUNK, read once (a multiple of
 * 64 from 64 to 65536; anything else, kChunkMin). A measurement knob, not yet measured (session 9):
 * a W = 8 row of ~256 owned keys takes two splits of two blocks at kChunkMin, so every SM pays the
 * Q load and the epilogue twice for four blocks. Fixed per process, so a row's splits still depend
 * only on its own count (batch-invariant) */
std::atomic<int> libSparseChunk{-1};
int libSparseChunkNow() {
  return cpcl::settingNow(libSparseChunk, "CPCL_MLA_SM90_SPARSE_CHUNK", [](const char* e) {
    const long c = e != nullptr ? strtol(e, nullptr, 10) : 0;
    return c >= 64 && c <= 65536 && c % 64 == 0 ? (int)c : kChunkMin;
  });
}
constexpr int kMaxDevices = 64;

/* Per device, filled once: compute capability (major * 10 + minor, 0 = not yet asked), SM count,
 * and which variants have their shared-memory attribute raised. Racing threads write the same
 * values. */
std::atomic<int> devCc[kMaxDevices];
std::atomic<int> devSms[kMaxDevices];
std::atomic<unsigned> devRaised[kMaxDevices];
std::atomic<void*> encodeFn{nullptr};

/* the current device's compute capability and SM count; -1 when it cannot be asked */
int deviceCc(int* dev, int* sms) {
  if (cudaGetDevice(dev) != cudaSuccess || *dev < 0 || *dev >= kMaxDevices) {
    cudaGetLastError();
    return -1;
  }
  int cc = devCc[*dev].load(std::memory_order_acquire);
  if (cc == 0) {
    int major = 0, minor = 0, n = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, *dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, *dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, *dev) != cudaSuccess) {
      cudaGetLastError();
      return -1;
    }
    cc = major * 10 + minor;
    devSms[*dev].store(n, std::memory_order_relaxed);
    devCc[*dev].store(cc, std::memory_order_release);
  }
  *sms = devSms[*dev].load(std::memory_order_relaxed);
  return cc;
}

bool shapeOk(const cpclAttnParams_t* p) {
  return p->qType == CPCL_K_BF16 && p->kvType == CPCL_K_BF16 && p->latentKv && p->headDimQk == kDqk &&
         p->headDimVo == kDv && p->numKvHeads == 1 && cpclMlaSm90PageSizeOk(p->pageSize);
}

/* The body copies each head row of q (1152 bytes) with one bulk copy, which needs 16-byte aligned
 * rows: the bases (q, or every used qBlock entry) and the strides that matter (between tokens when
 * there are several, between blocks when several are used), in bf16 elements. Parameters that
 * launch() refuses anyway pass here, so that it reports them. */
bool qRowsAligned(const cpclAttnParams_t* p) {
  if (p->numHeads < 1 || p->headBegin < 0 || p->headsPerBlock < 1) return true;
  if (p->numTokens > 1 && p->qTokenStride % 8 != 0) return false;
  const int jBegin = p->headBegin / p->headsPerBlock, jEnd = (p->headBegin + p->numHeads - 1) / p->headsPerBlock;
  if (p->qBlock[0] == nullptr) return ((uintptr_t)p->q & 15) == 0 && (jEnd == jBegin || p->qBlockStride % 8 == 0);
  for (int j = jBegin; j <= jEnd && j < CPCL_MAX_PARTS; j++)
    if (((uintptr_t)p->qBlock[j] & 15) != 0) return false;
  return true;
}

/* Tensor maps by (cache pointer, page size): encoding is a driver call, and an engine passes the
 * same few caches (one per layer, or one for all) every step. The map depends on nothing else
 * (its extent is the largest a coordinate can name), so an entry never goes stale; a full table
 * replaces round robin. */
struct MapEntry {
  const void* kv;
  int pageSize;
  CUtensorMap map;
};
constexpr int kMapEntries = 128;
MapEntry mapCache[kMapEntries];
int mapCount, mapNext;
pthread_mutex_t mapLock = PTHREAD_MUTEX_INITIALIZER;

int cachedMap(CUtensorMap* out, const void* kv, int pageSize) {
  pthread_mutex_lock(&mapLock);
  for (int i = 0; i < mapCount; i++)
    if (mapCache[i].kv == kv && mapCache[i].pageSize == pageSize) {
      *out = mapCache[i].map;
      pthread_mutex_unlock(&mapLock);
      return 0;
    }
  pthread_mutex_unlock(&mapLock);
  /* rows addressable by the body's int coordinates (page * pageSize + slot) */
  const int64_t pages = (int64_t)INT32_MAX / pageSize;
  if (int e = cpclMlaSm90KvMap(out, kv, pages, pageSize)) return e;
  pthread_mutex_lock(&mapLock);
  const int i = mapCount < kMapEntries ? mapCount++ : (mapNext++ % kMapEntries);
  mapCache[i].kv = kv;
  mapCache[i].pageSize = pageSize;
  mapCache[i].map = *out;
  pthread_mutex_unlock(&mapLock);
  return 0;
}

}  // namespace mla90
}  // namespace cpcl

using cpcl::invalidValue;
using cpcl::mla90::Split;

extern "C" int cpclMlaSm90PageSizeOk(int pageSize) {
  return pageSize > 0 && (pageSize % 64 == 0 || (pageSize >= 8 && 64 % pageSize == 0));
}

namespace {
/* the latent cache as [rows][576] bf16, boxes of 64 dims x boxRows rows, 128B-swizzled */
int encodeRows(CUtensorMap* map, const void* kvCache, int64_t rows, int boxRows) {
  void* fn = cpcl::mla90::encodeFn.load(std::memory_order_acquire);
  if (!fn) {
    cudaDriverEntryPointQueryResult q;
#if CUDART_VERSION >= 12050
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
#else /* the build takes nvcc 12.1 on (meson.build); ByVersion came with 12.5 */
    cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &q);
#endif
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn) {
      cudaGetLastError();
      return invalidValue("the driver has no cuTensorMapEncodeTiled (%s, query result %d)", cudaGetErrorString(e),
                          (int)q);
    }
    cpcl::mla90::encodeFn.store(fn, std::memory_order_release);
  }
  const auto encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  if (((uintptr_t)kvCache & 15) != 0) return invalidValue("kCache = %p is not 16-byte aligned (TMA)", kvCache);
  const cuuint64_t dims[2] = {576, (cuuint64_t)rows};
  const cuuint64_t strides[1] = {576 * 2};
  const cuuint32_t box[2] = {64, (cuuint32_t)boxRows};
  const cuuint32_t estr[2] = {1, 1};
  CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(kvCache), dims, strides, box, estr,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS
             ? 0
             : invalidValue("cuTensorMapEncodeTiled of kCache %p (%lld rows, boxes of %d) failed: CUresult %d", kvCache,
                            (long long)rows, boxRows, (int)r);
}
}  // namespace

extern "C" int cpclMlaSm90KvMap(CUtensorMap* map, const void* kvCache, int64_t numPages, int pageSize) {
  if (!cpclMlaSm90PageSizeOk(pageSize))
    return invalidValue("pageSize = %d: the Hopper MLA body takes a power of two from 8 to 64 or a multiple of 64",
                        pageSize);
  if (numPages < 1) return invalidValue("numPages = %lld: at least 1", (long long)numPages);
  return encodeRows(map, kvCache, numPages * pageSize, pageSize < 64 ? pageSize : 64);
}

/* the CTAs of one split of a plan of maxTokens rows of numHeads heads: a row's 64-head chunks */
static int planCtas(int maxTokens, int numHeads) { return (maxTokens > 0 ? maxTokens : 1) * ((numHeads + 63) / 64); }

extern "C" void cpclMlaSm90Plan(int maxTokens, int numHeads, int numSms, int* maxSplits, int* chunkMin) {
  /* enough CTAs for about one wave at the plan's largest batch, never more than 64 splits; fixed
   * per plan so a row's result does not depend on the rest of its batch */
  const int ctas = planCtas(maxTokens, numHeads);
  int s = numSms / ctas;
  s = s < 1 ? 1 : s > 64 ? 64 : s;
  *maxSplits = s;
  *chunkMin = cpcl::mla90::kChunkMin;
}

extern "C" size_t cpclMlaSm90WorkspaceBytes(int maxTokens, int numHeads, int maxSplits) {
  if (maxSplits <= 1) return 0;
  return (size_t)maxTokens * numHeads * maxSplits * (512 + 1) * sizeof(float);
}

namespace {
unsigned long long* gTrace; /* cpclMlaSm90Trace: the bench's timing probe, NULL in the library */
/* The checks of a launch of p (mla90::launch, and cpclMlaSm90Fused's) and its Split: 0, or the
 * error to return. variant without kMlaSm90EvictFirst, flags that bit. */
int prepareSplit(const cpclAttnParams_t* p, int maxSplits, int chunkMin, int variant, int flags,
                 const int32_t* sparseIdx, const int32_t* sparseCount, int sparseStride, Split* out) {
  using namespace cpcl::mla90;
  if (p->numHeads < 1 || p->headBegin < 0 || p->headsPerBlock < 1 || p->numTokens < 0)
    return invalidValue(
        "numHeads = %d, headBegin = %d, headsPerBlock = %d, numTokens = %d: the Hopper MLA body needs "
        "numHeads, headsPerBlock >= 1 and headBegin, numTokens >= 0",
        p->numHeads, p->headBegin, p->headsPerBlock, p->numTokens);
  if (!qRowsAligned(p))
    return invalidValue(
        "q = %p (qTokenStride %lld, qBlockStride %lld elements): the Hopper MLA body copies q rows "
        "with bulk copies, which need 16-byte aligned rows",
        p->q, (long long)p->qTokenStride, (long long)p->qBlockStride);
  if (maxSplits < 1 || maxSplits > 64) return invalidValue("mlaSm90Splits = %d is outside 1 .. 64", maxSplits);
  if (chunkMin < 64 || chunkMin % 64 != 0) return invalidValue("chunkMin = %d: a multiple of 64", chunkMin);
  if (variant < 0 || (sparseIdx ? !sparseVariantOk(variant) : variant >= kMlaSm90Variants))
    return invalidValue(sparseIdx ? "variant = %d: sparse attention runs the schedules 1, 4, 11, 17, 18 and 20 (plus "
                                    "kMlaSm90EvictFirst)"
                                  : "variant = %d is outside 0 .. 19 (plus kMlaSm90EvictFirst)",
                        variant | flags);
  const size_t need = cpclMlaSm90WorkspaceBytes(p->numTokens, p->numHeads, maxSplits);
  if (need && (p->workspace == nullptr || p->workspaceBytes < need))
    return invalidValue("workspaceBytes = %zu: the Hopper MLA body needs %zu for %d rows of %d heads in %d splits",
                        p->workspaceBytes, need, p->numTokens, p->numHeads, maxSplits);
  const int64_t nChunks = (p->numHeads + kM - 1) / kM, ctasX = (int64_t)p->numTokens * nChunks;
  const int64_t mergeCtas = (int64_t)p->numTokens * p->numHeads;
  if (ctasX > 0x7fffffffLL || mergeCtas > 0x7fffffffLL)
    return invalidValue("%d rows of %d heads exceed the Hopper MLA body's grid", p->numTokens, p->numHeads);
  Split& sp = *out;
  memset(&sp, 0, sizeof sp);
  sp.maxSplits = maxSplits;
  sp.chunkMin = chunkMin;
  sp.evictFirst = (flags & kMlaSm90EvictFirst) != 0;
  sp.sparseIdx = sparseIdx;
  sp.sparseCount = sparseCount;
  sp.sparseStride = sparseStride;
  sp.trace = gTrace;
  if (sparseIdx && (sparseCount == nullptr || sparseStride < 1))
    return invalidValue("sparseCount = %p, sparseStride = %d: a count per row and a stride >= 1",
                        (const void*)sparseCount, sparseStride);
  /* the filter inside the attention (attn_params.h topkRaw): the gathers whose producer reads the
   * list blocks ahead, 17, 18 and 20; sparseIdx / sparseCount are then the body's scratch */
  sp.topkRaw = sparseIdx ? p->topkRaw : nullptr;
  if (sp.topkRaw && variant != 17 && variant != 18 && variant != 20)
    return invalidValue(
        "topkRaw = %p with sparse variant %d: only the gathers 17, 18 and 20 filter inside the "
        "attention",
        (const void*)p->topkRaw, variant);
  if (!sparseIdx && p->topkRaw)
    return invalidValue("topkRaw = %p without sparseIdx: the filter inside the attention writes its lists there",
                        (const void*)p->topkRaw);
  sp.wsO = static_cast<float*>(p->workspace);
  sp.wsLse = sp.wsO ? sp.wsO + (size_t)p->numTokens * p->numHeads * maxSplits * kDv : nullptr;
  return 0;
}

int launch(const cpclAttnParams_t* p, const CUtensorMap* kvMap, int maxSplits, int chunkMin, int variant,
           const int32_t* sparseIdx, const int32_t* sparseCount, int sparseStride, void* stream) {
  using namespace cpcl::mla90;
  const int flags = variant & kMlaSm90EvictFirst;
  variant &= ~kMlaSm90EvictFirst;
  Split sp;
  if (int e = prepareSplit(p, maxSplits, chunkMin, variant, flags, sparseIdx, sparseCount, sparseStride, &sp)) return e;
  if (p->numTokens == 0) return 0;
  const int64_t ctasX = (int64_t)p->numTokens * ((p->numHeads + kM - 1) / kM);
  const int64_t mergeCtas = (int64_t)p->numTokens * p->numHeads;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  /* nullptr: a schedule measured and removed (docs/MLA_SM90.md) */
  void (*const kerns[kMlaSm90Variants])(const CUtensorMap, const cpclAttnParams_t, const Split) = {
      nullptr,
      mlaSm90Kernel<0, 0, false>,
      mlaSm90Kernel<0, 1, false>,
      nullptr,
      mlaSm90Kernel<2, 0, true>,
      nullptr,
      nullptr,
      nullptr,
      nullptr,
      mlaSm90Seesaw,
      nullptr,
      mlaSm90Kernel<2, 0, true, false, 1, true>,
      mlaSm90Kernel<2, 0, true, false, 2, true>,
      mlaSm90Kernel<1, 0, true, false, 2, true>,
      mlaSm90Kernel<2, 0, true, false, 2, true, true>,
      mlaSm90Kernel<1, 0, true, false, 2, true, true>,
      mlaSm90Halves,
      nullptr, /* 17, 18: sparse only */
      nullptr,
      mlaSm90Kernel<1, 0, true, false, 2, true, false, kFlagHandOrder>};
  auto kern = sparseIdx ? (variant == 1    ? mlaSm90Kernel<0, 0, false, true>
                           : variant == 4  ? mlaSm90Kernel<2, 0, true, true>
                           : variant == 17 ? mlaSm90Kernel<2, 0, true, true, 1, true>
                           : variant == 18 ? mlaSm90Kernel<1, 0, true, true, 1, true>
                           : variant == 20 ? mlaSm90Kernel<1, 0, true, true, 1, true, false, kFlagHandOrder>
                                           : mlaSm90Kernel<2, 0, true, true, 0, true>)
                        : kerns[variant];
  if (kern == nullptr)
    return invalidValue(
        "variant = %d was measured and removed (docs/MLA_SM90.md), or is sparse only (17, 18, 20): 1, 2, 4, 9, 11-16 "
        "and 19 remain",
        variant);
  /* dense variants in bits 0-19, sparse ones in bits 20-25 (1, 4, 11, 17, 18, 20) */
  const unsigned bit = 1u << (sparseIdx ? 20 + (variant == 1    ? 0
                                                : variant == 4  ? 1
                                                : variant == 11 ? 2
                                                : variant == 17 ? 3
                                                : variant == 18 ? 4
                                                                : 5)
                                        : variant);
  cudaError_t e;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    cudaGetLastError();
    dev = -1;
  }
  /* once per device and variant, not on every step (a device past the table raises every time) */
  if (dev < 0 || !(devRaised[dev].load(std::memory_order_acquire) & bit)) {
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (e != cudaSuccess) return (int)e;
    /* the merge asks for the attention's shared-memory carveout, so the SMs need not be
     * reconfigured between the two kernels of every step */
    e = cudaFuncSetAttribute(mlaSm90Combine, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared);
    if (e != cudaSuccess) return (int)e;
    if (dev >= 0) devRaised[dev].fetch_or(bit, std::memory_order_acq_rel);
  }
  const dim3 grid((unsigned)ctasX, 1, (unsigned)maxSplits);
  if (sparseIdx && (variant == 17 || variant == 18 || variant == 20)) {
    /* a programmatic dependent of the kernel before it (the top-k filter, which lets it launch
     * at once): its CTAs are resident and set up while the filter runs, and the kernel waits
     * (griddepcontrol.wait) before it reads anything */
    e = cpcl::launchPdl(kern, grid, dim3(kThreads), kSmemBytes, st, true, *kvMap, *p, sp);
    if (e != cudaSuccess) cudaGetLastError();
  } else {
    const int threads = variant == 9 ? kThreadsSeesaw : variant == 16 ? kThreadsHalves : kThreads;
    kern<<<grid, threads, kSmemBytes, st>>>(*kvMap, *p, sp);
    e = cudaGetLastError();
  }
  if (e != cudaSuccess || maxSplits == 1) return (int)e;
  return (int)cpcl::launchPdl(mlaSm90Combine, dim3((unsigned)mergeCtas), dim3(kCombineThreads), 0, st, true, *p, sp);
}
}  // namespace

extern "C" int cpclMlaSm90SetSparseVariant(int variant) {
  using namespace cpcl::mla90;
  const int prev = libSparseNow();
  if (libSparseOk(variant)) libSparse.store(variant, std::memory_order_release);
  return prev;
}

extern "C" int cpclCudaMlaSm90SparseFilters(void) {
  const int v = cpcl::mla90::libSparseNow();
  return v == 17 || v == 18 || v == 20;
}

extern "C" void cpclMlaSm90Trace(void* buf) { gTrace = static_cast<unsigned long long*>(buf); }

extern "C" int cpclMlaSm90Launch(const cpclAttnParams_t* p, const CUtensorMap* kvMap, int maxSplits, int chunkMin,
                                 int variant, void* stream) {
  return launch(p, kvMap, maxSplits, chunkMin, variant, nullptr, nullptr, 0, stream);
}

extern "C" int cpclMlaSm90LaunchSparse(const cpclAttnParams_t* p, int maxSplits, int chunkMin, int variant,
                                       const int32_t* sparseIdx, const int32_t* sparseCount, int sparseStride,
                                       void* stream) {
  if (sparseIdx == nullptr) return invalidValue("sparseIdx is NULL: the sparse launch needs the compacted lists");
  if (((uintptr_t)p->kCache & 15) != 0)
    return invalidValue("kCache = %p is not 16-byte aligned (16-byte cp.async)", p->kCache);
  const CUtensorMap unused = {}; /* the gathered rows are copied with cp.async, not TMA */
  return launch(p, &unused, maxSplits, chunkMin, variant, sparseIdx, sparseCount, sparseStride, stream);
}

namespace cpcl {
namespace mla90 {
/* cpclCudaTensorRateProbe's kernel: warpgroup w of each CTA issues groups of 4 m64n256k16 with A
 * and B in shared memory (contents never change: a rate, not a result) */
__global__ void __launch_bounds__(256, 1) tensorRateKernel(int iters, float* sink) {
  extern __shared__ unsigned char raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
  for (int i = threadIdx.x; i < 2 * kBlockB / 16; i += blockDim.x)
    reinterpret_cast<uint4*>(smem)[i] = make_uint4(0x3c003c00u, 0x3c003c00u, 0, 0);
  fenceProxyAsync();
  __syncthreads();
  const int w = __shfl_sync(0xffffffffu, threadIdx.x >> 7, 0);
  const uint32_t aBase = smemAddr(smem), bBase = aBase + kBlockB;
  float o[128];
#pragma unroll
  for (int i = 0; i < 128; i++) o[i] = 0.f;
  for (int it = 0; it < iters; it++) {
    wgmmaFence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
      wgmmaSS_m64n256k16(o, sw128Desc(aBase + kk * 32, 16, 1024), vDesc<0>(bBase, w, kk), 1);
    wgmmaCommit();
    wgmmaWait<0>();
    fenceRegs(o);
  }
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < 128; i++) acc += o[i];
  if (acc == 12345.f) sink[threadIdx.x] = acc; /* keeps the work */
}
}  // namespace mla90
}  // namespace cpcl

extern "C" int cpclCudaTensorRateProbe(double* tflops) {
  using namespace cpcl::mla90;
  *tflops = 0;
  int dev, sms;
  if (deviceCc(&dev, &sms) != 90) return -1;
  const int smem = 2 * kBlockB + 1024, iters = 4000;
  cudaError_t e = cudaFuncSetAttribute(tensorRateKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  float* sink = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  if (e == cudaSuccess) e = cudaMalloc(&sink, 256 * sizeof(float));
  if (e == cudaSuccess) e = cudaEventCreate(&e0);
  if (e == cudaSuccess) e = cudaEventCreate(&e1);
  float best = 0.f;
  for (int rep = 0; e == cudaSuccess && rep < 4; rep++) { /* the first warms the clocks up */
    cudaEventRecord(e0);
    tensorRateKernel<<<sms, 256, smem>>>(iters, sink);
    cudaEventRecord(e1);
    e = cudaEventSynchronize(e1);
    float ms = 0.f;
    if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
    if (e == cudaSuccess && rep > 0 && (best == 0.f || ms < best)) best = ms;
  }
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (sink) cudaFree(sink);
  if (e != cudaSuccess || best <= 0.f) {
    cudaGetLastError();
    return e != cudaSuccess ? (int)e : -1;
  }
  const double flops = (double)sms * 2 * iters * 4 * 2.0 * 64 * 256 * 16;
  *tflops = flops / (best * 1e-3) / 1e12;
  return 0;
}

extern "C" int cpclMlaSm90Attn(const cpclAttnParams_t* p, void* stream) {
  using namespace cpcl::mla90;
  if (p->mlaSm90Splits < 1 || !shapeOk(p) || !qRowsAligned(p)) return -1;
  int dev, sms;
  if (deviceCc(&dev, &sms) != 90) return -1;
  /* measured on the H200 (docs/MLA_SM90.md, "Session 3", "Session 12"): the early-release schedules
   * with a producer lane a box; the seesaw without the waits for the other warpgroup's stage (19)
   * where a block is one page of 64 or more at 64+ heads, late S1 (12) elsewhere (12 with the same
   * change measured no faster); sparse: the variant set by cpclMlaSm90SetSparseVariant /
   * CPCL_MLA_SM90_SPARSE (11; 17, 18, 20: session 4's gather) */
  const int variant = p->numHeads >= kM && p->pageSize >= kBN ? 19 : 12;
  /* raw lists with a schedule that does not filter (cpclMlaSm90SetSparseVariant after the plan): not
   * taken here, so the launcher filters first (attn.cu) */
  if (p->topkRaw && !cpclCudaMlaSm90SparseFilters()) return -1;
  if (p->sparseIdx) /* the top-k filter's lists (attn_params.h): rows gathered by cp.async, no tensor map */
    return cpclMlaSm90LaunchSparse(p, p->mlaSm90Splits, libSparseChunkNow(), libSparseNow(), p->sparseIdx,
                                   p->sparseCount, p->sparseStride, stream);
  CUtensorMap map;
  if (int e = cachedMap(&map, p->kCache, p->pageSize)) return e;
  return cpclMlaSm90Launch(p, &map, p->mlaSm90Splits, kChunkMin, variant, stream);
}

extern "C" int cpclMlaSm90Fused(const cpclFusedParams_t* f, void* stream) {
  using namespace cpcl::mla90;
  const cpclAttnParams_t* p = &f->attn;
  if (p->mlaSm90Splits < 1 || p->sparseIdx || !shapeOk(p) || !qRowsAligned(p)) return -1;
  if (p->mlaSm90Splits > 1 && !p->splitCounters) return -1;
  int dev, sms;
  if (deviceCc(&dev, &sms) != 90) return -1;
  const int variant = p->numHeads >= kM && p->pageSize >= kBN ? 19 : 12; /* cpclMlaSm90Attn's */
  Split sp;
  if (int e = prepareSplit(p, p->mlaSm90Splits, kChunkMin, variant, 0, nullptr, nullptr, 0, &sp)) return e;
  if (p->numTokens == 0) return 0;
  /* arrival counters, then ready words, one per (row, head chunk): 2 numTokens ceil(numHeads / 64)
   * words, within cpclSplitCounterCount(numTokens, numHeads) (peer_sync.h), the plan's buffer */
  if (sp.maxSplits > 1) {
    sp.wsCount = p->splitCounters;
    sp.wsReady = p->splitCounters + (int64_t)p->numTokens * ((p->numHeads + kM - 1) / kM);
  }
  CUtensorMap map;
  if (int e = cachedMap(&map, p->kCache, p->pageSize)) return e;
  return launchFused(variant, &map, &sp, f, sms, static_cast<cudaStream_t>(stream));
}

extern "C" int cpclCudaAttnMlaSm90Splits(const cpclAttnParams_t* shape, int maxTokens) {
  using namespace cpcl::mla90;
  int dev, sms;
  if (!shapeOk(shape) || deviceCc(&dev, &sms) != 90) return 0;
  /* a driver that cannot load the sm_90a code: plans keep the CUDA-core body rather than fail
   * every step */
  cudaFuncAttributes fa;
  if (cudaFuncGetAttributes(&fa, mlaSm90Kernel<2, 0, true, false, 2, true>) != cudaSuccess ||
      cudaFuncGetAttributes(&fa, mlaSm90Kernel<1, 0, true, false, 2, true, false, kFlagHandOrder>) != cudaSuccess ||
      cudaFuncGetAttributes(&fa, mlaSm90Kernel<1, 0, true, true, 1, true, false, kFlagHandOrder>) != cudaSuccess ||
      cudaFuncGetAttributes(&fa, mlaSm90Kernel<2, 0, true, true, 0, true>) != cudaSuccess ||
      cudaFuncGetAttributes(&fa, mlaSm90Kernel<2, 0, true, true, 1, true>) != cudaSuccess ||
      cudaFuncGetAttributes(&fa, mlaSm90Kernel<1, 0, true, true, 1, true>) != cudaSuccess ||
      cudaFuncGetAttributes(&fa, mlaSm90Combine) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  int splits, chunkMin;
  cpclMlaSm90Plan(maxTokens, shape->numHeads, sms, &splits, &chunkMin);
  return splits;
}

extern "C" int cpclCudaAttnMlaSm90OneWave(int maxTokens, int numHeads) {
  int dev, sms;
  if (cpcl::mla90::deviceCc(&dev, &sms) < 0) return 0;
  /* the plan's splits fill the SMs left over (cpclMlaSm90Plan), so its grid fits one wave, one CTA
   * an SM, exactly when one split's CTAs do */
  return planCtas(maxTokens, numHeads) <= sms;
}

extern "C" size_t cpclCudaAttnMlaSm90WorkspaceBytes(int maxTokens, int numHeads, int splits) {
  return cpclMlaSm90WorkspaceBytes(maxTokens, numHeads, splits);
}
