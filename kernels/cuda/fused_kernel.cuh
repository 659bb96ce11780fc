/*
 * fused_kernel.cuh -- the fused decode kernel (fused_params.h says what it does) around an
 * attention body; launched by launchBody (launch.cuh).
 *
 * Layout. CTAs [0, nAttn) are the attention grid cells, in the plain kernel's order; the
 * numMergeCtas after them merge. The first attention CTAs with work to start also take the
 * numPutCtas put tickets and store a chunk of the queries before their own work: a plain load
 * first, so once the tickets are gone nobody pays an atomic. Counters (peer_sync.h,
 * cpclSyncCounter_t): put tickets, put chunks done and merge CTAs done (the last merge CTA re-arms
 * them and advances the epoch); heads of block j finished (re-armed by the CTA that completes the
 * block); the epoch at which block j was last completed.
 * Progress: puts are done by CTAs already running and wait only for the peers' step to start;
 * attention waits only for peers' puts; the merge CTAs (at most half the SMs) wait for partials,
 * and leave room for the attention CTAs whatever order the hardware starts CTAs in.
 */
#ifndef CPCL_CUDA_FUSED_KERNEL_CUH_
#define CPCL_CUDA_FUSED_KERNEL_CUH_

#include "attn_common.cuh"
#include "fused_params.h"
#include "merge.cuh"
#include "peer_sync.cuh"

namespace cpcl {

template <class Body>
__global__ void __launch_bounds__(Body::kThreads) fusedKernel(const __grid_constant__ cpclFusedParams_t f) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int sTicket, sEpoch;
  const cpclPeerSync_t& s = f.sync;
  const cpclAttnParams_t& p = f.attn;
  int* err = p.errorFlag;
  const int D = f.dcpSize, me = f.dcpRank, tid = threadIdx.x;
  const int nAttn = f.attnGrid[0] * f.attnGrid[1] * f.attnGrid[2];
  const int H = p.headsPerBlock, T = p.numTokens;
  if (tid == 0) sEpoch = *(volatile int*)s.epoch + 1;
  __syncthreads();
  const int E = sEpoch;
  /* Put tickets, taken by attention CTAs that have work, before they wait on anything: a plain
   * load first, so once the tickets are gone nobody pays an atomic; a CTA keeps taking tickets
   * while any is left, so the chunks get done however few such CTAs there are. */
  auto putChunks = [&]() {
    for (;;) {
      if (tid == 0) {
        int t = -1;
        if (*(volatile unsigned*)syncCounter(s, CPCL_CTR_PUT_TICKETS) < (unsigned)f.numPutCtas)
          t = (int)atomicAdd(syncCounter(s, CPCL_CTR_PUT_TICKETS), 1u);
        sTicket = t < f.numPutCtas ? t : -1;
      }
      __syncthreads();
      const int ticket = sTicket;
      if (ticket < 0) return;
      if (ticket == 0) /* this rank may be written to for this step: its previous one is over */
        for (int j = tid; j < D; j += blockDim.x)
          if (j != me) stReleaseSys(s.readyOut[j], E);
      for (int j = tid; j < D; j += blockDim.x)
        if (j != me) waitFlag(s.readyIn + j, E - 1, s.timeoutNs, j, err);
      __syncthreads();
      const size_t n16 = f.qBytes / 16, per = (n16 + f.numPutCtas - 1) / f.numPutCtas;
      const size_t b = (size_t)ticket * per, e = min(n16, b + per);
      const int4* src = static_cast<const int4*>(f.qSrc);
      for (size_t i = b + tid; i < e; i += blockDim.x) {
        const int4 v = src[i];
        for (int j = 0; j < D; j++) /* the own block is read where the caller left it */
          if (j != me) static_cast<int4*>(f.qDst[j])[i] = v;
      }
      __threadfence_system();
      __syncthreads();
      if (tid == 0 && atomicAdd(syncCounter(s, CPCL_CTR_PUT_DONE), 1u) == (unsigned)f.numPutCtas - 1)
        for (int j = 0; j < D; j++) stReleaseSys(s.dataOut[CPCL_SYNC_Q][j], E);
      __syncthreads(); /* sTicket is rewritten */
    }
  };

  if ((int)blockIdx.x < nAttn) { /* attention of one grid cell (the plain kernel's order) */
    const int v = blockIdx.x, gx = f.attnGrid[0], gy = f.attnGrid[1];
    const CtaIdx c{v % gx, (v / gx) % gy, v / (gx * gy)};
    CtaWork w;
    if (ctaWork(p, c, w, Body::kHeads)) {
      if (f.numPutCtas > 0) putChunks();
      const int jLo = w.g0 / H, jHi = (w.g0 + w.nu - 1) / H;
      for (int j = jLo + tid; j <= jHi; j += blockDim.x)
        if (j != me) {
          waitFlag(s.dataIn[CPCL_SYNC_Q] + j, E, s.timeoutNs, j, err); /* its queries are here */
          waitFlag(s.readyIn + j, E, s.timeoutNs, j, err);             /* its receive slots are free */
        }
      __syncthreads();
      if (Body::run(p, c, smem) && f.numMergeCtas > 0) {
        __threadfence_system();
        __syncthreads();
        for (int j = jLo + tid; j <= jHi; j += blockDim.x) {
          const int n = min(w.g0 + w.nu, (j + 1) * H) - max(w.g0, j * H);
          if (atomicAdd(syncCounter(s, CPCL_CTR_BLOCK_HEADS, j), (unsigned)n) + n == (unsigned)(T * H)) {
            *syncCounter(s, CPCL_CTR_BLOCK_HEADS, j) = 0;
            stReleaseSys(s.dataOut[CPCL_SYNC_PART][j], E + 1);
            atomicExch(syncCounter(s, CPCL_CTR_BLOCK_EPOCH, j), (unsigned)(E + 1)); /* every CTA of block j is done */
          }
        }
      }
    }
  } else { /* the merge of this rank's heads; the last merge CTA advances the epoch */
    for (int j = tid; j < D; j += blockDim.x) waitFlag(s.dataIn[CPCL_SYNC_PART] + j, E + 1, s.timeoutNs, j, err);
    __syncthreads();
    for (int i = (int)blockIdx.x - nAttn; i < T * H; i += f.numMergeCtas)
      mergeOne<typename Body::OutT>(f.merge, i / H, i % H);
    __syncthreads();
    /* The last merge CTA re-arms the counters and advances the epoch once no CTA of this step
     * can still need them: every block this rank attends to is complete (its last CTA marked
     * it), so every CTA with work is done, put chunks included (only such CTAs take tickets);
     * a CTA that starts later has no work and touches nothing. */
    if (tid == 0 && atomicAdd(syncCounter(s, CPCL_CTR_MERGE_DONE), 1u) == (unsigned)f.numMergeCtas - 1) {
      for (int j = 0; j < D; j++)
        waitFlag((const int*)syncCounter(s, CPCL_CTR_BLOCK_EPOCH, j), E + 1, s.timeoutNs, me, err);
      /* re-armed: put tickets, chunks done, merge CTAs done */
      *syncCounter(s, CPCL_CTR_PUT_TICKETS) = *syncCounter(s, CPCL_CTR_PUT_DONE) =
          *syncCounter(s, CPCL_CTR_MERGE_DONE) = 0;
      __threadfence();
      *s.epoch = E + 1;
    }
  }
}

}  // namespace cpcl

#endif /* CPCL_CUDA_FUSED_KERNEL_CUH_ */
