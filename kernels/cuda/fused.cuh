/*
 * fused.cuh -- how an attention body is launched: alone (attnKernel, cpclCudaAttn) or inside the
 * fused decode kernel (fusedKernel, cpclCudaFused; kernels.h says what it does), plus the flag
 * primitives of peer synchronisation shared with p2p.cu.
 *
 * A Body (attn.cu's SplitBody, attn_mma.cu's MmaBody) provides
 *   kThreads, kHeads (gathered heads a CTA serves), OutT (the query/output type), smemBytes(p) and
 *   run(p, cta, smem) -> whether this CTA wrote final out/lse for its (row, heads).
 *
 * Fused kernel layout. CTAs [0, nAttn) are the attention grid cells, in the plain kernel's order;
 * the numMergeCtas after them merge. The first attention CTAs with work to start also take the
 * numPutCtas put tickets and store a chunk of the queries before their own work: a plain load
 * first, so once the tickets are gone nobody pays an atomic. Counters of cpclPeerSync_t: [0] put
 * tickets, [2] put chunks done, [5] merge CTAs done (the last re-arms them and advances the
 * epoch); [8 + j] heads of block j finished (re-armed by the CTA that completes the block);
 * [kBlockDone + j] the epoch at which block j was last completed.
 * Progress: puts are done by CTAs already running and wait only for the peers' step to start;
 * attention waits only for peers' puts; the merge CTAs (at most half the SMs) wait for partials,
 * and leave room for the attention CTAs whatever order the hardware starts CTAs in.
 */
#ifndef CPCL_CUDA_FUSED_CUH_
#define CPCL_CUDA_FUSED_CUH_

#include <cuda_runtime.h>

#include "attn_common.cuh"
#include "merge.cuh"

namespace cpcl {

__device__ __forceinline__ int ldAcquireSys(const int* p) {
  int v;
  asm volatile("ld.acquire.sys.global.s32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void stReleaseSys(int* p, int v) {
  asm volatile("st.release.sys.global.s32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned long long globalTimerNs() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

/* Spins until *flag >= target (wrapping difference). Bounded by s.timeoutNs: on expiry records
 * CPCL_KERR_TIMEOUT (peer, target, value seen) and returns false; once any wait of this plan
 * has timed out, returns false at once. */
static __device__ __noinline__ bool waitFlag(const int* flag, int target, unsigned long long timeoutNs, int peer,
                                             int* errorFlag) {
  int v = ldAcquireSys(flag);
  if (v - target >= 0) return true;
  const unsigned long long t0 = globalTimerNs();
  for (unsigned i = 1;; i++) {
    v = ldAcquireSys(flag);
    if (v - target >= 0) return true;
    if ((i & 1023) == 0) {
      if (errorFlag && ldAcquireSys(errorFlag) == CPCL_KERR_TIMEOUT) return false;
      if (globalTimerNs() - t0 > timeoutNs) {
        reportError(errorFlag, CPCL_KERR_TIMEOUT, peer, target, v);
        return false;
      }
    }
    if (i > 64) __nanosleep(128);
  }
}

template <class Body>
__global__ void __launch_bounds__(Body::kThreads) attnKernel(const __grid_constant__ cpclAttnParams_t p) {
  extern __shared__ __align__(16) unsigned char smem[];
  Body::run(p, ctaFromBlock(), smem);
}

constexpr int kBlockDone = 8 + 2 * CPCL_MAX_PARTS; /* counters: epoch mark of each attended block */

template <class Body>
__global__ void __launch_bounds__(Body::kThreads) fusedKernel(const __grid_constant__ cpclFusedParams_t f) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int sTicket, sEpoch;
  const cpclPeerSync_t& s = f.sync;
  const cpclAttnParams_t& p = f.attn;
  unsigned* ctr = s.counters;
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
        if (*(volatile unsigned*)(ctr + 0) < (unsigned)f.numPutCtas) t = (int)atomicAdd(ctr + 0, 1u);
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
      if (tid == 0 && atomicAdd(ctr + 2, 1u) == (unsigned)f.numPutCtas - 1)
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
          if (atomicAdd(ctr + 8 + j, (unsigned)n) + n == (unsigned)(T * H)) {
            ctr[8 + j] = 0;
            stReleaseSys(s.dataOut[CPCL_SYNC_PART][j], E + 1);
            atomicExch(ctr + kBlockDone + j, (unsigned)(E + 1)); /* every CTA of block j is done */
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
    if (tid == 0 && atomicAdd(ctr + 5, 1u) == (unsigned)f.numMergeCtas - 1) {
      for (int j = 0; j < D; j++) waitFlag((const int*)(ctr + kBlockDone + j), E + 1, s.timeoutNs, me, err);
      ctr[0] = ctr[2] = ctr[5] = 0; /* re-armed: put tickets, chunks done, merge CTAs done */
      __threadfence();
      *s.epoch = E + 1;
    }
  }
}

template <class K>
static int raiseSmem(K kernel, size_t smem, size_t* raised) {
  if (smem <= *raised) return 0;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return (int)e;
  *raised = smem;
  return 0;
}

/* f == nullptr: the attention alone; otherwise the fused kernel around it. */
template <class Body>
static int launchBody(const cpclAttnParams_t* p, const cpclFusedParams_t* f, cudaStream_t stream) {
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
  if (ctas > 0x7fffffffLL || fp.numPutCtas < 0 || fp.numMergeCtas < 0 ||
      (fp.dcpSize > 1 && (fp.numPutCtas < 1 || fp.numMergeCtas < 1)))
    return (int)cudaErrorInvalidValue;
  fusedKernel<Body><<<(unsigned)ctas, Body::kThreads, smem, stream>>>(fp);
  return (int)cudaGetLastError();
}

}  // namespace cpcl

#endif /* CPCL_CUDA_FUSED_CUH_ */
