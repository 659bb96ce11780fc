/*
 * kernel_perf -- the CUDA kernels alone, one GPU: paged prefix attention with LSE per shape and
 * the merge of N partials, against the device-to-device copy ceiling measured in the same run.
 * The one tool that reaches below the public header (the params headers of kernels/): it times the kernels
 * without any schedule around them; dcp_decode_perf times the operations.
 *
 *   kernel_perf [-n iters] [-s shape ...]     shapes "B,H,Hkv,D,L" (H after the DCP gather)
 *
 * KV is bf16, paged (16 tokens a page, scrambled page ids), and rotated over enough copies that
 * the working set exceeds L2. Times are the median of CUDA-event intervals.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_params.h"
#include "merge_params.h"

#define CU(call)                                                                            \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

static int cmpf(const void* a, const void* b) {
  float x = *(const float*)a, y = *(const float*)b;
  return x < y ? -1 : x > y;
}

static uint16_t bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* random bf16 in [-1, 1) on the device, through a host staging buffer */
static void fillRandom(void* d, size_t n, uint64_t seed) {
  const size_t chunk = 1 << 24;
  uint16_t* h = malloc(chunk * 2);
  uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (size_t o = 0; o < n; o += chunk) {
    size_t m = n - o < chunk ? n - o : chunk;
    for (size_t i = 0; i < m; i++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      h[i] = bf16((float)((double)(s >> 11) / (double)(1ULL << 53) * 2 - 1));
    }
    CU(cudaMemcpy((uint16_t*)d + o, h, m * 2, cudaMemcpyHostToDevice));
  }
  free(h);
}

static float median(float* t, int n) {
  qsort(t, (size_t)n, sizeof(float), cmpf);
  return t[n / 2];
}

static double copyCeiling(int iters) {
  const size_t n = (size_t)1 << 30;
  void *a, *b;
  CU(cudaMalloc(&a, n));
  CU(cudaMalloc(&b, n));
  CU(cudaMemset(a, 1, n));
  cudaEvent_t e0, e1;
  CU(cudaEventCreate(&e0));
  CU(cudaEventCreate(&e1));
  float* t = malloc(sizeof(float) * iters);
  for (int i = 0; i < iters + 3; i++) {
    CU(cudaEventRecord(e0, 0));
    CU(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0));
    CU(cudaEventRecord(e1, 0));
    CU(cudaEventSynchronize(e1));
    if (i >= 3) CU(cudaEventElapsedTime(&t[i - 3], e0, e1));
  }
  double ms = median(t, iters);
  free(t);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * n / (ms * 1e-3) / 1e12;
}

typedef struct {
  int B, H, Hkv, D, L;
} shape_t;

static int sweep; /* -x: also every (stages, split size) variant of the tensor-core kernel */

static void benchAttention(const shape_t* sh, int iters, double ceiling) {
  const int B = sh->B, H = sh->H, Hkv = sh->Hkv, D = sh->D, L = sh->L, page = 16;
  const int pagesPerSeq = (L + page - 1) / page, numPages = B * pagesPerSeq;
  const size_t kvElems = (size_t)numPages * page * Hkv * D;
  const double kvBytes = 2.0 * B * L * Hkv * D * 2; /* K and V, bf16 */
  /* rotate over copies so the working set is >= 256 MiB (no L2 residency between runs) */
  int copies = (int)ceil(256.0 * 1048576 / kvBytes);
  copies = copies < 1 ? 1 : copies > 64 ? 64 : copies;
  void **k = malloc(sizeof(void*) * copies), **v = malloc(sizeof(void*) * copies);
  for (int c = 0; c < copies; c++) {
    CU(cudaMalloc(&k[c], kvElems * 2));
    CU(cudaMalloc(&v[c], kvElems * 2));
    fillRandom(k[c], kvElems, 11 + c);
    fillRandom(v[c], kvElems, 1000 + c);
  }
  int32_t* bt = malloc(sizeof(int32_t) * numPages);
  for (int i = 0; i < numPages; i++) bt[i] = (int32_t)(((int64_t)i * 7919 + 13) % numPages);
  if (numPages % 7919 == 0)
    for (int i = 0; i < numPages; i++) bt[i] = i;
  int32_t* lens = malloc(sizeof(int32_t) * B);
  for (int s = 0; s < B; s++) lens[s] = L;
  void *dBt, *dLens, *q, *out, *ws;
  float* lse;
  CU(cudaMalloc(&dBt, sizeof(int32_t) * numPages));
  CU(cudaMemcpy(dBt, bt, sizeof(int32_t) * numPages, cudaMemcpyHostToDevice));
  CU(cudaMalloc(&dLens, sizeof(int32_t) * B));
  CU(cudaMemcpy(dLens, lens, sizeof(int32_t) * B, cudaMemcpyHostToDevice));
  CU(cudaMalloc(&q, (size_t)B * H * D * 2));
  fillRandom(q, (size_t)B * H * D, 5);
  CU(cudaMalloc(&out, (size_t)B * H * D * 2));
  CU(cudaMalloc((void**)&lse, sizeof(float) * B * H));
  const int maxSplits = cpclCudaAttnMaxSplits(B, H, D); /* the plan's rule */
  size_t wsBytes = cpclCudaAttnWorkspaceBytes(B, H, D, maxSplits);
  CU(cudaMalloc(&ws, wsBytes));
  unsigned* counters;
  const size_t nCounters = cpclCudaAttnCounterCount(B, H);
  CU(cudaMalloc((void**)&counters, nCounters * sizeof(unsigned)));
  CU(cudaMemset(counters, 0, nCounters * sizeof(unsigned)));
  cpclAttnParams_t p = {.numSeqs = B,
                        .numTokens = B,
                        .seqLens = dLens,
                        .blockTable = dBt,
                        .maxPagesPerSeq = pagesPerSeq,
                        .cpSize = 1,
                        .cpRank = 0,
                        .interleave = 1,
                        .pageSize = page,
                        .numKvHeads = Hkv,
                        .headDimQk = D,
                        .headDimVo = D,
                        .groupSize = H / Hkv,
                        .headBegin = 0,
                        .numHeads = H,
                        .headsPerBlock = H,
                        .smScale = 1.0f / sqrtf((float)D),
                        .qType = CPCL_K_BF16,
                        .kvType = CPCL_K_BF16,
                        .q = q,
                        .qTokenStride = (int64_t)H * D,
                        .out = out,
                        .oTokenStride = (int64_t)H * D,
                        .lse = lse,
                        .lseTokenStride = H,
                        .workspace = ws,
                        .workspaceBytes = wsBytes,
                        .maxSplits = maxSplits,
                        .splitCounters = counters};
  cudaEvent_t e0, e1;
  CU(cudaEventCreate(&e0));
  CU(cudaEventCreate(&e1));
  float* t = malloc(sizeof(float) * iters);
  static const int stagesOf[] = {0, 0, 0, 2, 3, 2, 3, 2, 3}, chunkOf[] = {0, 0, 0, 128, 128, 256, 256, 512, 512};
  /* variant 2: the default kernel on one KV copy, L2-warm as PyTorch's anchor measures (only
   * when the KV fits in L2) */
  const int warmOk = kvBytes < 40.0 * 1048576;
  for (int variant = 0; variant < (sweep ? 9 : 3); variant++) {
    if (variant == 2 && !warmOk) continue;
    p.cudaCoresOnly = variant == 1;
    p.pipelineStages = stagesOf[variant];
    p.splitChunkMin = chunkOf[variant];
    for (int i = 0; i < iters + 5; i++) {
      p.kCache = k[variant == 2 ? 0 : i % copies];
      p.vCache = v[variant == 2 ? 0 : i % copies];
      CU(cudaEventRecord(e0, 0));
      int err = cpclCudaAttn(&p, NULL);
      CU(cudaEventRecord(e1, 0));
      CU(cudaEventSynchronize(e1));
      if (err) {
        fprintf(stderr, "attention launch failed: %s\n", cudaGetErrorString((cudaError_t)err));
        exit(1);
      }
      if (i >= 5) CU(cudaEventElapsedTime(&t[i - 5], e0, e1));
    }
    float ms = median(t, iters);
    double tbs = kvBytes / (ms * 1e-3) / 1e12;
    char name[32];
    if (variant < 3)
      snprintf(name, sizeof(name), "%s", variant == 2 ? "L2-warm" : variant ? "cores" : "auto");
    else
      snprintf(name, sizeof(name), "s%d/c%d", stagesOf[variant], chunkOf[variant]);
    printf(
        "attn %-8s B %-4d H %-3d Hkv %-2d D %-3d L %-6d %9.1f us %6.2f TB/s %6.1f%% of copy (splits <= %d, %d KV "
        "copies)\n",
        name, B, H, Hkv, D, L, ms * 1e3, tbs, 100 * tbs / ceiling, maxSplits, variant == 2 ? 1 : copies);
  }
  free(t);
  for (int c = 0; c < copies; c++) {
    cudaFree(k[c]);
    cudaFree(v[c]);
  }
  free(k);
  free(v);
  free(bt);
  free(lens);
  cudaFree(dBt);
  cudaFree(dLens);
  cudaFree(q);
  cudaFree(out);
  cudaFree(lse);
  cudaFree(ws);
  cudaFree(counters);
}

static void benchMerge(int N, int B, int H, int D, int iters) {
  void* o;
  float* l;
  void* out;
  float* outLse;
  CU(cudaMalloc(&o, (size_t)N * B * H * D * 2));
  fillRandom(o, (size_t)N * B * H * D, 77);
  CU(cudaMalloc((void**)&l, sizeof(float) * N * B * H));
  CU(cudaMemset(l, 0, sizeof(float) * N * B * H));
  CU(cudaMalloc(&out, (size_t)B * H * D * 2));
  CU(cudaMalloc((void**)&outLse, sizeof(float) * B * H));
  cpclMergeParams_t m = {.mode = CPCL_MERGE_LSE,
                         .numParts = N,
                         .numTokens = B,
                         .numHeads = H,
                         .headDim = D,
                         .dtype = CPCL_K_BF16,
                         .oTokenStride = (int64_t)H * D,
                         .lseTokenStride = H,
                         .out = out,
                         .outTokenStride = (int64_t)H * D,
                         .outLse = outLse,
                         .outLseTokenStride = H};
  for (int p = 0; p < N; p++) {
    m.o[p] = (char*)o + (size_t)p * B * H * D * 2;
    m.lse[p] = l + (size_t)p * B * H;
  }
  cudaEvent_t e0, e1;
  CU(cudaEventCreate(&e0));
  CU(cudaEventCreate(&e1));
  float* t = malloc(sizeof(float) * iters);
  for (int i = 0; i < iters + 5; i++) {
    CU(cudaEventRecord(e0, 0));
    if (cpclCudaMerge(&m, NULL)) exit(1);
    CU(cudaEventRecord(e1, 0));
    CU(cudaEventSynchronize(e1));
    if (i >= 5) CU(cudaEventElapsedTime(&t[i - 5], e0, e1));
  }
  printf("merge N %d B %d H %d D %d %10.1f us\n", N, B, H, D, median(t, iters) * 1e3);
  free(t);
  cudaFree(o);
  cudaFree(l);
  cudaFree(out);
  cudaFree(outLse);
}

int main(int argc, char** argv) {
  int iters = 50;
  shape_t shapes[16] = {
      {64, 16, 1, 128, 8192}, {16, 16, 1, 128, 32768}, {128, 64, 8, 128, 4096}, {1, 16, 1, 128, 4096}};
  int ns = 4, custom = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-n") && i + 1 < argc)
      iters = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-x"))
      sweep = 1;
    else if (!strcmp(argv[i], "-s") && i + 1 < argc && ns < 16) {
      if (!custom) ns = 0, custom = 1;
      shape_t s;
      if (sscanf(argv[++i], "%d,%d,%d,%d,%d", &s.B, &s.H, &s.Hkv, &s.D, &s.L) == 5) shapes[ns++] = s;
    } else {
      printf("usage: kernel_perf [-n iters] [-x] [-s B,H,Hkv,D,L ...]\n");
      return 2;
    }
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    printf("kernel_perf: no CUDA device\n");
    return 0;
  }
  struct cudaDeviceProp prop;
  CU(cudaGetDeviceProperties(&prop, 0));
  double ceiling = copyCeiling(20);
  printf("# %s, %d SMs; device-to-device copy ceiling %.2f TB/s (bytes read + written)\n", prop.name,
         prop.multiProcessorCount, ceiling);
  for (int i = 0; i < ns; i++) benchAttention(&shapes[i], iters, ceiling);
  benchMerge(8, 64, 16, 128, iters);
  return 0;
}
