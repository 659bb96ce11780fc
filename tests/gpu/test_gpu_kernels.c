/* gpu: the CUDA kernels against the host references on fresh random data (every dtype, page
 * sizes 1/16/64, GQA groups 1..128 (the Hopper GQA body on compute capability 9.0), MLA dims up to 128 heads,
 * interleave 1/16 with W > 1 simulated, empty shards, multi-row sequences, long rows that split, head sub-ranges;
 * the Hopper MLA body with q and out off 16-byte alignment), outputs poisoned before each run; merge (NaN bytes under
 * -inf), correction and KV store; and cpclAttnDecode / Partial / Combine on one GPU rank against the host path, every
 * schedule. Exits 77 (skipped) when no GPU is present. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_params.h"
#include "cuda/mla_sm90.h"
#include "kvstore_params.h"
#include "merge_params.h"
#include "testutil.h"
#include "topk_params.h"

static int failures, checks;
#define CU(call)                                                                            \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)
#define EXPECT(cond, ...)                                    \
  do {                                                       \
    checks++;                                                \
    if (!(cond)) {                                           \
      failures++;                                            \
      if (failures < 20) {                                   \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                        \
        fprintf(stderr, "\n");                               \
      }                                                      \
    }                                                        \
  } while (0)

static void* toDev(const void* h, size_t bytes) {
  void* d;
  CU(cudaMalloc(&d, bytes ? bytes : 16));
  if (bytes) CU(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
  return d;
}
static void* devPoison(size_t bytes) {
  void* d;
  CU(cudaMalloc(&d, bytes ? bytes : 16));
  CU(cudaMemset(d, 0xff, bytes ? bytes : 16));
  return d;
}
static void fromDev(void* h, const void* d, size_t bytes) { CU(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost)); }
static double tolOf(cpclDataType_t t) { return t == cpclFloat32 ? 2e-5 : t == cpclFloat16 ? 1e-3 : 8e-3; }

typedef struct {
  cpclDataType_t qType, kvType;
  int Hkv, G, Dqk, Dv, latent;
  int W, r, I, pageSize, multiRow, longRows, base2;
  int headBegin, numHeads, Hb; /* sub-range and block addressing; numHeads 0 = all */
  int padding;                 /* sequence 2 is padding (seqLens 0) */
  int badPage;                 /* sequence 3's first page id is negative: its rows empty, the error recorded */
} kcase_t;

/* the device buffers of one launch's parameters (row starts and lengths are the caller's) */
static void attnDevFree(cpclAttnParams_t* dp) {
  cudaFree((void*)dp->blockTable);
  cudaFree((void*)dp->q);
  cudaFree((void*)dp->kCache);
  cudaFree((void*)dp->vCache);
  cudaFree(dp->out);
  cudaFree(dp->lse);
  cudaFree(dp->workspace);
  cudaFree(dp->splitCounters);
  cudaFree(dp->errorFlag);
}

static void runAttnCase(const kcase_t* kc, uint64_t seed) {
  static const int shortLens[] = {1, 2, 5, 37, 70, 129, 300};
  static const int rowsM[] = {1, 3, 2, 1, 4, 2, 1};
  const int S = 7;
  int32_t qs[8], lens[7];
  qs[0] = 0;
  for (int s = 0; s < S; s++) {
    int rows = kc->multiRow ? rowsM[s] : 1;
    lens[s] = (kc->longRows ? shortLens[s] * 23 : shortLens[s]) + rows - 1;
    qs[s + 1] = qs[s] + rows;
  }
  if (kc->padding) lens[2] = 0;
  tuProblem_t pb = {.numSeqs = S,
                    .numTokens = qs[S],
                    .queryStart = qs,
                    .seqLens = lens,
                    .Hq = kc->Hkv * kc->G,
                    .Hkv = kc->Hkv,
                    .Dqk = kc->Dqk,
                    .Dv = kc->Dv,
                    .latent = kc->latent,
                    .qType = kc->qType,
                    .kvType = kc->kvType,
                    .smScale = (float)(1.0 / sqrt((double)kc->Dqk)),
                    .seed = seed};
  const int T = pb.numTokens, Hq = pb.Hq, Dv = pb.Dv;
  const int hb = kc->numHeads ? kc->headBegin : 0, nh = kc->numHeads ? kc->numHeads : Hq;
  const int Hb = kc->Hb ? kc->Hb : Hq; /* blocks of Hb heads: q [Hq/Hb][T][Hb][D] */
  const int nb = Hq / Hb;
  tuCache_t c;
  tuCacheAlloc(&pb, kc->W, kc->r, kc->I, kc->pageSize, &c);
  tuCacheFill(&pb, kc->W, kc->r, kc->I, &c);
  const size_t qe = tuDtypeSize(pb.qType), ke = tuDtypeSize(pb.kvType);
  /* q in block layout */
  void* qFlat = tuMakeQ(&pb, 0, Hq);
  void* q = malloc((size_t)T * Hq * pb.Dqk * qe);
  for (int b = 0; b < nb; b++)
    for (int t = 0; t < T; t++)
      memcpy((char*)q + (((size_t)b * T + t) * Hb) * pb.Dqk * qe,
             (char*)qFlat + ((size_t)t * Hq + b * Hb) * pb.Dqk * qe, (size_t)Hb * pb.Dqk * qe);
  const size_t oBytes = (size_t)T * Hq * Dv * qe, lBytes = sizeof(float) * (size_t)T * Hq;
  cpclAttnParams_t p = {.numSeqs = S,
                        .numTokens = T,
                        .queryStart = kc->multiRow ? qs : NULL,
                        .seqLens = lens,
                        .blockTable = c.blockTable,
                        .maxPagesPerSeq = c.maxPagesPerSeq,
                        .cpSize = kc->W,
                        .cpRank = kc->r,
                        .interleave = kc->I,
                        .pageSize = kc->pageSize,
                        .numKvHeads = pb.Hkv,
                        .headDimQk = pb.Dqk,
                        .headDimVo = Dv,
                        .latentKv = pb.latent,
                        .groupSize = kc->G,
                        .headBegin = hb,
                        .numHeads = nh,
                        .headsPerBlock = Hb,
                        .smScale = pb.smScale,
                        .lseBase2 = kc->base2,
                        .qType = pb.qType,
                        .kvType = pb.kvType,
                        .q = q,
                        .qBlockStride = (int64_t)T * Hb * pb.Dqk,
                        .qTokenStride = (int64_t)Hb * pb.Dqk,
                        .kCache = c.k,
                        .vCache = c.v,
                        .oBlockStride = (int64_t)T * Hb * Dv,
                        .oTokenStride = (int64_t)Hb * Dv,
                        .lseBlockStride = (int64_t)T * Hb,
                        .lseTokenStride = Hb};
  if (!kc->multiRow) { /* one row per sequence: drop the multi rows' layout */
    p.queryStart = NULL;
  }
  /* host reference */
  void* hOut = malloc(oBytes);
  float* hLse = malloc(lBytes);
  memset(hOut, 0xff, oBytes);
  memset(hLse, 0xff, lBytes);
  cpclAttnParams_t hp = p;
  hp.out = hOut;
  hp.lse = hLse;
  hp.workspace = malloc(cpclHostAttnWorkspaceBytes(pb.Dqk, Dv));
  hp.workspaceBytes = cpclHostAttnWorkspaceBytes(pb.Dqk, Dv);
  cpclHostAttn(&hp);
  const int badSeq = 3, badPage = 0;
  if (kc->badPage) { /* the device sees a negative id: those rows are empty, nothing else changes */
    const size_t oRow = (size_t)Dv * qe;
    for (int t = qs[badSeq]; t < qs[badSeq + 1]; t++)
      for (int g = hb; g < hb + nh; g++) {
        const size_t lo = ((size_t)(g / Hb) * T + t) * Hb + g % Hb;
        memset((char*)hOut + lo * oRow, 0, oRow);
        hLse[lo] = -INFINITY;
      }
  }
  /* The Hopper MLA body where this device and shape take it (bf16 MLA 576/512 on compute
   * capability 9.0): its split constant for a plan of T rows, 0 elsewhere. CPCL_MLA_SM90=0, the
   * library's switch, turns it off here too. */
  const char* sm90Env = getenv("CPCL_MLA_SM90");
  const int sm90Off = sm90Env && strcmp(sm90Env, "0") == 0;
  const int sm90 = sm90Off ? 0 : cpclCudaAttnMlaSm90Splits(&p, T);
  int cc = 0, dev = 0;
  CU(cudaGetDevice(&dev));
  CU(cudaDeviceGetAttribute(&cc, cudaDevAttrComputeCapabilityMajor, dev));
  {
    int minor = 0;
    CU(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    cc = cc * 10 + minor;
  }
  const int mlaShape = pb.qType == cpclBfloat16 && pb.kvType == cpclBfloat16 && pb.latent && pb.Dqk == 576 &&
                       Dv == 512 && pb.Hkv == 1 &&
                       (kc->pageSize % 64 == 0 || (kc->pageSize >= 8 && 64 % kc->pageSize == 0));
  EXPECT(sm90Off || (sm90 > 0) == (mlaShape && cc == 90),
         "cpclCudaAttnMlaSm90Splits = %d on compute capability %d, MLA bf16 shape %d", sm90, cc, mlaShape);
  /* The Hopper GQA body likewise (bf16/fp16 q and KV of one type, D 64/128, not latent, on
   * compute capability 9.0); CPCL_GQA_SM90=0 turns it off here too. */
  const char* gqaEnv = getenv("CPCL_GQA_SM90");
  const int gqaOff = gqaEnv && strcmp(gqaEnv, "0") == 0;
  int gqaChunk = 0, gqaWs = 0;
  cpclAttnParams_t gshape = p;
  gshape.numHeads = Hq; /* the plan's view: every gathered head */
  const int gqa = gqaOff ? 0 : cpclCudaAttnGqaSm90Plan(&gshape, T, &gqaChunk, &gqaWs);
  const int gqaShape = (pb.qType == cpclBfloat16 || pb.qType == cpclFloat16) && pb.kvType == pb.qType && !pb.latent &&
                       pb.Dqk == Dv && (Dv == 64 || Dv == 128);
  EXPECT(gqaOff || (gqa > 0) == (gqaShape && cc == 90),
         "cpclCudaAttnGqaSm90Plan = %d (chunk %d) on compute capability %d, GQA 16-bit shape %d", gqa, gqaChunk, cc,
         gqaShape);
  /* a plan of these few rows takes the workspace form (its partials are a few MB at most), merged
   * in a second kernel (1) or in the last split's tail (2), with at least a 4-way split
   * (docs/GQA_SM90.md, "Session 3b" and "Session 4"); CPCL_GQA_SM90_SPLITS (the measurement knob,
   * which gpu_check.sh sets to 1 and 2 for a run each) forces any count from 1 */
  const char* splitsEnv = getenv("CPCL_GQA_SM90_SPLITS");
  const int minSplits = splitsEnv && atoi(splitsEnv) >= 1 ? 1 : 4;
  EXPECT(
      gqa == 0 || ((gqaWs == 1 || gqaWs == 2) && gqa >= minSplits && gqa <= 64 && gqaChunk >= 64 && gqaChunk % 64 == 0),
      "GQA plan constants %d / %d / workspace form %d for %d rows", gqa, gqaChunk, gqaWs, T);
  /* device: with many splits and with one (direct write); tensor-core (wide and 16-head bodies,
   * the Hopper MLA body where it applies) and CUDA-core kernels; runs 6-8 (the Hopper GQA body
   * only): the workspace form in 64 splits merged by the merge kernel (6) and in the tail (7,
   * launched twice), and the plan's constants with the other merge than run 1's (8). Each merge
   * form must give the other's bits: runs 7 and 6, runs 8 and 1 are compared bitwise. Runs 6, 7 of
   * the Hopper MLA body (mlaAlign below): q and out off 16-byte alignment. */
  void* formOut[2] = {NULL, NULL};
  float* formLse[2] = {NULL, NULL};
  /* runs 6, 7 of the Hopper MLA body: 64 splits with q 8 bytes off 16-byte alignment (its bulk
   * copies of q rows need it: the launcher takes the CUDA-core body instead), and one split with
   * out 4 bytes off (the staged epilogue copies such rows in 4-byte words instead of bulk stores) */
  const int mlaAlign = sm90 && !gqa;
  for (int run = 0; run < (gqa ? 9 : mlaAlign ? 8 : 6); run++) {
    const int splits = run & 1 ? 1 : 64, coresOnly = run >> 1 == 1;
    cpclAttnParams_t dp = p;
    dp.cudaCoresOnly = coresOnly;
    dp.narrowOnly = run >> 1 == 2;
    /* runs 0, 1: the Hopper MLA body with 64 splits and with one; runs 2, 3 compare the CUDA-core
     * body (cudaCoresOnly skips it, like mlaSm90Splits = 0) */
    dp.mlaSm90Splits = (run < 2 || (mlaAlign && run >= 6)) && sm90 ? splits : 0;
    /* runs 0, 1, 6-8: the Hopper GQA body with clusters of 16 splits of 64 keys (short rows split
     * too), with the plan's own constants (its workspace form, wgmma consumers where a call's head
     * block is 64 wide and TMA copies), and in the workspace form with up to 64 splits of 64 keys
     * (a long row of one shard in 47 or 54 splits puts weights in the merge's lanes 32-63): merge
     * kernel (6), tail merge (7); 8: the plan's constants, the other merge form */
    const int gqaRun = gqa && (run < 2 || run >= 6);
    const int planConsts = run == 1 || run == 8;
    dp.gqaSm90Splits = gqaRun ? (planConsts ? gqa : run >= 6 ? 64 : 16) : 0;
    dp.gqaSm90ChunkMin = gqaRun ? (planConsts ? gqaChunk : 64) : 0;
    dp.gqaSm90Workspace = !gqaRun    ? 0
                          : run == 1 ? gqaWs
                          : run == 8 ? (gqaWs == 2 ? 1 : 2)
                          : run == 6 ? 1
                          : run == 7 ? 2
                                     : 0;
    const size_t kvRows = (size_t)c.numPages * kc->pageSize * pb.Hkv;
    dp.queryStart = p.queryStart ? toDev(qs, sizeof(qs)) : NULL;
    dp.seqLens = toDev(lens, sizeof(lens));
    dp.blockTable = toDev(c.blockTable, sizeof(int32_t) * (size_t)c.numPages);
    if (kc->badPage) {
      const int32_t neg = -5;
      CU(cudaMemcpy((int32_t*)dp.blockTable + badSeq * c.maxPagesPerSeq + badPage, &neg, sizeof(neg),
                    cudaMemcpyHostToDevice));
    }
    CU(cudaMalloc((void**)&dp.errorFlag, CPCL_KERR_WORDS * sizeof(int)));
    CU(cudaMemset(dp.errorFlag, 0, CPCL_KERR_WORDS * sizeof(int)));
    void* qBase = NULL; /* run 6 of mlaAlign: q 8 bytes past an allocation */
    if (mlaAlign && run == 6) {
      qBase = devPoison((size_t)T * Hq * pb.Dqk * qe + 16);
      CU(cudaMemcpy((char*)qBase + 8, q, (size_t)T * Hq * pb.Dqk * qe, cudaMemcpyHostToDevice));
      dp.q = (char*)qBase + 8;
    } else {
      dp.q = toDev(q, (size_t)T * Hq * pb.Dqk * qe);
    }
    dp.kCache = toDev(c.k, kvRows * pb.Dqk * ke);
    dp.vCache = pb.latent ? NULL : toDev(c.v, kvRows * Dv * ke);
    void* outBase = mlaAlign && run == 7 ? devPoison(oBytes + 16) : NULL; /* out 4 bytes past it */
    dp.out = outBase ? (char*)outBase + 4 : devPoison(oBytes);
    dp.lse = devPoison(lBytes);
    dp.maxSplits = splits;
    dp.workspaceBytes = cpclCudaAttnWorkspaceBytes(T, nh, Dv, splits);
    if (dp.mlaSm90Splits) {
      const size_t need = cpclCudaAttnMlaSm90WorkspaceBytes(T, nh, splits);
      if (need > 16 &&
          !qBase) { /* the launcher refuses a workspace too small for the Hopper body: proof that it runs */
        dp.workspaceBytes = need - 16;
        dp.workspace = devPoison(dp.workspaceBytes);
        const int e = cpclCudaAttn(&dp, NULL);
        EXPECT(e == cudaErrorInvalidValue && strstr(cpclCudaKernelErrorDetail(), "Hopper MLA") != NULL,
               "Hopper MLA body with a short workspace: %d (%s)", e, cpclCudaKernelErrorDetail());
        cudaFree(dp.workspace);
      }
      if (need > dp.workspaceBytes) dp.workspaceBytes = need;
    }
    if (dp.gqaSm90Workspace && dp.gqaSm90Splits > 1) { /* likewise the Hopper GQA body's workspace form */
      const size_t need = cpclCudaAttnGqaSm90WorkspaceBytes(T, nh, Dv, dp.gqaSm90Splits);
      EXPECT(need > 16, "Hopper GQA workspace of %zu bytes for %d rows of %d heads in %d splits", need, T, nh,
             dp.gqaSm90Splits);
      if (need > 16) {
        cpclAttnParams_t sp = dp;
        sp.workspaceBytes = need - 16;
        sp.workspace = devPoison(sp.workspaceBytes);
        const int e = cpclCudaAttn(&sp, NULL);
        EXPECT(e == cudaErrorInvalidValue && strstr(cpclCudaKernelErrorDetail(), "Hopper GQA") != NULL,
               "Hopper GQA body with a short workspace: %d (%s)", e, cpclCudaKernelErrorDetail());
        cudaFree(sp.workspace);
      }
      if (need > dp.workspaceBytes) dp.workspaceBytes = need;
    }
    /* poisoned (NaN): a merge that read a partial no split wrote would fail the comparison */
    dp.workspace = devPoison(dp.workspaceBytes);
    const size_t nCounters = cpclCudaAttnCounterCount(T, nh);
    CU(cudaMalloc((void**)&dp.splitCounters, nCounters * sizeof(unsigned)));
    CU(cudaMemset(dp.splitCounters, 0, nCounters * sizeof(unsigned)));
    /* the body refuses a cluster past 16 splits, and past 64 in the workspace form: proof that it runs */
    if (dp.gqaSm90Splits) {
      cpclAttnParams_t bp = dp;
      bp.gqaSm90Splits = dp.gqaSm90Workspace ? 65 : 17;
      const int e = cpclCudaAttn(&bp, NULL);
      EXPECT(e == cudaErrorInvalidValue && strstr(cpclCudaKernelErrorDetail(), "Hopper GQA") != NULL,
             "Hopper GQA body with %d splits (workspace form %d): %d (%s)", bp.gqaSm90Splits, dp.gqaSm90Workspace, e,
             cpclCudaKernelErrorDetail());
    }
    int err = cpclCudaAttn(&dp, NULL);
    EXPECT(err == 0, "launch: %s (%s)", cudaGetErrorString((cudaError_t)err), cpclCudaKernelErrorDetail());
    CU(cudaDeviceSynchronize());
    void* firstOut = NULL;
    float* firstLse = NULL;
    if (gqa && run == 7) {
      /* a repeat launch (a graph replay's view) into outputs poisoned again: right only if the
       * first launch's last arrivals re-armed every counter they used (a count left at ns would
       * never elect a merger, one left short would merge before every partial is in) */
      firstOut = malloc(oBytes);
      firstLse = malloc(lBytes);
      fromDev(firstOut, dp.out, oBytes);
      fromDev(firstLse, dp.lse, lBytes);
      CU(cudaMemset(dp.out, 0xff, oBytes));
      CU(cudaMemset(dp.lse, 0xff, lBytes));
      err = cpclCudaAttn(&dp, NULL);
      EXPECT(err == 0, "repeat launch: %s (%s)", cudaGetErrorString((cudaError_t)err), cpclCudaKernelErrorDetail());
      CU(cudaDeviceSynchronize());
    }
    {
      int flag[CPCL_KERR_WORDS];
      fromDev(flag, dp.errorFlag, sizeof(flag));
      if (kc->badPage)
        EXPECT(flag[CPCL_KERR_W_CODE] == CPCL_KERR_PAGE && flag[CPCL_KERR_W_SEQ] == badSeq &&
                   flag[CPCL_KERR_W_VALUE] == -5 && flag[CPCL_KERR_W_LIMIT] == badPage,
               "negative page id recorded as code %d seq %d value %d limit %d (mla sm90 %d, gqa sm90 %d)", flag[0],
               flag[1], flag[2], flag[3], dp.mlaSm90Splits, dp.gqaSm90Splits);
      else
        EXPECT(flag[CPCL_KERR_W_CODE] == CPCL_KERR_NONE,
               "error %d recorded on good data (padding %d, mla sm90 %d, gqa sm90 %d)", flag[0], kc->padding,
               dp.mlaSm90Splits, dp.gqaSm90Splits);
    }
    {
      /* the counters are left at zero for the next call */
      unsigned* cnt = malloc(nCounters * sizeof(unsigned));
      fromDev(cnt, dp.splitCounters, nCounters * sizeof(unsigned));
      int nz = 0;
      for (size_t i = 0; i < nCounters; i++) nz += cnt[i] != 0;
      EXPECT(nz == 0, "%d split counters left non-zero", nz);
      free(cnt);
    }
    void* dOut = malloc(oBytes);
    float* dLse = malloc(lBytes);
    fromDev(dOut, dp.out, oBytes);
    fromDev(dLse, dp.lse, lBytes);
    const double tol = tolOf(pb.qType);
    int bad = 0;
    for (int g = 0; g < Hq; g++)
      for (int t = 0; t < T; t++) {
        const size_t lo = ((size_t)(g / Hb) * T + t) * Hb + g % Hb;
        const int inRange = g >= hb && g < hb + nh;
        for (int d = 0; d < Dv; d++) {
          const size_t i = lo * Dv + d;
          const double a = tuGet(dOut, i, pb.qType), b = tuGet(hOut, i, pb.qType);
          if (inRange ? !(fabs(a - b) <= tol * (1 + fabs(b)))
                      : memcmp((char*)dOut + i * qe, (char*)hOut + i * qe, qe) != 0)
            bad++;
        }
        const float la = dLse[lo], lb = hLse[lo];
        if (inRange ? !((la == -INFINITY && lb == -INFINITY) || fabsf(la - lb) <= 1e-4f * (1 + fabsf(lb)))
                    : memcmp(&la, &lb, 4) != 0)
          bad++;
      }
    EXPECT(bad == 0,
           "attention q%d kv%d Hkv %d G %d D %d/%d latent %d W %d r %d I %d page %d multi %d long %d base2 "
           "%d heads [%d,+%d) Hb %d splits %d cores-only %d mla-sm90 %d gqa-sm90 %d/%d ws %d padding %d bad page %d: "
           "%d elements off",
           pb.qType, pb.kvType, pb.Hkv, kc->G, pb.Dqk, Dv, pb.latent, kc->W, kc->r, kc->I, kc->pageSize, kc->multiRow,
           kc->longRows, kc->base2, hb, nh, Hb, splits, coresOnly, dp.mlaSm90Splits, dp.gqaSm90Splits,
           dp.gqaSm90ChunkMin, dp.gqaSm90Workspace, kc->padding, kc->badPage, bad);
    if (gqa && run == 7) {
      EXPECT(memcmp(firstOut, dOut, oBytes) == 0 && memcmp(firstLse, dLse, lBytes) == 0,
             "Hopper GQA tail merge: the repeat launch's bits differ from the first's (%d splits)", dp.gqaSm90Splits);
      free(firstOut);
      free(firstLse);
    }
    /* the two merge forms, bitwise: run 6 (kernel) against run 7 (tail), run 1 against run 8; the
     * Hopper MLA body's misaligned out (run 7) against its aligned one (run 1) */
    if ((gqa && (run == 1 || run == 6)) || (mlaAlign && run == 1)) {
      const int k = run == 6;
      formOut[k] = dOut;
      formLse[k] = dLse;
      dOut = NULL;
      dLse = NULL;
    } else if (gqa && (run == 7 || run == 8)) {
      const int k = run == 7;
      EXPECT(formOut[k] && memcmp(formOut[k], dOut, oBytes) == 0 && memcmp(formLse[k], dLse, lBytes) == 0,
             "Hopper GQA merge forms disagree bitwise: run %d (form %d) against run %d, %d splits of >= %d keys", run,
             dp.gqaSm90Workspace, k ? 6 : 1, dp.gqaSm90Splits, dp.gqaSm90ChunkMin);
    } else if (mlaAlign && run == 7) {
      EXPECT(formOut[0] && memcmp(formOut[0], dOut, oBytes) == 0 && memcmp(formLse[0], dLse, lBytes) == 0,
             "Hopper MLA body, one split: out 4 bytes off 16-byte alignment gives other bits than aligned out");
    }
    free(dOut);
    free(dLse);
    cudaFree((void*)dp.queryStart);
    cudaFree((void*)dp.seqLens);
    if (qBase) dp.q = qBase;
    if (outBase) dp.out = outBase;
    attnDevFree(&dp);
  }
  for (int k = 0; k < 2; k++) {
    free(formOut[k]);
    free(formLse[k]);
  }
  free(hp.workspace);
  free(hOut);
  free(hLse);
  free(q);
  free(qFlat);
  tuCacheFree(&c);
}

static void testAttention(void) {
  uint64_t seed = 1000;
  cpclDataType_t types[][2] = {{cpclBfloat16, cpclBfloat16},
                               {cpclFloat16, cpclFloat16},
                               {cpclFloat32, cpclFloat32},
                               {cpclFloat32, cpclBfloat16},
                               {cpclBfloat16, cpclFloat32}};
  for (int i = 0; i < 5; i++) {
    kcase_t k = {types[i][0], types[i][1], 2, 4, 128, 128, 0, 1, 0, 1, 16, 1, 0, 0};
    runAttnCase(&k, seed++);
  }
  /* more than 16 heads a group take the wide tensor-core body (24, 40, 64: 2, 3 and 4 warps) */
  int groups[] = {1, 2, 3, 4, 8, 16, 24, 40, 64};
  for (int i = 0; i < 9; i++) {
    kcase_t k = {cpclBfloat16, cpclBfloat16, 2, groups[i], 64, 64, 0, 1, 0, 1, 16, 0, 0, 0};
    runAttnCase(&k, seed++);
  }
  int pages[] = {1, 16, 64};
  for (int i = 0; i < 3; i++)
    for (int I = 1; I <= 16; I += 15) {
      kcase_t k = {cpclBfloat16, cpclBfloat16, 1, 8, 128, 128, 0, 4, 1, I, pages[i], 1, 0, i == 2};
      runAttnCase(&k, seed++);
      kcase_t k2 = {cpclFloat16, cpclFloat16, 1, 8, 128, 128, 0, 3, 2, I, pages[i], 0, 1, 0};
      runAttnCase(&k2, seed++);
    }
  /* long rows: many splits (and the wide body's split merge of 64 heads) */
  kcase_t lg = {cpclBfloat16, cpclBfloat16, 1, 16, 128, 128, 0, 1, 0, 1, 16, 0, 1, 0};
  runAttnCase(&lg, seed++);
  kcase_t lg64 = {cpclBfloat16, cpclBfloat16, 1, 64, 128, 128, 0, 1, 0, 1, 16, 0, 1, 0};
  runAttnCase(&lg64, seed++);
  kcase_t wide = {cpclFloat16, cpclFloat16, 1, 48, 128, 128, 0, 2, 1, 16, 16, 1, 0, 0};
  runAttnCase(&wide, seed++);
  /* MLA: 576/512 latent, 16 and 128 heads on one KV head */
  kcase_t mla = {cpclBfloat16, cpclBfloat16, 1, 16, 576, 512, 1, 2, 1, 16, 64, 1, 0, 0};
  runAttnCase(&mla, seed++);
  kcase_t mla128 = {cpclBfloat16, cpclBfloat16, 1, 128, 576, 512, 1, 1, 0, 1, 64, 0, 1, 0};
  runAttnCase(&mla128, seed++);
  kcase_t mla32 = {cpclFloat32, cpclFloat32, 1, 8, 576, 512, 1, 1, 0, 1, 16, 1, 0, 1};
  runAttnCase(&mla32, seed++);
  /* MLA on the Hopper body (sm_90; elsewhere these run the CUDA-core body against the same
   * reference): pages 16 and 64 (and 8, 128), 16/64/128 heads, interleave, multi-row sequences,
   * long rows that split, the DCP gathered layout (blocks of 16 heads) and a peer's sub-range,
   * padding sequences, a negative page id */
  const kcase_t mlas[] = {
      {cpclBfloat16, cpclBfloat16, 1, 16, 576, 512, 1, 2, 0, 16, 16, 1, 1, 1, 0, 0, 0, 1, 0},
      {cpclBfloat16, cpclBfloat16, 1, 64, 576, 512, 1, 4, 3, 1, 16, 0, 1, 0, 0, 0, 0, 0, 0},
      {cpclBfloat16, cpclBfloat16, 1, 64, 576, 512, 1, 1, 0, 1, 64, 1, 1, 0, 0, 0, 0, 1, 1},
      {cpclBfloat16, cpclBfloat16, 1, 128, 576, 512, 1, 2, 1, 16, 16, 1, 1, 0, 0, 0, 16, 0, 0},
      {cpclBfloat16, cpclBfloat16, 1, 128, 576, 512, 1, 8, 5, 1, 64, 0, 1, 1, 32, 16, 16, 0, 0},
      {cpclBfloat16, cpclBfloat16, 1, 128, 576, 512, 1, 1, 0, 1, 16, 1, 1, 0, 16, 96, 16, 1, 1},
      {cpclBfloat16, cpclBfloat16, 1, 96, 576, 512, 1, 1, 0, 1, 8, 0, 0, 0, 0, 0, 0, 0, 1},
      {cpclBfloat16, cpclBfloat16, 1, 16, 576, 512, 1, 1, 0, 1, 128, 1, 1, 1, 0, 0, 0, 1, 0},
  };
  for (size_t i = 0; i < sizeof(mlas) / sizeof(mlas[0]); i++) runAttnCase(&mlas[i], seed++);
  /* the CUDA-core bodies report a negative page id too */
  kcase_t badGqa = {cpclBfloat16, cpclBfloat16, 2, 8, 128, 128, 0, 1, 0, 1, 16, 1, 0, 0, 0, 0, 0, 1, 1};
  runAttnCase(&badGqa, seed++);
  /* GQA on the Hopper body (sm_90; elsewhere the tensor-core body against the same reference):
   * groups 1..128, D 64/128, bf16/fp16, pages 1/16/64 (cp.async and TMA copies; 8, 32, 128 and
   * 48, which TMA does not take), multi-row sequences, interleave, long rows in many splits,
   * padding, a negative page id (with one split and with several), base-2 LSE, the DCP block
   * layout and a peer's sub-range */
  const kcase_t gqas[] = {
      {cpclBfloat16, cpclBfloat16, 1, 128, 128, 128, 0, 1, 0, 1, 16, 1, 1, 0, 0, 0, 0, 1, 0},
      {cpclFloat16, cpclFloat16, 1, 96, 64, 64, 0, 2, 1, 16, 64, 1, 1, 0, 0, 0, 0, 1, 1},
      {cpclBfloat16, cpclBfloat16, 2, 32, 128, 128, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1},
      {cpclFloat16, cpclFloat16, 4, 1, 128, 128, 0, 4, 3, 1, 8, 1, 1, 0, 0, 0, 0, 1, 0},
      {cpclBfloat16, cpclBfloat16, 8, 2, 64, 64, 0, 1, 0, 1, 32, 1, 0, 0, 0, 0, 0, 0, 0},
      {cpclBfloat16, cpclBfloat16, 1, 64, 128, 128, 0, 1, 0, 1, 16, 1, 1, 0, 16, 32, 16, 0, 1},
      {cpclFloat16, cpclFloat16, 2, 24, 128, 128, 0, 2, 0, 16, 128, 0, 1, 1, 8, 24, 8, 1, 0},
      {cpclBfloat16, cpclBfloat16, 1, 16, 128, 128, 0, 3, 2, 1, 48, 1, 1, 0, 0, 0, 0, 0, 1},
      {cpclFloat16, cpclFloat16, 2, 48, 64, 64, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0},
      {cpclBfloat16, cpclBfloat16, 1, 8, 128, 128, 0, 1, 0, 1, 64, 0, 1, 0, 0, 0, 0, 0, 1},
      /* the workspace form with wgmma consumers (64-head blocks, TMA pages): G 64 with a negative
       * page id in the first split of a long row and multi-row sequences; a 64-head sub-range of
       * G 128 in blocks of 64 (a peer's heads, wsO indexed from headBegin), base 2; G 64 at D 64
       * fp16, interleaved shards */
      {cpclBfloat16, cpclBfloat16, 1, 64, 128, 128, 0, 1, 0, 1, 16, 1, 1, 0, 0, 0, 0, 0, 1},
      {cpclBfloat16, cpclBfloat16, 1, 128, 128, 128, 0, 1, 0, 1, 16, 0, 1, 1, 64, 64, 64, 0, 0},
      {cpclFloat16, cpclFloat16, 2, 64, 64, 64, 0, 2, 1, 16, 32, 1, 1, 0, 0, 0, 0, 1, 0},
  };
  for (size_t i = 0; i < sizeof(gqas) / sizeof(gqas[0]); i++) runAttnCase(&gqas[i], seed++);
  /* head sub-ranges in blocks (a peer's heads in the pipelined schedule) */
  kcase_t sub = {cpclBfloat16, cpclBfloat16, 2, 8, 128, 128, 0, 2, 0, 1, 16, 1, 0, 0, 4, 4, 4};
  runAttnCase(&sub, seed++);
  kcase_t sub2 = {cpclBfloat16, cpclBfloat16, 1, 32, 64, 64, 0, 2, 1, 1, 16, 0, 1, 0, 8, 8, 8};
  runAttnCase(&sub2, seed++);
}

static void testMergeCorrectStore(void) {
  const int N = 5, T = 7, H = 3, D = 128;
  for (int dt = 0; dt < 3; dt++) {
    for (int base2 = 0; base2 < 2; base2++) {
      const size_t e = tuDtypeSize((cpclDataType_t)dt), part = (size_t)T * H * D;
      char* o = malloc(N * part * e);
      float* lse = malloc(sizeof(float) * N * T * H);
      for (int q = 0; q < N; q++)
        for (int i = 0; i < T * H; i++) {
          double x = tuRand(dt * 10 + base2, q, i, 0, 0) * 20;
          lse[q * T * H + i] = (i + q) % 4 == 0 ? -INFINITY : (float)x;
          for (int d = 0; d < D; d++)
            tuPut(o, (size_t)q * part + (size_t)i * D + d, tuRand(5, q, i, d, 1), (cpclDataType_t)dt);
          if (lse[q * T * H + i] == -INFINITY) memset(o + ((size_t)q * part + (size_t)i * D) * e, 0xff, D * e);
        }
      for (int i = 0; i < H; i++)
        lse[0 * T * H + i] = lse[1 * T * H + i] = lse[2 * T * H + i] = lse[3 * T * H + i] = lse[4 * T * H + i] =
            -INFINITY; /* row 0: all empty */
      void* dO = toDev(o, N * part * e);
      float* dL = toDev(lse, sizeof(float) * N * T * H);
      cpclMergeParams_t m = {.mode = CPCL_MERGE_LSE,
                             .numParts = N,
                             .numTokens = T,
                             .numHeads = H,
                             .headDim = D,
                             .dtype = dt,
                             .lseBase2 = base2,
                             .oTokenStride = (int64_t)H * D,
                             .lseTokenStride = H,
                             .outTokenStride = (int64_t)H * D,
                             .outLseTokenStride = H};
      cpclMergeParams_t hm = m, dm = m;
      for (int q = 0; q < N; q++) {
        hm.o[q] = o + q * part * e;
        hm.lse[q] = lse + q * T * H;
        dm.o[q] = (char*)dO + q * part * e;
        dm.lse[q] = dL + q * T * H;
      }
      char* hOut = malloc(part * e);
      float* hLse = malloc(sizeof(float) * T * H);
      hm.out = hOut;
      hm.outLse = hLse;
      cpclHostMerge(&hm);
      dm.out = devPoison(part * e);
      dm.outLse = devPoison(sizeof(float) * T * H);
      EXPECT(cpclCudaMerge(&dm, NULL) == 0, "merge launch");
      char* dOut = malloc(part * e);
      float* dLse = malloc(sizeof(float) * T * H);
      fromDev(dOut, dm.out, part * e);
      fromDev(dLse, dm.outLse, sizeof(float) * T * H);
      int bad = 0;
      for (size_t i = 0; i < part; i++) {
        double a = tuGet(dOut, i, (cpclDataType_t)dt), b = tuGet(hOut, i, (cpclDataType_t)dt);
        if (!(fabs(a - b) <= tolOf((cpclDataType_t)dt) * (1 + fabs(b)))) bad++;
      }
      for (int i = 0; i < T * H; i++)
        if (!((dLse[i] == -INFINITY && hLse[i] == -INFINITY) ||
              fabsf(dLse[i] - hLse[i]) <= 1e-5f * (1 + fabsf(hLse[i]))))
          bad++;
      EXPECT(bad == 0, "merge dtype %d base2 %d: %d off", dt, base2, bad);
      if (dt != cpclFloat32) { /* 2-byte types take the 16-byte merge; the same partials 2 bytes off
                                * alignment take the per-element one: the bits must agree */
        char* shifted = malloc(N * part * e + e);
        memcpy(shifted + e, o, N * part * e);
        char* dS = toDev(shifted, N * part * e + e);
        cpclMergeParams_t sm = dm;
        for (int q = 0; q < N; q++) sm.o[q] = dS + e + q * part * e;
        sm.out = devPoison(part * e);
        sm.outLse = devPoison(sizeof(float) * T * H);
        EXPECT(cpclCudaMerge(&sm, NULL) == 0, "merge launch (unaligned)");
        char* sOut = malloc(part * e);
        float* sLse = malloc(sizeof(float) * T * H);
        fromDev(sOut, sm.out, part * e);
        fromDev(sLse, sm.outLse, sizeof(float) * T * H);
        EXPECT(memcmp(sOut, dOut, part * e) == 0 && memcmp(sLse, dLse, sizeof(float) * T * H) == 0,
               "merge dtype %d base2 %d: the 16-byte and per-element merges differ", dt, base2);
        cudaFree(dS);
        cudaFree(sm.out);
        cudaFree(sm.outLse);
        free(shifted);
        free(sOut);
        free(sLse);
      }
      /* SUM mode and correction */
      dm.mode = hm.mode = CPCL_MERGE_SUM;
      for (int q = 0; q < N; q++) {
        hm.o[q] = o + q * part * e; /* NaN rows included: a sum does not skip */
      }
      cpclHostMerge(&hm);
      EXPECT(cpclCudaMerge(&dm, NULL) == 0, "sum launch");
      fromDev(dOut, dm.out, part * e);
      bad = 0;
      for (size_t i = 0; i < part; i++) {
        double a = tuGet(dOut, i, (cpclDataType_t)dt), b = tuGet(hOut, i, (cpclDataType_t)dt);
        if (!(isnan(a) && isnan(b)) && !(fabs(a - b) <= tolOf((cpclDataType_t)dt) * (1 + fabs(b)))) bad++;
      }
      EXPECT(bad == 0, "sum dtype %d: %d off", dt, bad);
      cpclCorrectParams_t cp = {.numTokens = T,
                                .numHeads = H,
                                .headDim = D,
                                .dtype = dt,
                                .lseBase2 = base2,
                                .oTokenStride = (int64_t)H * D,
                                .lse = lse,
                                .lseTokenStride = H,
                                .lseGlobal = hLse,
                                .lseGlobalTokenStride = H};
      float* dG = toDev(hLse, sizeof(float) * T * H);
      cpclCorrectParams_t dcp = cp;
      cp.o = o;
      dcp.o = dO;
      dcp.lse = dL;
      dcp.lseGlobal = dG;
      cpclHostCorrect(&cp);
      EXPECT(cpclCudaCorrect(&dcp, NULL) == 0, "correct launch");
      fromDev(dOut, dO, part * e);
      bad = 0;
      for (size_t i = 0; i < part; i++) {
        double a = tuGet(dOut, i, (cpclDataType_t)dt), b = tuGet(o, i, (cpclDataType_t)dt);
        if (!(fabs(a - b) <= tolOf((cpclDataType_t)dt) * (1 + fabs(b)))) bad++;
      }
      EXPECT(bad == 0, "correct dtype %d: %d off", dt, bad);
      cudaFree(dO);
      cudaFree(dL);
      cudaFree(dG);
      cudaFree(dm.out);
      cudaFree(dm.outLse);
      free(o);
      free(lse);
      free(hOut);
      free(hLse);
      free(dOut);
      free(dLse);
    }
  }
  /* KV store: every token of a problem, rank by rank, equals the host store */
  int32_t qs[4] = {0, 40, 47, 48}, lens[3] = {40, 7, 1};
  tuProblem_t pb = {.numSeqs = 3,
                    .numTokens = 48,
                    .queryStart = qs,
                    .seqLens = lens,
                    .Hq = 2,
                    .Hkv = 2,
                    .Dqk = 64,
                    .Dv = 32,
                    .qType = cpclBfloat16,
                    .kvType = cpclBfloat16,
                    .smScale = 0.1f,
                    .seed = 3};
  for (int W = 1; W <= 3; W++)
    for (int r = 0; r < W; r++) {
      tuCache_t want, got;
      tuCacheAlloc(&pb, W, r, 2, 4, &want);
      tuCacheFill(&pb, W, r, 2, &want);
      tuCacheAlloc(&pb, W, r, 2, 4, &got);
      const size_t kRow = 2 * 64 * 2, vRow = 2 * 32 * 2, slots = (size_t)got.numPages * 4;
      char* kNew = malloc(48 * kRow);
      char* vNew = malloc(48 * vRow);
      for (int t = 0; t < 48; t++) {
        int s;
        int64_t p = tuPos(&pb, t, &s);
        for (int h = 0; h < 2; h++) {
          for (int d = 0; d < 64; d++) tuPut(kNew, (t * 2 + h) * 64 + d, tuKv(&pb, 0, s, p, h, d), cpclBfloat16);
          for (int d = 0; d < 32; d++) tuPut(vNew, (t * 2 + h) * 32 + d, tuKv(&pb, 1, s, p, h, d), cpclBfloat16);
        }
      }
      cpclKvStoreParams_t sp = {.numSeqs = 3,
                                .numTokens = 48,
                                .queryStart = toDev(qs, sizeof(qs)),
                                .seqLens = toDev(lens, sizeof(lens)),
                                .blockTable = toDev(got.blockTable, sizeof(int32_t) * got.numPages),
                                .maxPagesPerSeq = got.maxPagesPerSeq,
                                .cpSize = W,
                                .cpRank = r,
                                .interleave = 2,
                                .pageSize = 4,
                                .numKvHeads = 2,
                                .headDimQk = 64,
                                .headDimVo = 32,
                                .kvType = CPCL_K_BF16,
                                .kNew = toDev(kNew, 48 * kRow),
                                .vNew = toDev(vNew, 48 * vRow),
                                .kCache = toDev(got.k, slots * kRow),
                                .vCache = toDev(got.v, slots * vRow)};
      EXPECT(cpclCudaKvStore(&sp, NULL) == 0, "kv store launch");
      fromDev(got.k, sp.kCache, slots * kRow);
      fromDev(got.v, sp.vCache, slots * vRow);
      EXPECT(memcmp(got.k, want.k, slots * kRow) == 0 && memcmp(got.v, want.v, slots * vRow) == 0, "kv store W %d r %d",
             W, r);
      cudaFree((void*)sp.queryStart);
      cudaFree((void*)sp.seqLens);
      cudaFree((void*)sp.blockTable);
      cudaFree((void*)sp.kNew);
      cudaFree((void*)sp.vNew);
      cudaFree(sp.kCache);
      cudaFree(sp.vCache);
      free(kNew);
      free(vNew);
      tuCacheFree(&want);
      tuCacheFree(&got);
    }
}

/* cpclAttnDecode on one GPU rank equals the host path on the same data, every schedule */

static void testPublicApi(void) {
  static const char* algos[] = {"agrs", "a2a", "pipelined"};
  int32_t qs[5] = {0, 1, 4, 6, 7}, lens[4] = {1, 900, 33, 4000};
  for (int latent = 0; latent < 2; latent++) {
    tuProblem_t pb = {.numSeqs = 4,
                      .numTokens = 7,
                      .queryStart = qs,
                      .seqLens = lens,
                      .Hq = 16,
                      .Hkv = latent ? 1 : 2,
                      .Dqk = latent ? 576 : 128,
                      .Dv = latent ? 512 : 128,
                      .latent = latent,
                      .qType = cpclBfloat16,
                      .kvType = cpclBfloat16,
                      .smScale = 0.07f,
                      .seed = 42 + latent};
    tuCache_t c;
    tuCacheAlloc(&pb, 1, 0, 1, 16, &c);
    tuCacheFill(&pb, 1, 0, 1, &c);
    void* q = tuMakeQ(&pb, 0, 16);
    const size_t oBytes = (size_t)7 * 16 * pb.Dv * 2, lBytes = 7 * 16 * 4;
    void* hOut = malloc(oBytes);
    float* hLse = malloc(lBytes);
    EXPECT(tuSingleRank(&pb, 16, 0, hOut, hLse) == cpclSuccess, "host single rank: %s", cpclGetLastError(NULL));
    for (int a = 0; a < 3; a++) {
      cpclComm_t comm;
      EXPECT(tuSelfComm(&comm, 1, cpclMemCuda) == cpclSuccess, "comm: %s", cpclGetLastError(NULL));
      cpclAttnDesc_t desc = tuDesc(&pb, 16, 16);
      desc.algo = algos[a];
      cpclAttnPlan_t plan;
      EXPECT(cpclAttnPlanCreate(&plan, comm, &desc, 8) == cpclSuccess, "plan: %s", cpclGetLastError(NULL));
      const size_t kvRows = (size_t)c.numPages * 16 * pb.Hkv;
      cpclBatch_t b = tuBatch(4, 7, toDev(qs, sizeof(qs)), toDev(lens, sizeof(lens)),
                              toDev(c.blockTable, sizeof(int32_t) * c.numPages), c.maxPagesPerSeq);
      void* dq = toDev(q, (size_t)7 * 16 * pb.Dqk * 2);
      void* dk = toDev(c.k, kvRows * pb.Dqk * 2);
      void* dv = latent ? NULL : toDev(c.v, kvRows * pb.Dv * 2);
      void* dOut = devPoison(oBytes);
      float* dLse = devPoison(lBytes);
      cudaStream_t st;
      CU(cudaStreamCreate(&st));
      EXPECT(cpclAttnDecode(plan, &b, dq, dk, dv, dOut, dLse, st) == cpclSuccess, "decode: %s", cpclGetLastError(comm));
      CU(cudaStreamSynchronize(st));
      void* gOut = malloc(oBytes);
      float* gLse = malloc(lBytes);
      fromDev(gOut, dOut, oBytes);
      fromDev(gLse, dLse, lBytes);
      int bad = 0;
      for (size_t i = 0; i < oBytes / 2; i++)
        if (!(fabs(tuGet(gOut, i, cpclBfloat16) - tuGet(hOut, i, cpclBfloat16)) <= 8e-3)) bad++;
      for (int i = 0; i < 7 * 16; i++)
        if (!(fabsf(gLse[i] - hLse[i]) <= 1e-4f * (1 + fabsf(hLse[i])))) bad++;
      EXPECT(bad == 0, "decode on GPU (%s, latent %d) vs host: %d off", algos[a], latent, bad);
      /* partial + combine gives the same bits as decode */
      void* pOut = devPoison(oBytes);
      float* pLse = devPoison(lBytes);
      void* cOut = devPoison(oBytes);
      float* cLse = devPoison(lBytes);
      EXPECT(cpclAttnPartial(plan, &b, dq, dk, dv, pOut, pLse, st) == cpclSuccess, "partial");
      EXPECT(cpclAttnCombine(plan, 7, pOut, pLse, cOut, cLse, st) == cpclSuccess, "combine");
      CU(cudaStreamSynchronize(st));
      void* cH = malloc(oBytes);
      fromDev(cH, cOut, oBytes);
      int same = memcmp(cH, gOut, oBytes) == 0;
      if (a == 0) { /* agrs rounds the corrected partial: within tolerance, not bitwise */
        same = 1;
        for (size_t i = 0; i < oBytes / 2; i++)
          if (!(fabs(tuGet(cH, i, cpclBfloat16) - tuGet(gOut, i, cpclBfloat16)) <= 8e-3)) same = 0;
      }
      EXPECT(same, "partial + combine != decode (%s, latent %d)", algos[a], latent);
      free(cH);
      cudaFree(pOut);
      cudaFree(pLse);
      cudaFree(cOut);
      cudaFree(cLse);
      free(gOut);
      free(gLse);
      cudaFree(dq);
      cudaFree(dk);
      cudaFree(dv);
      cudaFree(dOut);
      cudaFree(dLse);
      cudaFree((void*)b.queryStart);
      cudaFree((void*)b.seqLens);
      cudaFree((void*)b.blockTable);
      cudaStreamDestroy(st);
      cpclAttnPlanDestroy(plan);
      cpclCommDestroy(comm);
    }
    free(q);
    free(hOut);
    free(hLse);
    tuCacheFree(&c);
  }
}

/* bad batch data in device memory: no out-of-bounds read, rows left empty, the error reported by
 * cpclAttnPlanGetAsyncError and by the next call (once), then the plan works again */
static void testDeviceValidation(void) {
  int32_t qs[3] = {0, 1, 4}, lens[2] = {50, 20};
  tuProblem_t pb = {.numSeqs = 2,
                    .numTokens = 4,
                    .queryStart = qs,
                    .seqLens = lens,
                    .Hq = 4,
                    .Hkv = 2,
                    .Dqk = 64,
                    .Dv = 64,
                    .qType = cpclBfloat16,
                    .kvType = cpclBfloat16,
                    .smScale = 0.12f,
                    .seed = 77};
  tuCache_t c;
  tuCacheAlloc(&pb, 1, 0, 1, 16, &c);
  tuCacheFill(&pb, 1, 0, 1, &c);
  void* q = tuMakeQ(&pb, 0, 4);
  cpclComm_t comm;
  EXPECT(tuSelfComm(&comm, 1, cpclMemCuda) == cpclSuccess, "comm");
  cpclAttnDesc_t desc = tuDesc(&pb, 4, 16);
  cpclAttnPlan_t plan;
  EXPECT(cpclAttnPlanCreate(&plan, comm, &desc, 8) == cpclSuccess, "plan");
  const size_t kvRows = (size_t)c.numPages * 16 * 2, oBytes = 4 * 4 * 64 * 2;
  int32_t* dQs = toDev(qs, sizeof(qs));
  int32_t* dLens = toDev(lens, sizeof(lens));
  cpclBatch_t b = tuBatch(2, 4, dQs, dLens, toDev(c.blockTable, sizeof(int32_t) * c.numPages), c.maxPagesPerSeq);
  void *dq = toDev(q, 4 * 4 * 64 * 2), *dk = toDev(c.k, kvRows * 64 * 2), *dv = toDev(c.v, kvRows * 64 * 2);
  void* dOut = devPoison(oBytes);
  float* dLse = devPoison(4 * 4 * 4);
  struct {
    int32_t lens[2];
    const char* text;
  } cases[] = {{{50, 2}, "seqLens[1] is 2, fewer than its 3 query rows"},
               {{100000, 20}, "sequence 0 holds 100000 local tokens"}};
  for (int i = 0; i < 2; i++) {
    CU(cudaMemcpy(dLens, cases[i].lens, sizeof(lens), cudaMemcpyHostToDevice));
    EXPECT(cpclAttnDecode(plan, &b, dq, dk, dv, dOut, dLse, NULL) == cpclSuccess, "bad device data: the call is async");
    CU(cudaDeviceSynchronize());
    cpclResult_t async = cpclSuccess;
    EXPECT(cpclAttnPlanGetAsyncError(plan, &async) == cpclSuccess && async == cpclInvalidArgument,
           "async error %d after bad device data", async);
    float lse[16];
    fromDev(lse, dLse, sizeof(lse));
    const int badRow = i == 0 ? 1 : 0; /* first row of the bad sequence */
    EXPECT(lse[badRow * 4] == -INFINITY, "a row with bad data is left empty (lse %g)", lse[badRow * 4]);
    CU(cudaMemcpy(dLens, lens, sizeof(lens), cudaMemcpyHostToDevice));
    EXPECT(cpclAttnDecode(plan, &b, dq, dk, dv, dOut, dLse, NULL) == cpclInvalidArgument, "next call reports it");
    EXPECT(strstr(cpclGetLastError(comm), cases[i].text) != NULL, "message: %s", cpclGetLastError(comm));
    EXPECT(cpclAttnDecode(plan, &b, dq, dk, dv, dOut, dLse, NULL) == cpclSuccess, "then the plan works: %s",
           cpclGetLastError(comm));
    CU(cudaDeviceSynchronize());
    EXPECT(cpclAttnPlanGetAsyncError(plan, &async) == cpclSuccess && async == cpclSuccess, "clean again");
  }
  /* the KV store: a local index past the block-table row is refused, not written */
  int32_t bigLens[2] = {50, 20000};
  CU(cudaMemcpy(dLens, bigLens, sizeof(bigLens), cudaMemcpyHostToDevice));
  void* kNew = devPoison(4 * 2 * 64 * 2);
  EXPECT(cpclKvStore(plan, &b, kNew, kNew, dk, dv, NULL) == cpclSuccess, "kv store is async");
  CU(cudaDeviceSynchronize());
  cpclResult_t async = cpclSuccess;
  cpclAttnPlanGetAsyncError(plan, &async);
  EXPECT(async == cpclInvalidArgument, "kv store with bad device data: %d", async);
  EXPECT(cpclKvStore(plan, &b, kNew, kNew, dk, dv, NULL) == cpclInvalidArgument, "next call reports it");
  cudaFree(kNew);
  cudaFree(dq);
  cudaFree(dk);
  cudaFree(dv);
  cudaFree(dOut);
  cudaFree(dLse);
  cudaFree(dQs);
  cudaFree(dLens);
  cudaFree((void*)b.blockTable);
  cpclAttnPlanDestroy(plan);
  cpclCommDestroy(comm);
  free(q);
  tuCacheFree(&c);
}

/* A negative page id inside one KV split of a row that is cut into several: the split that meets
 * it reports it, the last CTA of the row sees its mark and leaves the whole row empty (not the
 * merge of the other splits), other rows are untouched (bitwise), and the split counters are
 * re-armed (the next clean call matches the first). Each attention body: 16-head tensor-core,
 * the wide 64-head one (plans of 8 rows), the CUDA-core one (fp32), and MLA 576/512 (on sm_90 the
 * Hopper body: its split meets the page, marks its partial, and the merge empties the row). */
static void testNegativePageInSplit(void) {
  const struct {
    int Hq, Hkv, D, Dv, latent;
    cpclDataType_t dt;
  } cfg[] = {{16, 1, 128, 128, 0, cpclBfloat16},
             {64, 1, 128, 128, 0, cpclBfloat16},
             {4, 2, 64, 64, 0, cpclFloat32},
             {16, 1, 576, 512, 1, cpclBfloat16},
             {128, 1, 576, 512, 1, cpclBfloat16}};
  for (int ci = 0; ci < (int)(sizeof(cfg) / sizeof(cfg[0])); ci++) {
    int32_t qs[3] = {0, 1, 2}, lens[2] = {3000, 2000};
    tuProblem_t pb = {.numSeqs = 2,
                      .numTokens = 2,
                      .queryStart = qs,
                      .seqLens = lens,
                      .Hq = cfg[ci].Hq,
                      .Hkv = cfg[ci].Hkv,
                      .Dqk = cfg[ci].D,
                      .Dv = cfg[ci].Dv,
                      .latent = cfg[ci].latent,
                      .qType = cfg[ci].dt,
                      .kvType = cfg[ci].dt,
                      .smScale = 0.09f,
                      .seed = 1234 + ci};
    tuCache_t c;
    tuCacheAlloc(&pb, 1, 0, 1, 16, &c);
    tuCacheFill(&pb, 1, 0, 1, &c);
    const int H = pb.Hq, D = pb.Dv;
    const size_t es = tuDtypeSize(pb.qType), kvRows = (size_t)c.numPages * 16 * pb.Hkv;
    void* q = tuMakeQ(&pb, 0, H);
    cpclComm_t comm;
    EXPECT(tuSelfComm(&comm, 1, cpclMemCuda) == cpclSuccess, "comm");
    cpclAttnDesc_t desc = tuDesc(&pb, H, 16);
    cpclAttnPlan_t plan;
    EXPECT(cpclAttnPlanCreate(&plan, comm, &desc, 8) == cpclSuccess, "plan: %s", cpclGetLastError(comm));
    int32_t* dLens = toDev(lens, sizeof(lens));
    int32_t* dBt = toDev(c.blockTable, sizeof(int32_t) * 2 * c.maxPagesPerSeq);
    cpclBatch_t b = tuBatch(2, 2, NULL, dLens, dBt, c.maxPagesPerSeq);
    const int Dq = pb.Dqk;
    void *dq = toDev(q, 2 * (size_t)H * Dq * es), *dk = toDev(c.k, kvRows * Dq * es);
    void* dv = pb.latent ? NULL : toDev(c.v, kvRows * D * es); /* MLA: V is the first Dv dims of K */
    const size_t oBytes = 2 * (size_t)H * D * es;
    void* dOut = devPoison(oBytes);
    float* dLse = devPoison(2 * H * sizeof(float));
    char *good = malloc(oBytes), *got = malloc(oBytes);
    float *goodLse = malloc(2 * H * sizeof(float)), *gotLse = malloc(2 * H * sizeof(float));
    EXPECT(cpclAttnDecode(plan, &b, dq, dk, dv, dOut, dLse, NULL) == cpclSuccess, "clean call");
    CU(cudaDeviceSynchronize());
    fromDev(good, dOut, oBytes);
    fromDev(goodLse, dLse, 2 * H * sizeof(float));
    const int32_t badPage = -7, at = 100; /* key 1600 of 3000: an inner split */
    CU(cudaMemcpy(dBt + at, &badPage, sizeof(badPage), cudaMemcpyHostToDevice));
    EXPECT(cpclAttnDecode(plan, &b, dq, dk, dv, dOut, dLse, NULL) == cpclSuccess, "the call is async");
    CU(cudaDeviceSynchronize());
    cpclResult_t async = cpclSuccess;
    EXPECT(cpclAttnPlanGetAsyncError(plan, &async) == cpclSuccess && async == cpclInvalidArgument,
           "cfg %d: async error %d after a negative page id", ci, async);
    fromDev(got, dOut, oBytes);
    fromDev(gotLse, dLse, 2 * H * sizeof(float));
    int off = 0;
    for (int h = 0; h < H; h++) {
      if (gotLse[h] != -INFINITY) off++;
      for (int d = 0; d < D; d++)
        if (tuGet(got, (size_t)h * D + d, pb.qType) != 0.0) off++;
    }
    EXPECT(off == 0, "cfg %d: the row with the bad page id is empty (%d elements not)", ci, off);
    EXPECT(memcmp(got + oBytes / 2, good + oBytes / 2, oBytes / 2) == 0 &&
               memcmp(gotLse + H, goodLse + H, H * sizeof(float)) == 0,
           "cfg %d: the other row is untouched", ci);
    CU(cudaMemcpy(dBt + at, c.blockTable + at, sizeof(int32_t), cudaMemcpyHostToDevice));
    EXPECT(cpclAttnDecode(plan, &b, dq, dk, dv, dOut, dLse, NULL) == cpclInvalidArgument, "next call reports it");
    EXPECT(strstr(cpclGetLastError(comm), "batch->blockTable[0][100] is -7") != NULL, "message: %s",
           cpclGetLastError(comm));
    EXPECT(cpclAttnDecode(plan, &b, dq, dk, dv, dOut, dLse, NULL) == cpclSuccess, "then the plan works");
    CU(cudaDeviceSynchronize());
    fromDev(got, dOut, oBytes);
    EXPECT(memcmp(got, good, oBytes) == 0, "cfg %d: counters re-armed: the clean call repeats bitwise", ci);
    free(good), free(got), free(goodLse), free(gotLse), free(q);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dOut), cudaFree(dLse), cudaFree(dLens), cudaFree(dBt);
    cpclAttnPlanDestroy(plan);
    cpclCommDestroy(comm);
    tuCacheFree(&c);
  }
}

/* Sparse attention (DESIGN.md §4.3): the CUDA top-k filter against the host filter (bitwise: the
 * same lists and counts), and the attention over those lists against the host sparse kernel: the
 * launcher's choice (the Hopper MLA body's sparse form for bf16 MLA on compute capability 9.0,
 * with the plan's splits and with one; the CUDA-core body elsewhere) and the CUDA-core body
 * (cudaCoresOnly). A dense body taking a sparse call would give the whole prefix's answer. W > 1
 * is simulated with rank r. A negative page id among a row's listed keys leaves the row empty and
 * is recorded. On the Hopper body every sparse schedule runs (cpclMlaSm90SetSparseVariant: 11,
 * and session 4's gather in 17, 18 and 20); 17 is 11's schedule over the same rows, and 20 18's
 * arithmetic in the same order, so their outputs and lse must be 11's and 18's bit for bit. */
typedef struct {
  cpclDataType_t type;
  int Hkv, G, Dqk, Dv, latent;
  int W, r, I, pageSize, K;
  int badPage; /* sequence 3's page of its first kept key is negative */
} scase_t;

/* elements of n (row, head) outputs of Dv and their LSEs off the host's beyond the type's tolerance */
static int sparseOff(const void* dOut, const float* dLse, const void* hOut, const float* hLse, size_t n, int Dv,
                     cpclDataType_t type) {
  const double tol = tolOf(type);
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    for (int d = 0; d < Dv; d++) {
      const double a = tuGet(dOut, i * Dv + d, type), b = tuGet(hOut, i * Dv + d, type);
      bad += !(fabs(a - b) <= tol * (1 + fabs(b)));
    }
    bad +=
        !((dLse[i] == -INFINITY && hLse[i] == -INFINITY) || fabsf(dLse[i] - hLse[i]) <= 1e-4f * (1 + fabsf(hLse[i])));
  }
  return bad;
}

static void runSparseCase(const scase_t* sc, uint64_t seed) {
  const int K = sc->K;
  const int lensBase[6] = {1, 4, 40, K + 30, 3 * K + 11, 0}; /* the last is padding */
  static const int rows[6] = {1, 2, 1, 3, 2, 2};
  const int S = 6;
  int32_t qs[7], lens[6];
  qs[0] = 0;
  for (int s = 0; s < S; s++) {
    lens[s] = lensBase[s] ? lensBase[s] + rows[s] - 1 : 0;
    qs[s + 1] = qs[s] + rows[s];
  }
  tuProblem_t pb = {.numSeqs = S,
                    .numTokens = qs[S],
                    .queryStart = qs,
                    .seqLens = lens,
                    .Hq = sc->Hkv * sc->G,
                    .Hkv = sc->Hkv,
                    .Dqk = sc->Dqk,
                    .Dv = sc->Dv,
                    .latent = sc->latent,
                    .qType = sc->type,
                    .kvType = sc->type,
                    .smScale = (float)(1.0 / sqrt((double)sc->Dqk)),
                    .seed = seed};
  const int T = pb.numTokens, Hq = pb.Hq, Dv = pb.Dv;
  int32_t* list = tuMakeTopk(&pb, K, seed, 0);
  tuCache_t c;
  tuCacheAlloc(&pb, sc->W, sc->r, sc->I, sc->pageSize, &c);
  tuCacheFill(&pb, sc->W, sc->r, sc->I, &c);
  const size_t qe = tuDtypeSize(pb.qType), ke = tuDtypeSize(pb.kvType), listBytes = sizeof(int32_t) * (size_t)T * K;
  void* q = tuMakeQ(&pb, 0, Hq);

  /* host filter and kernel */
  int32_t* hIdx = malloc(listBytes);
  int32_t* hCnt = malloc(sizeof(int32_t) * (size_t)T);
  cpclTopkFilterParams_t f = {.numSeqs = S,
                              .numTokens = T,
                              .queryStart = qs,
                              .seqLens = lens,
                              .topk = K,
                              .topkIndices = list,
                              .cpSize = sc->W,
                              .cpRank = sc->r,
                              .interleave = sc->I,
                              .localIdx = hIdx,
                              .count = hCnt};
  cpclHostTopkFilter(&f);
  const int badSeq = 3;
  int badRowFirst = -1;
  for (int t = qs[badSeq]; t < qs[badSeq + 1] && badRowFirst < 0; t++)
    if (hCnt[t] > 0) badRowFirst = t;
  const int badPageIdx = badRowFirst >= 0 ? hIdx[(size_t)badRowFirst * K] / sc->pageSize : -1;
  cpclAttnParams_t p = {.numSeqs = S,
                        .numTokens = T,
                        .queryStart = qs,
                        .seqLens = lens,
                        .blockTable = c.blockTable,
                        .maxPagesPerSeq = c.maxPagesPerSeq,
                        .cpSize = sc->W,
                        .cpRank = sc->r,
                        .interleave = sc->I,
                        .pageSize = sc->pageSize,
                        .numKvHeads = pb.Hkv,
                        .headDimQk = pb.Dqk,
                        .headDimVo = Dv,
                        .latentKv = pb.latent,
                        .groupSize = sc->G,
                        .numHeads = Hq,
                        .headsPerBlock = Hq,
                        .smScale = pb.smScale,
                        .qType = pb.qType,
                        .kvType = pb.kvType,
                        .q = q,
                        .qTokenStride = (int64_t)Hq * pb.Dqk,
                        .kCache = c.k,
                        .vCache = c.v,
                        .oTokenStride = (int64_t)Hq * Dv,
                        .lseTokenStride = Hq,
                        .sparseIdx = hIdx,
                        .sparseCount = hCnt,
                        .sparseStride = K};
  const size_t oBytes = (size_t)T * Hq * Dv * qe, lBytes = sizeof(float) * (size_t)T * Hq;
  void* hOut = malloc(oBytes);
  float* hLse = malloc(lBytes);
  memset(hOut, 0xff, oBytes);
  memset(hLse, 0xff, lBytes);
  cpclAttnParams_t hp = p;
  hp.out = hOut;
  hp.lse = hLse;
  hp.workspaceBytes = cpclHostAttnWorkspaceBytes(pb.Dqk, Dv);
  hp.workspace = malloc(hp.workspaceBytes);
  cpclHostAttn(&hp);
  if (sc->badPage && badRowFirst >= 0) /* the device sees a negative id there: the rows that list it are empty */
    for (int t = qs[badSeq]; t < qs[badSeq + 1]; t++) {
      int lists = 0;
      for (int k = 0; k < hCnt[t]; k++) lists |= hIdx[(size_t)t * K + k] / sc->pageSize == badPageIdx;
      if (!lists) continue;
      for (int g = 0; g < Hq; g++) {
        memset((char*)hOut + ((size_t)t * Hq + g) * Dv * qe, 0, (size_t)Dv * qe);
        hLse[(size_t)t * Hq + g] = -INFINITY;
      }
    }

  /* the CUDA filter: the host's lists, bit for bit (entries past each count unspecified) */
  cpclTopkFilterParams_t df = f;
  df.queryStart = toDev(qs, sizeof(qs));
  df.seqLens = toDev(lens, sizeof(lens));
  df.topkIndices = toDev(list, listBytes);
  df.localIdx = devPoison(listBytes);
  df.count = devPoison(sizeof(int32_t) * (size_t)T);
  CU(cudaMalloc((void**)&df.errorFlag, CPCL_KERR_WORDS * sizeof(int)));
  CU(cudaMemset(df.errorFlag, 0, CPCL_KERR_WORDS * sizeof(int)));
  int err = cpclCudaTopkFilter(&df, NULL);
  EXPECT(err == 0, "top-k filter launch: %s (%s)", cudaGetErrorString((cudaError_t)err), cpclCudaKernelErrorDetail());
  CU(cudaDeviceSynchronize());
  {
    int32_t* dIdx = malloc(listBytes);
    int32_t* dCnt = malloc(sizeof(int32_t) * (size_t)T);
    fromDev(dIdx, df.localIdx, listBytes);
    fromDev(dCnt, df.count, sizeof(int32_t) * (size_t)T);
    int bad = 0;
    for (int t = 0; t < T; t++) {
      bad += dCnt[t] != hCnt[t];
      for (int k = 0; k < hCnt[t] && dCnt[t] == hCnt[t]; k++) bad += dIdx[(size_t)t * K + k] != hIdx[(size_t)t * K + k];
    }
    EXPECT(bad == 0, "CUDA top-k filter K %d W %d r %d I %d: %d entries differ from the host's", K, sc->W, sc->r, sc->I,
           bad);
    int flag[CPCL_KERR_WORDS];
    fromDev(flag, df.errorFlag, sizeof(flag));
    EXPECT(flag[0] == CPCL_KERR_NONE, "top-k filter recorded error %d on good data (padding included)", flag[0]);
    free(dIdx);
    free(dCnt);
  }

  /* the CUDA-core body over the device lists */
  int sm90 = 0;
  {
    cpclAttnParams_t shape = p;
    sm90 = cpclCudaAttnMlaSm90Splits(&shape, T);
  }
  static const int sparseVariants[4] = {11, 17, 18, 20};
  const int firstVariant = sm90 ? cpclMlaSm90SetSparseVariant(-1) : 0;
  void* v11Out = malloc(oBytes);
  float* v11Lse = malloc(lBytes);
  void* v18Out = malloc(oBytes);
  float* v18Lse = malloc(lBytes);
  for (int run = 0; run < 3; run++)
    for (int vi = 0; vi < (sm90 && run != 2 ? 4 : 1); vi++) {
      const int variant = sm90 && run != 2 ? sparseVariants[vi] : 0;
      if (variant) cpclMlaSm90SetSparseVariant(variant);
      const int splits = run == 1 ? 1 : 64;
      cpclAttnParams_t dp = p;
      dp.cudaCoresOnly = run == 2;
      dp.queryStart = df.queryStart;
      dp.seqLens = df.seqLens;
      dp.blockTable = toDev(c.blockTable, sizeof(int32_t) * (size_t)c.numPages);
      if (sc->badPage && badPageIdx >= 0) {
        const int32_t neg = -9;
        CU(cudaMemcpy((int32_t*)dp.blockTable + badSeq * c.maxPagesPerSeq + badPageIdx, &neg, sizeof(neg),
                      cudaMemcpyHostToDevice));
      }
      dp.sparseIdx = df.localIdx;
      dp.sparseCount = df.count;
      dp.mlaSm90Splits = sm90 ? (run == 1 ? 1 : sm90) : 0; /* as a plan of this shape passes it */
      CU(cudaMalloc((void**)&dp.errorFlag, CPCL_KERR_WORDS * sizeof(int)));
      CU(cudaMemset(dp.errorFlag, 0, CPCL_KERR_WORDS * sizeof(int)));
      const size_t kvRows = (size_t)c.numPages * sc->pageSize * pb.Hkv;
      dp.q = toDev(q, (size_t)T * Hq * pb.Dqk * qe);
      dp.kCache = toDev(c.k, kvRows * pb.Dqk * ke);
      dp.vCache = pb.latent ? NULL : toDev(c.v, kvRows * Dv * ke);
      dp.out = devPoison(oBytes);
      dp.lse = devPoison(lBytes);
      dp.maxSplits = splits;
      dp.splitChunkMin = run ? 0 : 32; /* many splits of short lists */
      dp.workspaceBytes = cpclCudaAttnWorkspaceBytes(T, Hq, Dv, splits);
      if (dp.mlaSm90Splits) {
        const size_t need = cpclCudaAttnMlaSm90WorkspaceBytes(T, Hq, dp.mlaSm90Splits);
        if (need > dp.workspaceBytes) dp.workspaceBytes = need;
      }
      dp.workspace = devPoison(dp.workspaceBytes);
      const size_t nCounters = cpclCudaAttnCounterCount(T, Hq);
      CU(cudaMalloc((void**)&dp.splitCounters, nCounters * sizeof(unsigned)));
      CU(cudaMemset(dp.splitCounters, 0, nCounters * sizeof(unsigned)));
      err = cpclCudaAttn(&dp, NULL);
      EXPECT(err == 0, "sparse attention launch: %s (%s)", cudaGetErrorString((cudaError_t)err),
             cpclCudaKernelErrorDetail());
      CU(cudaDeviceSynchronize());
      int flag[CPCL_KERR_WORDS];
      fromDev(flag, dp.errorFlag, sizeof(flag));
      if (sc->badPage && badPageIdx >= 0)
        EXPECT(flag[0] == CPCL_KERR_PAGE && flag[1] == badSeq && flag[2] == -9 && flag[3] == badPageIdx,
               "sparse: negative page id recorded as code %d seq %d value %d limit %d (cores-only %d mla-sm90 %d)",
               flag[0], flag[1], flag[2], flag[3], dp.cudaCoresOnly, dp.mlaSm90Splits);
      else
        EXPECT(flag[0] == CPCL_KERR_NONE, "sparse: error %d recorded on good data", flag[0]);
      void* dOut = malloc(oBytes);
      float* dLse = malloc(lBytes);
      fromDev(dOut, dp.out, oBytes);
      fromDev(dLse, dp.lse, lBytes);
      const int bad = sparseOff(dOut, dLse, hOut, hLse, (size_t)T * Hq, Dv, pb.qType);
      EXPECT(bad == 0,
             "sparse attention type %d Hkv %d G %d D %d/%d latent %d W %d r %d I %d page %d K %d splits %d "
             "cores-only %d mla-sm90 %d (sparse variant %d) bad page %d: %d elements off",
             pb.qType, pb.Hkv, sc->G, pb.Dqk, Dv, pb.latent, sc->W, sc->r, sc->I, sc->pageSize, K, splits,
             dp.cudaCoresOnly, dp.mlaSm90Splits, variant, sc->badPage, bad);
      if (variant == 17 || variant == 18 || variant == 20) {
        /* the filter inside the attention (attn_params.h topkRaw, docs/MLA_SM90.md "Session 19"): the
         * batch's raw lists, the body's own scratch lists and counts, poisoned; the filter kernel's
         * entries, so this launch's bits, and the same record of a bad page */
        const int nc = (Hq + 63) / 64;
        cpclAttnParams_t rp = dp;
        rp.topkRaw = df.topkIndices;
        rp.sparseIdx = devPoison(sizeof(int32_t) * (size_t)T * nc * K);
        rp.sparseCount = devPoison(sizeof(int32_t) * (size_t)T);
        rp.out = devPoison(oBytes);
        rp.lse = devPoison(lBytes);
        CU(cudaMemset(rp.errorFlag, 0, CPCL_KERR_WORDS * sizeof(int)));
        err = cpclCudaAttn(&rp, NULL);
        EXPECT(err == 0, "sparse attention, filter inside (variant %d): %s (%s)", variant,
               cudaGetErrorString((cudaError_t)err), cpclCudaKernelErrorDetail());
        CU(cudaDeviceSynchronize());
        void* rOut = malloc(oBytes);
        float* rLse = malloc(lBytes);
        int32_t* rCnt = malloc(sizeof(int32_t) * (size_t)T);
        int32_t* fCnt = malloc(sizeof(int32_t) * (size_t)T);
        int rFlag[CPCL_KERR_WORDS];
        fromDev(rOut, rp.out, oBytes);
        fromDev(rLse, rp.lse, lBytes);
        fromDev(rCnt, rp.sparseCount, sizeof(int32_t) * (size_t)T);
        fromDev(fCnt, df.count, sizeof(int32_t) * (size_t)T);
        fromDev(rFlag, rp.errorFlag, sizeof(rFlag));
        EXPECT(
            memcmp(rOut, dOut, oBytes) == 0 && memcmp(rLse, dLse, lBytes) == 0,
            "sparse variant %d filtering inside the attention differs from the filter kernel's lists bitwise: K %d W "
            "%d r %d I %d page %d mla-sm90 splits %d",
            variant, K, sc->W, sc->r, sc->I, sc->pageSize, dp.mlaSm90Splits);
        EXPECT(memcmp(rCnt, fCnt, sizeof(int32_t) * (size_t)T) == 0,
               "sparse variant %d filtering inside: its counts differ from the filter kernel's", variant);
        EXPECT(memcmp(rFlag, flag, sizeof(rFlag)) == 0,
               "sparse variant %d filtering inside: error record %d against the filter path's %d", variant, rFlag[0],
               flag[0]);
        /* a call the Hopper body does not take: the filter kernel into the scratch, then the CUDA-core
         * body (never a body over unfiltered lists) */
        cpclAttnParams_t cp = rp;
        cp.cudaCoresOnly = 1;
        CU(cudaMemset(cp.out, 0xff, oBytes));
        CU(cudaMemset(cp.lse, 0xff, lBytes));
        const int ce = cpclCudaAttn(&cp, NULL);
        EXPECT(ce == 0, "topkRaw on the CUDA-core body: %d (%s)", ce, cpclCudaKernelErrorDetail());
        CU(cudaDeviceSynchronize());
        fromDev(rOut, cp.out, oBytes);
        fromDev(rLse, cp.lse, lBytes);
        const int cbad = sparseOff(rOut, rLse, hOut, hLse, (size_t)T * Hq, Dv, pb.qType);
        EXPECT(cbad == 0, "topkRaw on the CUDA-core body (the filter kernel first): %d elements off", cbad);
        free(rOut);
        free(rLse);
        free(rCnt);
        free(fCnt);
        cudaFree((void*)rp.sparseIdx);
        cudaFree((void*)rp.sparseCount);
        cudaFree(rp.out);
        cudaFree(rp.lse);
      }
      if (variant == 11) {
        memcpy(v11Out, dOut, oBytes);
        memcpy(v11Lse, dLse, lBytes);
      } else if (variant == 17) {
        EXPECT(memcmp(v11Out, dOut, oBytes) == 0 && memcmp(v11Lse, dLse, lBytes) == 0,
               "sparse variant 17 differs from 11 bitwise (the same schedule over the same rows): K %d W %d r %d I %d "
               "page %d mla-sm90 splits %d",
               K, sc->W, sc->r, sc->I, sc->pageSize, dp.mlaSm90Splits);
      } else if (variant == 18) {
        memcpy(v18Out, dOut, oBytes);
        memcpy(v18Lse, dLse, lBytes);
      } else if (variant == 20) {
        EXPECT(memcmp(v18Out, dOut, oBytes) == 0 && memcmp(v18Lse, dLse, lBytes) == 0,
               "sparse variant 20 differs from 18 bitwise (18's arithmetic in the same order, fewer waits): K %d W %d "
               "r %d I %d page %d mla-sm90 splits %d",
               K, sc->W, sc->r, sc->I, sc->pageSize, dp.mlaSm90Splits);
      }
      free(dOut);
      free(dLse);
      attnDevFree(&dp); /* its row starts and lengths are df's, freed below */
    }
  if (sm90) cpclMlaSm90SetSparseVariant(firstVariant);
  free(v11Out);
  free(v11Lse);
  free(v18Out);
  free(v18Lse);
  cudaFree((void*)df.queryStart);
  cudaFree((void*)df.seqLens);
  cudaFree((void*)df.topkIndices);
  cudaFree(df.localIdx);
  cudaFree(df.count);
  cudaFree(df.errorFlag);
  free(hp.workspace);
  free(hOut);
  free(hLse);
  free(hIdx);
  free(hCnt);
  free(list);
  free(q);
  tuCacheFree(&c);
}

static void testSparse(void) {
  uint64_t seed = 5000;
  const scase_t cases[] = {
      /* MLA, DeepSeek-V3.2 shapes: 16 and 128 gathered heads, K 2048 */
      {cpclBfloat16, 1, 16, 576, 512, 1, 1, 0, 1, 64, 2048, 0},
      {cpclBfloat16, 1, 128, 576, 512, 1, 4, 1, 1, 64, 2048, 0},
      {cpclBfloat16, 1, 16, 576, 512, 1, 4, 3, 16, 16, 256, 0},
      {cpclBfloat16, 1, 16, 576, 512, 1, 2, 1, 16, 64, 64, 1},
      {cpclBfloat16, 1, 16, 576, 512, 1, 2, 0, 1, 64, 3077, 0}, /* two rounds of the in-attention filter's scan */
      /* GQA, every dtype; page 1; interleave 16 */
      {cpclBfloat16, 2, 8, 128, 128, 0, 3, 2, 1, 1, 128, 0},
      {cpclFloat16, 2, 4, 64, 64, 0, 2, 0, 16, 16, 16, 0},
      {cpclFloat32, 1, 2, 64, 64, 0, 4, 3, 16, 16, 512, 0},
      {cpclFloat32, 2, 3, 32, 32, 0, 1, 0, 1, 16, 2048, 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) runSparseCase(&cases[i], seed++);
}

int main(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    printf("SKIP: no CUDA device here; the gpu suite runs on the GPU machine\n");
    return 77;
  }
  testAttention();
  testMergeCorrectStore();
  testPublicApi();
  testDeviceValidation();
  testNegativePageInSplit();
  testSparse();
  printf("test_gpu_kernels: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
