/*
 * mma_rate_probe.cu -- the wgmma shapes of the Hopper MLA body (mla_sm90.cuh) in isolation: one CTA
 * per SM, one or two consumer warpgroups issuing back-to-back groups on shared-memory operands that
 * never change (no loads, no softmax), timed with clock64 per group. Tells what each shape can
 * reach on its own, against the 1024 dense bf16 FMA per SM-cycle of an H100/H200 SM:
 *   S   = 36 x m64n64k16, A (Q) and B (K) from shared memory  (ideal 1152 cycles a warpgroup)
 *   SR  = 32 x m64n64k16 SS + 4 RS (rope tile of Q in registers) (ideal 1152)
 *   PV  = 4 x m64n256k16, A (P) in registers, B (V) MN-major  (ideal 512)
 *   PVS = 4 x m64n256k16, A (P) from shared memory             (ideal 512)
 *   SW  = S with an mbarrier wait before each 64-dim tile, as the body's per-tile barriers do (the
 *         barrier's phase is complete, so the wait returns at once: what is left is the cost of the
 *         code shape, where ptxas puts a WARPGROUP.ARRIVE after every wait)   (ideal 1152)
 * Build (from tools/kernel_bench): nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17
 *   -I../../kernels -I../../kernels/cuda mma_rate_probe.cu -o mma_rate_probe
 */
#include <cuda_runtime.h>
#include <stdio.h>

#include "mla_sm90.cuh"

using namespace cpcl::mla90;

template <int kShape>
__global__ void __launch_bounds__(256, 1) probe(long long* cycles, int iters, int nWg) {
  extern __shared__ unsigned char raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
  const int w = __shfl_sync(0xffffffffu, threadIdx.x >> 7, 0);
  for (int i = threadIdx.x; i < 2 * kBlockB / 16; i += blockDim.x)
    reinterpret_cast<uint4*>(smem)[i] = make_uint4(0x3c003c00u, 0x3c003c00u, 0, 0);
  fenceProxyAsync();
  __syncthreads();
  if (w >= nWg) return;
  const uint32_t qBase = smemAddr(smem), kSt = qBase + kBlockB;
  float s[32];
  float o[128];
#pragma unroll
  for (int i = 0; i < 32; i++) s[i] = 0.f;
#pragma unroll
  for (int i = 0; i < 128; i++) o[i] = 0.f;
  __shared__ __align__(8) uint64_t bar;
  if (threadIdx.x == 0) {
    mbarInit(smemAddr(&bar), 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x == 0) mbarArrive(smemAddr(&bar)); /* phase 0 completes */
  __syncthreads();
  uint32_t a[4][4];
#pragma unroll
  for (int i = 0; i < 16; i++) a[i >> 2][i & 3] = 0x3c003c00u;
  long long t0 = 0;
  for (int it = -2; it < iters; it++) {
    if (it == 0) t0 = clock64();
    wgmmaFence();
    if (kShape == 0 || kShape == 1 || kShape == 4) {
#pragma unroll
      for (int ks = 0; ks < 36; ks++) {
        if (kShape == 4 && (ks & 3) == 0) mbarWait(smemAddr(&bar), 0);
        const uint32_t off = (ks >> 2) * kTileB + (ks & 3) * 32;
        if (kShape == 1 && ks >= 32)
          wgmmaRS_m64n64k16(s, a[ks & 3], sw128Desc(kSt + off, 16, 1024));
        else
          wgmmaSS_m64n64k16(s, sw128Desc(qBase + off, 16, 1024), sw128Desc(kSt + off, 16, 1024), 1);
      }
    } else if (kShape == 2) {
#pragma unroll
      for (int kk = 0; kk < 4; kk++) wgmmaRS_m64n256k16(o, a[kk], vDesc<0>(kSt, w, kk));
    } else {
#pragma unroll
      for (int kk = 0; kk < 4; kk++)
        wgmmaSS_m64n256k16(o, sw128Desc(qBase + kk * 32, 16, 1024), vDesc<0>(kSt, w, kk), 1);
    }
    wgmmaCommit();
    wgmmaWait<0>();
    fenceRegs(s);
    fenceRegs(o);
  }
  const long long t1 = clock64();
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < 32; i++) acc += s[i];
#pragma unroll
  for (int i = 0; i < 128; i++) acc += o[i];
  if ((threadIdx.x & 127) == 0) cycles[blockIdx.x * 2 + w] = (t1 - t0) / iters + (acc == 12345.f);
}

int main() {
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  const int sms = prop.multiProcessorCount, iters = 2000, smem = 2 * kBlockB + 1024;
  long long* d;
  cudaMalloc(&d, sms * 2 * sizeof(long long));
  const char* names[5] = {"S   36 x m64n64k16 SS", "SR  32 SS + 4 RS m64n64k16", "PV  4 x m64n256k16 RS",
                          "PVS 4 x m64n256k16 SS", "SW  S, a barrier wait a tile"};
  const int ideal[5] = {1152, 1152, 512, 512, 1152};
  void (*k[5])(long long*, int, int) = {probe<0>, probe<1>, probe<2>, probe<3>, probe<4>};
  for (int sh = 0; sh < 5; sh++) {
    cudaFuncSetAttribute(k[sh], cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    for (int nWg = 1; nWg <= 2; nWg++) {
      cudaMemset(d, 0, sms * 2 * sizeof(long long));
      k[sh]<<<sms, 256, smem>>>(d, iters, nWg);
      if (cudaDeviceSynchronize() != cudaSuccess) {
        printf("%s: launch failed\n", names[sh]);
        return 1;
      }
      long long h[2];
      cudaMemcpy(h, d, 2 * sizeof(long long), cudaMemcpyDeviceToHost);
      /* with two warpgroups sharing the SM's tensor cores, each group takes twice the ideal */
      printf("%-28s %d warpgroup(s): %6lld cycles a group (ideal %5d): %5.1f%% of the SM's tensor rate\n", names[sh],
             nWg, h[0], ideal[sh] * nWg, 100.0 * ideal[sh] * nWg / (double)h[0]);
    }
  }
  return 0;
}
