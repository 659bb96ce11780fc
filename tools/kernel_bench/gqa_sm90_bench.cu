/*
 * gqa_sm90_bench.cu -- standalone check and timing of the Hopper GQA decode body (gqa_sm90.cuh).
 *
 *   build and run: gqa_sm90_bench.sh (its nvcc line, from this folder)
 *   ./gqa_sm90_bench [check|time|all]
 *
 * check: random bf16/fp16 data (fresh seed per case), paged KV with scrambled page ids (pages 1, 8,
 *   16, 32, 64, 128), several query rows per sequence at consecutive positions, padding sequences, a
 *   sharded rank (cpSize 2), against an fp64 CPU reference of o and lse; out and lse poisoned
 *   with NaN first (an unwritten element fails); a rerun is bitwise identical; a row run alone
 *   equals the same row inside its batch, bitwise (batch invariance).
 * time: the issue-12 shapes (paged, page 16, with LSE), each over (copy mode, cluster splits,
 *   chunkMin, stages) variants (GQA_MODES=0,2 picks copy modes; GQA_LOG=file writes a CSV): a CUDA graph of launches
 * cycling over enough copies of the KV (distinct pages) to pass 240 MB, so L2 never holds it; median of the replays;
 * the device-to-device copy ceiling measured in the same run.
 * Knobs (docs/GQA_SM90.md "Session 19"): GQA_VARIANTS="CL:chunkMin:stages:mode:pdl:consumer:ws,..." times
 *   those variants instead of the list; GQA_SHAPES="B:H:Hkv:L,..." those shapes instead of issue 12's;
 *   GQA_SEQUENTIAL=1 gives each sequence its pages in address order (timing only); GQA_PAGE=n pages of
 *   n tokens.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <string>
#include <numeric>
#include <random>
#include <vector>

#include "kv_layout.h"
#include "gqa_sm90.h"

#define CK(x)                                                                             \
  do {                                                                                    \
    cudaError_t e_ = (x);                                                                 \
    if (e_ != cudaSuccess) {                                                              \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

static float bitsToF(uint16_t b, int dtype) {
  if (dtype == 0) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  __half_raw r;
  r.x = b;
  return __half2float(__half(r));
}

__global__ void fillKernel(uint16_t* p, size_t n, uint64_t seed, float scale, int dtype) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    const float v = ((float)(x >> 40) / 16777216.f * 2.f - 1.f) * scale;
    if (dtype == 0) {
      __nv_bfloat16 h = __float2bfloat16_rn(v);
      p[i] = *reinterpret_cast<uint16_t*>(&h);
    } else {
      __half h = __float2half_rn(v);
      p[i] = *reinterpret_cast<uint16_t*>(&h);
    }
  }
}
static void fill(uint16_t* p, size_t n, uint64_t seed, float scale, int dtype) {
  fillKernel<<<1024, 256>>>(p, n, seed, scale, dtype);
  CK(cudaGetLastError());
}

struct Seq {
  int len, rows;
};
struct Case {
  const char* name;
  int dtype, D, H, Hkv, ps, CL, chunkMin, stages, cpSize, cpRank, I, lseBase2;
  std::vector<Seq> seqs;
  int mode = 0;     /* copyMode */
  int pdl = 0;      /* programmatic dependent launch */
  int consumer = 0; /* 1: the wgmma warpgroup */
  int ws = 0;       /* 1: unclustered splits (CL up to 64) merged through a workspace by a second kernel
                     * (S); 2: the same, merged by the last split to finish (F, the tail merge) */
  int badSeq = -1;  /* >= 0: that sequence's second-to-last page id is -1 (its rows past it come out empty) */
};

/* the workspace of the S variants: room for the most splits (64) of any variant of a batch */
constexpr int kWsSplits = 64;

/* A batch on the device: q, caches, block table, outputs; host copies for the reference. */
struct Batch {
  int numSeqs = 0, numTokens = 0, maxPages = 0, copies = 1;
  size_t pagesPerCopy = 0;
  std::vector<int> qs, lens, bt; /* bt: [copies][numSeqs][maxPages] */
  uint16_t *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr;
  float* lse = nullptr;
  float* ws = nullptr;        /* [numTokens][H][kWsSplits][D] partials, then [numTokens][H][kWsSplits] LSEs */
  unsigned* counts = nullptr; /* the F variant's arrival counters, zero between launches */
  size_t nCounts = 0;
  int badPage = -1; /* the page index the bad sequence's rows must not read (-1: none) */
  int32_t *dqs = nullptr, *dlens = nullptr, *dbt = nullptr;
  GqaKvMaps maps;
  void release() {
    cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(out), cudaFree(lse), cudaFree(dqs), cudaFree(dlens), cudaFree(dbt),
        cudaFree(ws), cudaFree(counts);
  }
};

static int64_t localLenOf(int64_t L, const Case& c) { return cpclKvLocalLenOf(L, c.cpSize, c.cpRank, c.I); }

static void build(Batch& b, const Case& c, int copies, uint64_t seed) {
  std::mt19937_64 rng(seed);
  b.numSeqs = (int)c.seqs.size();
  b.copies = copies;
  b.qs.assign(1, 0);
  b.lens.clear();
  int maxPages = 1;
  size_t pages = 0;
  for (const Seq& s : c.seqs) {
    b.qs.push_back(b.qs.back() + s.rows);
    b.lens.push_back(s.len);
    const int np = (int)((localLenOf(s.len, c) + c.ps - 1) / c.ps);
    maxPages = std::max(maxPages, np + 1);
    pages += np;
  }
  b.numTokens = b.qs.back();
  b.maxPages = maxPages;
  b.pagesPerCopy = std::max<size_t>(pages, 1);
  /* scrambled page ids: copy r owns pages [r P, (r + 1) P) in a random order */
  b.bt.assign((size_t)copies * b.numSeqs * maxPages, -1);
  for (int r = 0; r < copies; r++) {
    std::vector<int> perm(b.pagesPerCopy);
    std::iota(perm.begin(), perm.end(), (int)(r * b.pagesPerCopy));
    /* GQA_SEQUENTIAL=1 (timing only): each sequence's pages in address order, as a contiguous cache */
    static const bool sequential = getenv("GQA_SEQUENTIAL") && atoi(getenv("GQA_SEQUENTIAL")) == 1;
    if (!sequential || c.badSeq >= 0) std::shuffle(perm.begin(), perm.end(), rng);
    size_t next = 0;
    for (int s = 0; s < b.numSeqs; s++) {
      const int np = (int)((localLenOf(c.seqs[s].len, c) + c.ps - 1) / c.ps);
      for (int i = 0; i < np; i++) b.bt[((size_t)r * b.numSeqs + s) * maxPages + i] = perm[next++];
    }
  }
  b.badPage = -1;
  if (c.badSeq >= 0) {
    const int np = (int)((localLenOf(c.seqs[c.badSeq].len, c) + c.ps - 1) / c.ps);
    b.badPage = np >= 2 ? np - 2 : 0;
    for (int r = 0; r < copies; r++) b.bt[((size_t)r * b.numSeqs + c.badSeq) * maxPages + b.badPage] = -1;
  }
  const size_t kvElems = (size_t)copies * b.pagesPerCopy * c.ps * c.Hkv * c.D;
  const size_t qElems = (size_t)std::max(b.numTokens, 1) * c.H * c.D;
  CK(cudaMalloc(&b.q, qElems * 2));
  CK(cudaMalloc(&b.out, qElems * 2));
  CK(cudaMalloc(&b.lse, (size_t)std::max(b.numTokens, 1) * c.H * 4));
  CK(cudaMalloc(&b.ws, (size_t)std::max(b.numTokens, 1) * c.H * kWsSplits * (c.D + 1) * 4));
  /* one per (row, KV head, head block): at most rows x H (cpclGqaSm90CounterCount), zeroed once here;
   * each launch leaves them zero (runOnce checks it) */
  b.nCounts = (size_t)std::max(b.numTokens, 1) * c.H;
  CK(cudaMalloc(&b.counts, b.nCounts * 4));
  CK(cudaMemset(b.counts, 0, b.nCounts * 4));
  CK(cudaMalloc(&b.k, kvElems * 2));
  CK(cudaMalloc(&b.v, kvElems * 2));
  CK(cudaMalloc(&b.dqs, b.qs.size() * 4));
  CK(cudaMalloc(&b.dlens, b.lens.size() * 4 + 4));
  CK(cudaMalloc(&b.dbt, b.bt.size() * 4));
  CK(cudaMemcpy(b.dqs, b.qs.data(), b.qs.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(b.dlens, b.lens.data(), b.lens.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(b.dbt, b.bt.data(), b.bt.size() * 4, cudaMemcpyHostToDevice));
  fill(b.q, qElems, seed * 3 + 1, 2.0f, c.dtype);
  fill(b.k, kvElems, seed * 3 + 2, 1.0f, c.dtype);
  fill(b.v, kvElems, seed * 3 + 3, 1.0f, c.dtype);
  CK(cudaDeviceSynchronize());
}

static GqaParams paramsOf(const Batch& b, const Case& c, int copy) {
  GqaParams p;
  memset(&p, 0, sizeof p);
  p.numSeqs = b.numSeqs;
  p.numTokens = b.numTokens;
  p.queryStart = b.dqs;
  p.seqLens = b.dlens;
  p.blockTable = b.dbt + (size_t)copy * b.numSeqs * b.maxPages;
  p.maxPagesPerSeq = b.maxPages;
  p.cpSize = c.cpSize;
  p.cpRank = c.cpRank;
  p.interleave = c.I;
  p.pageSize = c.ps;
  p.numHeads = c.H;
  p.numKvHeads = c.Hkv;
  p.headDim = c.D;
  p.dtype = c.dtype;
  p.smScale = 1.f / sqrtf((float)c.D);
  p.lseBase2 = c.lseBase2;
  p.q = b.q;
  p.qTokenStride = (int64_t)c.H * c.D;
  p.kCache = b.k;
  p.vCache = b.v;
  p.out = b.out;
  p.oTokenStride = (int64_t)c.H * c.D;
  p.lse = b.lse;
  p.lseTokenStride = c.H;
  p.clusterSplits = c.CL;
  p.chunkMin = c.chunkMin;
  p.stages = c.stages;
  p.copyMode = c.mode;
  p.pdl = c.pdl;
  p.consumer = c.consumer;
  /* the library's L2 policy (GqaParams.l2Hint) unless GQA_L2=0 (docs/GQA_SM90.md "Session 15") */
  p.l2Hint = !(getenv("GQA_L2") && atoi(getenv("GQA_L2")) == 0);
  if (c.ws) {
    p.wsO = b.ws;
    p.wsLse = b.ws + (size_t)std::max(b.numTokens, 1) * c.H * kWsSplits * c.D;
    if (c.ws == 2) p.wsCount = b.counts;
  }
  return p;
}

/* the launch, with the TMA maps made for this batch's caches when the mode needs them */
static int decode(const Batch& b, const Case& c, int copy, cudaStream_t st) {
  GqaParams p = paramsOf(b, c, copy);
  if (c.mode == 2) {
    GqaKvMaps* m = const_cast<GqaKvMaps*>(&b.maps);
    int rc = cpclGqaSm90KvMaps(m, &p, (int64_t)b.copies * b.pagesPerCopy);
    if (rc != 0) return rc;
  }
  return cpclGqaSm90Decode(&p, c.mode == 2 ? &b.maps : nullptr, st);
}

static int runOnce(const Batch& b, const Case& c, std::vector<uint16_t>& out, std::vector<float>& lse) {
  const size_t qElems = (size_t)b.numTokens * c.H * c.D;
  CK(cudaMemset(b.out, 0xFF, qElems * 2)); /* NaN in bf16 and fp16 */
  CK(cudaMemset(b.lse, 0xFF, (size_t)b.numTokens * c.H * 4));
  /* NaN partials: the merge must read only what this launch wrote */
  if (c.ws) CK(cudaMemset(b.ws, 0xFF, (size_t)b.numTokens * c.H * kWsSplits * (c.D + 1) * 4));
  int rc = decode(b, c, 0, 0);
  if (rc != 0) {
    printf("  launch returned %d (%s)\n", rc, rc > 0 ? cudaGetErrorString((cudaError_t)rc) : "not covered");
    return rc;
  }
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  out.resize(qElems);
  lse.resize((size_t)b.numTokens * c.H);
  CK(cudaMemcpy(out.data(), b.out, qElems * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(lse.data(), b.lse, lse.size() * 4, cudaMemcpyDeviceToHost));
  if (c.ws == 2) { /* the tail merge re-arms every counter it used */
    GqaParams p = paramsOf(b, c, 0);
    if (cpclGqaSm90CounterCount(&p) > b.nCounts) {
      printf("  %zu counters needed, %zu allocated\n", cpclGqaSm90CounterCount(&p), b.nCounts);
      return -2;
    }
    std::vector<unsigned> cnt(b.nCounts);
    CK(cudaMemcpy(cnt.data(), b.counts, cnt.size() * 4, cudaMemcpyDeviceToHost));
    const long nz = (long)cnt.size() - std::count(cnt.begin(), cnt.end(), 0u);
    if (nz) {
      printf("  %ld arrival counters left non-zero\n", nz);
      return -3;
    }
  }
  return 0;
}

static bool check(const Case& c, uint64_t seed) {
  Batch b;
  build(b, c, 1, seed);
  std::vector<uint16_t> out, out2;
  std::vector<float> lse, lse2;
  if (runOnce(b, c, out, lse) != 0) return false;
  /* host copies of the inputs */
  const size_t kvElems = b.pagesPerCopy * c.ps * c.Hkv * c.D;
  std::vector<uint16_t> hq((size_t)b.numTokens * c.H * c.D), hk(kvElems), hv(kvElems);
  CK(cudaMemcpy(hq.data(), b.q, hq.size() * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hk.data(), b.k, kvElems * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hv.data(), b.v, kvElems * 2, cudaMemcpyDeviceToHost));
  const int G = c.H / c.Hkv, D = c.D;
  const double sm = 1.0 / sqrt((double)D);
  double num = 0, den = 0, lseErr = 0;
  long nan = 0, emptyBad = 0;
  std::vector<double> s, acc(D);
  for (int sq = 0; sq < b.numSeqs; sq++) {
    const int n = c.seqs[sq].rows;
    for (int j = 0; j < n; j++) {
      const int t = b.qs[sq] + j;
      int64_t L = c.seqs[sq].len == 0 ? 0 : localLenOf((int64_t)c.seqs[sq].len - n + j + 1, c);
      if (sq == c.badSeq && L > (int64_t)b.badPage * c.ps) L = 0; /* a split met the bad page: the row is empty */
      for (int h = 0; h < c.H; h++) {
        const int kh = h / G;
        const uint16_t* qr = &hq[((size_t)t * c.H + h) * D];
        s.assign(L, 0);
        double mx = -INFINITY;
        for (int64_t i = 0; i < L; i++) {
          const int64_t slot = (int64_t)b.bt[(size_t)sq * b.maxPages + i / c.ps] * c.ps + i % c.ps;
          const uint16_t* kr = &hk[((size_t)slot * c.Hkv + kh) * D];
          double dot = 0;
          for (int d = 0; d < D; d++) dot += (double)bitsToF(qr[d], c.dtype) * bitsToF(kr[d], c.dtype);
          s[i] = dot * sm;
          mx = std::max(mx, s[i]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t i = 0; i < L; i++) {
          const double w = exp(s[i] - mx);
          sum += w;
          const int64_t slot = (int64_t)b.bt[(size_t)sq * b.maxPages + i / c.ps] * c.ps + i % c.ps;
          const uint16_t* vr = &hv[((size_t)slot * c.Hkv + kh) * D];
          for (int d = 0; d < D; d++) acc[d] += w * bitsToF(vr[d], c.dtype);
        }
        const float gl = lse[(size_t)t * c.H + h];
        if (L == 0) {
          if (!(gl == -INFINITY)) emptyBad++;
        } else {
          double ref = mx + log(sum);
          if (c.lseBase2) ref /= log(2.0);
          if (isnan(gl))
            nan++;
          else
            lseErr = std::max(lseErr, fabs(gl - ref));
        }
        for (int d = 0; d < D; d++) {
          const float g = bitsToF(out[((size_t)t * c.H + h) * D + d], c.dtype);
          const double ref = L == 0 ? 0.0 : acc[d] / sum;
          if (isnan(g)) nan++;
          if (L == 0 && g != 0.f) emptyBad++;
          num += (g - ref) * (g - ref);
          den += ref * ref;
        }
      }
    }
  }
  const double rel = sqrt(num / std::max(den, 1e-30));
  const double tol = c.dtype == 0 ? 1.5e-2 : 4e-3;
  bool ok = nan == 0 && emptyBad == 0 && rel < tol && lseErr < 2e-3;
  /* a rerun is bitwise identical */
  if (runOnce(b, c, out2, lse2) != 0) return false;
  const bool same = out == out2 && memcmp(lse.data(), lse2.data(), lse.size() * 4) == 0;
  ok = ok && same;
  /* batch invariance: each sequence alone gives the same bits as inside the batch */
  bool inv = true;
  for (int sq = 0; sq < b.numSeqs && inv; sq++) {
    Case c1 = c;
    c1.seqs = {c.seqs[sq]};
    c1.badSeq = -1; /* the lone row gets the batch's block-table row below, the bad id included */
    Batch b1;
    build(b1, c1, 1, seed ^ 0xabcdull); /* then the batch's q rows, caches and page ids */
    const int n = c.seqs[sq].rows;
    CK(cudaMemcpy(b1.q, b.q + (size_t)b.qs[sq] * c.H * D, (size_t)n * c.H * D * 2, cudaMemcpyDeviceToDevice));
    /* point the lone sequence at the batch's own pages: rebuild its cache from the batch's */
    CK(cudaFree(b1.k));
    CK(cudaFree(b1.v));
    CK(cudaMalloc(&b1.k, kvElems * 2));
    CK(cudaMalloc(&b1.v, kvElems * 2));
    CK(cudaMemcpy(b1.k, b.k, kvElems * 2, cudaMemcpyDeviceToDevice));
    CK(cudaMemcpy(b1.v, b.v, kvElems * 2, cudaMemcpyDeviceToDevice));
    b1.pagesPerCopy = b.pagesPerCopy; /* the TMA maps span the batch's pool */
    std::vector<int> bt1(b1.maxPages, -1);
    for (int i = 0; i < std::min(b1.maxPages, b.maxPages); i++) bt1[i] = b.bt[(size_t)sq * b.maxPages + i];
    CK(cudaMemcpy(b1.dbt, bt1.data(), bt1.size() * 4, cudaMemcpyHostToDevice));
    std::vector<uint16_t> o1;
    std::vector<float> l1;
    if (runOnce(b1, c1, o1, l1) != 0) return false;
    inv = memcmp(o1.data(), out.data() + (size_t)b.qs[sq] * c.H * D, o1.size() * 2) == 0 &&
          memcmp(l1.data(), lse.data() + (size_t)b.qs[sq] * c.H, l1.size() * 4) == 0;
    b1.release();
  }
  ok = ok && inv;
  /* the tail merge (F) against the merge kernel (S) on the same batch: the same bits */
  bool formSame = true;
  if (c.ws == 2) {
    Case cs = c;
    cs.ws = 1;
    std::vector<uint16_t> oS;
    std::vector<float> lS;
    formSame = runOnce(b, cs, oS, lS) == 0 && oS == out && memcmp(lS.data(), lse.data(), lse.size() * 4) == 0;
  }
  ok = ok && formSame;
  printf("check %-34s rel %.2e (tol %.0e) lse err %.2e nan %ld empty-bad %ld rerun %s batch-inv %s%s : %s\n", c.name,
         rel, tol, lseErr, nan, emptyBad, same ? "same" : "DIFF", inv ? "same" : "DIFF",
         c.ws != 2  ? ""
         : formSame ? " F=S same"
                    : " F=S DIFF",
         ok ? "ok" : "FAIL");
  b.release();
  return ok;
}

/* GQA_SKIP / GQA_ONLY: letters of the features a check case or time variant must not / must have
 * (W wgmma consumers, S workspace merge in a second kernel, F workspace merge in the tail, P
 * programmatic dependent launch), so gqa_sm90_bench.sh can find a failing feature in its own
 * process and time everything else (GQA_ONLY=SF: the workspace rows alone, both merges) */
static bool featuresPass(int consumer, int ws, int pdl) {
  const char* skip = getenv("GQA_SKIP");
  const char* only = getenv("GQA_ONLY");
  const bool has[4] = {consumer != 0, ws == 1, pdl != 0, ws == 2};
  const char names[4] = {'W', 'S', 'P', 'F'};
  bool any = false;
  for (int i = 0; i < 4; i++) {
    if (has[i] && skip && strchr(skip, names[i])) return false;
    if (has[i] && only && strchr(only, names[i])) any = true;
  }
  return !(only && *only) || any;
}

static int runChecks() {
  std::vector<Case> cs = {
      {"bf16 D128 H16/1 pg16 CL16 cm64 st4",
       0,
       128,
       16,
       1,
       16,
       16,
       64,
       4,
       1,
       0,
       1,
       0,
       {{1000, 1}, {0, 1}, {37, 1}, {4096, 3}, {130, 2}}},
      {"bf16 D128 H64/2 pg1 CL8 cm128 st3", 0, 128, 64, 2, 1, 8, 128, 3, 1, 0, 1, 0, {{777, 2}, {64, 1}, {3000, 1}}},
      {"fp16 D128 H24/1 pg64 CL16 cm64 st2", 1, 128, 24, 1, 64, 16, 64, 2, 1, 0, 1, 0, {{2049, 1}, {5, 4}}},
      {"bf16 D64 H128/1 pg16 CL4 cm256 st6", 0, 64, 128, 1, 16, 4, 256, 6, 1, 0, 1, 0, {{1500, 1}, {333, 2}}},
      {"bf16 D128 H32/8 pg16 CL1 st3 base2", 0, 128, 32, 8, 16, 1, 64, 3, 1, 0, 1, 1, {{900, 1}, {65, 1}}},
      {"fp16 D64 H16/4 pg16 cp2/r1/I4 CL16", 1, 64, 16, 4, 16, 16, 64, 4, 2, 1, 4, 0, {{2000, 2}, {3, 1}, {0, 2}}},
      {"bf16 D128 H64/1 pg16 CL16 cm64 st4", 0, 128, 64, 1, 16, 16, 64, 4, 1, 0, 1, 0, {{8192, 1}, {8191, 2}}},
      {"fp16 D128 H16/1 pg64 CL16 cm256 st3", 1, 128, 16, 1, 64, 16, 256, 3, 1, 0, 1, 0, {{4096, 1}, {64, 1}}},
      {"bf16 D128 H16/1 pg16 CL16 st4 bulk",
       0,
       128,
       16,
       1,
       16,
       16,
       64,
       4,
       1,
       0,
       1,
       0,
       {{1000, 1}, {0, 1}, {37, 1}, {4096, 3}, {130, 2}},
       1},
      {"bf16 D64 H8/1 pg1 CL16 cm64 st3", 0, 64, 8, 1, 1, 16, 64, 3, 1, 0, 1, 0, {{4000, 1}, {1, 1}, {129, 3}}},
      /* TMA tensor boxes */
      {"TMA bf16 D128 H16/1 pg16 CL16 st3",
       0,
       128,
       16,
       1,
       16,
       16,
       64,
       3,
       1,
       0,
       1,
       0,
       {{1000, 1}, {0, 1}, {37, 1}, {4096, 3}, {130, 2}},
       2},
      {"TMA bf16 D128 H64/2 pg8 CL8 cm128", 0, 128, 64, 2, 8, 8, 128, 3, 1, 0, 1, 0, {{777, 2}, {64, 1}, {3000, 1}}, 2},
      {"TMA fp16 D128 H24/1 pg64 CL16 st2", 1, 128, 24, 1, 64, 16, 64, 2, 1, 0, 1, 0, {{2049, 1}, {5, 4}}, 2},
      {"TMA bf16 D64 H128/1 pg16 CL4 st6", 0, 64, 128, 1, 16, 4, 256, 6, 1, 0, 1, 0, {{1500, 1}, {333, 2}}, 2},
      {"TMA bf16 D128 H32/8 pg32 CL1 base2", 0, 128, 32, 8, 32, 1, 64, 3, 1, 0, 1, 1, {{900, 1}, {65, 1}}, 2},
      {"TMA fp16 D64 H16/4 pg16 cp2/r1/I4", 1, 64, 16, 4, 16, 16, 64, 4, 2, 1, 4, 0, {{2000, 2}, {3, 1}, {0, 2}}, 2},
      {"TMA bf16 D128 H64/1 pg16 CL16 st4", 0, 128, 64, 1, 16, 16, 64, 4, 1, 0, 1, 0, {{8192, 1}, {8191, 2}}, 2},
      {"TMA bf16 D128 H16/1 pg128 CL16 st3", 0, 128, 16, 1, 128, 16, 64, 3, 1, 0, 1, 0, {{4000, 1}, {200, 2}}, 2},
      /* a cluster size that is not a power of two */
      {"TMA bf16 D128 H16/1 pg16 CL7 cm64", 0, 128, 16, 1, 16, 7, 64, 3, 1, 0, 1, 0, {{1000, 1}, {0, 1}, {4096, 3}}, 2},
      /* programmatic dependent launch (the time variants' P) */
      {"TMA PDL bf16 D128 H64/1 pg16 CL16",
       0,
       128,
       64,
       1,
       16,
       16,
       64,
       3,
       1,
       0,
       1,
       0,
       {{8192, 1}, {0, 1}, {8191, 2}},
       2,
       1},
      /* the wgmma consumer warpgroup (the time variants' W): G > 32, TMA copies */
      {"TMA WG bf16 D128 H64/1 pg16 CL16",
       0,
       128,
       64,
       1,
       16,
       16,
       64,
       3,
       1,
       0,
       1,
       0,
       {{8192, 1}, {0, 1}, {8191, 2}, {37, 1}},
       2,
       0,
       1},
      {"TMA WG fp16 D128 H128/1 pg64 CL8", 1, 128, 128, 1, 64, 8, 128, 3, 1, 0, 1, 0, {{3000, 2}, {65, 1}}, 2, 0, 1},
      {"TMA WG bf16 D64 H96/2 pg8 CL4 b2", 0, 64, 96, 2, 8, 4, 256, 4, 1, 0, 1, 1, {{1500, 1}, {333, 2}}, 2, 0, 1},
      {"TMA WG fp16 D64 H48/1 cp2/r1/I4",
       1,
       64,
       48,
       1,
       16,
       16,
       64,
       3,
       2,
       1,
       4,
       0,
       {{2000, 2}, {3, 1}, {0, 2}},
       2,
       0,
       1},
      {"TMA WG PDL bf16 D128 H64/1 pg32", 0, 128, 64, 1, 32, 16, 256, 3, 1, 0, 1, 0, {{20000, 1}, {129, 3}}, 2, 1, 1},
      /* a bad page id in a row of 16 splits: every split's mark reaches the DSMEM merge */
      {"TMA bf16 D128 H16/1 pg16 CL16 badpg",
       0,
       128,
       16,
       1,
       16,
       16,
       64,
       3,
       1,
       0,
       1,
       0,
       {{1000, 1}, {4096, 40}, {37, 1}},
       2,
       0,
       0,
       0,
       1},
      /* the workspace merge (the time variants' S): up to 64 unclustered splits, a second kernel */
      {"WS bf16 D128 H16/1 pg16 S32 cm64",
       0,
       128,
       16,
       1,
       16,
       32,
       64,
       3,
       1,
       0,
       1,
       0,
       {{1000, 1}, {0, 1}, {37, 1}, {4096, 3}, {130, 2}},
       0,
       0,
       0,
       1},
      {"WS TMA bf16 D128 H16/1 pg16 S64 badpg",
       0,
       128,
       16,
       1,
       16,
       64,
       64,
       3,
       1,
       0,
       1,
       0,
       {{1000, 1}, {4096, 40}, {0, 1}, {6000, 1}},
       2,
       0,
       0,
       1,
       1},
      {"WS TMA fp16 D64 H16/4 cp2/r1/I4 S24",
       1,
       64,
       16,
       4,
       16,
       24,
       64,
       4,
       2,
       1,
       4,
       0,
       {{2000, 2}, {3, 1}, {0, 2}},
       2,
       0,
       0,
       1},
      {"WS bf16 D64 H32/8 pg1 S20 base2",
       0,
       64,
       32,
       8,
       1,
       20,
       64,
       3,
       1,
       0,
       1,
       1,
       {{900, 1}, {65, 1}, {1, 1}},
       0,
       0,
       0,
       1},
      {"WS TMA WG PDL bf16 D128 H64/1 S48",
       0,
       128,
       64,
       1,
       16,
       48,
       128,
       3,
       1,
       0,
       1,
       0,
       {{20000, 1}, {0, 1}, {8191, 2}, {37, 1}},
       2,
       1,
       1,
       1},
      {"WS TMA WG fp16 D128 H128/1 pg64 S40 bad",
       1,
       128,
       128,
       1,
       64,
       40,
       64,
       3,
       1,
       0,
       1,
       0,
       {{3000, 2}, {65, 1}, {5000, 3}},
       2,
       0,
       1,
       1,
       2},
      {"WS TMA WG bf16 D64 H64/1 pg8 S64 PDL",
       0,
       64,
       64,
       1,
       8,
       64,
       64,
       3,
       1,
       0,
       1,
       0,
       {{6000, 1}, {333, 2}},
       2,
       1,
       1,
       1},
      /* the tail merge (F) on a shape of its own: 4 splits of up to 256 keys, a short sequence and an
       * empty one (the WS cases run with it too, below) */
      {"TAIL TMA bf16 D128 H8/1 pg16 S4 cm256",
       0,
       128,
       8,
       1,
       16,
       4,
       256,
       3,
       1,
       0,
       1,
       0,
       {{4096, 1}, {8192, 2}, {300, 1}, {0, 1}},
       2,
       0,
       0,
       2},
  };
  /* the tail merge (the time variants' F): every WS case's shape again, merged by the last split
   * to arrive ("TAIL" for "WS" in the name); check() also runs each as S on the same batch and
   * wants the same bits, and runOnce wants every arrival counter back at zero */
  std::vector<std::string> tailNames;
  tailNames.reserve(cs.size()); /* no reallocation: the cases keep pointers to these names */
  for (size_t i = 0, n = cs.size(); i < n; i++)
    if (cs[i].ws == 1 && strncmp(cs[i].name, "WS", 2) == 0) {
      Case t = cs[i];
      t.ws = 2;
      tailNames.push_back(std::string("TAIL") + (cs[i].name + 2));
      t.name = tailNames.back().c_str();
      cs.push_back(t);
    }
  int fails = 0;
  uint64_t seed = 0x5eed0000ull ^ (uint64_t)time(nullptr);
  const char* modes = getenv("GQA_MODES"); /* e.g. "0,1": the copy modes to run; all by default */
  size_t ran = 0;
  for (size_t i = 0; i < cs.size(); i++) {
    if (modes && *modes && !strchr(modes, '0' + cs[i].mode)) continue;
    if (!featuresPass(cs[i].consumer, cs[i].ws, cs[i].pdl)) continue;
    ran++;
    fails += !check(cs[i], seed + 17 * i);
    fflush(stdout);
  }
  printf("checks: %d of %zu failed\n", fails, ran);
  return fails;
}

/* ---- timing ---- */
static float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

static double copyCeiling() {
  const size_t bytes = (size_t)1 << 30;
  void *a, *b;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> ts;
  for (int i = 0; i < 12; i++) {
    CK(cudaEventRecord(e0));
    CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 2) ts.push_back(ms);
  }
  cudaFree(a), cudaFree(b);
  return 2.0 * bytes / (median(ts) * 1e-3) / 1e12;
}

#ifdef CPCL_GQA_TRACE
extern "C" int cpclGqaSm90TraceRead(unsigned long long* dst);
/* one eager launch of c, then the timeline of its CTAs (GQA90_MARK, gqa_sm90.cuh): per mark, the
 * median and the largest time (us) after the first attention CTA's entry over the CTAs that
 * recorded it */
static void traceOnce(const Batch& b, const Case& c, cudaStream_t st) {
  constexpr int kTraceSlots = CPCL_GQA_TRACE_SLOTS, kTraceMerge = CPCL_GQA_TRACE_MERGE,
                kTraceMarks = CPCL_GQA_TRACE_MARKS;
  std::vector<unsigned long long> tr((size_t)kTraceSlots * kTraceMarks);
  CK(cudaStreamSynchronize(st));
  if (cpclGqaSm90TraceRead(tr.data()) != 0) return; /* zeroes the table */
  if (decode(b, c, 0, st) != 0) return;
  CK(cudaStreamSynchronize(st));
  if (cpclGqaSm90TraceRead(tr.data()) != 0) return;
  unsigned long long t0 = ~0ull;
  for (int i = 0; i < kTraceMerge; i++)
    if (tr[(size_t)i * kTraceMarks] && tr[(size_t)i * kTraceMarks] < t0) t0 = tr[(size_t)i * kTraceMarks];
  static const char* names[kTraceMarks] = {
      "entry",          "griddep wait",     "rowWork",         "page check",
      "barriers init",  "first TMA issued", "last TMA issued", "first stage landed",
      "last tile done", "post-loop sync",   "partial stored",  "tail merged",
      "merge entry",    "merge wait done",  "merge stored",    ""};
  printf("  trace (us after the first CTA's entry; median / max over the CTAs that marked it):\n");
  for (int m = 0; m < kTraceMarks - 1; m++) {
    std::vector<double> v;
    for (int i = 0; i < kTraceSlots; i++) {
      const unsigned long long x = tr[(size_t)i * kTraceMarks + m];
      if (x && x >= t0) v.push_back((double)(x - t0) * 1e-3);
    }
    if (v.empty()) continue;
    std::sort(v.begin(), v.end());
    printf("    %2d %-20s %8.2f %8.2f  (%zu CTAs)\n", m, names[m], v[v.size() / 2], v.back(), v.size());
  }
}
#endif

struct Variant {
  int CL, chunkMin, stages, mode;
  int pdl;
  int consumer; /* 1: wgmma (G > 32, TMA only) */
  int ws = 0;   /* 1: unclustered splits and the workspace merge kernel (CL = most splits, up to 64); 2: the
                 * same splits merged in the last one's tail (F) */
};

static void timeShape(const char* name, int B, int H, int Hkv, int L, double ceiling, const std::vector<Variant>& vs,
                      FILE* log) {
  /* GQA_PAGE=n: page size n instead of 16 */
  const int ps = getenv("GQA_PAGE") ? atoi(getenv("GQA_PAGE")) : 16;
  Case c = {name, 0, 128, H, Hkv, ps, 16, 256, 4, 1, 0, 1, 0, {}};
  for (int i = 0; i < B; i++) c.seqs.push_back({L, 1});
  const double kvBytes = (double)B * L * Hkv * 128 * 2 * 2;
  const double bytes = kvBytes + (double)B * H * 128 * 2 * 2 + (double)B * H * 4;
  const int copies = (int)std::min(64.0, std::max(1.0, ceil(240e6 / kvBytes)));
  Batch b;
  build(b, c, copies, 1234);
  const int nL = std::max(copies, 20);
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  const char* modes = getenv("GQA_MODES");
  int planCL, planCm, planWs, dev = 0, sms = 0; /* what the library's plan rule picks for a plan of B rows */
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cpclGqaSm90Plan(B, Hkv, H / Hkv, 128, sms, &planCL, &planCm, &planWs);
  const int planWg = H / Hkv > 32; /* the library's consumers (TMA rows) */
  /* GQA_PLAN_ONLY=1: the library plan's row alone */
  const bool planOnly = getenv("GQA_PLAN_ONLY") && atoi(getenv("GQA_PLAN_ONLY")) == 1;
  for (const Variant& v : vs) {
    if (modes && *modes && !strchr(modes, '0' + v.mode)) continue;
    if (!featuresPass(v.consumer, v.ws, v.pdl)) continue;
    c.CL = v.CL;
    c.chunkMin = v.chunkMin;
    c.stages = v.stages;
    c.mode = v.mode;
    c.pdl = v.pdl;
    c.consumer = v.consumer;
    c.ws = v.ws;
    if (v.consumer && (H / Hkv <= 32 || v.mode != 2)) continue; /* not covered */
    const bool planRow = v.CL == planCL && v.chunkMin == planCm && v.stages == 3 && v.mode == 2 && !v.pdl &&
                         v.consumer == planWg && v.ws == planWs;
    if (planOnly && !planRow) continue;
    GqaParams p0 = paramsOf(b, c, 0);
    int rc = decode(b, c, 0, st);
    if (rc != 0) {
      printf("%-24s CL%2d cm%4d st%d%s: launch %d (%s)\n", name, v.CL, v.chunkMin, v.stages,
             v.ws == 2 ? "F"
             : v.ws    ? "S"
                       : "",
             rc, rc > 0 ? cudaGetErrorString((cudaError_t)rc) : "not covered");
      (void)cudaGetLastError();
      continue;
    }
    CK(cudaStreamSynchronize(st));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < nL; i++) {
      if (decode(b, c, i % copies, st) != 0) {
        fprintf(stderr, "capture launch failed\n");
        exit(1);
      }
    }
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    for (int i = 0; i < 2; i++) CK(cudaGraphLaunch(ge, st));
    std::vector<float> ts;
    for (int i = 0; i < 15; i++) {
      CK(cudaEventRecord(e0, st));
      CK(cudaGraphLaunch(ge, st));
      CK(cudaEventRecord(e1, st));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      ts.push_back(ms * 1e3f / nL);
    }
    CK(cudaGetLastError());
    const float us = median(ts);
    std::vector<float> s2 = ts;
    std::sort(s2.begin(), s2.end());
    const double tbs = bytes / (us * 1e-6) / 1e12;
    printf("%-18s CL%2d cm%4d st%d%s%s%s%s: %8.1f us  %5.2f TB/s  %5.1f%% of copy  (min %.1f max %.1f) %s/dev %d%s\n",
           name, v.CL, v.chunkMin, v.stages,
           v.mode == 2   ? "T"
           : v.mode == 1 ? "b"
                         : " ",
           v.pdl ? "P" : " ", v.consumer ? "W" : " ",
           v.ws == 2 ? "F"
           : v.ws    ? "S"
                     : " ",
           us, tbs, 100 * tbs / ceiling, s2.front(), s2.back(), v.ws ? "CTAs" : "clusters",
           cpclGqaSm90MaxActiveClusters(&p0), planRow ? "  <- library plan" : "");
#ifdef CPCL_GQA_TRACE
    if (planRow) traceOnce(b, c, st);
#endif
    if (log)
      fprintf(log, "%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%.2f,%.3f,%.1f,%.2f,%.2f\n", name, B, H, Hkv, v.CL, v.chunkMin,
              v.stages, v.mode, v.pdl, v.consumer, v.ws, us, tbs, 100 * tbs / ceiling, s2.front(), s2.back());
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
  }
  cudaStreamDestroy(st);
  b.release();
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "all";
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  int fails = 0;
  if (!strcmp(mode, "check") || !strcmp(mode, "all")) fails = runChecks();
  if (!strcmp(mode, "time") || !strcmp(mode, "all")) {
    const char* logPath = getenv("GQA_LOG");
    FILE* log = logPath ? fopen(logPath, "w") : nullptr;
    if (log) fprintf(log, "shape,B,H,Hkv,CL,chunkMin,stages,mode,pdl,consumer,ws,us,TBps,pct_copy,min_us,max_us\n");
    const double ceiling = copyCeiling();
    fflush(stdout);
    printf("copy ceiling %.2f TB/s (1 GiB device-to-device, read + write)\n", ceiling);
    /* P: programmatic dependent launch (issue 12's batch-1 lead): each launch's prologue overlaps
     * the previous one's last wave */
    /* W: the wgmma consumer warpgroup (G > 32 only, TMA only). Last: cluster sizes 6, 7, 11, 12, 15
     * (run 3's CL 4 at B64 L8k needed 64 clusters of 4 where 62 fit: two waves, the second of 2) */
    std::vector<Variant> vs = {{16, 256, 3, 0, 0, 0},
                               {8, 256, 3, 0, 0, 0},
                               {4, 1024, 3, 0, 0, 0},
                               {16, 256, 3, 2, 0, 0},
                               {8, 256, 3, 2, 0, 0},
                               {8, 512, 3, 2, 0, 0},
                               {4, 1024, 3, 2, 0, 0},
                               {16, 256, 4, 2, 0, 0},
                               {16, 128, 2, 2, 0, 0},
                               {8, 256, 4, 2, 0, 0},
                               {16, 256, 6, 2, 0, 0},
                               {16, 256, 3, 2, 1, 0},
                               {8, 256, 3, 2, 1, 0},
                               {8, 512, 3, 2, 1, 0},
                               {4, 1024, 3, 2, 1, 0},
                               {16, 128, 3, 2, 1, 0},
                               {16, 64, 3, 2, 1, 0},
                               {16, 64, 3, 2, 0, 0},
                               {16, 256, 3, 2, 0, 1},
                               {16, 256, 4, 2, 0, 1},
                               {16, 128, 3, 2, 0, 1},
                               {16, 256, 2, 2, 0, 1},
                               {8, 512, 3, 2, 0, 1},
                               {16, 256, 3, 2, 1, 1},
                               /* cluster sizes that are not powers of two: fewer straggler clusters in the last wave */
                               {6, 256, 3, 2, 0, 0},
                               {7, 256, 3, 2, 0, 0},
                               {11, 256, 3, 2, 0, 0},
                               {12, 256, 3, 2, 0, 0},
                               {15, 256, 3, 2, 0, 0},
                               /* S: unclustered splits, the workspace merge (a second kernel, PDL). Per shape the
                                * one-wave counts of 264 resident CTAs: B64 L8k S4 (256 CTAs), B16 L32k S16, B1 S64 cm64
                                * (latency), B32 H64 S8, B8 H64 S32/33; W = the wgmma consumers on the G 64 shapes */
                               {4, 1024, 3, 2, 0, 0, 1},
                               {4, 1024, 3, 2, 1, 0, 1},
                               {8, 256, 3, 2, 0, 0, 1},
                               {8, 256, 3, 2, 1, 0, 1},
                               {16, 256, 3, 2, 0, 0, 1},
                               {16, 256, 3, 2, 1, 0, 1},
                               {32, 256, 3, 2, 0, 0, 1},
                               {32, 256, 3, 2, 1, 0, 1},
                               {33, 256, 3, 2, 1, 0, 1},
                               {64, 64, 3, 2, 1, 0, 1},
                               {64, 128, 3, 2, 1, 0, 1},
                               {32, 256, 3, 0, 1, 0, 1},
                               {8, 256, 3, 2, 1, 1, 1},
                               {16, 256, 3, 2, 1, 1, 1},
                               {32, 256, 3, 2, 1, 1, 1},
                               {33, 256, 3, 2, 1, 1, 1},
                               /* F against S (session 4): each shape's library plan (CL, chunk, W where G > 32), no P,
                                * in both merge forms side by side, and B1 with fewer splits, where the tail's one-SM
                                * read of 16 heads x ns partials is smaller (CL 16: 16 splits, 128 KB, against CL 64 cm
                                * 128's 32 splits, 256 KB; the S row of CL 16 is above) */
                               {4, 256, 3, 2, 0, 0, 1},
                               {4, 256, 3, 2, 0, 0, 2},
                               {16, 256, 3, 2, 0, 0, 2},
                               {64, 128, 3, 2, 0, 0, 1},
                               {64, 128, 3, 2, 0, 0, 2},
                               {8, 256, 3, 2, 0, 1, 1},
                               {8, 256, 3, 2, 0, 1, 2},
                               {32, 256, 3, 2, 0, 1, 1},
                               {32, 256, 3, 2, 0, 1, 2},
                               {4, 256, 3, 2, 0, 1, 2}};
    /* GQA_SHAPE=i times shape i only (gqa_sm90_bench.sh runs one process a shape, so a fault in
     * one variant loses only the rest of that shape) */
    const char* one = getenv("GQA_SHAPE");
    const int only = one && *one ? atoi(one) : -1;
    struct {
      const char* name;
      int B, H, Hkv, L;
    } shapes[] = {{"B64 H16/1 L8k", 64, 16, 1, 8192},   {"B16 H16/1 L32k", 16, 16, 1, 32768},
                  {"B128 H64/8 L4k", 128, 64, 8, 4096}, {"B1 H16/1 L4k", 1, 16, 1, 4096},
                  {"B32 H64/1 L32k", 32, 64, 1, 32768}, {"B8 H64/1 L128k", 8, 64, 1, 131072}};
    /* GQA_VARIANTS="CL:chunkMin:stages:mode:pdl:consumer:ws,...": these variants instead of the list;
     * GQA_SHAPES="B:H:Hkv:L,...": these shapes instead of issue 12's (the measurement knobs of
     * docs/GQA_SM90.md "Session 19") */
    if (const char* e = getenv("GQA_VARIANTS")) {
      vs.clear();
      for (const char* q = e; *q;) {
        Variant v{};
        if (sscanf(q, "%d:%d:%d:%d:%d:%d:%d", &v.CL, &v.chunkMin, &v.stages, &v.mode, &v.pdl, &v.consumer, &v.ws) == 7)
          vs.push_back(v);
        q = strchr(q, ',');
        if (!q) break;
        q++;
      }
    }
    if (const char* e = getenv("GQA_SHAPES")) {
      static char names[32][32];
      int n = 0;
      for (const char* q = e; *q && n < 32;) {
        int B, H, Hkv, L;
        if (sscanf(q, "%d:%d:%d:%d", &B, &H, &Hkv, &L) == 4) {
          snprintf(names[n], sizeof names[n], "B%d H%d/%d L%dk", B, H, Hkv, L / 1024);
          timeShape(names[n], B, H, Hkv, L, ceiling, vs, log);
          n++;
        }
        q = strchr(q, ',');
        if (!q) break;
        q++;
      }
    } else
      for (int i = 0; i < 6; i++)
        if (only < 0 || only == i)
          timeShape(shapes[i].name, shapes[i].B, shapes[i].H, shapes[i].Hkv, shapes[i].L, ceiling, vs, log);
    if (log) fclose(log);
  }
  return fails ? 1 : 0;
}
