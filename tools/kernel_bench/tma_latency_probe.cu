/*
 * tma_latency_probe.cu -- how long does one 72 KB KV stage of the Hopper MLA body (a 64-key block:
 * nine 64x64 bf16 TMA boxes, 128B swizzle, page 64) take to land when every SM loads at once, and
 * how much does a second stage in flight buy? (docs/MLA_SM90.md, session 3: the timeline suggests
 * ~4k cycles a stage under the attention's load, which with two stages bounds a pair of blocks.)
 * One CTA an SM with the body's 222 KB of shared memory, one issuing thread, no compute:
 *   depth 1: issue a stage, wait for it, next (latency of one stage);
 *   depth 2: two stages in flight, refill each as it lands (the rate two stages sustain);
 *   depth 3: three (the stage over Q's place too: what a third stage would buy).
 * Blocks are random pages of a cache larger than L2 (HBM) or of 64 pages (L2-resident); "paired":
 * CTAs 2k and 2k + 1 walk the same pages (the body's two 64-head CTAs of one 128-head row, whose
 * second read of a block is an L2 hit when both run at once).
 * Prints per-stage median cycles (clock64) and the aggregate TB/s.
 * Build (from tools/kernel_bench): nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17
 *   -I../../kernels -I../../kernels/cuda tma_latency_probe.cu ../../kernels/cuda/mla_sm90.cu
 *   ../../kernels/cuda/errors.cu -o tma_latency_probe
 */
#include <cuda_runtime.h>
#include <stdio.h>

#include <algorithm>
#include <vector>

#include "mla_sm90.h" /* cpclMlaSm90KvMap: the body's own tensor map of the latent cache */
#include "sm90_ptx.cuh"

using namespace cpcl::sm90;

/* the MLA body's stage geometry (mla_sm90.cuh): 64 keys x 576 bf16 dims as nine 64x64 tiles */
constexpr int kTiles = 9, kTileB = 64 * 128, kBlockB = kTiles * kTileB;
constexpr int kSmemBytes = 3 * kBlockB + 8192 + 2048; /* about the body's: one CTA an SM */

__global__ void __launch_bounds__(128, 1) probe(const __grid_constant__ CUtensorMap map, const int* pages, int nPages,
                                                int iters, int depth, int paired, long long* out) {
  extern __shared__ unsigned char raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
  __shared__ __align__(8) uint64_t bar[3];
  if (threadIdx.x != 0) return;
  for (int s = 0; s < 3; s++) mbarInit(smemAddr(&bar[s]), 1);
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  /* where the body's stage 0 sits (after Q); three stages start at Q's place */
  const uint32_t st0 = smemAddr(smem + (depth == 3 ? 0 : kBlockB));
  unsigned seed = 12345u + 7919u * (paired ? blockIdx.x / 2 : blockIdx.x);
  long long t0[3] = {0, 0, 0}, sum = 0;
  long long* mine = out + (size_t)blockIdx.x * iters;
  auto issue = [&](int s) {
    seed = seed * 1664525u + 1013904223u;
    const int row = pages[(seed >> 8) % nPages] * 64;
    mbarExpectTx(smemAddr(&bar[s]), kBlockB);
    t0[s] = clock64();
    for (int c = 0; c < kTiles; c++) tmaLoad2d(st0 + s * kBlockB + c * kTileB, &map, c * 64, row, smemAddr(&bar[s]));
  };
  for (int s = 0; s < depth; s++) issue(s);
  for (int i = 0; i < iters; i++) {
    const int s = i % depth;
    mbarWait(smemAddr(&bar[s]), (uint32_t)((i / depth) & 1));
    const long long t = clock64() - t0[s];
    mine[i] = t;
    sum += t;
    if (i + depth < iters) issue(s);
  }
  if (sum == 42) out[0] = 0; /* keeps the loop */
}

int main() {
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  const int sms = prop.multiProcessorCount, iters = 512;
  const int64_t bigPages = (int64_t)(2ull << 30) / kBlockB; /* 2 GB of 64-key pages: far past L2 */
  void* kv;
  if (cudaMalloc(&kv, bigPages * kBlockB) != cudaSuccess) return 1;
  cudaMemset(kv, 0, bigPages * kBlockB);
  CUtensorMap map;
  if (cpclMlaSm90KvMap(&map, kv, bigPages, 64)) return 1;
  long long* d;
  cudaMalloc(&d, sizeof(long long) * sms * iters);
  const int smemBytes = kSmemBytes;
  cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes);
  for (int l2 = 0; l2 < 2; l2++) {
    const int n = l2 ? 64 : (int)std::min<int64_t>(bigPages, 1 << 20);
    std::vector<int> hp(n);
    for (int i = 0; i < n; i++) hp[i] = (int)(((int64_t)i * 2654435761ull) % bigPages);
    int* dp;
    cudaMalloc(&dp, sizeof(int) * n);
    cudaMemcpy(dp, hp.data(), sizeof(int) * n, cudaMemcpyHostToDevice);
    for (int cfg = 0; cfg < 4; cfg++) {
      const int depth = cfg < 3 ? cfg + 1 : 2, paired = cfg == 3;
      if (paired && l2) continue;
      probe<<<sms, 128, smemBytes>>>(map, dp, n, iters, depth, paired, d); /* warm-up */
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      cudaEventRecord(e0);
      probe<<<sms, 128, smemBytes>>>(map, dp, n, iters, depth, paired, d);
      cudaEventRecord(e1);
      if (cudaEventSynchronize(e1) != cudaSuccess) {
        printf("launch failed: %s\n", cudaGetErrorString(cudaGetLastError()));
        return 1;
      }
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      std::vector<long long> h((size_t)sms * iters);
      cudaMemcpy(h.data(), d, h.size() * sizeof(long long), cudaMemcpyDeviceToHost);
      std::vector<long long> steady;
      for (int b = 0; b < sms; b++)
        for (int i = 8; i < iters; i++) steady.push_back(h[(size_t)b * iters + i]);
      std::sort(steady.begin(), steady.end());
      const double tbs = (double)sms * iters * kBlockB / (ms * 1e-3) / 1e12;
      printf(
          "%s%s, %d stage(s) in flight: a stage lands %lld cycles after its issue (median; p10 %lld, p90 %lld), "
          "%.2f TB/s into shared memory over %d SMs\n",
          l2 ? "L2-resident (64 pages)" : "HBM (random pages of 2 GB)", paired ? ", CTAs paired on pages" : "", depth,
          steady[steady.size() / 2], steady[steady.size() / 10], steady[steady.size() * 9 / 10], tbs, sms);
    }
    cudaFree(dp);
  }
  return 0;
}
