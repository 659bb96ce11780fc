/*
 * prefill_sm90.cu -- host side of the Hopper causal prefill body: the standalone interface
 * (prefill_sm90.cuh; argument checks, the three tensor maps, the launch) and the library's
 * (prefill_sm90_lib.cuh: cpclPrefillSm90Fits / cpclPrefillSm90Run, which cpclCudaPrefill
 * dispatches to; its grid or persistent form, CPCL_PREFILL_SM90_PERSISTENT / cpclPrefillSm90SetForm).
 * Built as an sm_90a unit of the library (kernels/cuda/meson.build); the
 * standalone bench compiles it on its own, so it reports errors through its own detail string.
 */
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>

#include "env_setting.h"
#include "prefill_sm90.cuh"
#include "prefill_sm90.h"
#include "pdl_launch.cuh"
#include "prefill_sm90_lib.cuh"

namespace {

using cpcl::launchPdl;
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

/* a 3-d map over [rows][heads][dim] of 16-bit elements (bf16, or fp16 with f16), boxes of 64 dims
 * x 1 head x boxRows rows, 128-byte swizzled (the wgmma K-major / MN-major layout of the kernel's
 * tiles); rows past the tensor and negative rows are zero-filled by TMA */
cudaError_t encode3d(CUtensorMap* map, const void* base, int64_t rows, int heads, int dim, int boxRows,
                     const char* what, bool f16 = false) {
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
  const CUresult r =
      enc(map, f16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base),
          dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return invalid("cuTensorMapEncodeTiled of %s %p ([%lld][%d][%d]) failed: CUresult %d", what, base, (long long)rows,
                   heads, dim, (int)r);
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

/* ---------------------------------------------------------------- the library's prefill */

namespace {

using cpcl::settingNow;
using cpcl::pf90::kLibMaxBlocks;
using cpcl::pf90::libBandChunk;
using cpcl::pf90::LibMaps;
using cpcl::pf90::LibShape;
using cpcl::pf90::prefillSm90LibKernel;
using cpcl::pf90::prefillSm90StoreRest;

constexpr int kMaxDevices = 64;
/* the paged cache shard on this body (cache tiles copied by producer warps 9-11); false sends
 * every call with cacheLens to the mma.sync body */
constexpr bool kLibCacheShard = true;
/* per device: compute capability (major * 10 + minor; 0 = not yet asked), as mla_sm90.cu keeps it */
std::atomic<int> devCc[kMaxDevices];

int deviceCc() {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    cudaGetLastError();
    return -1;
  }
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

bool isHalf(int t) { return t == CPCL_K_BF16 || t == CPCL_K_FP16; }

/* the shape and layout part of the predicate (every condition on host values only) */
bool libShapeFits(const cpclPrefillParams_t* p) {
  if (p->qType != p->kvType || !isHalf(p->qType)) return false;
  if (!isHalf(p->outType) && p->outType != CPCL_K_FP32) return false;
  if (p->latentKv || p->headDimVo != 128 || (p->headDimQk != 128 && p->headDimQk != 192)) return false;
  if (p->numKvBlocks < 0 || p->numKvBlocks > kLibMaxBlocks) return false;
  if (p->cacheLens != nullptr) {
    /* the paged shard, copied row by row with cp.async (16-byte chunks) */
    if (!kLibCacheShard || p->blockTable == nullptr || p->kCache == nullptr || p->vCache == nullptr) return false;
    if (((uintptr_t)p->kCache | (uintptr_t)p->vCache) % 16 != 0) return false;
    if (p->pageSize < 1 || p->maxPagesPerSeq < 1 || p->cpSize < 1 || p->interleave < 1 || p->cpRank < 0 ||
        p->cpRank >= p->cpSize)
      return false;
  } else if (p->numKvBlocks == 0) {
    return false; /* no key at all: the mma.sync body writes the empty rows */
  }
  if (p->numKvHeads < 1 || p->groupSize < 1 || p->headsPerBlock < 1 || !(p->smScale > 0.f)) return false;
  if (p->numSeqs < 1 || p->numTokens < 1 || p->numHeads < 1) return false;
  /* grid y: the tile slots */
  if ((int64_t)p->numSeqs + p->numTokens / kBM + 1 > 65535) return false;
  uintptr_t a = (uintptr_t)p->q | (uintptr_t)p->out;
  for (int b = 0; b < p->numKvBlocks; b++) {
    if (p->kv[b].k == nullptr || p->kv[b].v == nullptr || p->kv[b].rowStart == nullptr || p->kv[b].pos == nullptr)
      return false;
    a |= (uintptr_t)p->kv[b].k | (uintptr_t)p->kv[b].v;
  }
  if (a % 16 != 0 || ((uintptr_t)p->lse & 3) != 0) return false;
  /* Q rows by 16-byte cp.async; out in element pairs for fp32 (8 bytes), 16-bit out in 16-byte chunks
   * (libQuadTranspose); other strides take another body */
  const int64_t so = p->outType == CPCL_K_FP32 ? 2 : 8;
  return p->qTokenStride % 8 == 0 && p->qBlockStride % 8 == 0 && p->oTokenStride % so == 0 && p->oBlockStride % so == 0;
}

/* The form (docs/PREFILL_SM90.md, "Persistent form"): CPCL_PREFILL_SM90_PERSISTENT, read once per
 * process (cpclPrefillSm90SetForm overrides it): 0 the grid form, 1 the persistent one with the
 * work counter, 2 persistent with the static order, 3 / unset / anything else by shape
 * (formOf). */
std::atomic<int> libForm{-1};
/* a cap on the persistent grid (cpclPrefillSm90SetCtas; 0: one CTA per SM), so a test's few tiles
 * still give each CTA several items */
std::atomic<int> libCtas{0};
/* the fused store's mode (cpclPrefillSm90SetRestOverlap; -1: CPCL_PREFILL_SM90_REST not read yet):
 * 1 the rest kernel as the attention's programmatic dependent, 0 after it (a test's small grids
 * then leave rows to the copy warps), 2 no rest kernel (tests), 3 no fused store (the store
 * kernels after the attention: a measurement of what the fusion costs or saves) */
std::atomic<int> libRestOverlap{-1};

int libRestNow() {
  return settingNow(libRestOverlap, "CPCL_PREFILL_SM90_REST", [](const char* e) {
    /* not 2 (the copy warps' rows alone, an incomplete store: the test hook's only) */
    return e != nullptr && (e[0] == '0' || e[0] == '1' || e[0] == '3') && e[1] == 0 ? e[0] - '0' : 1;
  });
}

/* the work items' order (cpclPrefillSm90SetBand; -1: CPCL_PREFILL_SM90_BAND not read yet) */
std::atomic<int> libBand{-1};
int libBandNow() {
  return settingNow(libBand, "CPCL_PREFILL_SM90_BAND", [](const char* e) {
    char* end = nullptr;
    const long v = e != nullptr ? strtol(e, &end, 10) : 0;
    return e != nullptr && end != e && *end == 0 && v >= 0 && v <= 65535 ? (int)v : (int)kPrefillSm90BandByShape;
  });
}
/* the band a launch takes (kPrefillSm90BandByShape: cpclPrefillSm90SetBand's rule, from host
 * values only: the sequences taken as equal, new tokens only) */
int bandOf(const cpclPrefillParams_t* p, bool persistent, int sms) {
  const int set = libBandNow();
  if (set != kPrefillSm90BandByShape) return set;
  if (!persistent || p->numSeqs < 1) return 0;
  const int C = libBandChunk(*p), band = (sms + C - 1) / C;
  const double tiles = ((double)p->numTokens / p->numSeqs + kBM - 1) / kBM;             /* a sequence's query tiles */
  const double work = (double)p->numHeads * p->numSeqs * tiles * (tiles + 1) / 2 / sms; /* key tiles an SM */
  const double kvBytes = (double)p->numKvHeads * p->numTokens * (p->headDimQk + p->headDimVo) * 2;
  return kvBytes > 48.0 * (1 << 20) && band <= 0.03 * work ? band : 0;
}

int libFormNow() {
  return settingNow(libForm, "CPCL_PREFILL_SM90_PERSISTENT", [](const char* e) {
    return e != nullptr && e[0] >= '0' && e[0] <= '2' && e[1] == 0 ? e[0] - '0' : (int)kPrefillSm90ByShape;
  });
}
/* the form a launch takes: by shape, the faster one measured on the H200, the persistent form at
 * both head dims. D192: session 8, call 1 (one call, medians against the grid form: B1 4k 180 /
 * 183 us, B4 4k 635 / 650, B1 16k 2043 / 2228 (the grid form's spread 2043-2353), B1 64k 34243 /
 * 35516). Session 6 had the grid form faster there (B4 4k 631 / 656), before the persistent form
 * fused the store (ppcopy): that the fusion is what changed is a reading, not a measurement.
 * D128: session 6, call 4 (B1 4k 268 / 278, B4 4k 995 / 1028, B8 4k 1976 / 2030, B8 8k 7655 /
 * 7996, B1 16k 3533 / 3650, B1 64k 58203 / 59285). */
int formOf(int form) { return form == kPrefillSm90ByShape ? kPrefillSm90Persistent : form; }

/* The persistent form's work counters: one per launch, taken round-robin from a per-device pool
 * and zeroed on the stream before the kernel (a memset node in a graph), so launches in flight on
 * other streams of the device use other counters (up to kWorkSlots at once). Static device memory:
 * nothing is allocated, also not while a graph is being captured. */
constexpr int kWorkSlots = 256;
__device__ unsigned int libWorkCounters[kWorkSlots];
std::atomic<unsigned int*> devWork[kMaxDevices];
std::atomic<int> devSms[kMaxDevices];
std::atomic<unsigned int> workNext{0};

/* this device's SM count and counter pool (asked once per device); false if the runtime refuses */
bool deviceWork(int* sms, unsigned int** pool) {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) {
    cudaGetLastError();
    return false;
  }
  int n = devSms[dev].load(std::memory_order_acquire);
  unsigned int* w = devWork[dev].load(std::memory_order_acquire);
  if (n == 0 || w == nullptr) {
    void* a = nullptr;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaGetSymbolAddress(&a, libWorkCounters) != cudaSuccess || n <= 0 || a == nullptr) {
      cudaGetLastError();
      return false;
    }
    w = static_cast<unsigned int*>(a);
    devSms[dev].store(n, std::memory_order_release);
    devWork[dev].store(w, std::memory_order_release);
  }
  *sms = n;
  *pool = w;
  return true;
}

/* the store as its own kernels (prefill.cu), block by block, after the attention */
cudaError_t storeApart(const cpclPrefillParams_t* p, cudaStream_t stream) {
  return (cudaError_t)cpclCudaPrefillStoreBlocks(p, stream);
}
/* the copy warps store with 16-byte accesses */
bool storeFuses(const cpclPrefillParams_t* p) {
  uintptr_t a = (uintptr_t)p->storeK | (uintptr_t)p->storeV;
  for (int b = 0; b < p->numKvBlocks; b++) a |= (uintptr_t)p->kv[b].k | (uintptr_t)p->kv[b].v;
  return a % 16 == 0 && !p->latentKv && p->storeV != nullptr;
}

/* the store by claimed rows (the copy warps and prefillSm90StoreRest): 16-byte rows, and a row
 * counter in the call's workspace (the plan's, so ordered with the plan's stream; a pool slot
 * could be shared by launches on other streams) */
bool storeCounter(const cpclPrefillParams_t* p) {
  return p->storeK != nullptr && libRestNow() != 3 && storeFuses(p) && p->workspace != nullptr &&
         p->workspaceBytes >= sizeof(unsigned) && (uintptr_t)p->workspace % alignof(unsigned) == 0;
}

/* the rows the copy warps left (all of them where the copy warps store none): launched as the
 * attention's programmatic dependent, under its last wave (the attention triggers at its start);
 * it waits for the attention only before it exits. 32 warps an SM, each 4 KB of loads in flight */
cudaError_t launchRest(const cpclPrefillParams_t* p, unsigned int* rows, int sms, cudaStream_t stream) {
  const int overlap = libRestNow();
  if (overlap == 2) return cudaSuccess; /* tests: the copy warps' rows alone */
  return launchPdl(prefillSm90StoreRest, dim3(4u * (unsigned)sms), dim3(256), 0, stream, overlap != 0, *p, rows);
}

#ifdef CPCL_PF90_TRACE
using cpcl::pf90::kMaxTraceCtas;
using cpcl::pf90::kTraceItems;
using cpcl::pf90::kTraceMarks;
using cpcl::pf90::pf90Trace;
/* the diagnostic timeline (prefill_sm90_lib.cuh, PF90_MARK): when CPCL_PREFILL_SM90_TRACE names a
 * file, every launch outside a capture zeroes a managed buffer, runs, synchronises and writes the
 * marks to the file (the last such launch's stay). A diagnostic build only: the synchronisation
 * keeps the store's rest kernel from overlapping the attention, captured launches keep writing
 * marks, and the buffer is set on the device current at the first trace. */
uint32_t* traceBuf;
constexpr size_t kTraceBytes = sizeof(uint32_t) * kMaxTraceCtas * kTraceItems * kTraceMarks;
bool traceBefore(cudaStream_t stream) {
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (getenv("CPCL_PREFILL_SM90_TRACE") == nullptr || cudaStreamIsCapturing(stream, &cs) != cudaSuccess ||
      cs != cudaStreamCaptureStatusNone)
    return false;
  if (traceBuf == nullptr) {
    cudaError_t e = cudaMallocManaged(&traceBuf, kTraceBytes);
    if (e == cudaSuccess) e = cudaMemcpyToSymbol(pf90Trace, &traceBuf, sizeof(traceBuf));
    if (e != cudaSuccess) {
      fprintf(stderr, "prefill_sm90 trace: %s\n", cudaGetErrorString(e));
      traceBuf = nullptr;
      return false;
    }
  }
  return cudaMemsetAsync(traceBuf, 0, kTraceBytes, stream) == cudaSuccess;
}
void traceAfter(cudaStream_t stream) {
  const char* path = getenv("CPCL_PREFILL_SM90_TRACE");
  cudaError_t e = cudaStreamSynchronize(stream);
  FILE* f = e == cudaSuccess ? fopen(path, "wb") : nullptr;
  const size_t n = f != nullptr ? fwrite(traceBuf, 1, kTraceBytes, f) : 0;
  if (f != nullptr) fclose(f);
  fprintf(stderr, "prefill_sm90 trace: %zu bytes to %s (%s)\n", n, path,
          e != cudaSuccess ? cudaGetErrorString(e)
          : f == nullptr   ? "cannot open"
                           : "ok");
}
#endif

template <typename T, int kDqk, int kStages>
cudaError_t libLaunch(const cpclPrefillParams_t* p, const LibMaps& maps, cudaStream_t stream) {
  constexpr int smem = LibShape<kDqk, 128, kStages>::kSmemBytes;
  const int64_t slots = (int64_t)p->numSeqs + p->numTokens / kBM + 1, items = slots * p->numHeads;
  const int form = formOf(libFormNow());
  int sms = 0;
  unsigned int* pool = nullptr;
  if (form != kPrefillSm90Grid && items <= INT32_MAX && deviceWork(&sms, &pool)) {
#ifdef CPCL_PF90_TRACE
    const bool tracing = traceBefore(stream);
#endif
    auto kern = prefillSm90LibKernel<T, kDqk, 128, kStages, true, true>;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    unsigned int* work = nullptr;
    if (form == kPrefillSm90Persistent) {
      work = pool + workNext.fetch_add(1, std::memory_order_relaxed) % kWorkSlots;
      if ((e = cudaMemsetAsync(work, 0, sizeof(*work), stream)) != cudaSuccess) return e;
    }
    /* one CTA per SM: 384 threads at 168 registers, and over half of the shared memory */
    static_assert(2 * smem > 232448, "one CTA per SM");
    const int cap = libCtas.load(std::memory_order_acquire), ctas = cap > 0 && cap < sms ? cap : sms;
    const unsigned grid = (unsigned)(items < ctas ? items : ctas);
    /* the store, from the call's workspace counter: the copy warps' rows while each item runs
     * (as in the grid form), then the rest kernel, a programmatic dependent that fills the SMs
     * the attention's last CTAs leave (every attention CTA triggers at its start: one per SM, all
     * resident); without a workspace, the store kernel after the attention */
    unsigned int* rows = storeCounter(p) ? static_cast<unsigned int*>(p->workspace) : nullptr;
    if (rows != nullptr && (e = cudaMemsetAsync(rows, 0, sizeof(*rows), stream)) != cudaSuccess) return e;
    kern<<<grid, kThreads, smem, stream>>>(maps, *p, work, rows, bandOf(p, true, sms));
#ifdef CPCL_PF90_TRACE
    if (tracing) traceAfter(stream);
#endif
    if ((e = cudaGetLastError()) != cudaSuccess || p->storeK == nullptr) return e;
    return rows == nullptr ? storeApart(p, stream) : launchRest(p, rows, sms, stream);
  }
  auto kern = prefillSm90LibKernel<T, kDqk, 128, kStages, true, false>;
  cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (e != cudaSuccess) return e;
  /* the fused store's row counter: the call's workspace (the plan's, so ordered with the plan's
   * stream; a pool slot could be shared by launches on other streams), zeroed by a memset node;
   * without one, the store kernel after the attention (docs/PREFILL_SM90.md, "Session 4") */
  unsigned int* rows = nullptr;
  if (storeCounter(p) && deviceWork(&sms, &pool)) {
    rows = static_cast<unsigned int*>(p->workspace);
    if ((e = cudaMemsetAsync(rows, 0, sizeof(*rows), stream)) != cudaSuccess) return e;
  }
  const dim3 grid((unsigned)p->numHeads, (unsigned)slots);
  kern<<<grid, kThreads, smem, stream>>>(maps, *p, nullptr, rows, bandOf(p, false, sms));
  if ((e = cudaGetLastError()) != cudaSuccess || rows == nullptr) {
    if (e == cudaSuccess && p->storeK != nullptr) e = storeApart(p, stream);
    return e;
  }
  return launchRest(p, rows, sms, stream);
}

}  // namespace

extern "C" int cpclPrefillSm90Fits(const cpclPrefillParams_t* p) { return libShapeFits(p) && deviceCc() == 90; }

extern "C" int cpclPrefillSm90SetBand(int band) {
  const int prev = libBandNow();
  if ((band >= 0 && band <= 65535) || band == kPrefillSm90BandByShape) libBand.store(band, std::memory_order_release);
  return prev;
}

extern "C" int cpclPrefillSm90SetCtas(int ctas) {
  const int prev = libCtas.load(std::memory_order_acquire);
  if (ctas >= 0) libCtas.store(ctas, std::memory_order_release);
  return prev;
}

extern "C" int cpclPrefillSm90SetRestOverlap(int overlap) {
  const int prev = libRestNow();
  if (overlap >= 0 && overlap <= 3) libRestOverlap.store(overlap, std::memory_order_release);
  return prev;
}

extern "C" int cpclPrefillSm90SetForm(int form) {
  const int prev = libFormNow();
  if (form == kPrefillSm90Grid || form == kPrefillSm90Persistent || form == kPrefillSm90Static ||
      form == kPrefillSm90ByShape)
    libForm.store(form, std::memory_order_release);
  return prev;
}

extern "C" int cpclPrefillSm90Run(const cpclPrefillParams_t* p, cudaStream_t stream) {
  if (!libShapeFits(p))
    return (int)invalid("cpclPrefillSm90Run: the call does not fit the Hopper body (cpclPrefillSm90Fits)");
  const bool f16 = p->qType == CPCL_K_FP16;
  LibMaps maps;
  memset(&maps, 0, sizeof(maps));
  for (int b = 0; b < p->numKvBlocks; b++) {
    /* rows: every int coordinate; the kernel asks for none past a segment's end (the block's
     * length is device data), and negative ones are zero-filled */
    cudaError_t e = encode3d(&maps.k[b], p->kv[b].k, INT32_MAX, p->numKvHeads, p->headDimQk, kBN, "kv[b].k", f16);
    if (e == cudaSuccess)
      e = encode3d(&maps.v[b], p->kv[b].v, INT32_MAX, p->numKvHeads, p->headDimVo, kBN, "kv[b].v", f16);
    if (e != cudaSuccess) return (int)e;
  }
  /* variants as measured on the H200 (docs/PREFILL_SM90.md): three stages with the overlap at
   * D128, two with it at D192 (three do not fit) */
  if (f16)
    return (int)(p->headDimQk == 128 ? libLaunch<__half, 128, 3>(p, maps, stream)
                                     : libLaunch<__half, 192, 2>(p, maps, stream));
#ifdef CPCL_PF90_TRACE /* the diagnostic build: two stages at D128 on request */
  const char* stages = getenv("CPCL_PREFILL_SM90_STAGES");
  if (p->headDimQk == 128 && stages != nullptr && strcmp(stages, "2") == 0)
    return (int)libLaunch<__nv_bfloat16, 128, 2>(p, maps, stream);
#endif
  return (int)(p->headDimQk == 128 ? libLaunch<__nv_bfloat16, 128, 3>(p, maps, stream)
                                   : libLaunch<__nv_bfloat16, 192, 2>(p, maps, stream));
}
