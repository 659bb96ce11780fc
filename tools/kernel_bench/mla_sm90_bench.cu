/*
 * mla_sm90_bench.cu -- standalone check and timing of the Hopper MLA body (mla_sm90.cu).
 * Build and run: mla_sm90_bench.sh (its nvcc line, from this folder; docs/MLA_SM90.md).
 * 1. Correctness against a CPU fp64 reference on small shapes (pages scrambled, slots outside
 *    the local prefixes poisoned with NaN, outputs poisoned before each run, splits, several rows
 *    of one sequence, a sharded (cp) layout, padding sequences), for both V-descriptor variants.
 * 2. Timing (CUDA events, median of reps of 10 launches rotated over copies of the working set
 *    larger than L2) of issue 13's rows, against a D2D copy ceiling and a cuBLAS bf16 GEMM
 *    measured in the same run.
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kv_layout.h"
#include "mla_sm90.h"

#define CK(x)                                                                            \
  do {                                                                                   \
    cudaError_t e_ = (x);                                                                \
    if (e_ != cudaSuccess) {                                                             \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)
#define CKI(x)                                                                                                       \
  do {                                                                                                               \
    int r_ = (x);                                                                                                    \
    if (r_ != 0) {                                                                                                   \
      fprintf(stderr, "%s:%d %s: error %d (%s)\n", __FILE__, __LINE__, #x, r_, cudaGetErrorString((cudaError_t)r_)); \
      exit(1);                                                                                                       \
    }                                                                                                                \
  } while (0)

static uint64_t rngState = 0x9E3779B97F4A7C15ull;
static inline uint64_t rnd() {
  rngState ^= rngState << 13;
  rngState ^= rngState >> 7;
  rngState ^= rngState << 17;
  return rngState;
}
static inline float urand() { return (float)((rnd() >> 11) * (1.0 / 9007199254740992.0)); }
static inline float bf(float x) { return __bfloat162float(__float2bfloat16(x)); }

__global__ void fillRandom(__nv_bfloat16* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    const float u = (float)((x >> 40) * (1.0 / 16777216.0));
    p[i] = __float2bfloat16(4.f * u - 2.f);
  }
}

struct Case {
  const char* name;
  int H, pg, maxSplits, chunkMin, lseBase2, W, r, I, rowsPerSeq;
  std::vector<int> lens; /* global lengths; 0 = padding sequence */
  int topk = 0;          /* > 0: sparse, each row attends to min(topk, its local length) random local keys */
};

/* returns pass */
static bool runCase(const Case& c, int variant, double* relErr, double* lseErr) {
  const int D = 576, DV = 512, H = c.H, pg = c.pg, nS = (int)c.lens.size(), R = c.rowsPerSeq;
  const int T = nS * R;
  std::vector<int> qs(nS + 1), seqLens(nS);
  for (int s = 0; s <= nS; s++) qs[s] = s * R;
  int maxLocal = 0;
  for (int s = 0; s < nS; s++) {
    seqLens[s] = c.lens[s];
    maxLocal = std::max(maxLocal, (int)cpclKvLocalLenOf(c.lens[s], c.W, c.r, c.I));
  }
  const int maxPages = std::max(1, (maxLocal + pg - 1) / pg) + 1;
  const int numPages = nS * maxPages + 3;
  std::vector<int> perm(numPages);
  for (int i = 0; i < numPages; i++) perm[i] = i;
  for (int i = numPages - 1; i > 0; i--) std::swap(perm[i], perm[rnd() % (i + 1)]);
  std::vector<int> bt((size_t)nS * maxPages, -7); /* entries past a sequence's pages are garbage */
  std::vector<float> kv((size_t)numPages * pg * D, NAN);
  int next = 0;
  for (int s = 0; s < nS; s++) {
    const int ll = (int)cpclKvLocalLenOf(c.lens[s], c.W, c.r, c.I);
    for (int j = 0; j < (ll + pg - 1) / pg; j++) bt[(size_t)s * maxPages + j] = perm[next++];
    for (int i = 0; i < ll; i++) {
      const size_t slot = (size_t)bt[(size_t)s * maxPages + i / pg] * pg + i % pg;
      for (int d = 0; d < D; d++) kv[slot * D + d] = bf(4.f * urand() - 2.f);
    }
  }
  std::vector<float> q((size_t)T * H * D);
  for (auto& x : q) x = bf(4.f * urand() - 2.f);
  std::vector<__nv_bfloat16> kvb(kv.size()), qb(q.size());
  for (size_t i = 0; i < kv.size(); i++) kvb[i] = __float2bfloat16(kv[i]);
  for (size_t i = 0; i < q.size(); i++) qb[i] = __float2bfloat16(q[i]);
  const float smScale = 1.f / sqrtf(192.f);
  /* sparse: per row a random subset of its local prefix in random order (what the top-k filter
   * leaves), entries past the count poisoned (never read) */
  const int K = c.topk;
  std::vector<int> idx((size_t)T * std::max(K, 1), -5), cnt(T, 0);
  if (K > 0)
    for (int t = 0; t < T; t++) {
      const int s = t / R, j = t % R;
      const int64_t pos = (int64_t)seqLens[s] - R + j;
      const int ll = seqLens[s] >= R ? (int)cpclKvLocalLenOf(pos + 1, c.W, c.r, c.I) : 0;
      std::vector<int> all(ll);
      for (int i = 0; i < ll; i++) all[i] = i;
      for (int i = ll - 1; i > 0; i--) std::swap(all[i], all[rnd() % (i + 1)]);
      cnt[t] = std::min(K, ll);
      for (int i = 0; i < cnt[t]; i++) idx[(size_t)t * K + i] = all[i];
    }
  int *dIdx = nullptr, *dCnt = nullptr;
  if (K > 0) {
    CK(cudaMalloc(&dIdx, idx.size() * 4));
    CK(cudaMalloc(&dCnt, cnt.size() * 4));
    CK(cudaMemcpy(dIdx, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dCnt, cnt.data(), cnt.size() * 4, cudaMemcpyHostToDevice));
  }

  __nv_bfloat16 *dKv, *dQ, *dO;
  float *dLse, *dWs = nullptr;
  int *dBt, *dQs, *dSl;
  CK(cudaMalloc(&dKv, kvb.size() * 2));
  CK(cudaMalloc(&dQ, qb.size() * 2));
  CK(cudaMalloc(&dO, (size_t)T * H * DV * 2));
  CK(cudaMalloc(&dLse, (size_t)T * H * 4));
  CK(cudaMalloc(&dBt, bt.size() * 4));
  CK(cudaMalloc(&dQs, qs.size() * 4));
  CK(cudaMalloc(&dSl, seqLens.size() * 4));
  const size_t wsBytes = cpclMlaSm90WorkspaceBytes(T, H, c.maxSplits);
  if (wsBytes) CK(cudaMalloc(&dWs, wsBytes));
  CK(cudaMemcpy(dKv, kvb.data(), kvb.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dQ, qb.data(), qb.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dBt, bt.data(), bt.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dQs, qs.data(), qs.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dSl, seqLens.data(), seqLens.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemset(dO, 0xFF, (size_t)T * H * DV * 2)); /* NaN poison */
  CK(cudaMemset(dLse, 0xFF, (size_t)T * H * 4));
  if (wsBytes) CK(cudaMemset(dWs, 0xFF, wsBytes));

  CUtensorMap map;
  if (K == 0) CKI(cpclMlaSm90KvMap(&map, dKv, numPages, pg));
  cpclAttnParams_t p = {};
  p.numSeqs = nS;
  p.numTokens = T;
  p.queryStart = R > 1 ? dQs : nullptr;
  p.seqLens = dSl;
  p.blockTable = dBt;
  p.maxPagesPerSeq = maxPages;
  p.cpSize = c.W;
  p.cpRank = c.r;
  p.interleave = c.I;
  p.pageSize = pg;
  p.numHeads = H;
  p.headsPerBlock = H;
  p.groupSize = H;
  p.numKvHeads = 1;
  p.latentKv = 1;
  p.headDimQk = 576;
  p.headDimVo = 512;
  p.smScale = smScale;
  p.lseBase2 = c.lseBase2;
  p.q = dQ;
  p.qTokenStride = (int64_t)H * D;
  p.out = dO;
  p.oTokenStride = (int64_t)H * DV;
  p.lse = dLse;
  p.lseTokenStride = H;
  p.workspace = dWs;
  p.kCache = dKv;
  p.workspaceBytes = wsBytes;
  if (K > 0)
    CKI(cpclMlaSm90LaunchSparse(&p, c.maxSplits, c.chunkMin, variant, dIdx, dCnt, K, 0));
  else
    CKI(cpclMlaSm90Launch(&p, &map, c.maxSplits, c.chunkMin, variant, 0));
  CK(cudaDeviceSynchronize());
  std::vector<__nv_bfloat16> ob((size_t)T * H * DV);
  std::vector<float> lse((size_t)T * H);
  CK(cudaMemcpy(ob.data(), dO, ob.size() * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(lse.data(), dLse, lse.size() * 4, cudaMemcpyDeviceToHost));

  double num = 0, den = 0, lmax = 0;
  long bad = 0;
  std::vector<double> sc, acc(DV);
  for (int t = 0; t < T; t++) {
    const int s = t / R, j = t % R;
    const int64_t pos = (int64_t)seqLens[s] - R + j;
    const int ll0 = seqLens[s] >= R ? (int)cpclKvLocalLenOf(pos + 1, c.W, c.r, c.I) : 0;
    const int ll = K > 0 ? cnt[t] : ll0;
    auto keyOf = [&](int i) { return K > 0 ? idx[(size_t)t * K + i] : i; }; /* the i-th attended local key */
    for (int h = 0; h < H; h++) {
      const float* qv = &q[((size_t)t * H + h) * D];
      const __nv_bfloat16* og = &ob[((size_t)t * H + h) * DV];
      const float lg = lse[(size_t)t * H + h];
      if (ll == 0) {
        for (int d = 0; d < DV; d++)
          if (__bfloat162float(og[d]) != 0.f) bad++;
        if (!(isinf(lg) && lg < 0)) bad++;
        continue;
      }
      sc.assign(ll, 0.0);
      double mx = -INFINITY;
      for (int i = 0; i < ll; i++) {
        const int ki = keyOf(i);
        const size_t slot = (size_t)bt[(size_t)s * maxPages + ki / pg] * pg + ki % pg;
        const float* kr = &kv[slot * D];
        double dot = 0;
        for (int d = 0; d < D; d++) dot += (double)qv[d] * kr[d];
        sc[i] = dot * smScale;
        mx = std::max(mx, sc[i]);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int i = 0; i < ll; i++) {
        const double e = exp(sc[i] - mx);
        sum += e;
        const int ki = keyOf(i);
        const size_t slot = (size_t)bt[(size_t)s * maxPages + ki / pg] * pg + ki % pg;
        const float* kr = &kv[slot * D];
        for (int d = 0; d < DV; d++) acc[d] += e * kr[d];
      }
      for (int d = 0; d < DV; d++) {
        const double ref = acc[d] / sum, got = __bfloat162float(og[d]);
        if (!isfinite(got)) bad++;
        num += (got - ref) * (got - ref);
        den += ref * ref;
      }
      double lref = mx + log(sum);
      if (c.lseBase2) lref /= log(2.0);
      if (!isfinite(lg)) bad++;
      lmax = std::max(lmax, fabs(lg - lref));
    }
  }
  *relErr = den > 0 ? sqrt(num / den) : 0;
  *lseErr = lmax;
  cudaFree(dKv);
  cudaFree(dQ);
  cudaFree(dO);
  cudaFree(dLse);
  cudaFree(dBt);
  cudaFree(dQs);
  cudaFree(dSl);
  if (dWs) cudaFree(dWs);
  if (dIdx) cudaFree(dIdx);
  if (dCnt) cudaFree(dCnt);
  return bad == 0 && *relErr < 1e-2 && *lseErr < 1e-2 && !(*relErr != *relErr);
}

/* a variant without the flags or-ed into it (kMlaSm90EvictFirst) */
static const int kVarMask = kMlaSm90EvictFirst - 1;

static float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/* MLA_TRACE=1: one launch of each timed row with cpclMlaSm90Trace on, and the first CTA's
 * per-pair timeline of the seesaw schedules (variants 3, 4, 7, 10-15: the producer's events
 * too; 16: its own events, mla_sm90_halves.cuh), median cycles between events over the steady
 * pairs (the first and last two left out). */
static void printTrace16(const unsigned long long* tr, int nBlocks) {
  const int nPairs = std::min(64, (nBlocks + 1) / 2);
  if (nPairs < 5) return;
  auto at = [&](int j, int w, int e) { return (long long)tr[(j * 2 + w) * 16 + e]; };
  auto med = [&](auto f) {
    std::vector<long long> v;
    for (int j = 2; j < nPairs - 2; j++) v.push_back(f(j));
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  printf("  trace (cycles, median of %d pairs): pair %lld\n", nPairs - 4,
         med([&](int j) { return at(j + 1, 0, 0) - at(j, 0, 0); }));
  /* event e -> e + 1 of each warpgroup (9 -> the next pair's 0 last) */
  static const char* wg0[] = {"softmax0+[scale0]", "PV0_L issue+wait",
                              "wait [scale1]",     "refill V0_L+P0c1->sP0",
                              "wait [P1]",         "PV1_L+S0' 0-3 (tile waits)",
                              "wait PV1_L",        "refill V1_L+S0' 4-8 (tile waits)",
                              "wait S0'",          "-> next pair"};
  static const char* wg1[] = {"wait [scale0]",
                              "softmax1+[scale1]",
                              "sP1+PV1_R issue",
                              "wait [P0]",
                              "wait V0_R+PV0_R issue",
                              "wait PV1_R",
                              "refill V1_R+wait PV0_R",
                              "refill V0_R+S1' (tile waits)",
                              "wait S1'",
                              "-> next pair"};
  for (int w = 0; w < 2; w++) {
    printf("  WG%d:", w);
    for (int e = 0; e < 10; e++)
      printf(" %s %lld;", (w ? wg1 : wg0)[e],
             med([&](int j) { return (e < 9 ? at(j, w, e + 1) : at(j + 1, w, 0)) - at(j, w, e); }));
    printf("\n");
  }
}

static void printTrace(const unsigned long long* tr, int nBlocks) {
  const int nPairs = std::min(64, (nBlocks + 1) / 2);
  if (nPairs < 5) return;
  auto at = [&](int j, int w, int e) { return (long long)tr[(j * 2 + w) * 16 + e]; };
  auto med = [&](auto f) {
    std::vector<long long> v;
    for (int j = 2; j < nPairs - 2; j++) v.push_back(f(j));
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  printf("  trace (cycles, median of %d pairs): pair %lld\n", nPairs - 4,
         med([&](int j) { return at(j + 1, 0, 0) - at(j, 0, 0); }));
  static const char* wg0[] = {"S0 issue+wait", "softmax0+P0 out", "PV0_L issue", "wait P1",
                              "PV0_L done",    "wait stage 1",    "PV1_L issue", "-> next pair"};
  static const char* wg1[] = {"wait stage 0",    "wait P0",     "PV0_R issue", "S1 issue",    "S1+PV0_R done",
                              "softmax1+P1 out", "PV1_R issue", "PV1_R done",  "-> next pair"};
  printf("  WG0:");
  for (int e = 0; e < 8; e++)
    printf(" %s %lld;", wg0[e], med([&](int j) { return (e < 7 ? at(j, 0, e + 1) : at(j + 1, 0, 0)) - at(j, 0, e); }));
  printf("\n  WG1:");
  for (int e = 0; e < 9; e++)
    printf(" %s %lld;", wg1[e], med([&](int j) { return (e < 8 ? at(j, 1, e + 1) : at(j + 1, 1, 0)) - at(j, 1, e); }));
  std::vector<long long> wait;
  for (int i = 4; i < std::min(nBlocks, 512) - 2; i++)
    wait.push_back((long long)tr[kMlaSm90TraceProducer + 2 * i] - (long long)tr[kMlaSm90TraceProducer + 2 * i - 1]);
  std::sort(wait.begin(), wait.end());
  if (!wait.empty()) printf("\n  producer: wait for a free stage %lld (median)", wait[wait.size() / 2]);
  printf("\n");
}

/* the first CTA's life (any length): entry, row's work known, Q in shared memory, the producer's
 * first blocks (stage free, copies issued), each pair's start (WG0), epilogue start and end; cycles
 * from its entry */
static void printCta(const unsigned long long* tr, int nBlocks) {
  const long long t0 = (long long)tr[kMlaSm90TraceCta];
  if (t0 == 0) return;
  auto rel = [&](int slot) { return tr[slot] ? (long long)tr[slot] - t0 : -1LL; };
  printf("  CTA (cycles from entry): work known %lld, Q loaded %lld, epilogue %lld .. %lld\n",
         rel(kMlaSm90TraceCta + 1), rel(kMlaSm90TraceCta + 2), rel(kMlaSm90TraceCta + 3), rel(kMlaSm90TraceCta + 4));
  printf("  producer (stage free / copies issued):");
  for (int i = 0; i < std::min(nBlocks, 8); i++)
    printf(" b%d %lld/%lld", i, rel(kMlaSm90TraceProducer + 2 * i), rel(kMlaSm90TraceProducer + 2 * i + 1));
  printf("\n  pairs (WG0 start, S0 done; WG1 start, P1 out):");
  for (int j = 0; j < std::min((nBlocks + 1) / 2, 8); j++)
    printf(" p%d %lld %lld; %lld %lld", j, rel(j * 2 * 16 + 0), rel(j * 2 * 16 + 1), rel((j * 2 + 1) * 16 + 0),
           rel((j * 2 + 1) * 16 + 6));
  printf("\n");
}

static const char* topkLabel(int k) {
  static char buf[8][32];
  static int n;
  char* b = buf[n++ & 7];
  snprintf(b, 32, " sparse K %d", k);
  return b;
}

struct Perf {
  int B, H, L;
  int topk; /* > 0: sparse, topk random local keys of the L a row (issue 16's rows) */
};

int main(int argc, char** argv) {
  /* --check-only: checks only (exit 0 when every listed variant passes); --variants 0,1,3: the
   * variants to check and time (default all; the control, 2, is checked but never timed) */
  bool checkOnly = false, perfOnly = false; /* --perf-only: no checks, time the listed variants */
  std::vector<int> vars;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--check-only") == 0) checkOnly = true;
    if (strcmp(argv[i], "--perf-only") == 0) perfOnly = true;
    if (strcmp(argv[i], "--variants") == 0 && i + 1 < argc)
      for (char* tok = strtok(argv[++i], ","); tok; tok = strtok(nullptr, ",")) vars.push_back(atoi(tok));
  }
  if (vars.empty())
    for (int v : {1, 2, 4, 9, 11, 12, 13, 14, 15, 16, 19}) vars.push_back(v);
  /* "removed": measured (docs/MLA_SM90.md) and no longer built; the launch refuses them */
  /* the variant without the evict-first flag; sparse-only ones (17, 18, 20: session 4's gather) and
   * which variants have a sparse form */
  auto base = [](int v) { return v & ~kMlaSm90EvictFirst; };
  auto sparseOnly = [&](int v) { return base(v) == 17 || base(v) == 18 || base(v) == 20; };
  auto hasSparse = [&](int v) { return base(v) == 1 || base(v) == 4 || base(v) == 11 || sparseOnly(v); };
  static const char* names[21] = {"removed (seesaw)",
                                  "S twice",
                                  "control",
                                  "removed (seesaw late S1)",
                                  "late S1 + tile bars",
                                  "removed (seesaw + tile bars)",
                                  "removed (S twice + tile bars)",
                                  "removed (tile release)",
                                  "removed (tile release)",
                                  "seesaw, 256 threads",
                                  "removed (a lane a page, late release)",
                                  "late S1, early release, a lane a page",
                                  "late S1, early release, a lane a box",
                                  "seesaw, early release, a lane a box",
                                  "12, mbarrier hand-offs",
                                  "13, mbarrier hand-offs",
                                  "FlashMLA's schedule (halves), 256 threads",
                                  "sparse: 11 + session-4 gather",
                                  "sparse: 13's seesaw + session-4 gather",
                                  "13, no wait for the other's stage",
                                  "sparse: 18, no wait for the other's stage"};
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);

  /* ---- correctness ---- */
  std::vector<Case> cases = {
      {"H16 pg16 1 split", 16, 16, 1, 128, 0, 1, 0, 1, 1, {1, 63, 64, 65, 200, 1000, 0}},
      {"H16 pg64 splits", 16, 64, 8, 64, 0, 1, 0, 1, 1, {1, 63, 64, 65, 200, 1000, 0}},
      {"H128 pg64 1 split", 128, 64, 1, 128, 0, 1, 0, 1, 1, {777, 64, 1500, 3}},
      {"H128 pg16 splits base2", 128, 16, 4, 128, 1, 1, 0, 1, 1, {2000, 129}},
      {"H64 pg32 3 rows/seq cp2 r1 I16", 64, 32, 3, 64, 0, 2, 1, 16, 3, {300, 95, 0}},
      {"H32 pg8 splits", 32, 8, 2, 64, 0, 1, 0, 1, 1, {513, 9}},
      {"H96 pg64 (partial head group)", 96, 64, 1, 128, 0, 1, 0, 1, 1, {450}},
      {"H16 pg16 64 splits", 16, 16, 64, 64, 0, 1, 0, 1, 1, {4096, 4000}},
      /* sparse (gathered rows): counts below, at and above a block, splits, sharded, short rows */
      {"sparse H128 pg64 K2048", 128, 64, 1, 128, 0, 1, 0, 1, 1, {3000, 700, 64, 1}, 2048},
      {"sparse H16 pg16 K300 splits", 16, 16, 4, 64, 1, 1, 0, 1, 1, {5000, 65, 0}, 300},
      {"sparse H64 pg16 K100 cp2 I16 3 rows", 64, 16, 2, 64, 0, 2, 1, 16, 3, {900, 40}, 100},
  };
  bool okVar[128] = {};
  for (int v : vars) {
    if (v < 0 || v >= 128 || base(v) > 20) {
      printf("variant %d: not a variant of this bench\n", v);
      return 1;
    }
    okVar[v] = true;
    if (perfOnly) continue;
    for (const Case& c : cases) {
      if (c.topk > 0 ? !hasSparse(v) : sparseOnly(v)) continue; /* sparse: 1, 4, 11, 17, 18, 20 */
      double re, le;
      const bool ok = runCase(c, v, &re, &le);
      okVar[v] = okVar[v] && ok;
      printf("check v%-2d %-34s rel_l2 %.3e  lse_max_err %.3e  %s\n", v, c.name, re, le, ok ? "PASS" : "FAIL");
    }
    /* a second draw of the first cases: the same function on fresh data */
    for (int k = 0; k < 4 && !sparseOnly(v); k++) {
      double re, le;
      const bool ok = runCase(cases[k], v, &re, &le);
      okVar[v] = okVar[v] && ok;
      printf("check v%d redraw %-27s rel_l2 %.3e  lse_max_err %.3e  %s\n", v, cases[k].name, re, le,
             ok ? "PASS" : "FAIL");
    }
  }
  std::vector<int> timed;
  bool allOk = true;
  for (int v : vars) {
    printf(
        "correctness v%d (%s%s): %s%s\n", v, names[base(v)], v & kMlaSm90EvictFirst ? ", evict-first" : "",
        okVar[v] ? "PASS" : "FAIL",
        base(v) == 2 ? (okVar[v] ? " (bad: the check is blind)" : " (expected: the wrong descriptor is caught)") : "");
    allOk = allOk && okVar[v];
    if (okVar[v] && base(v) != 2) timed.push_back(v);
  }
  if (checkOnly) return allOk ? 0 : 1;
  cudaStream_t st;
  CK(cudaStreamCreate(&st));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));

  /* ---- ceilings ---- */
  double copyTBs, gemmTF;
  {
    const size_t n = 1ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    std::vector<float> ts;
    for (int i = 0; i < 12; i++) {
      CK(cudaEventRecord(e0, st));
      CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st));
      CK(cudaEventRecord(e1, st));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      if (i >= 2) ts.push_back(ms);
    }
    copyTBs = 2.0 * n / (median(ts) * 1e-3) / 1e12;
    cudaFree(a);
    cudaFree(b);
  }
  {
    const int N = 8192;
    __nv_bfloat16 *A, *Bm, *C;
    CK(cudaMalloc(&A, (size_t)N * N * 2));
    CK(cudaMalloc(&Bm, (size_t)N * N * 2));
    CK(cudaMalloc(&C, (size_t)N * N * 2));
    fillRandom<<<1024, 256>>>(A, (size_t)N * N, 1);
    fillRandom<<<1024, 256>>>(Bm, (size_t)N * N, 2);
    cublasHandle_t hb;
    if (cublasCreate(&hb) != CUBLAS_STATUS_SUCCESS) exit(1);
    cublasSetStream(hb, st);
    const float one = 1.f, zero = 0.f;
    std::vector<float> ts;
    for (int i = 0; i < 12; i++) {
      CK(cudaEventRecord(e0, st));
      if (cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, A, CUDA_R_16BF, N, Bm, CUDA_R_16BF, N, &zero, C,
                       CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "gemm failed\n");
        exit(1);
      }
      CK(cudaEventRecord(e1, st));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      if (i >= 2) ts.push_back(ms);
    }
    gemmTF = 2.0 * N * N * (double)N / (median(ts) * 1e-3) / 1e12;
    cublasDestroy(hb);
    cudaFree(A);
    cudaFree(Bm);
    cudaFree(C);
  }
  printf("ceilings: D2D copy %.2f TB/s (read+write), cuBLAS bf16 GEMM 8192^3 %.0f TFLOP/s\n", copyTBs, gemmTF);

  /* ---- timing ---- */
  /* issue 13's rows, then two probes of the B = 1 latency (64 keys: one CTA, no merge; 1024) */
  /* ... and issue 16's sparse rows: K = 2048 owned keys (W = 1), and 256 (W = 8 simulated: the
   * rank owns about an eighth of the list); targets >= 350 TFLOP/s, and <= 1/8 of W = 1 + 10 us */
  const Perf perfs[] = {{1, 16, 4096, 0},        {64, 16, 16384, 0},    {32, 128, 16384, 0},   {128, 128, 16384, 0},
                        {128, 128, 4096, 0},     {1, 16, 64, 0},        {1, 16, 1024, 0},      {64, 128, 16384, 2048},
                        {128, 128, 16384, 2048}, {64, 128, 16384, 256}, {128, 128, 16384, 256}};
  const double target[] = {10, 355, 270, 1080, 280, 0, 0, 104.4, 208.9, 0, 0};
  const int nPerfs = (int)(sizeof(perfs) / sizeof(perfs[0]));
  struct Row {
    int B, H, L, topk, pg, splits, chunkMin, variant;
    float us, gus;
    double tbs, tfs, target;
  };
  std::vector<Row> rows;
  /* MLA_ONLY="B,H,L,pg": time that row alone (for ncu) */
  int only[4] = {0, 0, 0, 0};
  if (getenv("MLA_ONLY")) sscanf(getenv("MLA_ONLY"), "%d,%d,%d,%d", &only[0], &only[1], &only[2], &only[3]);
  for (int pg : {16, 64}) {
    for (int pi = 0; pi < nPerfs; pi++) {
      const Perf& pf = perfs[pi];
      const int B = pf.B, H = pf.H, L = pf.L, K = pf.topk;
      if (only[0] && (only[0] != B || only[1] != H || only[2] != L || only[3] != pg)) continue;
      const int maxPages = (L + pg - 1) / pg;
      const size_t pagesPerCopy = (size_t)B * maxPages;
      const size_t kvBytes = pagesPerCopy * pg * 576 * 2;
      int copies = (int)std::max<size_t>(1, (size_t)(256ull << 20) / kvBytes + 1);
      copies = std::min(copies, 64);
      const size_t totalPages = pagesPerCopy * copies;
      __nv_bfloat16 *dKv, *dQ, *dO;
      float *dLse, *dWs = nullptr;
      int *dBt, *dSl;
      CK(cudaMalloc(&dKv, totalPages * pg * 576 * 2));
      fillRandom<<<4096, 256, 0, st>>>(dKv, totalPages * pg * 576, 11 + pi);
      const size_t qElems = (size_t)B * H * 576, oElems = (size_t)B * H * 512;
      CK(cudaMalloc(&dQ, qElems * 2 * copies));
      fillRandom<<<1024, 256, 0, st>>>(dQ, qElems * copies, 21 + pi);
      CK(cudaMalloc(&dO, oElems * 2 * copies));
      CK(cudaMalloc(&dLse, (size_t)B * H * 4 * copies));
      std::vector<int> perm(totalPages);
      for (size_t i = 0; i < totalPages; i++) perm[i] = (int)i;
      for (size_t i = totalPages - 1; i > 0; i--) std::swap(perm[i], perm[rnd() % (i + 1)]);
      /* MLA_L2=1 (a probe): every row of every copy walks the same pages, so the KV working set
       * is one sequence (L x 1152 bytes) and stays in L2: what is left is the kernel's own time */
      if (getenv("MLA_L2") && atoi(getenv("MLA_L2")))
        for (size_t i = 0; i < totalPages; i++) perm[i] = perm[i % maxPages];
      CK(cudaMalloc(&dBt, totalPages * 4));
      CK(cudaMemcpy(dBt, perm.data(), totalPages * 4, cudaMemcpyHostToDevice));
      std::vector<int> sl(B, L);
      CK(cudaMalloc(&dSl, B * 4));
      CK(cudaMemcpy(dSl, sl.data(), B * 4, cudaMemcpyHostToDevice));
      CUtensorMap map;
      int *dIdx = nullptr, *dCnt = nullptr;
      if (K > 0) { /* every row: K distinct random keys of its L */
        std::vector<int> all(L), idx((size_t)B * K), cnt(B, K);
        for (int i = 0; i < L; i++) all[i] = i;
        for (int b = 0; b < B; b++) {
          for (int i = 0; i < K; i++) std::swap(all[i], all[i + rnd() % (L - i)]);
          std::copy(all.begin(), all.begin() + K, idx.begin() + (size_t)b * K);
        }
        CK(cudaMalloc(&dIdx, idx.size() * 4));
        CK(cudaMalloc(&dCnt, B * 4));
        CK(cudaMemcpy(dIdx, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dCnt, cnt.data(), B * 4, cudaMemcpyHostToDevice));
      } else {
        CKI(cpclMlaSm90KvMap(&map, dKv, (int64_t)totalPages, pg));
      }
      int maxSplits, chunkMin;
      cpclMlaSm90Plan(B, H, prop.multiProcessorCount, &maxSplits, &chunkMin);
      std::vector<int> chunkMins = {chunkMin};
      if (B == 1) chunkMins = {64, 128, 256};
      const size_t wsBytes = cpclMlaSm90WorkspaceBytes(B, H, maxSplits);
      if (wsBytes) CK(cudaMalloc(&dWs, wsBytes));
      for (int variant : timed)
        for (int cm : chunkMins) {
          if (K > 0 ? !hasSparse(variant) : sparseOnly(variant)) continue;
          auto launchOne = [&](const cpclAttnParams_t* pp) {
            return K > 0 ? cpclMlaSm90LaunchSparse(pp, maxSplits, cm, variant, dIdx, dCnt, K, st)
                         : cpclMlaSm90Launch(pp, &map, maxSplits, cm, variant, st);
          };
          std::vector<cpclAttnParams_t> ps(copies);
          for (int cidx = 0; cidx < copies; cidx++) {
            cpclAttnParams_t& p = ps[cidx];
            p = {};
            p.numSeqs = B;
            p.numTokens = B;
            p.seqLens = dSl;
            p.blockTable = dBt + (size_t)cidx * pagesPerCopy;
            p.maxPagesPerSeq = maxPages;
            p.cpSize = 1;
            p.cpRank = 0;
            p.interleave = 1;
            p.pageSize = pg;
            p.numHeads = H;
            p.headsPerBlock = H;
            p.groupSize = H;
            p.numKvHeads = 1;
            p.latentKv = 1;
            p.headDimQk = 576;
            p.headDimVo = 512;
            p.smScale = 1.f / sqrtf(192.f);
            p.q = dQ + qElems * cidx;
            p.qTokenStride = (int64_t)H * 576;
            p.out = dO + oElems * cidx;
            p.oTokenStride = (int64_t)H * 512;
            p.lse = dLse + (size_t)B * H * cidx;
            p.lseTokenStride = H;
            p.workspace = dWs;
            p.kCache = dKv;
            p.workspaceBytes = wsBytes;
          }
          for (int i = 0; i < 3; i++) CKI(launchOne(&ps[i % copies]));
          CK(cudaStreamSynchronize(st));
          std::vector<float> ts;
          const int inner = 10, reps = B * L >= 128 * 16384 ? 8 : 15;
          int it = 0;
          for (int r = 0; r < reps; r++) {
            CK(cudaEventRecord(e0, st));
            for (int i = 0; i < inner; i++, it++) CKI(launchOne(&ps[it % copies]));
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            ts.push_back(ms * 1000.f / inner);
          }
          CK(cudaGetLastError());
          const float us = median(ts);
          /* the same launches replayed from a CUDA graph (how engines run decode): no host launch cost */
          float gus = -1.f;
          {
            const int gin = copies >= 20 ? 20 : 10;
            cudaGraph_t g;
            cudaGraphExec_t ge;
            bool ok = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
            for (int i = 0; ok && i < gin; i++) ok = launchOne(&ps[i % copies]) == 0;
            ok = cudaStreamEndCapture(st, &g) == cudaSuccess && ok;
            ok = ok && cudaGraphInstantiate(&ge, g, 0) == cudaSuccess;
            if (ok) {
              std::vector<float> gts;
              for (int r = 0; r < reps + 2; r++) {
                CK(cudaEventRecord(e0, st));
                CK(cudaGraphLaunch(ge, st));
                CK(cudaEventRecord(e1, st));
                CK(cudaEventSynchronize(e1));
                float ms;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                if (r >= 2) gts.push_back(ms * 1000.f / gin);
              }
              gus = median(gts);
              cudaGraphExecDestroy(ge);
              cudaGraphDestroy(g);
            } else {
              cudaGetLastError();
              printf("graph capture failed\n");
            }
          }
          /* sparse: the seesaw schedules (11, 17, 18, 20; producer events in 17, 18 and 20 only) */
          if (getenv("MLA_TRACE") && atoi(getenv("MLA_TRACE")) &&
              (K == 0 ? !sparseOnly(variant) &&
                            (base(variant) == 3 || base(variant) == 4 || base(variant) == 7 || base(variant) >= 10)
                      : base(variant) == 11 || sparseOnly(variant))) {
            unsigned long long* dTr;
            CK(cudaMalloc(&dTr, kMlaSm90TraceSlots * 8));
            CK(cudaMemset(dTr, 0, kMlaSm90TraceSlots * 8));
            cpclMlaSm90Trace(dTr);
            CKI(launchOne(&ps[0]));
            CK(cudaDeviceSynchronize());
            cpclMlaSm90Trace(nullptr);
            std::vector<unsigned long long> tr(kMlaSm90TraceSlots);
            CK(cudaMemcpy(tr.data(), dTr, tr.size() * 8, cudaMemcpyDeviceToHost));
            cudaFree(dTr);
            const int rowLen = K > 0 ? K : L, chunk = (rowLen + maxSplits - 1) / maxSplits;
            printf("trace v%d B%d H%d L%d K%d pg%d:\n", variant, B, H, L, K, pg);
            const int nb = (std::min(rowLen, ((chunk + 63) / 64) * 64) + 63) / 64;
            if (base(variant) == 16) { /* its own events (mla_sm90_halves.cuh) */
              printTrace16(tr.data(), nb);
            } else {
              printTrace(tr.data(), nb);
              printCta(tr.data(), nb);
            }
          }
          const double keys = K > 0 ? K : L; /* the keys a row attends to */
          const double bytes = (double)B * keys * 1152 + (double)B * H * (576 + 512) * 2;
          const double flops = (double)B * H * keys * 2.0 * (576 + 512);
          const float best = gus > 0 && gus < us ? gus : us;
          rows.push_back({B, H, L, K, pg, maxSplits, cm, variant, us, gus, bytes / (best * 1e-6) / 1e12,
                          flops / (best * 1e-6) / 1e12, target[pi]});
          printf(
              "perf v%d B%-4d H%-4d L%-6d K%-5d pg%-3d splits<=%-3d chunkMin %-4d stream %9.1f us graph %9.1f us  "
              "%5.2f TB/s "
              " "
              "%6.1f TFLOP/s (copies %d)\n",
              variant, B, H, L, K, pg, maxSplits, cm, us, gus, rows.back().tbs, rows.back().tfs, copies);
          fflush(stdout);
        }
      cudaFree(dKv);
      cudaFree(dQ);
      cudaFree(dO);
      cudaFree(dLse);
      cudaFree(dBt);
      cudaFree(dSl);
      if (dWs) cudaFree(dWs);
      if (dIdx) cudaFree(dIdx);
      if (dCnt) cudaFree(dCnt);
    }
  }
  printf(
      "\n| variant | B, H, L | page | splits (chunkMin) | stream us | graph us | TB/s | TFLOP/s | target us | met |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows)
    printf("| %s%s | %d, %d, %dk%s | %d | %d (%d) | %.1f | %.1f | %.2f | %.0f | %.0f | %s |\n", names[base(r.variant)],
           r.variant & kMlaSm90EvictFirst ? " +EF" : "", r.B, r.H, r.L / 1024, r.topk ? topkLabel(r.topk) : "", r.pg,
           r.splits, r.chunkMin, r.us, r.gus, r.tbs, r.tfs, r.target,
           r.target <= 0                                          ? "probe"
           : std::min(r.us, r.gus > 0 ? r.gus : r.us) <= r.target ? "yes"
                                                                  : "no");
  printf("ceilings (same run): copy %.2f TB/s, bf16 GEMM %.0f TFLOP/s\n", copyTBs, gemmTF);
  for (int v : vars) printf("correctness v%d (%s): %s\n", v, names[base(v)], okVar[v] ? "PASS" : "FAIL");
  return 0;
}
