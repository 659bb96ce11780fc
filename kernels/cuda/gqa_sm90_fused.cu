/*
 * gqa_sm90_fused.cu -- the Hopper GQA body inside the fused decode kernel (fused_params.h): the
 * CTAs of gqaDecodeKernel's grid (gqaCta, gqa_sm90.cuh) in its order, then the merge CTAs, one
 * 1-D launch, the steps of fused_steps.cuh around them (the query put by tickets and the owners'
 * wait once a CTA knows it has work, the per-block count once it wrote its heads' final partial).
 * A row's splits merge where the plan's form says: in the tail of the last one to finish (form 2,
 * and form 1 plans whose units hold at most gqa_sm90.cu's kFusedTailBytes of partials), or in
 * split-merge CTAs launched after the attention ones, a head a warp (form 1's larger units, 128 KB
 * to 1 MB on issue 12's shapes, which one CTA's tail reads slowly). No second kernel, no
 * cluster: no attention CTA waits for another split, the split-merge CTAs wait for attention CTAs
 * only and the merge CTAs for partials only, together at most gqa_sm90.cu's kMaxWaitingCtas, so the fused
 * kernel's progress argument is the plain one's.
 * Queries, partials and LSEs are addressed by the per-block bases of the fused kernel's
 * cpclAttnParams_t. The same bits as the body launched alone with the same plan constants (its
 * forms 1 and 2 agree bitwise).
 *
 * Its own sm_90a unit, so it compiles beside gqa_sm90.cu; gqa_sm90.cu's dispatch calls
 * launchFused, whose instantiations are the ones below.
 */
#include <string.h>

#include <algorithm>
#include <atomic>
#include <type_traits>

#include "dispatch.cuh"
#include "fused_steps.cuh"
#include "gqa_sm90.cuh"

namespace cpcl {
namespace gqa90 {

struct FusedCta {
  static constexpr bool kFused = true;
  const cpclFusedParams_t& f;
  int epoch;
  int* sTicket;
  __device__ __forceinline__ void work(int g0, int nh) const {
    if (f.numPutCtas > 0) fusedPutChunks(f, epoch, *sTicket);
    fusedWaitOwners(f, epoch, g0, nh);
  }
  template <typename T, int D>
  __device__ __forceinline__ const T* q(const GqaParams& p, int g, int t) const {
    /* a consumer warp with no head of the call forms (never loads) the address of one past them:
     * kept inside the blocks, so no qBlock entry past the used ones is read */
    g = min(g, p.headBegin + p.numHeads - 1);
    const int Hb = p.headsPerBlock;
    return static_cast<const T*>(f.attn.qBlock[g / Hb]) + (int64_t)t * p.qTokenStride + (int64_t)(g % Hb) * D;
  }
  template <typename T, int D>
  __device__ __forceinline__ T* out(const GqaParams& p, int g, int t) const {
    const int Hb = p.headsPerBlock;
    return static_cast<T*>(f.attn.outBlock[g / Hb]) + (int64_t)t * p.oTokenStride + (int64_t)(g % Hb) * D;
  }
  __device__ __forceinline__ float* lse(const GqaParams& p, int g, int t) const {
    const int Hb = p.headsPerBlock;
    float* b = f.attn.lseBlock[g / Hb];
    return b ? b + (int64_t)t * p.lseTokenStride + g % Hb : nullptr;
  }
};

/* Split-merge CTA mi of p.wsMergeCtas (p.wsReady: the plans whose partials are too many for one
 * CTA's tail): warp w takes the (row, head) items mi NW + w, + wsMergeCtas NW, ... of the call's
 * numTokens x numHeads (one at a time: two side by side in batches of 8 splits measured slower on
 * the H200, session 17 call 3: B1 H16/1 L4k 18.6-19.5 against 16.2-16.7 us, B8 H64/1 L128k
 * 159.8-160.8 against 156.6-157.2). A row of ns > 1 splits waits for its unit's ready word (set by
 * the unit's ns-th arrival), merges with the tail merge's steps (mergeWeights, loadPart, accPart in
 * split order, storeMerged: the merge kernel's bits) and counts its head out of the word again, so
 * it is zero after the launch. With peers, each round's merged heads are counted into their blocks
 * (fusedCountBlock), thread 0 running over the warps' heads in order. Waits only for attention
 * CTAs, which wait for nothing here. */
template <typename T, int D, int HB>
__device__ __forceinline__ void splitMergeCta(const GqaParams& p, const cpclFusedParams_t& f, const FusedCta& cta,
                                              int E, int mi, int* sHead) {
  constexpr int NW = kThreads / 32, Ev = D / 32, HC = 16 * HB;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, S = p.clusterSplits, G = p.groupSize;
  const int headBlocks = (min(G, p.numHeads) + HC - 1) / HC, kFirst = p.headBegin / G;
  const int64_t items = (int64_t)p.numTokens * p.numHeads, stride = (int64_t)p.wsMergeCtas * NW;
  const int64_t gy = f.attnGrid[1];
  for (int64_t i0 = (int64_t)mi * NW; i0 < items; i0 += stride) {
    const int64_t u = i0 + warp;
    int merged = -1; /* the head this warp merged this round */
    if (u < items) {
      const int t = (int)(u / p.numHeads), h = (int)(u % p.numHeads), g = p.headBegin + h;
      int ns;
      int64_t chunk;
      splitOf(rowWork(p, t).L, S, p.chunkMin, &ns, &chunk);
      if (ns > 1) { /* else the row's one split wrote the head */
        const int kh = g / G, hb = (g - max(p.headBegin, kh * G)) / HC;
        unsigned* ready = p.wsReady + t * gy + (kh - kFirst) * headBlocks + hb;
        bool ok = true;
        if (lane == 0) ok = waitFlag(reinterpret_cast<const int*>(ready), 1, f.sync.timeoutNs, f.dcpRank, p.errorFlag);
        ok = __shfl_sync(0xffffffffu, ok, 0);
        __syncwarp();    /* orders lane 0's acquire before the other lanes' loads (shfl orders no memory) */
        __threadfence(); /* the partials after the word: from L2 (__ldcg), never a stale line */
        if (ok) {
          const float* lse = p.wsLse + u * S;
          const float x0 = lane < ns ? __ldcg(lse + lane) : -INFINITY;
          const float x1 = lane + 32 < ns ? __ldcg(lse + lane + 32) : -INFINITY;
          float w0, w1, lse2;
          mergeWeights(x0, x1, &w0, &w1, &lse2);
          float acc[Ev];
#pragma unroll
          for (int e = 0; e < Ev; e++) acc[e] = 0.f;
          const float* src = p.wsO + u * S * D + lane * Ev;
          for (int k0 = 0; k0 < ns; k0 += kMergeBatch) {
            float v[kMergeBatch][Ev], wk[kMergeBatch];
#pragma unroll
            for (int i = 0; i < kMergeBatch; i++) {
              const int k = k0 + i;
              const float wa = __shfl_sync(0xffffffffu, w0, k & 31), wb = __shfl_sync(0xffffffffu, w1, k & 31);
              wk[i] = k < ns ? (k < 32 ? wa : wb) : 0.f;
              loadPart<Ev>(v[i], src + (int64_t)k * D, wk[i]);
            }
#pragma unroll
            for (int i = 0; i < kMergeBatch; i++) accPart<Ev>(acc, v[i], wk[i]);
          }
          storeMerged<T, D>(p, cta, t, h, lane, acc, lse2);
          __syncwarp();
          if (lane == 0) atomicSub(ready, 1u); /* the last head of the unit leaves it zero */
          merged = g;
        }
      }
    }
    if (f.numMergeCtas > 0) {
      if (lane == 0) sHead[warp] = merged;
      __threadfence_system();
      __syncthreads();
      if (threadIdx.x == 0) {
        const int Hb = f.attn.headsPerBlock;
        int j = -1, n = 0;
        for (int w = 0; w < NW; w++) {
          if (sHead[w] < 0) continue;
          if (sHead[w] / Hb != j) {
            if (n) fusedCountBlock(f, E, j, n);
            j = sHead[w] / Hb, n = 0;
          }
          n++;
        }
        if (n) fusedCountBlock(f, E, j, n);
      }
      __syncthreads(); /* sHead is rewritten */
    }
  }
}

template <typename T, int D, int HB, int kMode, bool kWg>
__global__ void __launch_bounds__(kThreads, 2)
    gqaFusedKernel(const __grid_constant__ CUtensorMap kMap, const __grid_constant__ CUtensorMap vMap,
                   const __grid_constant__ GqaParams p, const __grid_constant__ cpclFusedParams_t f) {
  __shared__ int sTicket, sEpoch, sHead[kThreads / 32];
  const int E = fusedEpoch(f, sEpoch);
  const unsigned gx = f.attnGrid[0], gy = f.attnGrid[1], nAttn = gx * gy, nSplit = (unsigned)p.wsMergeCtas;
  if (blockIdx.x < nAttn) {
    const unsigned v = blockIdx.x;
    int g0, nh;
    if (gqaCta<T, D, HB, kMode, kWg, true>(kMap, vMap, p, FusedCta{f, E, &sTicket}, v % gx, v / gx, gy, &g0, &nh) &&
        f.numMergeCtas > 0)
      fusedPostHeads(f, E, g0, nh);
  } else if (blockIdx.x < nAttn + nSplit) {
    splitMergeCta<T, D, HB>(p, f, FusedCta{f, E, &sTicket}, E, (int)(blockIdx.x - nAttn), sHead);
  } else {
    fusedMergeCta<T>(f, E, (int)(blockIdx.x - nAttn - nSplit));
  }
}

template <typename T, int D, int HB, int kMode, bool kWg>
int launchFused(const GqaParams* p, const GqaKvMaps* maps, const cpclFusedParams_t* f, cudaStream_t stream,
                bool raiseOnly) {
  auto kern = gqaFusedKernel<T, D, HB, kMode, kWg>;
  const int dev = currentDevice();
  const unsigned long long bit = 1ull << instIndex<T, D, HB, kMode, kWg>();
  if (dev < 0 || !(devRaised[dev][2].load(std::memory_order_acquire) & bit)) {
    /* the kernel's static shared memory (its ticket and epoch words, aligned to the body's 1024)
     * comes out of the same 227 KB: session 16's call 1 failed here at 227 KB of dynamic */
    cudaFuncAttributes fa;
    cudaError_t e = cudaFuncGetAttributes(&fa, kern);
    if (e == cudaSuccess)
      e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024 - (int)fa.sharedSizeBytes);
    if (e != cudaSuccess) return raiseOnly ? -(int)e : (int)e;
    if (dev >= 0) devRaised[dev][2].fetch_or(bit, std::memory_order_acq_rel);
  }
  if (raiseOnly) return 1;
  CUtensorMap km, vm;
  memset(&km, 0, sizeof km);
  memset(&vm, 0, sizeof vm);
  if (maps) {
    memcpy(&km, maps->words[0], sizeof km);
    memcpy(&vm, maps->words[1], sizeof vm);
  }
  cpclFusedParams_t fp = *f;
  fp.attnGrid[0] = p->clusterSplits * p->numTokens;
  fp.attnGrid[1] = (int)gridY(p);
  fp.attnGrid[2] = 1;
  GqaParams pp = *p;
  pp.wsMergeCtas = 0;
  if (pp.wsReady) { /* one item a warp, at most the room cpclGqaSm90Fused left (p->wsMergeCtas) */
    const long long items = (long long)pp.numTokens * pp.numHeads, per = kThreads / 32;
    pp.wsMergeCtas = (int)std::min<long long>((items + per - 1) / per, std::max(1, p->wsMergeCtas));
  }
  const long long ctas = (long long)fp.attnGrid[0] * fp.attnGrid[1] + pp.wsMergeCtas + fp.numMergeCtas;
  if (ctas > 0x7fffffffLL) return invalidValue("the fused kernel's grid of %lld CTAs exceeds 2^31 - 1", ctas);
  if (fp.numPutCtas < 0 || fp.numMergeCtas < 0 || (fp.dcpSize > 1 && (fp.numPutCtas < 1 || fp.numMergeCtas < 1)))
    return invalidValue("numPutCtas = %d, numMergeCtas = %d with dcpSize = %d: each must be at least %d", fp.numPutCtas,
                        fp.numMergeCtas, fp.dcpSize, fp.dcpSize > 1 ? 1 : 0);
  kern<<<(unsigned)ctas, kThreads, smemBytes<D, HB, kMode == 2>(p->stages), stream>>>(km, vm, pp, fp);
  return (int)cudaGetLastError();
}

#define CPCL_GQA_FUSED_INST(T, D)                                                                           \
  template int launchFused<T, D, 1, 0, false>(const GqaParams*, const GqaKvMaps*, const cpclFusedParams_t*, \
                                              cudaStream_t, bool);                                          \
  template int launchFused<T, D, 2, 0, false>(const GqaParams*, const GqaKvMaps*, const cpclFusedParams_t*, \
                                              cudaStream_t, bool);                                          \
  template int launchFused<T, D, 4, 0, false>(const GqaParams*, const GqaKvMaps*, const cpclFusedParams_t*, \
                                              cudaStream_t, bool);                                          \
  template int launchFused<T, D, 1, 2, false>(const GqaParams*, const GqaKvMaps*, const cpclFusedParams_t*, \
                                              cudaStream_t, bool);                                          \
  template int launchFused<T, D, 2, 2, false>(const GqaParams*, const GqaKvMaps*, const cpclFusedParams_t*, \
                                              cudaStream_t, bool);                                          \
  template int launchFused<T, D, 4, 2, false>(const GqaParams*, const GqaKvMaps*, const cpclFusedParams_t*, \
                                              cudaStream_t, bool);                                          \
  template int launchFused<T, D, 4, 2, true>(const GqaParams*, const GqaKvMaps*, const cpclFusedParams_t*,  \
                                             cudaStream_t, bool);
CPCL_GQA_FUSED_INST(__nv_bfloat16, 64)
CPCL_GQA_FUSED_INST(__nv_bfloat16, 128)
CPCL_GQA_FUSED_INST(__half, 64)
CPCL_GQA_FUSED_INST(__half, 128)
#undef CPCL_GQA_FUSED_INST

}  // namespace gqa90
}  // namespace cpcl
