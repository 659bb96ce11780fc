/* Unit: the host reference kernels against a naive fp64 attention over the unsharded sequence:
 * every rank's partial against the keys it owns, the merge of all partials against the whole
 * sequence; every dtype, GQA groups 1..16, MLA dims, page sizes 1/5/16, interleave, base 2,
 * multi-row sequences, empty shards. Outputs are poisoned (NaN) before each run. Also the merge
 * edge cases and the KV store. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "attn_params.h"
#include "kvstore_params.h"
#include "merge_params.h"
#include "kernelutil.h"
#include "testutil.h"

static double tolOf(cpclDataType_t t) { return t == cpclFloat32 ? 1e-4 : t == cpclFloat16 ? 1.5e-3 : 6e-3; }

typedef struct {
  cpclDataType_t qType, kvType;
  int Hkv, G, Dqk, Dv, latent;
  int W, I, pageSize, base2, multiRow;
} refCase_t;

static void setupProblem(const refCase_t* rc, tuProblem_t* pb, int32_t* qs, int32_t* lens) {
  /* mixed lengths: empty shards (shorter than W*I), one key, long */
  static const int baseLens[] = {1, 2, 5, 37, 70, 129};
  static const int rowsMulti[] = {1, 3, 2, 1, 4, 2};
  int S = 6;
  qs[0] = 0;
  for (int s = 0; s < S; s++) {
    int rows = rc->multiRow ? rowsMulti[s] : 1;
    lens[s] = baseLens[s] + rows - 1;
    qs[s + 1] = qs[s] + rows;
  }
  memset(pb, 0, sizeof(*pb));
  pb->numSeqs = S;
  pb->numTokens = qs[S];
  pb->queryStart = qs;
  pb->seqLens = lens;
  pb->Hkv = rc->Hkv;
  pb->Hq = rc->Hkv * rc->G;
  pb->Dqk = rc->Dqk;
  pb->Dv = rc->Dv;
  pb->latent = rc->latent;
  pb->qType = rc->qType;
  pb->kvType = rc->kvType;
  pb->smScale = (float)(1.0 / sqrt((double)rc->Dqk));
  pb->seed = 1234 + rc->G * 7 + rc->Dqk + rc->W * 31 + rc->I;
}

static void runCase(const refCase_t* rc) {
  int32_t qs[8], lens[8];
  tuProblem_t pb;
  setupProblem(rc, &pb, qs, lens);
  const int T = pb.numTokens, Hq = pb.Hq, Dv = pb.Dv, W = rc->W;
  const size_t es = tuDtypeSize(pb.qType);
  const double tol = tolOf(pb.qType), lseScale = rc->base2 ? 1.0 / log(2.0) : 1.0;
  void* q = tuMakeQ(&pb, 0, Hq);
  void* ws = malloc(cpclHostAttnWorkspaceBytes(pb.Dqk, pb.Dv));
  void* outs = malloc((size_t)W * T * Hq * Dv * es);
  float* lses = malloc(sizeof(float) * (size_t)W * T * Hq);
  double* o = malloc(sizeof(double) * (size_t)Dv);
  memset(outs, 0xff, (size_t)W * T * Hq * Dv * es);
  memset(lses, 0xff, sizeof(float) * (size_t)W * T * Hq);
  double worst = 0;
  for (int r = 0; r < W; r++) {
    tuCache_t c;
    tuCacheAlloc(&pb, W, r, rc->I, rc->pageSize, &c);
    tuCacheFill(&pb, W, r, rc->I, &c);
    cpclAttnParams_t p;
    char* outR = (char*)outs + (size_t)r * T * Hq * Dv * es;
    tuAttnParams(&pb, &c, W, r, rc->I, q, outR, lses + (size_t)r * T * Hq, ws, &p);
    p.lseBase2 = rc->base2;
    cpclHostAttn(&p);
    for (int t = 0; t < T; t++)
      for (int g = 0; g < Hq; g++) {
        double want = tuNaive(&pb, t, g, W, r, rc->I, 1, o);
        float got = lses[((size_t)r * T + t) * Hq + g];
        if (want == -INFINITY) {
          assert_true(got == -INFINITY);
        } else {
          assert_true(fabs(got - want * lseScale) < 1e-3 * (1 + fabs(want)));
        }
        for (int d = 0; d < Dv; d++) {
          double e = fabs(tuGet(outR, ((size_t)t * Hq + g) * Dv + d, pb.qType) - o[d]);
          if (!(e <= tol))
            fail_msg("partial rank %d row %d head %d dim %d: got %g want %g", r, t, g, d,
                     tuGet(outR, ((size_t)t * Hq + g) * Dv + d, pb.qType), o[d]);
          worst = e > worst ? e : worst;
        }
      }
    /* the same heads computed in two halves, addressed by blocks, give the same bits */
    if (Hq % 2 == 0) {
      void* half = malloc((size_t)T * Hq * Dv * es);
      float* halfLse = malloc(sizeof(float) * (size_t)T * Hq);
      memset(half, 0xff, (size_t)T * Hq * Dv * es);
      for (int b = 0; b < 2; b++) {
        cpclAttnParams_t hp;
        tuAttnParams(&pb, &c, W, r, rc->I, q, half, halfLse, ws, &hp);
        hp.lseBase2 = rc->base2;
        hp.headBegin = b * Hq / 2;
        hp.numHeads = Hq / 2;
        hp.headsPerBlock = Hq / 2;
        hp.qBlockStride = (int64_t)(Hq / 2) * pb.Dqk; /* [T][2][Hq/2][D] == [T][Hq][D] */
        hp.oBlockStride = (int64_t)(Hq / 2) * Dv;
        hp.lseBlockStride = Hq / 2;
        cpclHostAttn(&hp);
      }
      assert_memory_equal(half, outR, (size_t)T * Hq * Dv * es);
      assert_memory_equal(halfLse, lses + (size_t)r * T * Hq, sizeof(float) * (size_t)T * Hq);
      free(half);
      free(halfLse);
    }
    tuCacheFree(&c);
  }
  /* merge all partials: the unsharded answer */
  void* merged = malloc((size_t)T * Hq * Dv * es);
  float* mlse = malloc(sizeof(float) * (size_t)T * Hq);
  memset(merged, 0xff, (size_t)T * Hq * Dv * es);
  void* po[CPCL_MAX_PARTS];
  float* pl[CPCL_MAX_PARTS];
  for (int r = 0; r < W; r++) {
    po[r] = (char*)outs + (size_t)r * T * Hq * Dv * es;
    pl[r] = lses + (size_t)r * T * Hq;
  }
  tuMerge(W, po, pl, T, Hq, Dv, pb.qType, rc->base2, merged, mlse);
  for (int t = 0; t < T; t++)
    for (int g = 0; g < Hq; g++) {
      double want = tuNaive(&pb, t, g, 1, 0, 1, 0, o);
      assert_true(fabs(mlse[t * Hq + g] - want * lseScale) < 1e-3 * (1 + fabs(want)));
      for (int d = 0; d < Dv; d++) {
        double e = fabs(tuGet(merged, ((size_t)t * Hq + g) * Dv + d, pb.qType) - o[d]);
        /* two roundings to qType: the partial and the merged output */
        if (!(e <= 2 * tol))
          fail_msg("merged row %d head %d dim %d: got %g want %g (W %d)", t, g, d,
                   tuGet(merged, ((size_t)t * Hq + g) * Dv + d, pb.qType), o[d], W);
      }
    }
  free(merged);
  free(mlse);
  free(q);
  free(ws);
  free(outs);
  free(lses);
  free(o);
  (void)worst;
}

static void test_dtypes(void** state) {
  (void)state;
  cpclDataType_t types[][2] = {{cpclBfloat16, cpclBfloat16},
                               {cpclFloat16, cpclFloat16},
                               {cpclFloat32, cpclFloat32},
                               {cpclFloat32, cpclBfloat16},
                               {cpclBfloat16, cpclFloat16}};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    refCase_t rc = {types[i][0], types[i][1], 2, 2, 64, 64, 0, 3, 2, 16, 0, 1};
    runCase(&rc);
  }
}

static void test_gqa_groups(void** state) {
  (void)state;
  int groups[] = {1, 2, 3, 4, 8, 16};
  for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
    refCase_t rc = {cpclBfloat16, cpclBfloat16, 2, groups[i], 32, 32, 0, 2, 1, 16, 0, 0};
    runCase(&rc);
  }
}

static void test_mla(void** state) {
  (void)state;
  refCase_t rc = {cpclBfloat16, cpclBfloat16, 1, 4, 576, 512, 1, 2, 1, 16, 0, 1};
  runCase(&rc);
  refCase_t rc32 = {cpclFloat32, cpclFloat32, 1, 2, 576, 512, 1, 1, 1, 5, 0, 0};
  runCase(&rc32);
}

static void test_pages_interleave(void** state) {
  (void)state;
  int pages[] = {1, 5, 16};
  int inter[][2] = {{1, 1}, {4, 1}, {4, 3}, {3, 16}};
  for (size_t i = 0; i < 3; i++)
    for (size_t j = 0; j < 4; j++) {
      refCase_t rc = {cpclFloat32, cpclFloat32, 1, 2, 16, 24, 0, inter[j][0], inter[j][1], pages[i], 0, 1};
      runCase(&rc);
    }
}

static void test_base2(void** state) {
  (void)state;
  refCase_t rc = {cpclFloat32, cpclFloat32, 2, 2, 64, 64, 0, 3, 2, 16, 1, 1};
  runCase(&rc);
}

/* ---- merge edge cases ---- */
static void mergeOne(int n, const float* lse, const float* o, int D, float* out, float* outLse, int base2) {
  cpclMergeParams_t m = {.mode = CPCL_MERGE_LSE,
                         .numParts = n,
                         .numTokens = 1,
                         .numHeads = 1,
                         .headDim = D,
                         .dtype = CPCL_K_FP32,
                         .lseBase2 = base2,
                         .oTokenStride = D,
                         .lseTokenStride = 1,
                         .out = out,
                         .outTokenStride = D,
                         .outLse = outLse,
                         .outLseTokenStride = 1};
  for (int p = 0; p < n; p++) {
    m.o[p] = o + p * D;
    m.lse[p] = lse + p;
  }
  cpclHostMerge(&m);
}

static void test_merge_edges(void** state) {
  (void)state;
  float o[4 * 8], out[8], outLse;
  for (int i = 0; i < 32; i++) o[i] = (float)(i % 8) - 3.5f;
  /* all -inf: out 0, lse -inf, even with NaN bytes in o */
  float allInf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
  for (int i = 0; i < 32; i++) o[i] = NAN;
  memset(out, 0xff, sizeof(out));
  mergeOne(4, allInf, o, 8, out, &outLse, 0);
  assert_true(outLse == -INFINITY);
  for (int d = 0; d < 8; d++) assert_true(out[d] == 0.f);
  /* NaN bytes under -inf never reach the result; one live partial comes back exactly */
  for (int d = 0; d < 8; d++) o[16 + d] = (float)d * 0.25f;
  float oneLive[4] = {-INFINITY, -INFINITY, 1.75f, -INFINITY};
  mergeOne(4, oneLive, o, 8, out, &outLse, 0);
  assert_true(outLse == 1.75f);
  for (int d = 0; d < 8; d++) assert_true(out[d] == (float)d * 0.25f);
  mergeOne(4, oneLive, o, 8, out, &outLse, 1);
  assert_true(outLse == 1.75f);
  /* huge differences: the small partial vanishes, nothing overflows */
  for (int i = 0; i < 32; i++) o[i] = (float)(i / 8 + 1);
  float huge[4] = {1000.f, 0.f, -1000.f, 88.f};
  mergeOne(4, huge, o, 8, out, &outLse, 0);
  assert_true(fabsf(outLse - 1000.f) < 1e-3f);
  for (int d = 0; d < 8; d++) assert_true(fabsf(out[d] - 1.f) < 1e-6f);
  float huge2[2] = {-3e4f, 3e4f};
  mergeOne(2, huge2, o, 8, out, &outLse, 0);
  assert_true(fabsf(outLse - 3e4f) < 1.f && fabsf(out[0] - 2.f) < 1e-6f);
  /* equal halves: lse + log 2, the mean of the two */
  float eq[2] = {0.5f, 0.5f};
  mergeOne(2, eq, o, 8, out, &outLse, 0);
  assert_true(fabsf(outLse - (0.5f + logf(2.f))) < 1e-6f);
  assert_true(fabsf(out[0] - 1.5f) < 1e-6f);
  mergeOne(2, eq, o, 8, out, &outLse, 1);
  assert_true(fabsf(outLse - 1.5f) < 1e-6f); /* base 2: 0.5 + log2 2 */
  /* a NaN LSE is not hidden */
  float bad[2] = {NAN, 0.f};
  mergeOne(2, bad, o, 8, out, &outLse, 0);
  assert_true(isnan(outLse) && isnan(out[0]));
}

static void test_correct_and_sum(void** state) {
  (void)state;
  float o[2 * 4] = {1, 2, 3, 4, NAN, NAN, NAN, NAN}, lse[2] = {0.f, -INFINITY}, g[2] = {logf(2.f), 5.f};
  cpclCorrectParams_t c = {.numTokens = 1,
                           .numHeads = 2,
                           .headDim = 4,
                           .dtype = CPCL_K_FP32,
                           .o = o,
                           .oTokenStride = 8,
                           .lse = lse,
                           .lseTokenStride = 2,
                           .lseGlobal = g,
                           .lseGlobalTokenStride = 2};
  cpclHostCorrect(&c);
  assert_true(fabsf(o[0] - 0.5f) < 1e-6f && fabsf(o[3] - 2.f) < 1e-6f);
  for (int d = 4; d < 8; d++) assert_true(o[d] == 0.f); /* -inf partial: zero, not NaN */
  float a[4] = {1, 2, 3, 4}, b[4] = {10, 20, 30, 40}, s[4];
  cpclMergeParams_t m = {.mode = CPCL_MERGE_SUM,
                         .numParts = 2,
                         .numTokens = 1,
                         .numHeads = 1,
                         .headDim = 4,
                         .dtype = CPCL_K_FP32,
                         .oTokenStride = 4,
                         .out = s,
                         .outTokenStride = 4};
  m.o[0] = a;
  m.o[1] = b;
  cpclHostMerge(&m);
  assert_true(s[0] == 11.f && s[3] == 44.f);
}

static void test_kv_store(void** state) {
  (void)state;
  /* cpclHostKvStore of every token, rank by rank, equals the brute-force placement */
  int32_t qs[4] = {0, 5, 12, 13}, lens[3] = {5, 7, 1};
  tuProblem_t pb = {.numSeqs = 3,
                    .numTokens = 13,
                    .queryStart = qs,
                    .seqLens = lens,
                    .Hq = 2,
                    .Hkv = 2,
                    .Dqk = 16,
                    .Dv = 8,
                    .qType = cpclBfloat16,
                    .kvType = cpclBfloat16,
                    .smScale = 0.25f,
                    .seed = 99};
  for (int W = 1; W <= 3; W++)
    for (int I = 1; I <= 3; I += 2)
      for (int r = 0; r < W; r++) {
        tuCache_t want, got;
        tuCacheAlloc(&pb, W, r, I, 3, &want);
        tuCacheFill(&pb, W, r, I, &want);
        tuCacheAlloc(&pb, W, r, I, 3, &got);
        uint16_t* kNew = malloc(2 * 13 * 2 * 16);
        uint16_t* vNew = malloc(2 * 13 * 2 * 8);
        for (int t = 0; t < 13; t++) {
          int s;
          int64_t p = tuPos(&pb, t, &s);
          for (int h = 0; h < 2; h++) {
            for (int d = 0; d < 16; d++) tuPut(kNew, (t * 2 + h) * 16 + d, tuKv(&pb, 0, s, p, h, d), pb.kvType);
            for (int d = 0; d < 8; d++) tuPut(vNew, (t * 2 + h) * 8 + d, tuKv(&pb, 1, s, p, h, d), pb.kvType);
          }
        }
        cpclKvStoreParams_t p = {.numSeqs = 3,
                                 .numTokens = 13,
                                 .queryStart = qs,
                                 .seqLens = lens,
                                 .blockTable = got.blockTable,
                                 .maxPagesPerSeq = got.maxPagesPerSeq,
                                 .cpSize = W,
                                 .cpRank = r,
                                 .interleave = I,
                                 .pageSize = 3,
                                 .numKvHeads = 2,
                                 .headDimQk = 16,
                                 .headDimVo = 8,
                                 .kvType = CPCL_K_BF16,
                                 .kNew = kNew,
                                 .vNew = vNew,
                                 .kCache = got.k,
                                 .vCache = got.v};
        cpclHostKvStore(&p);
        assert_memory_equal(got.k, want.k, (size_t)got.numPages * 3 * 2 * 16 * 2);
        assert_memory_equal(got.v, want.v, (size_t)got.numPages * 3 * 2 * 8 * 2);
        free(kNew);
        free(vNew);
        tuCacheFree(&want);
        tuCacheFree(&got);
      }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dtypes),           cmocka_unit_test(test_gqa_groups), cmocka_unit_test(test_mla),
      cmocka_unit_test(test_pages_interleave), cmocka_unit_test(test_base2),      cmocka_unit_test(test_merge_edges),
      cmocka_unit_test(test_correct_and_sum),  cmocka_unit_test(test_kv_store),
  };
  return cmocka_run_group_tests_name("attn_ref", tests, NULL, NULL);
}
