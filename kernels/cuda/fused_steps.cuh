/*
 * fused_steps.cuh -- the steps of the fused decode (fused_params.h) around an attention body, as
 * force-inlined device functions of the CTA: the epoch, the query put by tickets, the wait for a
 * CTA's owners, the per-block completion count, and the merge CTAs. Two kernels are built from
 * them: fusedKernel (fused_kernel.cuh, around the bodies of launch.cuh) and the Hopper GQA body's
 * fused form (gqa_sm90.cuh, gqaFusedKernel). Every thread of the CTA calls each step (they hold
 * barriers); `f` is the kernel's __grid_constant__ parameter, never copied.
 *
 * Counters (peer_sync.h, cpclSyncCounter_t): put tickets, put chunks done and merge CTAs done (the
 * last merge CTA re-arms them and advances the epoch); heads of block j finished (re-armed by the
 * CTA that completes the block); the epoch at which block j was last completed.
 * Progress: puts are done by CTAs already running and wait only for the peers' step to start;
 * attention waits only for peers' puts; the merge CTAs (at most half the SMs) wait for partials,
 * and leave room for the attention CTAs whatever order the hardware starts CTAs in.
 */
#ifndef CPCL_CUDA_FUSED_STEPS_CUH_
#define CPCL_CUDA_FUSED_STEPS_CUH_

#include "fused_params.h"
#include "merge.cuh"
#include "peer_sync.cuh"

namespace cpcl {

/* kInline: the wait spins inline (waitFlagInline, for kernels that take no calls) */
template <bool kInline>
__device__ __forceinline__ bool fusedWait(const int* flag, int target, unsigned long long timeoutNs, int peer,
                                          int* errorFlag) {
  if constexpr (kInline) return waitFlagInline(flag, target, timeoutNs, peer, errorFlag);
  return waitFlag(flag, target, timeoutNs, peer, errorFlag);
}

/* this step's epoch (the last completed one + 1), read once by thread 0 */
__device__ __forceinline__ int fusedEpoch(const cpclFusedParams_t& f, int& sEpoch) {
  if (threadIdx.x == 0) sEpoch = *(volatile int*)f.sync.epoch + 1;
  __syncthreads();
  return sEpoch;
}

/* Put tickets, taken by attention CTAs that have work, before they wait on anything: a plain load
 * first, so once the tickets are gone nobody pays an atomic; a CTA keeps taking tickets while any
 * is left, so the chunks get done however few such CTAs there are. */
template <bool kInline = false>
__device__ __forceinline__ void fusedPutChunks(const cpclFusedParams_t& f, int E, int& sTicket) {
  const cpclPeerSync_t& s = f.sync;
  int* err = f.attn.errorFlag;
  const int D = f.dcpSize, me = f.dcpRank, tid = threadIdx.x;
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
      if (j != me) fusedWait<kInline>(s.readyIn + j, E - 1, s.timeoutNs, j, err);
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
}

/* the owners of gathered heads [g0, g0 + nu): their queries are here and their receive slots free */
template <bool kInline = false>
__device__ __forceinline__ void fusedWaitOwners(const cpclFusedParams_t& f, int E, int g0, int nu) {
  const cpclPeerSync_t& s = f.sync;
  int* err = f.attn.errorFlag;
  const int H = f.attn.headsPerBlock, me = f.dcpRank;
  const int jLo = g0 / H, jHi = (g0 + nu - 1) / H;
  for (int j = jLo + (int)threadIdx.x; j <= jHi; j += blockDim.x)
    if (j != me) {
      fusedWait<kInline>(s.dataIn[CPCL_SYNC_Q] + j, E, s.timeoutNs, j, err); /* its queries are here */
      fusedWait<kInline>(s.readyIn + j, E, s.timeoutNs, j, err);             /* its receive slots are free */
    }
  __syncthreads();
}

/* n more heads of block j have their final partial (stored and fenced to the system by the caller's
 * threads, then a barrier): the call that completes the block (all T x H of its heads) re-arms its
 * count, raises the owner's flag and marks the block done at this epoch. One thread. */
__device__ __forceinline__ void fusedCountBlock(const cpclFusedParams_t& f, int E, int j, int n) {
  const cpclPeerSync_t& s = f.sync;
  const unsigned whole = (unsigned)(f.attn.numTokens * f.attn.headsPerBlock);
  if (atomicAdd(syncCounter(s, CPCL_CTR_BLOCK_HEADS, j), (unsigned)n) + n == whole) {
    *syncCounter(s, CPCL_CTR_BLOCK_HEADS, j) = 0;
    stReleaseSys(s.dataOut[CPCL_SYNC_PART][j], E + 1);
    atomicExch(syncCounter(s, CPCL_CTR_BLOCK_EPOCH, j), (unsigned)(E + 1)); /* every CTA of block j is done */
  }
}

/* This CTA wrote the final partial of gathered heads [g0, g0 + nu) of every row: count them into
 * their blocks (fusedCountBlock) */
__device__ __forceinline__ void fusedPostHeads(const cpclFusedParams_t& f, int E, int g0, int nu) {
  const int H = f.attn.headsPerBlock;
  const int jLo = g0 / H, jHi = (g0 + nu - 1) / H;
  __threadfence_system();
  __syncthreads();
  for (int j = jLo + (int)threadIdx.x; j <= jHi; j += blockDim.x)
    fusedCountBlock(f, E, j, min(g0 + nu, (j + 1) * H) - max(g0, j * H));
}

/* Merge CTA mi of f.numMergeCtas: this rank's heads over the D partials; the last merge CTA
 * advances the epoch */
template <typename OutT, bool kInline = false>
__device__ __forceinline__ void fusedMergeCta(const cpclFusedParams_t& f, int E, int mi) {
  const cpclPeerSync_t& s = f.sync;
  int* err = f.attn.errorFlag;
  const int D = f.dcpSize, me = f.dcpRank, tid = threadIdx.x;
  const int H = f.attn.headsPerBlock, T = f.attn.numTokens;
  for (int j = tid; j < D; j += blockDim.x)
    fusedWait<kInline>(s.dataIn[CPCL_SYNC_PART] + j, E + 1, s.timeoutNs, j, err);
  __syncthreads();
  for (int i = mi; i < T * H; i += f.numMergeCtas) mergeOne<OutT>(f.merge, i / H, i % H);
  __syncthreads();
  /* The last merge CTA re-arms the counters and advances the epoch once no CTA of this step can
   * still need them: every block this rank attends to is complete (its last CTA marked it), so
   * every CTA with work is done, put chunks included (only such CTAs take tickets); a CTA that
   * starts later has no work and touches nothing. */
  if (tid == 0 && atomicAdd(syncCounter(s, CPCL_CTR_MERGE_DONE), 1u) == (unsigned)f.numMergeCtas - 1) {
    for (int j = 0; j < D; j++)
      fusedWait<kInline>((const int*)syncCounter(s, CPCL_CTR_BLOCK_EPOCH, j), E + 1, s.timeoutNs, me, err);
    /* re-armed: put tickets, chunks done, merge CTAs done */
    *syncCounter(s, CPCL_CTR_PUT_TICKETS) = *syncCounter(s, CPCL_CTR_PUT_DONE) = *syncCounter(s, CPCL_CTR_MERGE_DONE) =
        0;
    __threadfence();
    *s.epoch = E + 1;
  }
}

}  // namespace cpcl

#endif /* CPCL_CUDA_FUSED_STEPS_CUH_ */
