/*
 * racecheck_pdl_probe.cu -- which part of the Hopper GQA body's epilogue does racecheck report?
 * Session 17/18's racecheck of gqaDecodeKernel reports RAW hazards between a write by a consumer
 * thread and a read by the producer warp's lane 0 across a __syncthreads (gqa_sm90.cuh's merge
 * scratch: mW, pO, isLast), all after the body's griddepcontrol.launch_dependents and its named
 * barrier among the consumer warps. Each mode runs one 160-thread CTA (4 "consumer" warps and a
 * "producer" warp, as the body) that ends in the epilogue's pattern: threads 0..15 write a word,
 * __syncthreads, every thread reads them:
 *   0  the pattern alone (control: correct, racecheck should report nothing)
 *   1  griddepcontrol.launch_dependents before it (the body's PDL trigger)
 *   2  a named barrier among the 128 consumer threads (bar.sync 1, 128) before it, as the body's
 *      partial-tile zeroing
 *   3  both
 *   4  the producer warp's lane 0 diverged just before the barrier (a lane-0 branch, as the
 *      producer's last mark)
 *   5  the producer warp's lane 0 first loads a 256-byte tile by a bulk copy on an mbarrier that
 *      every thread waits for (the body's stage hand-off), then the pattern
 *   6  5 and 3
 *   7  __syncthreads_or first (the body's page check), then the pattern
 *   8  7, then 6 with the named barrier in a loop of four tiles
 * Measured on the H200 (racecheck 2025.3.1, session 18, docs/h200_2026-12-03d/call5): 0 hazards in
 * every mode, so none of these parts alone is what racecheck reports in the body.
 * Run: compute-sanitizer --tool racecheck ./racecheck_pdl_probe MODE
 * Build: nvcc -gencode arch=compute_90a,code=sm_90a -O3 -o racecheck_pdl_probe racecheck_pdl_probe.cu
 */
#include <cstdio>
#include <cstdlib>

__global__ void probe(int mode, int* out, const float* src) {
  __shared__ float buf[64];
  __shared__ __align__(128) float tile[64];
  __shared__ __align__(8) unsigned long long mb;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  float t0 = 0.f;
  if (mode >= 7) {
    if (__syncthreads_or(out[1] == 12345)) out[1] = 0;
    if (mode == 8)
      for (int it = 0; it < 4; it++)
        if (warp < 4) asm volatile("bar.sync 1, 128;\n" ::: "memory");
  }
  if (mode >= 5) {
    const unsigned bar = (unsigned)__cvta_generic_to_shared(&mb), dst = (unsigned)__cvta_generic_to_shared(tile);
    if (tid == 0) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar));
      asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (warp == 4 && lane == 0) {
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], 256;\n" ::"r"(bar) : "memory");
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 256, [%2];\n" ::"r"(dst),
          "l"(src), "r"(bar)
          : "memory");
    }
    asm volatile(
        "{\n.reg .pred p;\nW_%=:\nmbarrier.try_wait.parity.shared::cta.b64 p, [%0], 0;\n@!p bra W_%=;\n}\n" ::"r"(bar)
        : "memory");
    t0 = tile[tid & 63];
  }
  if (mode == 6 || mode == 8) mode = 3;
  if (mode == 2 || mode == 3)
    if (warp < 4) asm volatile("bar.sync 1, 128;\n" ::: "memory");
  __syncthreads();
  if (mode == 1 || mode == 3) asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  if (mode == 4 && warp == 4 && lane == 0) out[1] = 7; /* lane 0 alone, then the barrier */
  if (tid < 16) buf[tid] = (float)(tid * 3 + mode);
  __syncthreads();
  float s = 0.f;
  for (int k = 0; k < 16; k++) s += buf[(k + tid) & 15];
  __syncthreads();
  if (tid < 16) buf[tid] = s; /* a second round, as the body's normalisation */
  __syncthreads();
  s = 0.f;
  for (int k = 0; k < 16; k++) s += buf[(k + tid) & 15];
  if (tid == 128) out[0] = (int)(s + t0);
}

int main(int argc, char** argv) {
  const int mode = argc > 1 ? atoi(argv[1]) : 0;
  int* d = nullptr;
  float* src = nullptr;
  if (cudaMalloc(&d, 2 * sizeof(int)) != cudaSuccess || cudaMalloc(&src, 256) != cudaSuccess) return 1;
  cudaMemset(src, 0, 256);
  probe<<<4, 160>>>(mode, d, src);
  const cudaError_t e = cudaDeviceSynchronize();
  int h = 0;
  cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost);
  printf("mode %d: %s, out %d\n", mode, cudaGetErrorString(e), h);
  cudaFree(d);
  cudaFree(src);
  return e != cudaSuccess;
}
