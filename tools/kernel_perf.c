/*
 * kernel_perf -- the CUDA kernels alone, one GPU: paged prefix attention with LSE per shape and
 * the merge of N partials, against the device-to-device copy ceiling measured in the same run,
 * over the shared perf driver (perf/driver.h: flags, timing, check verdict, table, -J results).
 * The one tool that reaches below the public header (the kernels' params headers): it times the
 * kernels without any schedule around them; dcp_decode_perf times the operations.
 *
 *   kernel_perf [-n iters] [-x] [-p page] [-s B,H,Hkv,D,L ...] [-k K -W W] [-E 1] [-c 1] [-J FILE]
 *   (H after the DCP gather; -E 1: eager launches instead of graph replays)
 *
 * D = 576 is MLA (issue 13): one latent KV head (Hkv 1), V the first 512 dims of each K row; its
 * "auto" row runs the Hopper MLA body on compute capability 9.0 GPUs ("auto/sm90", with that
 * body's plan splits), "cores" the CUDA-core body. The DeepSeek rows of issue 13:
 *   kernel_perf -s 1,16,1,576,4096 -s 64,16,1,576,16384 -s 32,128,1,576,16384
 *               -s 128,128,1,576,16384 -s 128,128,1,576,4096 [-p 64]
 * D = 64 / 128 (GQA): "auto" runs the Hopper GQA body on compute capability 9.0 GPUs as the library's
 * plan of B rows does ("auto/sm90": up to the plan's splits a row, merged through the workspace by
 * a second kernel, "auto/sm90t" the same merged in the last split's tail, or "auto/sm90c" in one
 * cluster; wgmma consumers above 32 heads a group; CPCL_GQA_SM90=0 turns it off,
 * CPCL_GQA_SM90_MERGE=kernel|tail forces where the workspace form merges), "mma" the tensor-core
 * body it replaces, "cores" the CUDA-core body. The rows of issue 12:
 *   kernel_perf -s 64,16,1,128,8192 -s 16,16,1,128,32768 -s 128,64,8,128,4096 -s 1,16,1,128,4096
 *               -s 32,64,1,128,32768 -s 8,64,1,128,131072
 * KV is bf16, paged (-p tokens a page, 16 by default; scrambled page ids), and rotated over enough
 * copies that the working set exceeds L2. TFLOP/s counts 2 (Dqk + Dv) per (row, head, key). Times are CUDA-event
 * intervals around each launch after -w warm-up launches (min/median/max). -c 1 compares every variant's output with
 * the C reference kernel (kernels/host) on KV copy 0.
 *
 * Sparse attention (issue 16, DeepSeek-V3.2 DSA): -k K gives every row a list of K distinct random
 * positions of its sequence of L tokens, and each shape runs as rank 0 of W = 1 and of -W ranks
 * (interleave 1, the KV cache holding that rank's shard only): "topk" rows time the step's local
 * work (the top-k filter kernel, then the attention over the compacted list, on the body the
 * library takes: "/sm90" the Hopper MLA body's sparse form), "attn" that attention alone, "cores"
 * the CUDA-core body alone, "filter" the filter alone, "inattn" the Hopper body filtering the raw lists
 * itself (no filter kernel: cpclAttnParams_t.topkRaw, the gathers 17, 18, 20). TFLOP/s and TB/s count the keys the rank
 * actually attends (the "keys" column: mean kept keys per row; "parts" holds K); the target is W = 8's "topk" time <= W
 * = 1's / 8 plus 10 us. The rows: kernel_perf -k 2048 -W 8 -p 64 -s 64,128,1,576,32768 -s 128,128,1,576,32768
 * -c 1
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_params.h"
#include "cpcl.h"
#include "merge_params.h"
#include "topk_params.h"
#include "perf/driver.h"

#define CU(call)                                                                            \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

static perf_t perf;

static uint16_t bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float fromBf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
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

static void* toHost(const void* d, size_t bytes) {
  void* h = malloc(bytes ? bytes : 1);
  if (!h) {
    fprintf(stderr, "kernel_perf: out of host memory for the -c reference (%zu bytes)\n", bytes);
    exit(1);
  }
  CU(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
  return h;
}

/* -c's reference: cpclHostAttn of the device problem p with its q and the KV copy (k, v)
 * brought to the host, over the host copies of lens and the block table (and, sparse, the host
 * filter's idx and cnt; NULL when dense); out [B][H][Dv] bf16 and lse [B][H], malloc'd */
static void hostReference(const cpclAttnParams_t* p, const void* k, const void* v, size_t kvElems, const int32_t* lens,
                          const int32_t* bt, const int32_t* idx, const int32_t* cnt, uint16_t** refOut,
                          float** refLse) {
  const int B = p->numTokens, H = p->numHeads, D = p->headDimQk, Dv = p->headDimVo;
  cpclAttnParams_t h = *p;
  void *hk = toHost(k, kvElems * 2), *hv = p->latentKv ? NULL : toHost(v, kvElems * 2);
  void* hq = toHost(p->q, (size_t)B * H * D * 2);
  h.seqLens = lens;
  h.blockTable = bt;
  h.q = hq;
  h.kCache = hk;
  h.vCache = hv;
  h.sparseIdx = idx;
  h.sparseCount = cnt;
  h.out = *refOut = malloc((size_t)B * H * Dv * 2);
  h.lse = *refLse = malloc(sizeof(float) * (size_t)B * H);
  h.workspaceBytes = cpclHostAttnWorkspaceBytes(D, Dv);
  h.workspace = malloc(h.workspaceBytes);
  h.splitCounters = NULL;
  cpclHostAttn(&h);
  free(h.workspace);
  free(hk);
  free(hv);
  free(hq);
}

/* elements of out (bf16) and lse (fp32) off the reference */
static long countWrong(const uint16_t* out, const uint16_t* ref, size_t n, const float* lse, const float* refLse,
                       size_t nLse) {
  long wrong = 0;
  for (size_t i = 0; i < n; i++)
    if (!(fabsf(fromBf16(out[i]) - fromBf16(ref[i])) <= 6e-3f)) wrong++;
  for (size_t i = 0; lse && i < nLse; i++)
    if (!(lse[i] == refLse[i] || fabsf(lse[i] - refLse[i]) <= 1e-3f * (1 + fabsf(refLse[i])))) wrong++;
  return wrong;
}

typedef struct {
  void *a, *b;
  size_t n;
} copyArgs_t;

static int copyStep(void* arg, int launch) {
  copyArgs_t* c = arg;
  return (int)cudaMemcpyAsync(c->b, c->a, c->n, cudaMemcpyDeviceToDevice, 0);
}

static double copyCeiling(int iters) {
  copyArgs_t c = {NULL, NULL, (size_t)1 << 30};
  CU(cudaMalloc(&c.a, c.n));
  CU(cudaMalloc(&c.b, c.n));
  CU(cudaMemset(c.a, 1, c.n));
  perfStats_t s;
  if (perfTimeEventsN(3, iters, copyStep, &c, &s)) exit(1);
  cudaFree(c.a);
  cudaFree(c.b);
  return 2.0 * c.n / (s.median * 1e-6) / 1e12;
}

typedef struct {
  int B, H, Hkv, D, L;
} shape_t;

#define MAX_SHAPES 16
typedef struct {
  shape_t s[MAX_SHAPES];
  int n, custom;
} shapes_t;

/* -s B,H,Hkv,D,L: the first -s replaces the default shapes, each further one adds */
static int parseShape(const char* arg, void* value) {
  shapes_t* sh = value;
  shape_t s;
  char tail;
  if (sscanf(arg, "%d,%d,%d,%d,%d%c", &s.B, &s.H, &s.Hkv, &s.D, &s.L, &tail) != 5) return 1;
  if (s.B < 1 || s.H < 1 || s.Hkv < 1 || s.D < 1 || s.L < 1 || s.H % s.Hkv) return 1;
  if (s.D == 576 && s.Hkv != 1) return 1; /* MLA: one latent KV head */
  if (!sh->custom) sh->n = 0, sh->custom = 1;
  if (sh->n == MAX_SHAPES) return 1;
  sh->s[sh->n++] = s;
  return 0;
}

static const char* showShapes(const void* value) {
  static char text[PERF_LIST_MAX];
  const shapes_t* sh = value;
  size_t k = 0;
  text[0] = 0;
  for (int i = 0; i < sh->n && k < sizeof(text); i++)
    k += (size_t)snprintf(text + k, sizeof(text) - k, "%s%d,%d,%d,%d,%d", i ? " " : "", sh->s[i].B, sh->s[i].H,
                          sh->s[i].Hkv, sh->s[i].D, sh->s[i].L);
  return text;
}

static int sweep;        /* -x: also every (stages, split size) variant of the tensor-core kernel */
static int topk;         /* -k: sparse attention over K listed positions a row (0: dense) */
static int simRanks = 8; /* -W: the sparse rows' simulated ranks (besides W = 1) */
static int cores = 1;    /* -C 0: leave out the CUDA-core rows (milliseconds each on the MLA and G 64 shapes) */
static int page = 16;    /* -p: tokens a KV page */
static shapes_t shapes = {{{64, 16, 1, 128, 8192},
                           {16, 16, 1, 128, 32768},
                           {128, 64, 8, 128, 4096},
                           {1, 16, 1, 128, 4096},
                           {32, 64, 1, 128, 32768},
                           {8, 64, 1, 128, 131072}},
                          6,
                          0};

/* The stream every kernel runs on, and how rows are timed: graph replays by default (a graph of
 * `copies` launches over the rotated copies, so the figure is the GPU's time per launch, as an
 * engine replaying its decode graph sees it), or with -E 1 eager launches bracketed by events (a
 * launch of a few microseconds then includes the host's launch cost). */
static cudaStream_t gStream;
static int eager;
static int fellBack; /* rows timed eagerly because their capture failed */

static int timeRow(perfStep_t step, void* arg, int steps, perfStats_t* s) {
  if (!eager) {
    if (perfTimeGraphSteps(&perf, gStream, steps < 64 ? steps : 64, step, arg, s) == 0) return 0;
    cudaGetLastError();
    if (cudaStreamSynchronize(gStream) != cudaSuccess) return -1;
    fellBack++;
  }
  return perfTimeEvents(&perf, step, arg, s);
}

typedef struct {
  cpclAttnParams_t* p;
  void **k, **v;
  int copies, warm, err;
} attnArgs_t;

static int attnStep(void* arg, int launch) {
  attnArgs_t* a = arg;
  a->p->kCache = a->k[a->warm ? 0 : launch % a->copies];
  a->p->vCache = a->v[a->warm ? 0 : launch % a->copies];
  a->err = cpclCudaAttn(a->p, gStream);
  return a->err;
}

enum {
  COL_KERNEL,
  COL_VARIANT,
  COL_PARTS,
  COL_B,
  COL_H,
  COL_HKV,
  COL_D,
  COL_L,
  COL_MIN,
  COL_MED,
  COL_MAX,
  COL_TBS,
  COL_TFS,
  COL_COPY,
  COL_SPLITS,
  COL_KEYS,
  COL_COPIES,
  COL_WRONG,
  COL_STATUS,
  NUM_COLS
};

static void benchAttention(const shape_t* sh, double ceiling) {
  const int B = sh->B, H = sh->H, Hkv = sh->Hkv, D = sh->D, L = sh->L;
  const int mla = D == 576, Dv = mla ? 512 : D; /* MLA: V is the first 512 dims of the latent K row */
  const int pagesPerSeq = (L + page - 1) / page, numPages = B * pagesPerSeq;
  const size_t kvElems = (size_t)numPages * page * Hkv * D;
  const double kvBytes = (mla ? 1.0 : 2.0) * B * L * Hkv * D * 2; /* K (and V), bf16 */
  const double flops = 2.0 * (D + Dv) * B * H * (double)L;
  /* rotate over copies so the working set is >= 256 MiB (no L2 residency between runs) */
  int copies = (int)ceil(256.0 * 1048576 / kvBytes);
  copies = copies < 1 ? 1 : copies > 64 ? 64 : copies;
  void **k = malloc(sizeof(void*) * copies), **v = malloc(sizeof(void*) * copies);
  for (int c = 0; c < copies; c++) {
    CU(cudaMalloc(&k[c], kvElems * 2));
    fillRandom(k[c], kvElems, 11 + c);
    v[c] = NULL;
    if (!mla) {
      CU(cudaMalloc(&v[c], kvElems * 2));
      fillRandom(v[c], kvElems, 1000 + c);
    }
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
  CU(cudaMalloc(&out, (size_t)B * H * Dv * 2));
  CU(cudaMalloc((void**)&lse, sizeof(float) * B * H));
  const int maxSplits = cpclCudaAttnMaxSplits(B, H, Dv); /* the plan's rule */
  size_t wsBytes = cpclCudaAttnWorkspaceBytes(B, H, Dv, maxSplits);
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
                        .headDimVo = Dv,
                        .latentKv = mla,
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
                        .oTokenStride = (int64_t)H * Dv,
                        .lse = lse,
                        .lseTokenStride = H,
                        .maxSplits = maxSplits,
                        .splitCounters = counters};
  /* the Hopper MLA body where this device and shape take it, with the plan's splits for B rows */
  const char* sm90Env = getenv("CPCL_MLA_SM90"); /* 0: off, as in the library */
  const int sm90Splits = sm90Env && strcmp(sm90Env, "0") == 0 ? 0 : cpclCudaAttnMlaSm90Splits(&p, B);
  const size_t sm90Bytes = sm90Splits ? cpclCudaAttnMlaSm90WorkspaceBytes(B, H, sm90Splits) : 0;
  if (sm90Bytes > wsBytes) wsBytes = sm90Bytes;
  /* the Hopper GQA body likewise, with the plan's constants for B rows (its workspace form's
   * partials in the same buffer, as the library's plan sizes it) */
  const char* gqaEnv = getenv("CPCL_GQA_SM90");
  int gqaChunk = 0, gqaWs = 0;
  const int gqaSplits = gqaEnv && strcmp(gqaEnv, "0") == 0 ? 0 : cpclCudaAttnGqaSm90Plan(&p, B, &gqaChunk, &gqaWs);
  const size_t gqaBytes = gqaSplits && gqaWs ? cpclCudaAttnGqaSm90WorkspaceBytes(B, H, Dv, gqaSplits) : 0;
  if (gqaBytes > wsBytes) wsBytes = gqaBytes;
  CU(cudaMalloc(&ws, wsBytes));
  p.workspace = ws;
  p.workspaceBytes = wsBytes;

  /* -c: the C reference over KV copy 0, once per shape */
  uint16_t* refOut = NULL;
  float* refLse = NULL;
  const size_t nOut = (size_t)B * H * Dv, nLse = (size_t)B * H;
  if (perf.check) hostReference(&p, k[0], v[0], kvElems, lens, bt, NULL, NULL, &refOut, &refLse);

  static const int stagesOf[] = {0, 0, 0, 2, 3, 2, 3, 2, 3, 0}, chunkOf[] = {0, 0, 0, 128, 128, 256, 256, 512, 512, 0};
  /* variant 2: the default kernel on one KV copy, L2-warm as PyTorch's anchor measures (only
   * when the KV fits in L2); 3-8 (-x) sweep the tensor-core body; 9: that body where the Hopper
   * GQA body is the default */
  const int warmOk = kvBytes < 40.0 * 1048576;
  int order[10], nVariants = 0;
  for (int v = 0; v < (sweep && !mla ? 9 : 3); v++) order[nVariants++] = v;
  if (gqaSplits) order[nVariants++] = 9;
  for (int vi = 0; vi < nVariants; vi++) {
    const int variant = order[vi];
    if (variant == 2 && !warmOk) continue;
    if (variant == 1 && !cores) continue;
    const int hopper = variant == 0 || variant == 2; /* the default bodies */
    p.cudaCoresOnly = variant == 1;
    p.mlaSm90Splits = variant == 1 ? 0 : sm90Splits;
    p.gqaSm90Splits = hopper ? gqaSplits : 0;
    p.gqaSm90ChunkMin = hopper ? gqaChunk : 0;
    p.gqaSm90Workspace = hopper ? gqaWs : 0;
    p.pipelineStages = stagesOf[variant];
    p.splitChunkMin = chunkOf[variant];
    attnArgs_t a = {&p, k, v, copies, variant == 2, 0};
    perfStats_t s;
    if (timeRow(attnStep, &a, copies, &s)) {
      fprintf(stderr, "attention launch failed: %s\n", cudaGetErrorString((cudaError_t)a.err));
      exit(1);
    }
    long wrong = 0;
    if (perf.check) {
      a.warm = 1; /* copy 0, the reference's */
      attnStep(&a, 0);
      CU(cudaDeviceSynchronize());
      if (a.err) exit(1);
      uint16_t* hOut = toHost(out, nOut * 2);
      float* hLse = toHost(lse, nLse * sizeof(float));
      wrong = countWrong(hOut, refOut, nOut, hLse, refLse, nLse);
      free(hOut);
      free(hLse);
    }
    double tbs = kvBytes / (s.median * 1e-6) / 1e12, tfs = flops / (s.median * 1e-6) / 1e12;
    char name[32];
    if (variant < 3)
      snprintf(name, sizeof(name), "%s%s",
               variant == 2 ? "L2-warm"
               : variant    ? "cores"
                            : "auto",
               variant != 1 && sm90Splits                ? "/sm90"
               : variant != 1 && gqaSplits && gqaWs == 2 ? "/sm90t"
               : variant != 1 && gqaSplits && gqaWs      ? "/sm90"
               : variant != 1 && gqaSplits               ? "/sm90c"
                                                         : "");
    else if (variant == 9)
      snprintf(name, sizeof(name), "mma");
    else
      snprintf(name, sizeof(name), "s%d/c%d", stagesOf[variant], chunkOf[variant]);
    perfValue_t row[NUM_COLS] = {PERF_S("attn"),
                                 PERF_S(name),
                                 PERF_NONE,
                                 PERF_I(B),
                                 PERF_I(H),
                                 PERF_I(Hkv),
                                 PERF_I(D),
                                 PERF_I(L),
                                 PERF_D(s.min),
                                 PERF_D(s.median),
                                 PERF_D(s.max),
                                 PERF_D(tbs),
                                 PERF_D(tfs),
                                 PERF_D(100 * tbs / ceiling),
                                 PERF_I(variant != 1 && sm90Splits ? sm90Splits
                                        : hopper && gqaSplits      ? gqaSplits
                                                                   : maxSplits),
                                 PERF_I(L),
                                 PERF_I(variant == 2 ? 1 : copies),
                                 perf.check ? PERF_I(wrong) : PERF_NONE,
                                 PERF_S(!perf.check ? "-"
                                        : wrong     ? "FAILED"
                                                    : "ok")};
    perfRow(&perf, row, wrong != 0);
  }
  free(refOut);
  free(refLse);
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

typedef struct {
  cpclAttnParams_t* p;
  cpclTopkFilterParams_t* f;
  void** k;
  int copies, warm, err, what; /* what: 0 filter + attention, 1 attention, 2 CUDA-core attention, 3 filter,
                                * 4 the attention filtering the raw lists itself (attn_params.h topkRaw) */
  int32_t* rawIdx;             /* what 4: the attention's scratch lists and counts */
  int32_t* rawCnt;
} sparseArgs_t;

static int sparseStep(void* arg, int launch) {
  sparseArgs_t* a = arg;
  a->p->kCache = a->k[a->warm ? 0 : launch % a->copies];
  a->p->cudaCoresOnly = a->what == 2;
  if (a->what == 4) {
    cpclAttnParams_t rp = *a->p;
    rp.topkRaw = a->f->topkIndices;
    rp.sparseIdx = a->rawIdx;
    rp.sparseCount = a->rawCnt;
    return a->err = cpclCudaAttn(&rp, gStream);
  }
  a->err = a->what == 0 || a->what == 3 ? cpclCudaTopkFilter(a->f, gStream) : 0;
  if (!a->err && a->what != 3) a->err = cpclCudaAttn(a->p, gStream);
  return a->err;
}

/* Sparse attention as rank 0 of W (interleave 1): the shard's cache, every row's list of topk
 * distinct positions of L, the filter into [B][K] local indices, the CUDA-core body over them. */
static void benchSparse(const shape_t* sh, int W, double ceiling) {
  const int B = sh->B, H = sh->H, Hkv = sh->Hkv, D = sh->D, L = sh->L, K = topk;
  const int mla = D == 576, Dv = mla ? 512 : D;
  const int64_t local = cpclKvLocalLen(L, W, 0, 1);
  const int pagesPerSeq = (int)((local + page - 1) / page), numPages = B * pagesPerSeq;
  const size_t kvElems = (size_t)numPages * page * Hkv * D;
  const double shardBytes = (mla ? 1.0 : 2.0) * B * (double)local * Hkv * D * 2;
  int copies = (int)ceil(256.0 * 1048576 / shardBytes);
  copies = copies < 1 ? 1 : copies > 64 ? 64 : copies;
  void** k = malloc(sizeof(void*) * copies);
  void* v = NULL; /* GQA: one V cache (the rotation is over K, which every key reads) */
  for (int c = 0; c < copies; c++) {
    CU(cudaMalloc(&k[c], kvElems * 2));
    fillRandom(k[c], kvElems, 21 + c);
  }
  if (!mla) {
    CU(cudaMalloc(&v, kvElems * 2));
    fillRandom(v, kvElems, 2000);
  }
  int32_t* bt = malloc(sizeof(int32_t) * numPages);
  for (int i = 0; i < numPages; i++) bt[i] = (int32_t)(((int64_t)i * 7919 + 13) % numPages);
  if (numPages % 7919 == 0)
    for (int i = 0; i < numPages; i++) bt[i] = i;
  int32_t* lens = malloc(sizeof(int32_t) * B);
  for (int s = 0; s < B; s++) lens[s] = L;
  /* the lists: K distinct positions of [0, L) a row (partial Fisher-Yates), -1 past L */
  int32_t* list = malloc(sizeof(int32_t) * (size_t)B * K);
  int32_t* perm = malloc(sizeof(int32_t) * (size_t)L);
  uint64_t rs = 0x2545f4914f6cdd1dULL;
  for (int b = 0; b < B; b++) {
    for (int i = 0; i < L; i++) perm[i] = i;
    for (int i = 0; i < K; i++) {
      if (i >= L) {
        list[(size_t)b * K + i] = -1;
        continue;
      }
      rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
      const int j = i + (int)(rs % (uint64_t)(L - i));
      const int32_t t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
      list[(size_t)b * K + i] = perm[i];
    }
  }
  free(perm);
  /* the keys the rank attends (the host filter): what the FLOP/s and bytes count */
  int32_t* hIdx = malloc(sizeof(int32_t) * (size_t)B * K);
  int32_t* hCnt = malloc(sizeof(int32_t) * B);
  cpclTopkFilterParams_t f = {.numSeqs = B,
                              .numTokens = B,
                              .seqLens = lens,
                              .topk = K,
                              .topkIndices = list,
                              .cpSize = W,
                              .cpRank = 0,
                              .interleave = 1,
                              .localIdx = hIdx,
                              .count = hCnt};
  cpclHostTopkFilter(&f);
  double keys = 0;
  for (int b = 0; b < B; b++) keys += hCnt[b];
  void *dBt, *dLens, *dList, *dIdx, *dCnt, *q, *out, *ws;
  float* lse;
  CU(cudaMalloc(&dBt, sizeof(int32_t) * numPages));
  CU(cudaMemcpy(dBt, bt, sizeof(int32_t) * numPages, cudaMemcpyHostToDevice));
  CU(cudaMalloc(&dLens, sizeof(int32_t) * B));
  CU(cudaMemcpy(dLens, lens, sizeof(int32_t) * B, cudaMemcpyHostToDevice));
  CU(cudaMalloc(&dList, sizeof(int32_t) * (size_t)B * K));
  CU(cudaMemcpy(dList, list, sizeof(int32_t) * (size_t)B * K, cudaMemcpyHostToDevice));
  CU(cudaMalloc(&dIdx, sizeof(int32_t) * (size_t)B * K));
  CU(cudaMalloc(&dCnt, sizeof(int32_t) * B));
  CU(cudaMalloc(&q, (size_t)B * H * D * 2));
  fillRandom(q, (size_t)B * H * D, 6);
  CU(cudaMalloc(&out, (size_t)B * H * Dv * 2));
  CU(cudaMalloc((void**)&lse, sizeof(float) * B * H));
  const int maxSplits = cpclCudaAttnMaxSplits(B, H, Dv);
  size_t wsBytes = cpclCudaAttnWorkspaceBytes(B, H, Dv, maxSplits);
  unsigned* counters;
  const size_t nCounters = cpclCudaAttnCounterCount(B, H);
  CU(cudaMalloc((void**)&counters, nCounters * sizeof(unsigned)));
  CU(cudaMemset(counters, 0, nCounters * sizeof(unsigned)));
  cpclTopkFilterParams_t df = f;
  df.seqLens = dLens;
  df.topkIndices = dList;
  df.localIdx = dIdx;
  df.count = dCnt;
  cpclAttnParams_t p = {.numSeqs = B,
                        .numTokens = B,
                        .seqLens = dLens,
                        .blockTable = dBt,
                        .maxPagesPerSeq = pagesPerSeq,
                        .cpSize = W,
                        .cpRank = 0,
                        .interleave = 1,
                        .pageSize = page,
                        .numKvHeads = Hkv,
                        .headDimQk = D,
                        .headDimVo = Dv,
                        .latentKv = mla,
                        .groupSize = H / Hkv,
                        .numHeads = H,
                        .headsPerBlock = H,
                        .smScale = 1.0f / sqrtf((float)D),
                        .qType = CPCL_K_BF16,
                        .kvType = CPCL_K_BF16,
                        .q = q,
                        .qTokenStride = (int64_t)H * D,
                        .vCache = v,
                        .out = out,
                        .oTokenStride = (int64_t)H * Dv,
                        .lse = lse,
                        .lseTokenStride = H,
                        .maxSplits = maxSplits,
                        .splitCounters = counters,
                        .sparseIdx = dIdx,
                        .sparseCount = dCnt,
                        .sparseStride = K};
  /* the Hopper MLA body's sparse form where the library takes it (bf16 MLA on sm_90), with the
   * plan's splits; "cores" is the CUDA-core body */
  const char* sm90Env = getenv("CPCL_MLA_SM90");
  const int sm90Splits = sm90Env && strcmp(sm90Env, "0") == 0 ? 0 : cpclCudaAttnMlaSm90Splits(&p, B);
  const size_t sm90Bytes = sm90Splits ? cpclCudaAttnMlaSm90WorkspaceBytes(B, H, sm90Splits) : 0;
  if (sm90Bytes > wsBytes) wsBytes = sm90Bytes;
  CU(cudaMalloc(&ws, wsBytes));
  p.workspace = ws;
  p.workspaceBytes = wsBytes;
  p.mlaSm90Splits = sm90Splits;
  CU((cudaError_t)cpclCudaTopkFilter(&df, NULL)); /* the "attn" rows read these lists */
  CU(cudaDeviceSynchronize());
  uint16_t* refOut = NULL;
  float* refLse = NULL;
  const size_t nOut = (size_t)B * H * Dv, nLse = (size_t)B * H;
  if (perf.check) /* the host filter's lists and the host sparse kernel, KV copy 0 */
    hostReference(&p, k[0], v, kvElems, lens, bt, hIdx, hCnt, &refOut, &refLse);
  const double flops = 2.0 * (D + Dv) * H * keys, bytes = (mla ? 1.0 : 2.0) * keys * Hkv * D * 2;
  static const char* const names[5] = {"topk", "attn", "cores", "filter", "inattn"};
  /* "inattn": the Hopper body's gathers that filter the raw lists themselves (no filter kernel) */
  const int inAttn = sm90Splits > 0 && cpclCudaMlaSm90SparseFilters();
  int32_t *rawIdx = NULL, *rawCnt = NULL;
  if (inAttn) {
    CU(cudaMalloc((void**)&rawIdx, sizeof(int32_t) * (size_t)B * ((H + 63) / 64) * K));
    CU(cudaMalloc((void**)&rawCnt, sizeof(int32_t) * (size_t)B));
  }
  for (int what = 0; what < 5; what++) {
    if ((what == 2 && !cores) || (what == 4 && !inAttn)) continue;
    sparseArgs_t a = {&p, &df, k, copies, 0, 0, what, rawIdx, rawCnt};
    perfStats_t st;
    if (timeRow(sparseStep, &a, copies, &st)) {
      fprintf(stderr, "sparse step failed: %s (%s)\n", cudaGetErrorString((cudaError_t)a.err),
              cpclCudaKernelErrorDetail());
      exit(1);
    }
    long wrong = 0;
    if (perf.check && what != 3) {
      a.warm = 1;
      sparseStep(&a, 0);
      CU(cudaDeviceSynchronize());
      if (a.err) exit(1);
      uint16_t* gOut = toHost(out, nOut * 2);
      float* gLse = toHost(lse, nLse * sizeof(float));
      wrong = countWrong(gOut, refOut, nOut, gLse, refLse, nLse);
      free(gOut);
      free(gLse);
    }
    const double tbs = what == 3 ? 0 : bytes / (st.median * 1e-6) / 1e12;
    const double tfs = what == 3 ? 0 : flops / (st.median * 1e-6) / 1e12;
    char name[32];
    const int sm90Row = (what < 2 || what == 4) && sm90Splits; /* a row on the Hopper body */
    snprintf(name, sizeof(name), "%s/W%d%s", names[what], W, sm90Row ? "/sm90" : "");
    perfValue_t row[NUM_COLS] = {PERF_S("sparse"),
                                 PERF_S(name),
                                 PERF_I(K),
                                 PERF_I(B),
                                 PERF_I(H),
                                 PERF_I(Hkv),
                                 PERF_I(D),
                                 PERF_I(L),
                                 PERF_D(st.min),
                                 PERF_D(st.median),
                                 PERF_D(st.max),
                                 what == 3 ? PERF_NONE : PERF_D(tbs),
                                 what == 3 ? PERF_NONE : PERF_D(tfs),
                                 what == 3 ? PERF_NONE : PERF_D(100 * tbs / ceiling),
                                 PERF_I(sm90Row ? sm90Splits : maxSplits),
                                 PERF_I((int)(keys / B + 0.5)),
                                 PERF_I(copies),
                                 perf.check && what != 3 ? PERF_I(wrong) : PERF_NONE,
                                 PERF_S(!perf.check || what == 3 ? "-"
                                        : wrong                  ? "FAILED"
                                                                 : "ok")};
    perfRow(&perf, row, wrong != 0);
  }
  free(refOut), free(refLse), free(list), free(hIdx), free(hCnt), free(bt), free(lens);
  for (int c = 0; c < copies; c++) cudaFree(k[c]);
  free(k);
  cudaFree(v), cudaFree(dBt), cudaFree(dLens), cudaFree(dList), cudaFree(dIdx), cudaFree(dCnt);
  cudaFree(q), cudaFree(out), cudaFree(lse), cudaFree(ws), cudaFree(counters), cudaFree(rawIdx), cudaFree(rawCnt);
}

static int mergeStep(void* arg, int launch) { return cpclCudaMerge((const cpclMergeParams_t*)arg, gStream); }

static void benchMerge(int N, int B, int H, int D, double ceiling) {
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
  perfStats_t s;
  if (timeRow(mergeStep, &m, 16, &s)) exit(1);
  long wrong = 0;
  const size_t nOut = (size_t)B * H * D, nLse = (size_t)B * H;
  if (perf.check) { /* the C reference on host copies of the same partials */
    cpclMergeParams_t h = m;
    void* ho = toHost(o, (size_t)N * nOut * 2);
    float* hl = toHost(l, sizeof(float) * N * nLse);
    for (int p = 0; p < N; p++) {
      h.o[p] = (char*)ho + (size_t)p * nOut * 2;
      h.lse[p] = hl + (size_t)p * nLse;
    }
    uint16_t* refOut = malloc(nOut * 2);
    float* refLse = malloc(nLse * sizeof(float));
    h.out = refOut;
    h.outLse = refLse;
    cpclHostMerge(&h);
    uint16_t* gOut = toHost(out, nOut * 2);
    float* gLse = toHost(outLse, nLse * sizeof(float));
    wrong = countWrong(gOut, refOut, nOut, gLse, refLse, nLse);
    free(ho);
    free(hl);
    free(refOut);
    free(refLse);
    free(gOut);
    free(gLse);
  }
  /* bytes read (N partials and LSEs) + written (out, LSE) */
  const double bytes = (double)(N + 1) * (nOut * 2 + nLse * sizeof(float));
  const double tbs = bytes / (s.median * 1e-6) / 1e12;
  perfValue_t row[NUM_COLS] = {PERF_S("merge"),
                               PERF_S("lse"),
                               PERF_I(N),
                               PERF_I(B),
                               PERF_I(H),
                               PERF_NONE,
                               PERF_I(D),
                               PERF_NONE,
                               PERF_D(s.min),
                               PERF_D(s.median),
                               PERF_D(s.max),
                               PERF_D(tbs),
                               PERF_NONE,
                               PERF_D(100 * tbs / ceiling),
                               PERF_NONE,
                               PERF_NONE,
                               PERF_NONE,
                               perf.check ? PERF_I(wrong) : PERF_NONE,
                               PERF_S(!perf.check ? "-"
                                      : wrong     ? "FAILED"
                                                  : "ok")};
  perfRow(&perf, row, wrong != 0);
  cudaFree(o);
  cudaFree(l);
  cudaFree(out);
  cudaFree(outLse);
}

static const perfOpt_t options[] = {
    {'s', "shapes", PERF_OPT_CUSTOM, &shapes, "B,H,Hkv,D,L",
     "an attention shape (H after the DCP gather), repeatable, at most 16", 0, 0, NULL, parseShape, showShapes},
    {'x', "sweep", PERF_OPT_BOOL, &sweep, NULL, "also every (stages, split size) variant of the tensor-core kernel", 0,
     0, NULL, NULL, NULL},
    {'p', "page", PERF_OPT_INT, &page, "N", "tokens a KV page", 1, 4096, NULL, NULL, NULL},
    {'k', "topk", PERF_OPT_INT, &topk, "K", "sparse attention: K listed positions a row (0 dense)", 0, CPCL_MAX_TOPK,
     NULL, NULL, NULL},
    {'W', "ranks", PERF_OPT_INT, &simRanks, "W", "sparse: also as rank 0 of W ranks (the shard it owns)", 1, 64, NULL,
     NULL, NULL},
    {'E', "eager", PERF_OPT_INT, &eager, "0|1", "1: time eager launches (events around each) instead of graph replays",
     0, 1, NULL, NULL, NULL},
    {'C', "cores", PERF_OPT_INT, &cores, "0|1", "0: leave out the CUDA-core body's rows", 0, 1, NULL, NULL, NULL},
};

int main(int argc, char** argv) {
  perfInit(&perf, "kernel_perf", "the CUDA attention and merge kernels alone, one GPU, against the copy ceiling",
           options, (int)(sizeof(options) / sizeof(options[0])));
  perf.hasCheck = 1;
  perf.iters = 50;
  int r = perfParse(&perf, argc, argv);
  if (r) return r == 1 ? 0 : 2;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    fprintf(stderr, "kernel_perf: no CUDA device\n");
    return 1;
  }
  struct cudaDeviceProp prop;
  CU(cudaGetDeviceProperties(&prop, 0));
  CU(cudaStreamCreate(&gStream));
  double ceiling = copyCeiling(20);
  /* the tensor-core ceiling beside the copy one (TFLOP/s columns are read against it) */
  double matrix = 0;
  const int hasMatrix = cpclCudaTensorRateProbe(&matrix) == 0;
  perfParamStr(&perf, "device", prop.name);
  perfParamInt(&perf, "sms", prop.multiProcessorCount);
  perfComment(&perf, "kernel_perf%s%s: %s, %d SMs; device-to-device copy ceiling %.2f TB/s (bytes read + written)",
              perf.label[0] ? " " : "", perf.label, prop.name, prop.multiProcessorCount, ceiling);
  perfComment(&perf, "%s",
              eager ? "times: eager launches, events around each (they include the host's launch cost)"
                    : "times: CUDA-graph replays, per launch (a graph of the rows' launches over the "
                      "rotated KV copies, divided by their count)");
  if (hasMatrix)
    perfComment(&perf, "bf16 tensor-core rate (wgmma m64n256k16 from shared memory, every SM): %.0f TFLOP/s", matrix);
  else
    perfComment(&perf, "bf16 tensor-core rate: not measured (the probe needs a compute capability 9.0 device)");
  static const perfColumn_t cols[NUM_COLS] = {{"kernel", PERF_STRING, -6, 0}, {"variant", PERF_STRING, -8, 0},
                                              {"parts", PERF_INT, 5, 0},      {"B", PERF_INT, 4, 0},
                                              {"H", PERF_INT, 3, 0},          {"Hkv", PERF_INT, 3, 0},
                                              {"D", PERF_INT, 3, 0},          {"L", PERF_INT, 6, 0},
                                              {"min_us", PERF_DOUBLE, 9, 1},  {"median_us", PERF_DOUBLE, 9, 1},
                                              {"max_us", PERF_DOUBLE, 9, 1},  {"TB/s", PERF_DOUBLE, 6, 2},
                                              {"TFLOP/s", PERF_DOUBLE, 7, 1}, {"%copy", PERF_DOUBLE, 6, 1},
                                              {"splits", PERF_INT, 6, 0},     {"keys", PERF_INT, 6, 0},
                                              {"copies", PERF_INT, 6, 0},     {"#wrong", PERF_INT, 7, 0},
                                              {"status", PERF_STRING, -1, 0}};
  perfColumns(&perf, cols, NUM_COLS);
  perfPrintHeader(&perf);
  for (int i = 0; i < shapes.n; i++) {
    if (topk == 0) {
      benchAttention(&shapes.s[i], ceiling);
      continue;
    }
    benchSparse(&shapes.s[i], 1, ceiling);
    if (simRanks > 1) benchSparse(&shapes.s[i], simRanks, ceiling);
  }
  benchMerge(8, 64, 16, 128, ceiling);
  if (fellBack) perfComment(&perf, "%d rows were timed eagerly: their graph capture failed", fellBack);
  return perfFinish(&perf);
}
