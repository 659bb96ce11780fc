/*
 * fused.cuh -- how an attention body is launched: alone (attnKernel, cpclCudaAttn) or inside the
 * fused decode kernel (fusedKernel, cpclCudaFused; kernels.h says what it does), plus the flag
 * primitives of peer synchronisation shared with p2p.cu.
 *
 * A Body (attn.cu's SplitBody, attn_mma.cu's MmaBody) provides
 *   kThreads, kHeads (gathered heads a CTA serves), OutT (the query/output type), smemBytes(p) and
 *   run(p, cta, smem) -> whether this CTA wrote final out/lse for its (row, heads).
 *
 * Fused ticket layout (counters of cpclPeerSync_t): [0] ticket, [1] CTAs done, [2] query-put CTAs
 * done, [8 + j] heads of block j finished. A CTA's role follows its ticket, not blockIdx, so
 * every CTA that waits was dispatched after all the work it waits on had been taken by running
 * CTAs (here and, by the same rule, at each peer).
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

template <class Body>
__global__ void __launch_bounds__(Body::kThreads) fusedKernel(const __grid_constant__ cpclFusedParams_t f) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ int sTicket, sEpoch;
  const cpclPeerSync_t& s = f.sync;
  const cpclAttnParams_t& p = f.attn;
  unsigned* ctr = s.counters;
  int* err = p.errorFlag;
  if (threadIdx.x == 0) {
    sTicket = (int)atomicAdd(ctr + 0, 1u);
    sEpoch = *(volatile int*)s.epoch + 1;
  }
  __syncthreads();
  const int ticket = sTicket, E = sEpoch, D = f.dcpSize, me = f.dcpRank, tid = threadIdx.x;
  const int nAttn = f.attnGrid[0] * f.attnGrid[1] * f.attnGrid[2];
  const int H = p.headsPerBlock, T = p.numTokens;
  /* this rank may be written to for this step: its previous step is over (stream order) */
  if (ticket == 0)
    for (int j = tid; j < D; j += blockDim.x)
      if (j != me) stReleaseSys(s.readyOut[j], E);

  if (ticket < f.numPutCtas) { /* queries to every peer's gathered block `me` */
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
    if (tid == 0 && atomicAdd(ctr + 2, 1u) == (unsigned)f.numPutCtas - 1) {
      ctr[2] = 0;
      for (int j = 0; j < D; j++) stReleaseSys(s.dataOut[CPCL_SYNC_Q][j], E);
    }
  } else if (ticket < f.numPutCtas + nAttn) { /* attention of one grid cell */
    const int v = ticket - f.numPutCtas, gx = f.attnGrid[0], gy = f.attnGrid[1];
    const CtaIdx c{v % gx, (v / gx) % gy, v / (gx * gy)};
    CtaWork w;
    if (ctaWork(p, c, w, Body::kHeads)) {
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
          }
        }
      }
    }
  } else { /* the merge of this rank's heads */
    for (int j = tid; j < D; j += blockDim.x) waitFlag(s.dataIn[CPCL_SYNC_PART] + j, E + 1, s.timeoutNs, j, err);
    __syncthreads();
    for (int i = ticket - f.numPutCtas - nAttn; i < T * H; i += f.numMergeCtas)
      mergeOne<typename Body::OutT>(f.merge, i / H, i % H);
  }
  __syncthreads();
  if (tid == 0 && atomicAdd(ctr + 1, 1u) == gridDim.x - 1) { /* the last CTA: re-arm for the next step */
    ctr[0] = 0;
    ctr[1] = 0;
    *s.epoch = E + 1;
    __threadfence();
  }
}

template <class Body, class K>
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
    if (int e = raiseSmem<Body>(attnKernel<Body>, smem, &raised)) return e;
    attnKernel<Body><<<g, Body::kThreads, smem, stream>>>(*p);
    return (int)cudaGetLastError();
  }
  static size_t raisedFused = 0;
  if (int e = raiseSmem<Body>(fusedKernel<Body>, smem, &raisedFused)) return e;
  cpclFusedParams_t fp = *f;
  fp.attnGrid[0] = (int)g.x;
  fp.attnGrid[1] = (int)g.y;
  fp.attnGrid[2] = (int)g.z;
  const long long ctas = (long long)fp.numPutCtas + (long long)g.x * g.y * g.z + fp.numMergeCtas;
  if (ctas > 0x7fffffffLL || fp.numPutCtas < 0 || fp.numMergeCtas < 0 ||
      (fp.dcpSize > 1 && (fp.numPutCtas < 1 || fp.numMergeCtas < 1)))
    return (int)cudaErrorInvalidValue;
  fusedKernel<Body><<<(unsigned)ctas, Body::kThreads, smem, stream>>>(fp);
  return (int)cudaGetLastError();
}

}  // namespace cpcl

#endif /* CPCL_CUDA_FUSED_CUH_ */
