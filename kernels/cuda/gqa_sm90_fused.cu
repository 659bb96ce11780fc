/*
 * gqa_sm90_fused.cu -- the Hopper GQA body inside the fused decode kernel (fused_params.h): the
 * CTAs of gqaDecodeKernel's grid (gqaCta, gqa_sm90.cuh) in its order, then the merge CTAs, one
 * 1-D launch, the steps of fused_steps.cuh around them (the query put by tickets and the owners'
 * wait once a CTA knows it has work, the per-block count once it wrote its heads' final partial).
 * A row's splits merge in the tail of the last one to finish (form 2): no second kernel, no
 * cluster, so the fused kernel's progress argument is the plain one's (no CTA waits for another
 * split; the merge CTAs wait for partials only). Queries, partials and LSEs are addressed by the
 * per-block bases of the fused kernel's cpclAttnParams_t. The same bits as the body launched
 * alone with the same plan constants (its form 1 and 2 agree bitwise).
 *
 * Its own sm_90a unit, so it compiles beside gqa_sm90.cu; gqa_sm90.cu's dispatch calls
 * launchFused, whose instantiations are the ones below.
 */
#include <string.h>

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

template <typename T, int D, int HB, int kMode, bool kWg>
__global__ void __launch_bounds__(kThreads, 2)
    gqaFusedKernel(const __grid_constant__ CUtensorMap kMap, const __grid_constant__ CUtensorMap vMap,
                   const __grid_constant__ GqaParams p, const __grid_constant__ cpclFusedParams_t f) {
  __shared__ int sTicket, sEpoch;
  const int E = fusedEpoch(f, sEpoch);
  const unsigned gx = f.attnGrid[0], gy = f.attnGrid[1], nAttn = gx * gy;
  if (blockIdx.x < nAttn) {
    const unsigned v = blockIdx.x;
    int g0, nh;
    if (gqaCta<T, D, HB, kMode, kWg, true>(kMap, vMap, p, FusedCta{f, E, &sTicket}, v % gx, v / gx, gy, &g0, &nh) &&
        f.numMergeCtas > 0)
      fusedPostHeads(f, E, g0, nh);
  } else {
    fusedMergeCta<T>(f, E, (int)(blockIdx.x - nAttn));
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
  const long long ctas = (long long)fp.attnGrid[0] * fp.attnGrid[1] + fp.numMergeCtas;
  if (ctas > 0x7fffffffLL) return invalidValue("the fused kernel's grid of %lld CTAs exceeds 2^31 - 1", ctas);
  if (fp.numPutCtas < 0 || fp.numMergeCtas < 0 || (fp.dcpSize > 1 && (fp.numPutCtas < 1 || fp.numMergeCtas < 1)))
    return invalidValue("numPutCtas = %d, numMergeCtas = %d with dcpSize = %d: each must be at least %d", fp.numPutCtas,
                        fp.numMergeCtas, fp.dcpSize, fp.dcpSize > 1 ? 1 : 0);
  kern<<<(unsigned)ctas, kThreads, smemBytes<D, HB, kMode == 2>(p->stages), stream>>>(km, vm, *p, fp);
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
