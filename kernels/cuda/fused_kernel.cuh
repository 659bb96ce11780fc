/*
 * fused_kernel.cuh -- the fused decode kernel (fused_params.h says what it does) around an
 * attention body; launched by launchBody (launch.cuh). Its steps (the put, the owners' wait, the
 * per-block count, the merge CTAs) are fused_steps.cuh's, which the Hopper GQA body's fused form
 * shares.
 *
 * Layout. CTAs [0, nAttn) are the attention grid cells, in the plain kernel's order; the
 * numMergeCtas after them merge. The first attention CTAs with work to start also take the
 * numPutCtas put tickets and store a chunk of the queries before their own work.
 */
#ifndef CPCL_CUDA_FUSED_KERNEL_CUH_
#define CPCL_CUDA_FUSED_KERNEL_CUH_

#include "attn_common.cuh"
#include "fused_steps.cuh"

namespace cpcl {

template <class Body>
__global__ void __launch_bounds__(Body::kThreads) fusedKernel(const __grid_constant__ cpclFusedParams_t f) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int sTicket, sEpoch;
  const cpclAttnParams_t& p = f.attn;
  const int nAttn = f.attnGrid[0] * f.attnGrid[1] * f.attnGrid[2];
  const int E = fusedEpoch(f, sEpoch);
  if ((int)blockIdx.x < nAttn) { /* attention of one grid cell (the plain kernel's order) */
    const int v = blockIdx.x, gx = f.attnGrid[0], gy = f.attnGrid[1];
    const CtaIdx c{v % gx, (v / gx) % gy, v / (gx * gy)};
    CtaWork w;
    if (ctaWork(p, c, w, Body::kHeads)) {
      if (f.numPutCtas > 0) fusedPutChunks(f, E, sTicket);
      fusedWaitOwners(f, E, w.g0, w.nu);
      if (Body::run(p, c, smem) && f.numMergeCtas > 0) fusedPostHeads(f, E, w.g0, w.nu);
    }
  } else { /* the merge of this rank's heads; the last merge CTA advances the epoch */
    fusedMergeCta<typename Body::OutT>(f, E, (int)blockIdx.x - nAttn);
  }
}

}  // namespace cpcl

#endif /* CPCL_CUDA_FUSED_KERNEL_CUH_ */
