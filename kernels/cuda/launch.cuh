/*
 * launch.cuh -- how an attention body is launched: alone (attnKernel, cpclCudaAttn) or inside the
 * fused decode kernel (fusedKernel, fused_kernel.cuh; cpclCudaFused). Each instantiation file
 * (inst/) instantiates launchBody for its bodies.
 *
 * A Body (attn_split.cuh's SplitBody, attn_mma.cuh's MmaBody and MmaWideBody) provides
 *   kThreads, kHeads (gathered heads a CTA serves), OutT (the query/output type), smemBytes(p) and
 *   run(p, cta, smem) -> whether this CTA wrote final out/lse for its (row, heads).
 */
#ifndef CPCL_CUDA_LAUNCH_CUH_
#define CPCL_CUDA_LAUNCH_CUH_

#include <cuda_runtime.h>

#include "attn_common.cuh"
#include "dispatch.cuh"
#include "fused_kernel.cuh"

namespace cpcl {

template <class Body>
__global__ void __launch_bounds__(Body::kThreads) attnKernel(const __grid_constant__ cpclAttnParams_t p) {
  extern __shared__ __align__(16) unsigned char smem[];
  Body::run(p, ctaFromBlock(), smem);
}

template <class K>
int raiseSmem(K kernel, size_t smem, size_t* raised) {
  if (smem <= *raised) return 0;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return (int)e;
  *raised = smem;
  return 0;
}

/* f == nullptr: the attention alone; otherwise the fused kernel around it. */
template <class Body>
int launchBody(const cpclAttnParams_t* p, const cpclFusedParams_t* f, cudaStream_t stream) {
  const size_t smem = Body::smemBytes(p);
  const dim3 g = attnGrid(p, Body::kHeads);
  if (f == nullptr) {
    static size_t raised = 0; /* per instantiation */
    if (int e = raiseSmem(attnKernel<Body>, smem, &raised)) return e;
    attnKernel<Body><<<g, Body::kThreads, smem, stream>>>(*p);
    return (int)cudaGetLastError();
  }
  static size_t raisedFused = 0;
  if (int e = raiseSmem(fusedKernel<Body>, smem, &raisedFused)) return e;
  cpclFusedParams_t fp = *f;
  fp.attnGrid[0] = (int)g.x;
  fp.attnGrid[1] = (int)g.y;
  fp.attnGrid[2] = (int)g.z;
  const long long ctas = (long long)g.x * g.y * g.z + fp.numMergeCtas;
  if (ctas > 0x7fffffffLL) return invalidValue("the fused kernel's grid of %lld CTAs exceeds 2^31 - 1", ctas);
  if (fp.numPutCtas < 0 || fp.numMergeCtas < 0 || (fp.dcpSize > 1 && (fp.numPutCtas < 1 || fp.numMergeCtas < 1)))
    return invalidValue("numPutCtas = %d, numMergeCtas = %d with dcpSize = %d: each must be at least %d", fp.numPutCtas,
                        fp.numMergeCtas, fp.dcpSize, fp.dcpSize > 1 ? 1 : 0);
  fusedKernel<Body><<<(unsigned)ctas, Body::kThreads, smem, stream>>>(fp);
  return (int)cudaGetLastError();
}

}  // namespace cpcl

#endif /* CPCL_CUDA_LAUNCH_CUH_ */
