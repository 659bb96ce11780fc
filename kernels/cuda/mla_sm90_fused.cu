/*
 * mla_sm90_fused.cu -- the Hopper MLA body inside the fused decode kernel (fused_params.h): the
 * CTAs of mlaSm90Kernel's grid (mlaCta, mla_sm90.cuh) in its order (x fastest, then the split),
 * then the merge CTAs, one 1-D launch, the steps of fused_steps.cuh around them: the query put by
 * tickets and the owners' wait once a CTA knows it has work, and once its consumers stored their
 * epilogue either the per-block count (a row of one split: its heads are final) or the split's
 * arrival in its (row, head chunk) counter. The last of a unit's splits to arrive re-arms the
 * counter and stores the unit's head count (times the warps a head) in its ready word; split-merge
 * CTAs after the attention CTAs merge a head a warp, or a head a quad of warps for few items, once
 * the word is set, in mlaSm90Combine's arithmetic (the same weights' butterfly, acc += w v in split
 * order, the same roundings), so the fused kernel's out has the bits of a2a's, and each warp
 * counts itself out of the word again (zero after the launch). No attention
 * CTA waits for another; the split-merge CTAs wait for attention CTAs only and the merge CTAs for
 * partials only, together at most half the SMs (one CTA an SM: 222 KB of shared memory), so an
 * attention CTA always finds an SM whatever order the CTAs start in. Every wait spins inline
 * (waitFlagInline): a call in this kernel made ptxas fail (session 17).
 *
 * Its own sm_90a unit, so it compiles beside mla_sm90.cu; cpclMlaSm90Fused (mla_sm90.cu) calls
 * launchFused for the library's two dense schedules (19, 12).
 */
#include <algorithm>
#include <atomic>
#include <cstring>

#include "dispatch.cuh"
#include "env_setting.h"
#include "fused_steps.cuh"
#define CPCL_MLA_SM90_BODY_ONLY 1
#include "mla_sm90.cuh"
#include "mla_sm90.h"

namespace cpcl {
namespace mla90 {

struct MlaFusedCta {
  static constexpr bool kFused = true;
  const cpclFusedParams_t& f;
  const Split& sp;
  int epoch;
  int* sTicket;
  __device__ __forceinline__ void work(int g0, int nu) const {
    if (f.numPutCtas > 0) fusedPutChunks<true>(f, epoch, *sTicket);
    fusedWaitOwners<true>(f, epoch, g0, nu);
  }
  /* the 256 consumer threads, after their epilogue stores (out / lse, or the split's partial) */
  __device__ __forceinline__ void done(int n, int unit, int g0, int nu) const {
    __threadfence_system(); /* peers read out / lse; the split-merge CTAs read the partials */
    namedBarrier(kBarAll, 256);
    if (threadIdx.x != 0) return;
    if (n <= 1) {
      if (f.numMergeCtas > 0) {
        const int H = f.attn.headsPerBlock;
        for (int j = g0 / H; j <= (g0 + nu - 1) / H; j++)
          fusedCountBlock(f, epoch, j, min(g0 + nu, (j + 1) * H) - max(g0, j * H));
      }
      return;
    }
    if (atomicAdd(sp.wsCount + unit, 1u) == (unsigned)n - 1) { /* every split of the unit is in */
      sp.wsCount[unit] = 0;
      __threadfence();
      atomicExch(sp.wsReady + unit, (unsigned)(nu * sp.mergeWarps));
    }
  }
};

/* Split-merge CTA mi of sp.mergeCtas (rows of several splits): Q warps a (row, head) item, the CTA's
 * 12 / Q quads taking the items mi 12 / Q + q, + mergeCtas 12 / Q, ... of the call's numTokens x
 * numHeads; lane i of warp w of a quad owns dims 4 (32 w + i) + 128 Q j (j < 4 / Q) of the head's
 * 512 (Q = 4: mlaSm90Combine's thread map, 128 threads a head). A row of n > 1 splits waits for its
 * unit's ready word (set by the unit's n-th arrival to Q times its heads), then mlaSm90Combine's
 * steps: the weights by the same butterfly (each warp of a quad its own, the same bits), the
 * partials B splits at a time, acc += w v in split order (one fma, as the combine's contracts),
 * bf16 pairs, the LSE; then each warp counts itself out of the word (zero after the launch, and
 * never before every warp of the unit's heads has seen it set). With peers each round's merged
 * heads are counted into their blocks, thread 0 over the quads in order. Waits only for attention
 * CTAs, which wait for nothing here; the waits spin inline (the kernel takes no calls). Q = 1
 * (B 2: eight float4 a lane in flight) serves many items; Q = 4 (B 16, the combine's batch) the
 * few items of small batches, where one warp's chain of n / 2 L2 round trips was the cost. */
constexpr int kSplitWarps = kThreads / 32;
template <int Q>
__device__ __forceinline__ void splitMergeCta(const cpclFusedParams_t& f, const Split& sp, int E, int mi, int* sHead) {
  constexpr int kF4 = 4 / Q, B = Q == 1 ? 2 : 16, kQuads = kSplitWarps / Q;
  static_assert(kSplitWarps % Q == 0 && 4 % Q == 0, "whole quads, whole float4s");
  const cpclAttnParams_t& p = f.attn;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, S = sp.maxSplits;
  const int quad = warp / Q, qw = warp % Q;
  const int nChunks = (p.numHeads + kM - 1) / kM;
  const int64_t items = (int64_t)p.numTokens * p.numHeads, stride = (int64_t)sp.mergeCtas * kQuads;
  for (int64_t i0 = (int64_t)mi * kQuads; i0 < items; i0 += stride) {
    const int64_t u = i0 + quad;
    int merged = -1;
    if (u < items) {
      const int t = (int)(u / p.numHeads), h = (int)(u % p.numHeads), g = p.headBegin + h;
      const int n = rowWork(p, sp, t, nullptr).n;
      if (n > 1) { /* else the row's one split wrote the head */
        unsigned* ready = sp.wsReady + (int64_t)t * nChunks + h / kM;
        bool ok = true;
        if (lane == 0)
          ok = waitFlagInline(reinterpret_cast<const int*>(ready), 1, f.sync.timeoutNs, f.dcpRank, p.errorFlag);
        ok = __shfl_sync(0xffffffffu, ok, 0);
        __threadfence(); /* the partials after the word: from L2 (__ldcg) */
        if (ok) {
          const float* lse = sp.wsLse + u * S;
          float x0 = lane < n ? __ldcg(lse + lane) : -INFINITY;
          float x1 = lane + 32 < n ? __ldcg(lse + lane + 32) : -INFINITY;
          if (__any_sync(0xffffffffu, isnan(x0) || isnan(x1))) x0 = x1 = -INFINITY;
          float m = fmaxf(x0, x1);
#pragma unroll
          for (int k = 16; k > 0; k >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, k));
          float outLse2 = -INFINITY, w0 = 0.f, w1 = 0.f;
          if (m != -INFINITY) {
            float sum = (x0 == -INFINITY ? 0.f : exp2f(x0 - m)) + (x1 == -INFINITY ? 0.f : exp2f(x1 - m));
#pragma unroll
            for (int k = 16; k > 0; k >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, k);
            outLse2 = m + log2f(sum);
            w0 = x0 == -INFINITY ? 0.f : exp2f(x0 - outLse2);
            w1 = x1 == -INFINITY ? 0.f : exp2f(x1 - outLse2);
          }
          float4 acc[kF4];
#pragma unroll
          for (int j = 0; j < kF4; j++) acc[j] = make_float4(0.f, 0.f, 0.f, 0.f);
          const int d0 = (qw * 32 + lane) * 4;
          const float* src = sp.wsO + u * S * kDv + d0;
          for (int k0 = 0; k0 < n; k0 += B) {
            float4 v[B][kF4];
            float wk[B];
#pragma unroll
            for (int i = 0; i < B; i++) {
              const int k = k0 + i;
              const float wa = __shfl_sync(0xffffffffu, w0, k & 31), wb = __shfl_sync(0xffffffffu, w1, k & 31);
              wk[i] = k < n ? (k < 32 ? wa : wb) : 0.f;
#pragma unroll
              for (int j = 0; j < kF4; j++) /* an empty partial (weight 0) is never read */
                v[i][j] = wk[i] != 0.f ? __ldcg(reinterpret_cast<const float4*>(src + (int64_t)k * kDv + 128 * Q * j))
                                       : make_float4(0.f, 0.f, 0.f, 0.f);
            }
#pragma unroll
            for (int i = 0; i < B; i++) {
              if (wk[i] == 0.f) continue;
#pragma unroll
              for (int j = 0; j < kF4; j++) {
                acc[j].x = fmaf(wk[i], v[i][j].x, acc[j].x);
                acc[j].y = fmaf(wk[i], v[i][j].y, acc[j].y);
                acc[j].z = fmaf(wk[i], v[i][j].z, acc[j].z);
                acc[j].w = fmaf(wk[i], v[i][j].w, acc[j].w);
              }
            }
          }
          __nv_bfloat16* dst = attnOut<__nv_bfloat16>(p, g, t) + d0;
#pragma unroll
          for (int j = 0; j < kF4; j++) {
            __nv_bfloat162 a = __floats2bfloat162_rn(acc[j].x, acc[j].y), b = __floats2bfloat162_rn(acc[j].z, acc[j].w);
            uint2 o2;
            o2.x = *reinterpret_cast<uint32_t*>(&a);
            o2.y = *reinterpret_cast<uint32_t*>(&b);
            *reinterpret_cast<uint2*>(dst + 128 * Q * j) = o2;
          }
          if (lane == 0 && qw == 0)
            if (float* l = attnLse(p, g, t)) *l = p.lseBase2 ? outLse2 : outLse2 * kLn2;
          __syncwarp();
          if (lane == 0) atomicSub(ready, 1u); /* the unit's last warp leaves the word zero */
          merged = g;
        }
      }
    }
    if (f.numMergeCtas > 0) {
      if (lane == 0 && qw == 0) sHead[quad] = merged;
      __threadfence_system();
      __syncthreads();
      if (threadIdx.x == 0) {
        const int Hb = p.headsPerBlock;
        int j = -1, c = 0;
        for (int w = 0; w < kQuads; w++) {
          if (sHead[w] < 0) continue;
          if (sHead[w] / Hb != j) {
            if (c) fusedCountBlock(f, E, j, c);
            j = sHead[w] / Hb, c = 0;
          }
          c++;
        }
        if (c) fusedCountBlock(f, E, j, c);
      }
      __syncthreads(); /* sHead is rewritten */
    }
  }
}

template <int kKind, int kLanes, int kFlags, int Q>
__global__ void __launch_bounds__(kThreads, 1)
    mlaFusedKernel(const __grid_constant__ CUtensorMap kvMap, const __grid_constant__ cpclFusedParams_t f,
                   const __grid_constant__ Split sp) {
  __shared__ int sTicket, sEpoch, sHead[kSplitWarps];
  const int E = fusedEpoch(f, sEpoch);
  const unsigned gx = f.attnGrid[0], nAttn = gx * (unsigned)f.attnGrid[2], nSplit = (unsigned)sp.mergeCtas;
  if (blockIdx.x < nAttn) {
    mlaCta<kKind, 0, true, false, kLanes, true, false, kFlags>(kvMap, f.attn, sp, MlaFusedCta{f, sp, E, &sTicket},
                                                               blockIdx.x % gx, blockIdx.x / gx);
  } else if (blockIdx.x < nAttn + nSplit) {
    splitMergeCta<Q>(f, sp, E, (int)(blockIdx.x - nAttn), sHead);
  } else {
    fusedMergeCta<__nv_bfloat16, true>(f, E, (int)(blockIdx.x - nAttn - nSplit));
  }
}

/* the schedules cpclMlaSm90Attn runs: 19 (the seesaw without the hand-off waits) and 12 (late S1) */
constexpr int kFusedVariants = 4; /* (19, 12) x (Q 1, 4) */
std::atomic<unsigned> fusedRaised[64];
/* CPCL_MLA_SM90_FUSED_MERGE, read once per process: 0 the rule, 1 "warp" (Q 1), 4 "quad" (Q 4) */
std::atomic<int> mergeForm{-1};
int mergeFormForced() {
  return settingNow(mergeForm, "CPCL_MLA_SM90_FUSED_MERGE", [](const char* e) {
    return e == nullptr ? 0 : strcmp(e, "warp") == 0 ? 1 : strcmp(e, "quad") == 0 ? 4 : 0;
  });
}

int launchFused(int variant, const CUtensorMap* kvMap, const Split* spIn, const cpclFusedParams_t* f, int numSms,
                cudaStream_t stream) {
  if (variant != 19 && variant != 12) return -1;
  const cpclAttnParams_t& p = f->attn;
  Split sp = *spIn;
  /* the waiting CTAs (split-merge and merge CTAs, one an SM): at most half the SMs, so an attention
   * CTA always finds one whatever order the CTAs start in. The split merge's form: a quad of warps
   * a head while the items fill the waiting CTAs' warps at most four times over, else a warp a
   * head (both the combine's bits). H200, session 18 (call 2, fused median us, quad / warp): B1 H16
   * L4k 26.5 / 32.4; B64 H16 L16k 385.9 / 371.6; B32 H128 L16k 439.9 / 389.5 */
  const long long items = (long long)p.numTokens * p.numHeads;
  const int room = std::max(1, numSms / 2 - f->numMergeCtas);
  const int forced = mergeFormForced();
  const int q = forced ? forced : items * 4 <= (long long)room * kSplitWarps ? 4 : 1;
  auto kern = variant == 19
                  ? (q == 4 ? mlaFusedKernel<1, 2, kFlagHandOrder, 4> : mlaFusedKernel<1, 2, kFlagHandOrder, 1>)
                  : (q == 4 ? mlaFusedKernel<2, 2, 0, 4> : mlaFusedKernel<2, 2, 0, 1>);
  const unsigned bit = 1u << ((variant == 19 ? 0 : 2) + (q == 4));
  static_assert(kFusedVariants <= 32, "one bit a variant");
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    cudaGetLastError();
    dev = -1;
  }
  if (dev < 0 || !(fusedRaised[dev].load(std::memory_order_acquire) & bit)) {
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return -1; /* the CUDA-core body inside the fused kernel, as before */
    }
    if (dev >= 0) fusedRaised[dev].fetch_or(bit, std::memory_order_acq_rel);
  }
  cpclFusedParams_t fp = *f;
  const long long nChunks = (p.numHeads + kM - 1) / kM, units = (long long)p.numTokens * nChunks;
  fp.attnGrid[0] = (int)units;
  fp.attnGrid[1] = 1;
  fp.attnGrid[2] = sp.maxSplits;
  sp.mergeCtas = 0;
  sp.mergeWarps = q;
  if (sp.maxSplits > 1) {
    const int quads = kSplitWarps / q;
    sp.mergeCtas = (int)std::min<long long>((items + quads - 1) / quads, room);
  }
  if (fp.numPutCtas < 0 || fp.numMergeCtas < 0 || (fp.dcpSize > 1 && (fp.numPutCtas < 1 || fp.numMergeCtas < 1)))
    return invalidValue("numPutCtas = %d, numMergeCtas = %d with dcpSize = %d: each must be at least %d", fp.numPutCtas,
                        fp.numMergeCtas, fp.dcpSize, fp.dcpSize > 1 ? 1 : 0);
  if (fp.numMergeCtas > numSms / 2) return -1; /* the CUDA-core body's fused kernel takes them */
  const long long ctas = units * sp.maxSplits + sp.mergeCtas + fp.numMergeCtas;
  if (ctas > 0x7fffffffLL) return invalidValue("the fused kernel's grid of %lld CTAs exceeds 2^31 - 1", ctas);
  kern<<<(unsigned)ctas, kThreads, kSmemBytes, stream>>>(*kvMap, fp, sp);
  return (int)cudaGetLastError();
}

}  // namespace mla90
}  // namespace cpcl
