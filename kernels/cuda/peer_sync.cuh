/*
 * peer_sync.cuh -- the device side of the peer-synchronisation protocol (kernels/peer_sync.h):
 * acquire/release flag accesses at system scope, the bounded wait, and the kernels' counters by
 * slot. Used by the exchange kernel (p2p.cu) and the fused kernel (fused_kernel.cuh).
 */
#ifndef CPCL_CUDA_PEER_SYNC_CUH_
#define CPCL_CUDA_PEER_SYNC_CUH_

#include "common.cuh"
#include "peer_sync.h"

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

/* counter `slot` (element j of an array slot) of this rank's block */
__device__ __forceinline__ unsigned* syncCounter(const cpclPeerSync_t& s, int slot, int j = 0) {
  return s.counters + cpclSyncCounterIndex(slot, j);
}

/* Spins until *flag >= target (wrapping difference). Bounded by timeoutNs: on expiry records
 * CPCL_KERR_TIMEOUT (peer, target, value seen) and returns false; once any wait of this plan
 * has timed out, returns false at once. */
static __device__ __forceinline__ bool waitFlagInline(const int* flag, int target, unsigned long long timeoutNs,
                                                      int peer, int* errorFlag) {
  int v = ldAcquireSys(flag);
  if (v - target >= 0) return true;
  const unsigned long long t0 = globalTimerNs();
  for (unsigned i = 1;; i++) {
    v = ldAcquireSys(flag);
    if (v - target >= 0) return true;
    if ((i & 1023) == 0) {
      if (errorFlag && ldAcquireSys(errorFlag + CPCL_KERR_W_CODE) == CPCL_KERR_TIMEOUT) return false;
      if (globalTimerNs() - t0 > timeoutNs) {
        reportError(errorFlag, CPCL_KERR_TIMEOUT, peer, target, v);
        return false;
      }
    }
    if (i > 64) __nanosleep(128);
  }
}
/* The same as a call: waitFlagInline is for kernels that must not call (setmaxnreg and wgmma: a
 * call in the Hopper MLA body's fused kernel made ptxas fail its 224-register allocation, or grow
 * past 24 GB, session 17) */
static __device__ __noinline__ bool waitFlag(const int* flag, int target, unsigned long long timeoutNs, int peer,
                                             int* errorFlag) {
  return waitFlagInline(flag, target, timeoutNs, peer, errorFlag);
}

}  // namespace cpcl

#endif /* CPCL_CUDA_PEER_SYNC_CUH_ */
