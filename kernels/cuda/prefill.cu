/*
 * prefill.cu -- the launchers of the CUDA prefill (prefill_params.h): on an sm_90 device the
 * Hopper body (prefill_sm90_lib.cuh, an sm_90a unit) for every call it takes (cpclPrefillSm90Fits:
 * bf16/fp16, D 128/128 or 192/128, up to 8 K/V blocks and the cache shard), else the mma.sync
 * tensor-core body where it applies (prefill.cuh, instantiated in inst/prefill_mma_*.cu), the
 * CUDA-core body for every other shape; and the store of a block's owned rows into the paged
 * cache.
 */
#include "dispatch.cuh"
#include "prefill.cuh"
#include "prefill_sm90.h"

namespace cpcl {
namespace pf {

template <typename T, int DQK, int DV>
int launchMma(const cpclPrefillParams_t& p, cudaStream_t stream);

/* ---------------------------------------------------------------- CUDA-core body */

__device__ __forceinline__ float blockMax(float v, float* red) {
  v = warpMax(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = red[0];
  for (int w = 1; w < kThreads / 32; w++) r = fmaxf(r, red[w]);
  return r;
}
__device__ __forceinline__ float blockSum(float v, float* red) {
  v = warpSum(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = 0.f;
  for (int w = 0; w < kThreads / 32; w++) r += red[w]; /* the same order in every thread */
  return r;
}

/* One CTA per (row t, head g): each thread scores one key of a tile of kGenBK, then owns the
 * output dims tid, tid + 128, ... (DPT of them) for P V. Dynamic shared memory: q in fp32. */
template <typename QT, typename KT, int DPT>
__global__ void __launch_bounds__(kThreads) prefillGenericKernel(const __grid_constant__ cpclPrefillParams_t p) {
  extern __shared__ float sq[];
  __shared__ Segs sg;
  __shared__ float sp[kGenBK], red[kThreads / 32];
  __shared__ int64_t svOff[kGenBK];
  __shared__ const KT* svPtr[kGenBK];
  const int t = blockIdx.x, g = p.headBegin + (int)blockIdx.y, kh = g / p.groupSize, tid = threadIdx.x;
  const int Dqk = p.headDimQk, Dv = p.headDimVo;
  const int s = seqOfRow(p.queryStart, p.numSeqs, t);
  const int qpos = p.queryPos[t];
  const float c = p.smScale * kLog2e;
  const QT* qr = static_cast<const QT*>(p.q) + (int64_t)(g / p.headsPerBlock) * p.qBlockStride +
                 (int64_t)t * p.qTokenStride + (int64_t)(g % p.headsPerBlock) * Dqk;
  for (int d = tid; d < Dqk; d += kThreads) sq[d] = toF<QT>(qr[d]);
  if (tid == 0) buildSegs(p, s, qpos, kGenBK, sg);
  __syncthreads();
  float acc[DPT];
#pragma unroll
  for (int i = 0; i < DPT; i++) acc[i] = 0.f;
  float m = -INFINITY, l = 0.f;
  const int nTiles = sg.tile0[sg.n];
  for (int it = 0; it < nTiles; it++) {
    int seg = 0;
    while (seg + 1 < sg.n && sg.tile0[seg + 1] <= it) seg++;
    const int key = sg.key0[seg] + (it - sg.tile0[seg]) * kGenBK + tid;
    float x = -INFINITY;
    if (key < sg.keyEnd[seg]) {
      const KeyRef kr = keyAt(p, s, sg.src[seg], key, kh);
      if (kr.valid && kr.pos <= qpos) {
        const KT* kp = static_cast<const KT*>(kr.k) + kr.kOff;
        float dot = 0.f;
        for (int d = 0; d < Dqk; d++) dot += sq[d] * toF<KT>(kp[d]);
        x = dot * c;
      }
      svPtr[tid] = static_cast<const KT*>(kr.v);
      svOff[tid] = kr.vOff;
    } else {
      svPtr[tid] = nullptr;
      svOff[tid] = 0;
    }
    const float mx = blockMax(x, red);
    if (mx == -INFINITY) continue; /* nothing visible in this tile: m, l, acc unchanged */
    const float mnew = fmaxf(m, mx);
    const float alpha = m == -INFINITY ? 0.f : exp2f(m - mnew);
    const float e = x == -INFINITY ? 0.f : exp2f(x - mnew);
    sp[tid] = e;
    const float sum = blockSum(e, red); /* its syncs publish sp, svPtr, svOff */
    l = l * alpha + sum;
    m = mnew;
#pragma unroll
    for (int i = 0; i < DPT; i++) {
      const int d = tid + i * kThreads;
      float a = acc[i] * alpha;
      if (d < Dv)
        for (int k = 0; k < kGenBK; k++)
          if (sp[k] != 0.f) a += sp[k] * toF<KT>(svPtr[k][svOff[k] + d]);
      acc[i] = a;
    }
    __syncthreads(); /* sp, svPtr, svOff are rewritten by the next tile */
  }
  const float inv = l > 0.f ? 1.f / l : 0.f;
  const int64_t ob = outOff(p, g, t);
#pragma unroll
  for (int i = 0; i < DPT; i++) {
    const int d = tid + i * kThreads;
    if (d < Dv) storeOne(p.out, p.outType, ob + d, acc[i] * inv);
  }
  if (tid == 0) storeLse(p, g, t, m, l);
}

template <typename QT, typename KT>
int launchGeneric(const cpclPrefillParams_t& p, cudaStream_t stream) {
  const size_t smem = (size_t)p.headDimQk * sizeof(float);
  const dim3 grid((unsigned)p.numTokens, (unsigned)p.numHeads);
  if (p.headDimVo <= 128)
    prefillGenericKernel<QT, KT, 1><<<grid, kThreads, smem, stream>>>(p);
  else if (p.headDimVo <= 256)
    prefillGenericKernel<QT, KT, 2><<<grid, kThreads, smem, stream>>>(p);
  else if (p.headDimVo <= 512)
    prefillGenericKernel<QT, KT, 4><<<grid, kThreads, smem, stream>>>(p);
  else
    prefillGenericKernel<QT, KT, 8><<<grid, kThreads, smem, stream>>>(p);
  return (int)cudaGetLastError();
}

/* ---------------------------------------------------------------- store */

/* A warp per row of the block (grid-stride): rows this rank owns are copied into their slots. */
__global__ void __launch_bounds__(kThreads) prefillStoreKernel(const __grid_constant__ cpclPrefillStoreParams_t p) {
  const int rows = p.kv.rowStart[p.numSeqs], lane = threadIdx.x & 31;
  const int es = p.kvType == CPCL_K_FP32 ? 4 : 2;
  const int64_t kRow = (int64_t)p.numKvHeads * p.headDimQk * es, vRow = (int64_t)p.numKvHeads * p.headDimVo * es;
  for (int j = blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5); j < rows; j += gridDim.x * (kThreads / 32)) {
    const int64_t pos = p.kv.pos[j];
    if (cpclKvOwner(pos, p.cpSize, p.interleave) != p.cpRank) continue;
    const int s = seqOfRow(p.kv.rowStart, p.numSeqs, j);
    const int64_t li = cpclKvLocalIndex(pos, p.cpSize, p.interleave);
    const int page = p.blockTable[(int64_t)s * p.maxPagesPerSeq + li / p.pageSize];
    if (page < 0) continue; /* the host checks page ids of host batches; here nothing is written */
    const int64_t slot = (int64_t)page * p.pageSize + li % p.pageSize;
    for (int part = 0; part < (p.latentKv ? 1 : 2); part++) {
      const int64_t rb = part ? vRow : kRow;
      const unsigned char* src = static_cast<const unsigned char*>(part ? p.kv.v : p.kv.k) + (int64_t)j * rb;
      unsigned char* dst = static_cast<unsigned char*>(part ? p.vCache : p.kCache) + slot * rb;
      if (rb % 16 == 0 && ((uintptr_t)src | (uintptr_t)dst) % 16 == 0) {
        /* four loads a lane in flight before their stores: one at a time ran at ~1 TB/s */
        const uint4* s4 = reinterpret_cast<const uint4*>(src);
        uint4* d4 = reinterpret_cast<uint4*>(dst);
        const int64_t n = rb / 16;
        for (int64_t i0 = lane; i0 < n; i0 += 128) {
          uint4 r[4];
#pragma unroll
          for (int u = 0; u < 4; u++)
            if (i0 + 32 * u < n) r[u] = __ldg(s4 + i0 + 32 * u);
#pragma unroll
          for (int u = 0; u < 4; u++)
            if (i0 + 32 * u < n) d4[i0 + 32 * u] = r[u];
        }
      } else {
        for (int64_t i = lane; i < rb / 2; i += 32)
          reinterpret_cast<uint16_t*>(dst)[i] = reinterpret_cast<const uint16_t*>(src)[i];
      }
    }
  }
}

/* The tensor-core body takes this call: same bf16/fp16 type for q and K/V, separate V, a
 * supported (Dqk, Dvo), and 16-byte aligned rows (cp.async). */
static bool mmaFits(const cpclPrefillParams_t& p) {
  if (p.qType != p.kvType || p.qType == CPCL_K_FP32 || p.latentKv) return false;
  const bool dims = (p.headDimQk == 64 && p.headDimVo == 64) || (p.headDimQk == 128 && p.headDimVo == 128) ||
                    (p.headDimQk == 192 && p.headDimVo == 128);
  if (!dims) return false;
  uintptr_t a = (uintptr_t)p.q | (uintptr_t)p.kCache | (uintptr_t)p.vCache;
  for (int b = 0; b < p.numKvBlocks; b++) a |= (uintptr_t)p.kv[b].k | (uintptr_t)p.kv[b].v;
  if (a % 16) return false;
  /* element strides: multiples of 8 keep every row 16-byte aligned */
  return p.qTokenStride % 8 == 0 && p.qBlockStride % 8 == 0;
}

}  // namespace pf
}  // namespace cpcl

static int prefillAttend(const cpclPrefillParams_t* p, cudaStream_t st, bool* stored);

/* the store's sharding and table, checked on the host before a kernel divides by them (0: fine) */
static int storeArgsBad(const void* kCache, const void* vCache, int latentKv, const int32_t* blockTable,
                        int maxPagesPerSeq, int pageSize, int cpSize, int cpRank, int interleave, int kvType) {
  using cpcl::invalidValue;
  if (kvType != CPCL_K_BF16 && kvType != CPCL_K_FP16 && kvType != CPCL_K_FP32)
    return invalidValue("kvType = %d is not an element type", kvType);
  if (kCache == nullptr || (vCache == nullptr && !latentKv))
    return invalidValue("the store's kCache / vCache is NULL (vCache may be NULL only with latentKv)");
  if (blockTable == nullptr || maxPagesPerSeq < 1 || pageSize < 1)
    return invalidValue("the store's blockTable = %p, maxPagesPerSeq = %d, pageSize = %d: a table and both >= 1",
                        (const void*)blockTable, maxPagesPerSeq, pageSize);
  if (cpSize < 1 || interleave < 1 || cpRank < 0 || cpRank >= cpSize)
    return invalidValue("the store's cpSize = %d, cpRank = %d, interleave = %d: W >= 1, 0 <= r < W, I >= 1", cpSize,
                        cpRank, interleave);
  return 0;
}

/* the attention, then (p->storeK) the store of the call's K/V blocks: the Hopper body does both
 * in one pass (its copy warps store under the tensor work); the other bodies are followed by the
 * store kernel a block at a time */
extern "C" int cpclCudaPrefill(const cpclPrefillParams_t* p, void* stream) {
  cpcl::clearErrorDetail();
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (p->storeK != nullptr && p->numSeqs > 0) {
    const int bad = storeArgsBad(p->storeK, p->storeV, p->latentKv, p->blockTable, p->maxPagesPerSeq, p->pageSize,
                                 p->cpSize, p->cpRank, p->interleave, p->kvType);
    if (bad) return bad;
  }
  bool stored = false;
  const int e = prefillAttend(p, st, &stored);
  if (e != 0 || p->storeK == nullptr || stored) return e;
  return cpclCudaPrefillStoreBlocks(p, stream);
}

extern "C" int cpclCudaPrefillStoreBlocks(const cpclPrefillParams_t* p, void* stream) {
  for (int b = 0; b < p->numKvBlocks; b++) {
    const cpclPrefillStoreParams_t sp = cpclPrefillStoreOf(p, b);
    const int e = cpclCudaPrefillStore(&sp, stream);
    if (e != 0) return e;
  }
  return 0;
}

static int prefillAttend(const cpclPrefillParams_t* p, cudaStream_t st, bool* stored) {
  using namespace cpcl;
  using namespace cpcl::pf;
  if (p->numKvBlocks < 0 || p->numKvBlocks > CPCL_PREFILL_MAX_BLOCKS)
    return invalidValue("numKvBlocks = %d is outside [0, %d]", p->numKvBlocks, CPCL_PREFILL_MAX_BLOCKS);
  if (p->numTokens < 0 || p->numHeads < 0 || p->numSeqs < 0)
    return invalidValue("numTokens = %d, numHeads = %d, numSeqs = %d: none may be negative", p->numTokens, p->numHeads,
                        p->numSeqs);
  if (p->headDimQk < 1 || p->headDimQk > 1024 || p->headDimVo < 1 || p->headDimVo > 1024)
    return invalidValue("headDimQk = %d, headDimVo = %d: the prefill kernel supports 1 .. 1024", p->headDimQk,
                        p->headDimVo);
  if (p->numHeads > 65535) return invalidValue("numHeads = %d exceeds the grid's 65535", p->numHeads);
  if (p->numTokens == 0 || p->numHeads == 0 || p->numSeqs == 0) return 0;
  if (cpclPrefillSm90Fits(p)) {
    *stored = true; /* cpclPrefillSm90Run stores, fused or not */
    const int e = cpclPrefillSm90Run(p, st);
    if (e == (int)cudaErrorInvalidValue) return invalidValue("%s", cpclPrefillSm90ErrorDetail());
    return e;
  }
  if (mmaFits(*p)) {
    if (p->qType == CPCL_K_BF16) {
      if (p->headDimQk == 64) return launchMma<__nv_bfloat16, 64, 64>(*p, st);
      if (p->headDimQk == 128) return launchMma<__nv_bfloat16, 128, 128>(*p, st);
      return launchMma<__nv_bfloat16, 192, 128>(*p, st);
    }
    if (p->headDimQk == 64) return launchMma<__half, 64, 64>(*p, st);
    if (p->headDimQk == 128) return launchMma<__half, 128, 128>(*p, st);
    return launchMma<__half, 192, 128>(*p, st);
  }
  CPCL_DISPATCH_DTYPE(p->qType, QT, CPCL_DISPATCH_DTYPE(p->kvType, KT, return launchGeneric<QT, KT>(*p, st)));
  return 0;
}

/* which body serves this call (tools and tests report which body they timed); the order is
 * cpclCudaPrefill's */
extern "C" int cpclCudaPrefillBody(const cpclPrefillParams_t* p) {
  if (cpclPrefillSm90Fits(p)) return CPCL_PREFILL_BODY_SM90;
  return cpcl::pf::mmaFits(*p) ? CPCL_PREFILL_BODY_MMA : CPCL_PREFILL_BODY_CUDA_CORE;
}
extern "C" int cpclCudaPrefillUsesMma(const cpclPrefillParams_t* p) {
  return cpclCudaPrefillBody(p) != CPCL_PREFILL_BODY_CUDA_CORE;
}
extern "C" const char* cpclCudaPrefillBodyName(int body) {
  return body == CPCL_PREFILL_BODY_SM90 ? "Hopper wgmma" : body == CPCL_PREFILL_BODY_MMA ? "mma.sync" : "CUDA-core";
}

extern "C" int cpclCudaPrefillStore(const cpclPrefillStoreParams_t* p, void* stream) {
  using namespace cpcl;
  clearErrorDetail();
  if (p->numSeqs <= 0) return 0;
  const int bad = storeArgsBad(p->kCache, p->vCache, p->latentKv, p->blockTable, p->maxPagesPerSeq, p->pageSize,
                               p->cpSize, p->cpRank, p->interleave, p->kvType);
  if (bad) return bad;
  /* rows are read on the device: enough CTAs to fill the GPU (a warp a row), the rest exit at once */
  pf::prefillStoreKernel<<<1056, pf::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(*p);
  return (int)cudaGetLastError();
}
