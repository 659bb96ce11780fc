/*
 * sm90_ptx.cuh -- the Hopper PTX wrappers every sm_90a body uses (mla_sm90, gqa_sm90,
 * prefill_sm90): shared-memory addresses, mbarriers, 3-d TMA copies, named barriers, the async-proxy fence,
 * wgmma fence / commit / wait, and the 128B-swizzled shared-memory matrix descriptor. One copy,
 * so the ptxas pitfalls they avoid (a wait loop outside the asm, a branch around an arrive) are
 * avoided once.
 */
#ifndef CPCL_CUDA_SM90_PTX_CUH_
#define CPCL_CUDA_SM90_PTX_CUH_

#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace cpcl {
namespace sm90 {

__device__ __forceinline__ uint32_t smemAddr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbarInit(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* an arrival that also expects `bytes` of asynchronous copies on the barrier's phase */
__device__ __forceinline__ void mbarExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbarArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* count arrivals at once (one thread's, on behalf of count threads) */
__device__ __forceinline__ void mbarArriveCount(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* The wait loop lives inside the asm: a C loop with a per-thread way out is divergent code to
 * ptxas, which then serializes wgmma in flight around it. */
__device__ __forceinline__ void mbarWait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT_%=:\nmbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n@!p bra WAIT_%=;\n}\n" ::"r"(
          bar),
      "r"(parity)
      : "memory");
}
/* mbarWait for a warp that is not on the critical path (a producer's wait for a free stage or
 * the next work item): the suspend-time hint (ns) lets try_wait keep the thread suspended until
 * the phase completes (it resumes then, not at the hint) instead of timing out and re-issuing
 * (about every 150 cycles a waiting warp by session 7 call 2's SASS counts), so an idle warp
 * takes fewer issue slots from the consumers on its scheduler */
__device__ __forceinline__ void mbarWaitIdle(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT_%=:\nmbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1, %2;\n@!p bra WAIT_%=;\n}\n" ::
          "r"(bar),
      "r"(parity), "r"(1000000u)
      : "memory");
}
/* whether the phase of the given parity has completed, without waiting */
__device__ __forceinline__ bool mbarTest(uint32_t bar, uint32_t parity) {
  uint32_t done;
  asm volatile("{\n.reg .pred p;\nmbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
               : "=r"(done)
               : "r"(bar), "r"(parity)
               : "memory");
  return done != 0;
}
/* arrive by the lane whose id is 0, predicated inside the asm (no branch, as above) */
__device__ __forceinline__ void mbarArriveLane0(uint32_t bar, int lane) {
  asm volatile("{\n.reg .pred p;\nsetp.eq.u32 p, %1, 0;\n@p mbarrier.arrive.shared::cta.b64 _, [%0];\n}\n" ::"r"(bar),
               "r"(lane)
               : "memory");
}
/* a 1-d bulk copy global -> shared completing on bar (transaction bytes); 16-byte aligned
 * addresses, bytes a multiple of 16 */
__device__ __forceinline__ void bulkG2S(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
/* a 2-d TMA tile copy completing on bar (transaction bytes) */
__device__ __forceinline__ void tmaLoad2d(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], "
      "[%4];\n" ::"r"(dst),
      "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}
/* a 3-d TMA tile copy completing on bar (transaction bytes) */
__device__ __forceinline__ void tmaLoad3d(uint32_t dst, const CUtensorMap* map, int c0, int c1, int c2, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];\n" ::"r"(dst),
      "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}
/* the same with an L2 cache policy (createpolicy) on the global reads */
__device__ __forceinline__ void tmaLoad3dHint(uint32_t dst, const CUtensorMap* map, int c0, int c1, int c2,
                                              uint32_t bar, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, "
      "{%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
      "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar), "l"(policy)
      : "memory");
}
/* an L2 policy marking the lines it covers evict-first. (An evict-normal policy on the same copies
 * made the GQA decode rows 7-16% slower on the H200 than no policy: docs/GQA_SM90.md "Session 15".) */
__device__ __forceinline__ uint64_t l2EvictFirst() {
  uint64_t pol;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
  return pol;
}
__device__ __forceinline__ void fenceProxyAsync() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void namedBarrier(int id, int n) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void namedArrive(int id, int n) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void wgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmmaCommit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* keeps the compiler from moving accumulator reads or writes across wgmma issue and wait */
template <int N>
__device__ __forceinline__ void fenceRegs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
/* Shared-memory matrix descriptor, 128-byte swizzle: start >> 4 in bits 0-13, leading byte
 * offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, layout 1 (SWIZZLE_128B) in 62-63. */
__device__ __forceinline__ uint64_t sw128Desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((addr >> 4) & 0x3FFF) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
         ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

}  // namespace sm90
}  // namespace cpcl

#endif /* CPCL_CUDA_SM90_PTX_CUH_ */
