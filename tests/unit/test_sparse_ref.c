/* Unit: sparse (top-k) attention on the host (DESIGN.md §4.3): the top-k filter against the
 * ownership rule written out, and the host attention over the compacted lists against a naive
 * fp64 attention over exactly the listed positions on the unsharded sequence: every rank's
 * partial against the positions it owns, the merge of all partials against the whole list.
 * MLA 576/512 and GQA, K 16..2048 with -1 padding and entries past the row, interleave 1 and 16,
 * W 1..4, ranks that own none of a row's positions, multi-row sequences. */
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
#include "merge_params.h"
#include "kernelutil.h"
#include "testutil.h"
#include "topk_params.h"

static double tolOf(cpclDataType_t t) { return t == cpclFloat32 ? 1e-4 : t == cpclFloat16 ? 1.5e-3 : 6e-3; }

typedef struct {
  cpclDataType_t type;
  int Hkv, G, Dqk, Dv, latent;
  int W, I, pageSize, K;
  int longSeqs; /* sequences longer than K (so the lists choose) */
} sparseCase_t;

static void setupProblem(const sparseCase_t* sc, tuProblem_t* pb, int32_t* qs, int32_t* lens) {
  /* lengths: shorter than W*I (empty shards), one key, around K, longer than K; rows 1..3 */
  const int baseLens[6] = {1, 3, 40, sc->longSeqs ? sc->K + 5 : 70, sc->longSeqs ? 2 * sc->K + 17 : 129, 17};
  static const int rows[6] = {1, 2, 1, 3, 2, 1};
  qs[0] = 0;
  for (int s = 0; s < 6; s++) {
    lens[s] = baseLens[s] + rows[s] - 1;
    qs[s + 1] = qs[s] + rows[s];
  }
  memset(pb, 0, sizeof(*pb));
  pb->numSeqs = 6;
  pb->numTokens = qs[6];
  pb->queryStart = qs;
  pb->seqLens = lens;
  pb->Hkv = sc->Hkv;
  pb->Hq = sc->Hkv * sc->G;
  pb->Dqk = sc->Dqk;
  pb->Dv = sc->Dv;
  pb->latent = sc->latent;
  pb->qType = pb->kvType = sc->type;
  pb->smScale = (float)(1.0 / sqrt((double)sc->Dqk));
  pb->seed = 4321 + sc->K + sc->W * 13 + sc->I * 7 + sc->Dqk;
}

/* The filter written out from the rule: row t keeps entry p when 0 <= p <= pos and
 * (p / I) % W == r, as local index (p / (W I)) I + p % I, in list order. */
static void checkFilter(const tuProblem_t* pb, const int32_t* list, int K, int W, int r, int I, const int32_t* localIdx,
                        const int32_t* count) {
  for (int t = 0; t < pb->numTokens; t++) {
    int s;
    const int64_t pos = tuPos(pb, t, &s);
    int c = 0;
    for (int k = 0; k < K; k++) {
      const int64_t p = list[(size_t)t * K + k];
      if (p < 0 || p > pos || (p / I) % W != r) continue;
      const int64_t want = (p / ((int64_t)W * I)) * I + p % I;
      if (localIdx[(size_t)t * K + c] != want)
        fail_msg("filter rank %d row %d kept entry %d: local %d, want %lld", r, t, c, localIdx[(size_t)t * K + c],
                 (long long)want);
      c++;
    }
    if (count[t] != c) fail_msg("filter rank %d row %d: count %d, want %d", r, t, count[t], c);
  }
}

static void runCase(const sparseCase_t* sc, unsigned emptyMask) {
  int32_t qs[8], lens[8];
  tuProblem_t pb;
  setupProblem(sc, &pb, qs, lens);
  const int T = pb.numTokens, Hq = pb.Hq, Dv = pb.Dv, W = sc->W, K = sc->K, I = sc->I;
  const size_t es = tuDtypeSize(pb.qType);
  const double tol = tolOf(pb.qType);
  int32_t* list = tuMakeTopk(&pb, K, pb.seed, emptyMask);
  void* q = tuMakeQ(&pb, 0, Hq);
  void* ws = malloc(cpclHostAttnWorkspaceBytes(pb.Dqk, pb.Dv));
  void* outs = malloc((size_t)W * T * Hq * Dv * es);
  float* lses = malloc(sizeof(float) * (size_t)W * T * Hq);
  double* o = malloc(sizeof(double) * (size_t)Dv);
  int32_t* localIdx = malloc(sizeof(int32_t) * (size_t)T * K);
  int32_t* count = malloc(sizeof(int32_t) * (size_t)T);
  int32_t* kept = calloc((size_t)T, sizeof(int32_t));
  memset(outs, 0xff, (size_t)W * T * Hq * Dv * es); /* NaN poison */
  memset(lses, 0xff, sizeof(float) * (size_t)W * T * Hq);
  int emptyPartials = 0;
  for (int r = 0; r < W; r++) {
    memset(localIdx, 0x7f, sizeof(int32_t) * (size_t)T * K);
    memset(count, 0x7f, sizeof(int32_t) * (size_t)T);
    const cpclTopkFilterParams_t f = {.numSeqs = pb.numSeqs,
                                      .numTokens = T,
                                      .queryStart = qs,
                                      .seqLens = lens,
                                      .topk = K,
                                      .topkIndices = list,
                                      .cpSize = W,
                                      .cpRank = r,
                                      .interleave = I,
                                      .localIdx = localIdx,
                                      .count = count};
    cpclHostTopkFilter(&f);
    checkFilter(&pb, list, K, W, r, I, localIdx, count);
    for (int t = 0; t < T; t++) kept[t] += count[t];

    tuCache_t c;
    tuCacheAlloc(&pb, W, r, I, sc->pageSize, &c);
    tuCacheFill(&pb, W, r, I, &c);
    char* outR = (char*)outs + (size_t)r * T * Hq * Dv * es;
    cpclAttnParams_t p;
    tuAttnParams(&pb, &c, W, r, I, q, outR, lses + (size_t)r * T * Hq, ws, &p);
    p.sparseIdx = localIdx;
    p.sparseCount = count;
    p.sparseStride = K;
    cpclHostAttn(&p);
    for (int t = 0; t < T; t++)
      for (int g = 0; g < Hq; g++) {
        const double want = tuNaiveSparse(&pb, t, g, list + (size_t)t * K, K, W, r, I, 1, o);
        const float got = p.lse[(size_t)t * Hq + g];
        if (want == -INFINITY) {
          if (got != -INFINITY)
            fail_msg("rank %d row %d head %d: lse %g, want -inf (owns nothing listed)", r, t, g, got);
          emptyPartials += g == 0;
        } else if (!(fabs(got - want) < 1e-3 * (1 + fabs(want)))) {
          fail_msg("rank %d row %d head %d: lse %g, want %g", r, t, g, got, want);
        }
        for (int d = 0; d < Dv; d++) {
          const double v = tuGet(outR, ((size_t)t * Hq + g) * Dv + d, pb.qType);
          if (!(fabs(v - o[d]) <= tol))
            fail_msg("partial rank %d row %d head %d dim %d: got %g want %g (K %d W %d I %d)", r, t, g, d, v, o[d], K,
                     W, I);
        }
      }
    tuCacheFree(&c);
  }
  /* every valid entry is owned by exactly one rank */
  for (int t = 0; t < T; t++) {
    int s, valid = 0;
    const int64_t pos = tuPos(&pb, t, &s);
    for (int k = 0; k < K; k++) valid += list[(size_t)t * K + k] >= 0 && list[(size_t)t * K + k] <= pos;
    assert_int_equal(kept[t], valid);
  }
  if (W > 1) assert_true(emptyPartials > 0); /* short sequences: some rank owns nothing listed */

  void* merged = malloc((size_t)T * Hq * Dv * es);
  float* mlse = malloc(sizeof(float) * (size_t)T * Hq);
  void* po[CPCL_MAX_PARTS];
  float* pl[CPCL_MAX_PARTS];
  for (int r = 0; r < W; r++) {
    po[r] = (char*)outs + (size_t)r * T * Hq * Dv * es;
    pl[r] = lses + (size_t)r * T * Hq;
  }
  tuMerge(W, po, pl, T, Hq, Dv, pb.qType, 0, merged, mlse);
  for (int t = 0; t < T; t++)
    for (int g = 0; g < Hq; g++) {
      const double want = tuNaiveSparse(&pb, t, g, list + (size_t)t * K, K, 1, 0, 1, 0, o);
      if (want == -INFINITY)
        assert_true(mlse[t * Hq + g] == -INFINITY);
      else
        assert_true(fabs(mlse[t * Hq + g] - want) < 1e-3 * (1 + fabs(want)));
      for (int d = 0; d < Dv; d++) {
        const double v = tuGet(merged, ((size_t)t * Hq + g) * Dv + d, pb.qType);
        if (!(fabs(v - o[d]) <= 2 * tol))
          fail_msg("merged row %d head %d dim %d: got %g want %g (K %d W %d)", t, g, d, v, o[d], K, W);
      }
    }
  free(merged);
  free(mlse);
  free(list);
  free(q);
  free(ws);
  free(outs);
  free(lses);
  free(o);
  free(localIdx);
  free(count);
  free(kept);
}

static void test_gqa(void** state) {
  (void)state;
  static const int Ks[] = {16, 64, 300};
  for (int W = 1; W <= 4; W++)
    for (size_t k = 0; k < sizeof(Ks) / sizeof(Ks[0]); k++) {
      const sparseCase_t sc = {cpclFloat32, 2, 4, 32, 32, 0, W, 1, 16, Ks[k], 1};
      runCase(&sc, 0);
      const sparseCase_t bf = {cpclBfloat16, 1, 8, 128, 128, 0, W, 16, 16, Ks[k], 1};
      runCase(&bf, 0);
    }
}

static void test_mla(void** state) {
  (void)state;
  for (int W = 1; W <= 4; W++) {
    const sparseCase_t sc = {cpclBfloat16, 1, 4, 576, 512, 1, W, W % 2 ? 1 : 16, 16, 64, 1};
    runCase(&sc, 0);
  }
}

/* K = 2048 (DeepSeek-V3.2's), lists longer than some sequences (padded with -1) */
static void test_k2048(void** state) {
  (void)state;
  const sparseCase_t mla = {cpclBfloat16, 1, 2, 576, 512, 1, 3, 16, 64, 2048, 1};
  runCase(&mla, 0);
  const sparseCase_t gqa = {cpclFloat32, 1, 2, 64, 64, 0, 4, 1, 16, 2048, 0};
  runCase(&gqa, 0);
}

/* sequences whose rows list no valid position: empty everywhere (out 0, lse -inf) */
static void test_empty_lists(void** state) {
  (void)state;
  const sparseCase_t sc = {cpclFloat32, 2, 2, 32, 32, 0, 2, 1, 5, 32, 1};
  runCase(&sc, (1u << 2) | (1u << 4));
}

/* duplicates count as listed: a position listed twice weighs twice (and nothing breaks) */
static void test_duplicates(void** state) {
  (void)state;
  int32_t qs[2] = {0, 1}, lens[1] = {9};
  const tuProblem_t pb = {.numSeqs = 1,
                          .numTokens = 1,
                          .queryStart = qs,
                          .seqLens = lens,
                          .Hq = 1,
                          .Hkv = 1,
                          .Dqk = 16,
                          .Dv = 16,
                          .qType = cpclFloat32,
                          .kvType = cpclFloat32,
                          .smScale = 0.3f,
                          .seed = 5};
  const int32_t list[4] = {3, 3, 7, -1};
  int32_t idx[4], cnt[1];
  const cpclTopkFilterParams_t f = {.numSeqs = 1,
                                    .numTokens = 1,
                                    .queryStart = qs,
                                    .seqLens = lens,
                                    .topk = 4,
                                    .topkIndices = list,
                                    .cpSize = 1,
                                    .cpRank = 0,
                                    .interleave = 1,
                                    .localIdx = idx,
                                    .count = cnt};
  cpclHostTopkFilter(&f);
  assert_int_equal(cnt[0], 3);
  assert_int_equal(idx[0], 3);
  assert_int_equal(idx[1], 3);
  double o2[16], o1[16];
  const double lse2 = tuNaiveSparse(&pb, 0, 0, list, 4, 1, 0, 1, 0, o2);
  const int32_t once[2] = {3, 7};
  const double lse1 = tuNaiveSparse(&pb, 0, 0, once, 2, 1, 0, 1, 0, o1);
  assert_true(lse2 > lse1); /* the duplicate adds weight */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gqa),         cmocka_unit_test(test_mla),        cmocka_unit_test(test_k2048),
      cmocka_unit_test(test_empty_lists), cmocka_unit_test(test_duplicates),
  };
  return cmocka_run_group_tests_name("sparse_ref", tests, NULL, NULL);
}
