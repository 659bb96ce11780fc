/* Unit: every class of bad argument at the public entry points of plans and steps, on a one-rank
 * communicator: the result code, a message naming the argument and its value, and a plan that
 * still works for the next good call. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpcl.h"
#include "testutil.h"

static cpclComm_t mkComm(int interleave) {
  cpclComm_t c = NULL;
  assert_int_equal(tuSelfComm(&c, interleave, cpclMemHost), cpclSuccess);
  return c;
}

static cpclAttnDesc_t goodDesc(void) {
  cpclAttnDesc_t d = CPCL_ATTN_DESC_INITIALIZER;
  d.numQoHeads = 4;
  d.numKvHeads = 2;
  d.headDimQk = d.headDimVo = 32;
  d.pageSize = 4;
  d.smScale = 0.17f;
  d.qType = d.kvType = cpclFloat32;
  return d;
}

static int bad;
#define EXPECT_PLAN(mutate, res, text)                                                                                 \
  do {                                                                                                                 \
    cpclAttnDesc_t d = goodDesc();                                                                                     \
    mutate;                                                                                                            \
    cpclAttnPlan_t p = NULL;                                                                                           \
    assert_int_equal(cpclAttnPlanCreate(&p, c, &d, 8), res);                                                           \
    if (strstr(cpclGetLastError(c), text) == NULL) fail_msg("message \"%s\" lacks \"%s\"", cpclGetLastError(c), text); \
    assert_null(p);                                                                                                    \
    bad++;                                                                                                             \
  } while (0)

static void test_descriptor(void** state) {
  (void)state;
  cpclComm_t c = mkComm(2);
  EXPECT_PLAN(d.size = 8, cpclInvalidArgument, "desc->size is 8");
  EXPECT_PLAN(d.numQoHeads = 0, cpclInvalidArgument, "desc->numQoHeads is 0");
  EXPECT_PLAN(d.numKvHeads = -3, cpclInvalidArgument, "desc->numKvHeads is -3");
  EXPECT_PLAN(d.headDimQk = 30, cpclInvalidArgument, "multiples of 8");
  EXPECT_PLAN(d.headDimVo = 4096, cpclInvalidArgument, "desc->headDimVo is 4096");
  EXPECT_PLAN(d.pageSize = 0, cpclInvalidArgument, "desc->pageSize is 0");
  EXPECT_PLAN(d.pageSize = 5, cpclInvalidArgument, "pageSize 5 is not a multiple of the communicator's kvInterleave 2");
  EXPECT_PLAN(d.smScale = NAN, cpclInvalidArgument, "desc->smScale is nan");
  EXPECT_PLAN(d.smScale = INFINITY, cpclInvalidArgument, "desc->smScale is inf");
  EXPECT_PLAN(d.smScale = -1.f, cpclInvalidArgument, "desc->smScale is -1");
  EXPECT_PLAN(d.qType = (cpclDataType_t)7, cpclInvalidArgument, "desc->qType is 7");
  EXPECT_PLAN(d.kvType = (cpclDataType_t)-1, cpclInvalidArgument, "desc->kvType is -1");
  EXPECT_PLAN(d.latentKv = 2, cpclInvalidArgument, "desc->latentKv is 2");
  EXPECT_PLAN(d.lseBase2 = -1, cpclInvalidArgument, "desc->lseBase2 is -1");
  EXPECT_PLAN(d.numKvHeads = 3, cpclInvalidArgument, "GQA: the 4 gathered query heads");
  EXPECT_PLAN((d.latentKv = 1, d.numKvHeads = 2), cpclInvalidArgument,
              "MLA (desc->latentKv = 1) has one latent KV head");
  EXPECT_PLAN((d.latentKv = 1, d.numKvHeads = 1, d.headDimVo = 64), cpclInvalidArgument, "headDimVo 64 must be <=");
  EXPECT_PLAN(d.algo = "fastest", cpclInvalidArgument, "desc->algo is \"fastest\"");
  EXPECT_PLAN(d.algo = "fused", cpclUnsupported, "fused: fused needs CUDA memory");
  EXPECT_PLAN(d.topk = -1, cpclInvalidArgument, "desc->topk is -1: it must be in [0, 65536]");
  EXPECT_PLAN(d.topk = 65537, cpclInvalidArgument, "desc->topk is 65537: it must be in [0, 65536]");
  EXPECT_PLAN(d.prefillAlgo = "zigzag", cpclInvalidArgument, "desc->prefillAlgo is \"zigzag\"");
  {
    cpclAttnDesc_t d = goodDesc();
    assert_int_equal(d.topk, 0); /* the initializer's new fields: dense, automatic prefill */
    assert_null(d.prefillAlgo);
    cpclAttnPlan_t p = NULL;
    d.prefillAlgo = "ring";
    assert_int_equal(cpclAttnPlanCreate(&p, c, &d, 8), cpclSuccess);
    assert_int_equal(cpclAttnPlanDestroy(p), cpclSuccess);
    d.prefillAlgo = "allgather";
    assert_int_equal(cpclAttnPlanCreate(&p, c, &d, 8), cpclSuccess);
    assert_int_equal(cpclAttnPlanDestroy(p), cpclSuccess);
  }
  {
    cpclAttnDesc_t d = goodDesc();
    cpclAttnPlan_t p = NULL;
    assert_int_equal(cpclAttnPlanCreate(&p, c, &d, 0), cpclInvalidArgument);
    assert_non_null(strstr(cpclGetLastError(c), "maxTokens is 0"));
    assert_int_equal(cpclAttnPlanCreate(NULL, c, &d, 8), cpclInvalidArgument);
    assert_int_equal(cpclAttnPlanCreate(&p, NULL, &d, 8), cpclInvalidArgument);
    assert_int_equal(cpclAttnPlanCreate(&p, c, NULL, 8), cpclInvalidArgument);
    bad += 4;
  }
  assert_int_equal(cpclCommDestroy(c), cpclSuccess);
}

/* a good 2-sequence batch (3 rows) and its data, on a one-rank comm */
typedef struct {
  cpclComm_t c;
  cpclAttnPlan_t p;
  tuProblem_t pb;
  int32_t qs[3], lens[2];
  tuCache_t cache;
  void *q, *out;
  float* lse;
} fix_t;

static void fixSetup(fix_t* f) {
  f->c = mkComm(1);
  cpclAttnDesc_t d = goodDesc();
  assert_int_equal(cpclAttnPlanCreate(&f->p, f->c, &d, 3), cpclSuccess);
  f->qs[0] = 0, f->qs[1] = 2, f->qs[2] = 3;
  f->lens[0] = 10, f->lens[1] = 7;
  f->pb = (tuProblem_t){.numSeqs = 2,
                        .numTokens = 3,
                        .queryStart = f->qs,
                        .seqLens = f->lens,
                        .Hq = 4,
                        .Hkv = 2,
                        .Dqk = 32,
                        .Dv = 32,
                        .qType = cpclFloat32,
                        .kvType = cpclFloat32,
                        .smScale = 0.17f,
                        .seed = 9};
  tuCacheAlloc(&f->pb, 1, 0, 1, 4, &f->cache);
  tuCacheFill(&f->pb, 1, 0, 1, &f->cache);
  f->q = tuMakeQ(&f->pb, 0, 4);
  f->out = malloc(3 * 4 * 32 * 4);
  f->lse = malloc(3 * 4 * 4);
}

static void fixTeardown(fix_t* f) {
  free(f->q);
  free(f->out);
  free(f->lse);
  tuCacheFree(&f->cache);
  assert_int_equal(cpclAttnPlanDestroy(f->p), cpclSuccess);
  assert_int_equal(cpclCommDestroy(f->c), cpclSuccess);
}

static cpclResult_t run(fix_t* f, const cpclBatch_t* b) {
  return cpclAttnDecode(f->p, b, f->q, f->cache.k, f->cache.v, f->out, f->lse, NULL);
}

#define EXPECT_STEP(call, res, text)                                              \
  do {                                                                            \
    assert_int_equal((call), res);                                                \
    if (strstr(cpclGetLastError(f.c), text) == NULL)                              \
      fail_msg("message \"%s\" lacks \"%s\"", cpclGetLastError(f.c), text);       \
    assert_int_equal(run(&f, &good), cpclSuccess); /* the plan is still usable */ \
    bad++;                                                                        \
  } while (0)

static void test_batch(void** state) {
  (void)state;
  fix_t f;
  fixSetup(&f);
  const cpclBatch_t good = tuBatch(2, 3, f.qs, f.lens, f.cache.blockTable, f.cache.maxPagesPerSeq);
  assert_int_equal(run(&f, &good), cpclSuccess);
  cpclBatch_t b;
  int32_t qs[3], lens[2];
#define MUT(expr)                                                                                                   \
  (b = good, memcpy(qs, f.qs, sizeof(qs)), memcpy(lens, f.lens, sizeof(lens)), b.queryStart = qs, b.seqLens = lens, \
   (expr), &b)
  EXPECT_STEP(run(&f, NULL), cpclInvalidArgument, "batch is NULL");
  EXPECT_STEP(run(&f, MUT(b.numSeqs = -1)), cpclInvalidArgument, "batch->numSeqs is -1");
  EXPECT_STEP(run(&f, MUT(b.numTokens = 4)), cpclInvalidArgument,
              "batch->numTokens is 4: it must be in [0, maxTokens = 3]");
  EXPECT_STEP(run(&f, MUT(b.queryStart = NULL)), cpclInvalidArgument, "numTokens 3 != numSeqs 2");
  EXPECT_STEP(run(&f, MUT(qs[0] = 1)), cpclInvalidArgument, "batch->queryStart[0] is 1");
  EXPECT_STEP(run(&f, MUT((qs[1] = 3, qs[2] = 2))), cpclInvalidArgument, "queryStart goes backwards at sequence 1");
  EXPECT_STEP(run(&f, MUT(qs[2] = 2)), cpclInvalidArgument, "batch->queryStart[numSeqs] is 2, not numTokens 3");
  EXPECT_STEP(run(&f, MUT(lens[0] = 1)), cpclInvalidArgument, "batch->seqLens[0] is 1, fewer than its 2 query rows");
  EXPECT_STEP(run(&f, MUT(lens[1] = 1000)), cpclInvalidArgument, "sequence 1 holds 1000 local tokens");
  EXPECT_STEP(run(&f, MUT(b.seqLens = NULL)), cpclInvalidArgument, "batch->seqLens is NULL");
  EXPECT_STEP(run(&f, MUT(b.blockTable = NULL)), cpclInvalidArgument, "batch->blockTable is NULL");
  EXPECT_STEP(run(&f, MUT(b.maxPagesPerSeq = 0)), cpclInvalidArgument, "batch->maxPagesPerSeq is 0");
  EXPECT_STEP(cpclAttnDecode(f.p, &good, NULL, f.cache.k, f.cache.v, f.out, f.lse, NULL), cpclInvalidArgument,
              "q is NULL");
  EXPECT_STEP(cpclAttnDecode(f.p, &good, f.q, NULL, f.cache.v, f.out, f.lse, NULL), cpclInvalidArgument,
              "kCache is NULL");
  EXPECT_STEP(cpclAttnDecode(f.p, &good, f.q, f.cache.k, NULL, f.out, f.lse, NULL), cpclInvalidArgument,
              "vCache is NULL");
  EXPECT_STEP(cpclAttnDecode(f.p, &good, f.q, f.cache.k, f.cache.v, NULL, f.lse, NULL), cpclInvalidArgument,
              "out is NULL");
  EXPECT_STEP(cpclAttnPartial(f.p, &good, f.q, f.cache.k, f.cache.v, f.out, NULL, NULL), cpclInvalidArgument,
              "partialLse");
  EXPECT_STEP(cpclAttnCombine(f.p, 9, f.out, f.lse, f.out, f.lse, NULL), cpclInvalidArgument, "numTokens is 9");
  EXPECT_STEP(cpclAttnCombine(f.p, 3, NULL, f.lse, f.out, f.lse, NULL), cpclInvalidArgument, "partialOut");
  EXPECT_STEP(cpclKvStore(f.p, MUT(qs[0] = 2), f.q, f.q, f.cache.k, f.cache.v, NULL), cpclInvalidArgument,
              "cpclKvStore: batch->queryStart[0] is 2");
  EXPECT_STEP(cpclKvStore(f.p, &good, NULL, f.q, f.cache.k, f.cache.v, NULL), cpclInvalidArgument, "kNew");
  assert_int_equal(cpclAttnDecode(NULL, &good, f.q, f.cache.k, f.cache.v, f.out, f.lse, NULL), cpclInvalidArgument);
  assert_non_null(strstr(cpclGetLastError(NULL), "plan is NULL"));
  bad++;
  /* zero rows is a valid, empty step */
  cpclBatch_t empty = tuBatch(0, 0, NULL, NULL, NULL, 1);
  assert_int_equal(run(&f, &empty), cpclSuccess);
  /* a plan outlives nothing: the comm refuses to go first */
  assert_int_equal(cpclCommDestroy(f.c), cpclInvalidUsage);
  assert_non_null(strstr(cpclGetLastError(f.c), "plan(s) still use"));
  bad++;
  fixTeardown(&f);
}

/* The versioned batch (DESIGN.md §4.1): size first, topkIndices last, both checked. */
static void test_versioned_batch(void** state) {
  (void)state;
  fix_t f;
  fixSetup(&f);
  const cpclBatch_t good = tuBatch(2, 3, f.qs, f.lens, f.cache.blockTable, f.cache.maxPagesPerSeq);
  const cpclBatch_t init = CPCL_BATCH_INITIALIZER;
  assert_int_equal(init.size, sizeof(cpclBatch_t));
  assert_null(init.topkIndices);
  assert_int_equal(init.numSeqs + init.numTokens + init.maxPagesPerSeq, 0);
  cpclBatch_t b = good;
  char want[96];
  snprintf(want, sizeof(want), "batch->size is 8, expected %zu", sizeof(cpclBatch_t));
  b.size = 8;
  EXPECT_STEP(run(&f, &b), cpclInvalidArgument, want);
  EXPECT_STEP(cpclKvStore(f.p, &b, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclInvalidArgument, want);
  b.size = sizeof(cpclBatch_t) + 8;
  EXPECT_STEP(cpclAttnPartial(f.p, &b, f.q, f.cache.k, f.cache.v, f.out, f.lse, NULL), cpclInvalidArgument,
              "batch->size is");
  const int32_t topk[3] = {0, 1, 2};
  b = good;
  b.topkIndices = topk; /* on a dense plan */
  EXPECT_STEP(run(&f, &b), cpclInvalidArgument, "batch->topkIndices is 0x");
  EXPECT_STEP(cpclAttnPartial(f.p, &b, f.q, f.cache.k, f.cache.v, f.out, f.lse, NULL), cpclInvalidArgument,
              "but the plan is dense (desc->topk 0)");
  /* the store ignores the list: an engine passes one batch to both */
  assert_int_equal(cpclKvStore(f.p, &b, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclSuccess);
  fixTeardown(&f);
}

/* Sparse plans (DESIGN.md §4.3): the list must come with desc.topk > 0, any entry in it is
 * legal (garbage is skipped, never read through), the store ignores it, and prefill refuses a
 * sparse plan rather than attend densely. */
static void test_sparse_batch(void** state) {
  (void)state;
  fix_t f;
  fixSetup(&f);
  size_t denseBytes = 0, sparseBytes = 0;
  assert_int_equal(cpclAttnPlanWorkspaceBytes(f.p, &denseBytes), cpclSuccess);
  assert_int_equal(cpclAttnPlanDestroy(f.p), cpclSuccess);
  cpclAttnDesc_t d = goodDesc();
  d.topk = 4;
  assert_int_equal(cpclAttnPlanCreate(&f.p, f.c, &d, 3), cpclSuccess);
  assert_int_equal(cpclAttnPlanWorkspaceBytes(f.p, &sparseBytes), cpclSuccess);
  assert_true(sparseBytes >= denseBytes + 3 * 4 * sizeof(int32_t) + 3 * sizeof(int32_t)); /* the lists */
  const int32_t list[3][4] = {{INT32_MIN, INT32_MAX, -1, 9}, {10, 11, -7, 0}, {6, 6, 1 << 30, -1}};
  cpclBatch_t good = tuBatch(2, 3, f.qs, f.lens, f.cache.blockTable, f.cache.maxPagesPerSeq);
  good.topkIndices = &list[0][0];
  assert_int_equal(run(&f, &good), cpclSuccess);
  cpclBatch_t b = good;
  b.topkIndices = NULL;
  EXPECT_STEP(run(&f, &b), cpclInvalidArgument, "batch->topkIndices is NULL but the plan is sparse (desc->topk 4)");
  EXPECT_STEP(cpclAttnPartial(f.p, &b, f.q, f.cache.k, f.cache.v, f.out, f.lse, NULL), cpclInvalidArgument,
              "batch->topkIndices is NULL");
  assert_int_equal(cpclKvStore(f.p, &b, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclSuccess);
  assert_int_equal(cpclKvStore(f.p, &good, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclSuccess);
  cpclPrefillBatch_t pb = CPCL_PREFILL_BATCH_INITIALIZER;
  EXPECT_STEP(cpclAttnPrefill(f.p, &pb, f.q, f.q, f.q, f.cache.k, f.cache.v, f.out, f.lse, NULL), cpclUnsupported,
              "this plan is sparse (desc->topk 4) and sparse prefill is not built");
  fixTeardown(&f);
}

/* Padding on one rank, host memory: seqLens[s] == 0 rows come out empty, are no error, and
 * leave the other rows' bits alone; 0 < seqLens < rows stays an error (test_batch). */
static void test_padding(void** state) {
  (void)state;
  fix_t f;
  fixSetup(&f);
  const cpclBatch_t good = tuBatch(2, 3, f.qs, f.lens, f.cache.blockTable, f.cache.maxPagesPerSeq);
  const size_t row = 4 * 32 * 4;
  assert_int_equal(run(&f, &good), cpclSuccess);
  char* want = malloc(3 * row);
  float wantLse[12];
  memcpy(want, f.out, 3 * row);
  memcpy(wantLse, f.lse, sizeof(wantLse));
  /* sequence 0 (2 rows) becomes padding, its block-table row poisoned: never read */
  const int mp = f.cache.maxPagesPerSeq;
  int32_t* bt = malloc(sizeof(int32_t) * 2 * (size_t)mp);
  memcpy(bt, f.cache.blockTable, sizeof(int32_t) * 2 * (size_t)mp);
  for (int i = 0; i < mp; i++) bt[i] = -1;
  int32_t lens[2] = {0, f.lens[1]};
  const cpclBatch_t b = tuBatch(2, 3, f.qs, lens, bt, mp);
  memset(f.out, 0x7f, 3 * row);
  assert_int_equal(run(&f, &b), cpclSuccess);
  for (int i = 0; i < 2 * 4 * 32; i++) assert_true(((float*)f.out)[i] == 0.f);
  for (int i = 0; i < 2 * 4; i++) assert_true(f.lse[i] == -INFINITY);
  assert_memory_equal((char*)f.out + 2 * row, want + 2 * row, row);
  assert_memory_equal(f.lse + 8, wantLse + 8, 4 * sizeof(float));
  /* the halves */
  float pl[12];
  assert_int_equal(cpclAttnPartial(f.p, &b, f.q, f.cache.k, f.cache.v, f.out, pl, NULL), cpclSuccess);
  for (int i = 0; i < 8; i++) assert_true(pl[i] == -INFINITY);
  char* out2 = malloc(3 * row);
  float lse2[12];
  assert_int_equal(cpclAttnCombine(f.p, 3, f.out, pl, out2, lse2, NULL), cpclSuccess);
  for (int i = 0; i < 2 * 4 * 32; i++) assert_true(((float*)out2)[i] == 0.f);
  for (int i = 0; i < 8; i++) assert_true(lse2[i] == -INFINITY);
  /* the store skips the padding sequence (its positions would be negative, its pages are -1) */
  const size_t kBytes = (size_t)f.cache.numPages * 4 * 2 * 32 * 4;
  char* k = malloc(kBytes);
  memcpy(k, f.cache.k, kBytes);
  const int32_t qs1[3] = {0, 2, 2}, lens1[2] = {0, 0};
  const cpclBatch_t pad = tuBatch(2, 2, qs1, lens1, bt, mp);
  assert_int_equal(cpclKvStore(f.p, &pad, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclSuccess);
  assert_memory_equal(k, f.cache.k, kBytes);
  free(k);
  free(out2);
  free(bt);
  free(want);
  fixTeardown(&f);
}

/* The plan's workspace: its size, and a plan carved from a caller's buffer. */
static void test_workspace(void** state) {
  (void)state;
  fix_t f;
  fixSetup(&f);
  const cpclBatch_t good = tuBatch(2, 3, f.qs, f.lens, f.cache.blockTable, f.cache.maxPagesPerSeq);
  assert_int_equal(run(&f, &good), cpclSuccess);
  const size_t oBytes = 3 * 4 * 32 * 4;
  char* want = malloc(oBytes);
  float wantLse[12];
  memcpy(want, f.out, oBytes);
  memcpy(wantLse, f.lse, sizeof(wantLse));
  size_t need = 0;
  assert_int_equal(cpclAttnPlanWorkspaceBytes(f.p, NULL), cpclInvalidArgument);
  assert_int_equal(cpclAttnPlanWorkspaceBytes(NULL, &need), cpclInvalidArgument);
  assert_int_equal(cpclAttnPlanWorkspaceBytes(f.p, &need), cpclSuccess);
  assert_true(need > 0);
  static const char* const algos[] = {"a2a", "agrs", "pipelined"};
  for (int a = 0; a < 3; a++) {
    cpclAttnDesc_t d = goodDesc();
    d.algo = algos[a];
    cpclAttnPlan_t p = NULL;
    assert_int_equal(cpclAttnPlanCreate(&p, f.c, &d, 3), cpclSuccess);
    assert_int_equal(cpclAttnPlanWorkspaceBytes(p, &need), cpclSuccess);
    assert_true(need > 0);
    assert_int_equal(cpclAttnPlanDestroy(p), cpclSuccess);
    p = NULL;
    char* ws = NULL;
    assert_int_equal(posix_memalign((void**)&ws, 256, need + 256), 0);
    memset(ws, 0x5a, need + 256);
    char msg[128];
    snprintf(msg, sizeof(msg), "bytes is %zu: this plan needs %zu bytes", need - 1, need);
    assert_int_equal(cpclAttnPlanCreateWithWorkspace(&p, f.c, &d, 3, ws, need - 1), cpclInvalidArgument);
    assert_non_null(strstr(cpclGetLastError(f.c), msg));
    assert_int_equal(cpclAttnPlanCreateWithWorkspace(&p, f.c, &d, 3, ws + 8, need), cpclInvalidArgument);
    assert_non_null(strstr(cpclGetLastError(f.c), "aligned to 256 bytes"));
    assert_int_equal(cpclAttnPlanCreateWithWorkspace(&p, f.c, &d, 3, NULL, need), cpclInvalidArgument);
    assert_non_null(strstr(cpclGetLastError(f.c), "ws is NULL"));
    assert_null(p);
    assert_int_equal(cpclAttnPlanCreateWithWorkspace(&p, f.c, &d, 3, ws, need), cpclSuccess);
    size_t got = 0;
    assert_int_equal(cpclAttnPlanWorkspaceBytes(p, &got), cpclSuccess);
    assert_int_equal(got, need);
    memset(f.out, 0xff, oBytes);
    assert_int_equal(cpclAttnDecode(p, &good, f.q, f.cache.k, f.cache.v, f.out, f.lse, NULL), cpclSuccess);
    assert_memory_equal(f.out, want, oBytes);
    assert_memory_equal(f.lse, wantLse, sizeof(wantLse));
    for (int i = 0; i < 256; i++) assert_int_equal((unsigned char)ws[need + i], 0x5a); /* nothing past need */
    assert_int_equal(cpclAttnPlanDestroy(p), cpclSuccess);
    free(ws); /* the caller's: the plan never freed it */
    bad += 3;
  }
  free(want);
  fixTeardown(&f);
}

/* Issue 18 item 1: rows without sequences are not an empty step (the check returned early). */
static void test_rows_without_sequences(void** state) {
  (void)state;
  fix_t f;
  fixSetup(&f);
  const cpclBatch_t good = tuBatch(2, 3, f.qs, f.lens, f.cache.blockTable, f.cache.maxPagesPerSeq);
  const int32_t qs0[1] = {0};
  cpclBatch_t b = tuBatch(0, 2, qs0, NULL, NULL, 1);
  EXPECT_STEP(run(&f, &b), cpclInvalidArgument, "batch->numTokens is 2 but numSeqs is 0");
  EXPECT_STEP(cpclKvStore(f.p, &b, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclInvalidArgument,
              "batch->numTokens is 2 but numSeqs is 0");
  fixTeardown(&f);
}

/* Issue 18 item 2: row counts that wrap in 32 bits (a signed overflow, UBSan) must not pass. */
static void test_query_start_overflow(void** state) {
  (void)state;
  fix_t f;
  fixSetup(&f);
  const cpclBatch_t good = tuBatch(2, 3, f.qs, f.lens, f.cache.blockTable, f.cache.maxPagesPerSeq);
  const int32_t qs[6] = {0, INT32_MAX, INT32_MIN, -1, 0, 2};
  /* seqLens long enough for the wrapped counts, a block-table row wide enough for them (never
   * read by the checks) */
  const int32_t lens[5] = {INT32_MAX, 1, INT32_MAX, 1, 2};
  cpclBatch_t b = tuBatch(5, 2, qs, lens, f.cache.blockTable, INT32_MAX / 4 + 1);
  EXPECT_STEP(run(&f, &b), cpclInvalidArgument, "queryStart goes backwards at sequence 1");
  EXPECT_STEP(cpclKvStore(f.p, &b, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclInvalidArgument,
              "queryStart goes backwards at sequence 1");
  fixTeardown(&f);
}

/* Issue 18 item 5: cpclKvStore on a plan of an aborted communicator is cpclInvalidUsage like
 * every other call (it returned cpclSuccess). */
static void test_kvstore_after_abort(void** state) {
  (void)state;
  fix_t f;
  fixSetup(&f);
  const cpclBatch_t good = tuBatch(2, 3, f.qs, f.lens, f.cache.blockTable, f.cache.maxPagesPerSeq);
  assert_int_equal(cpclKvStore(f.p, &good, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclSuccess);
  assert_int_equal(cpclCommAbort(f.c), cpclSuccess);
  assert_int_equal(cpclKvStore(f.p, &good, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclInvalidUsage);
  assert_non_null(strstr(cpclGetLastError(NULL), "aborted"));
  assert_int_equal(run(&f, &good), cpclInvalidUsage);
  free(f.q);
  free(f.out);
  free(f.lse);
  tuCacheFree(&f.cache);
  assert_int_equal(cpclAttnPlanDestroy(f.p), cpclSuccess); /* frees the aborted comm too */
  bad += 2;
}

/* Issue 18 item 6: a negative page id among the pages a step reads (decode) or writes (store)
 * is cpclInvalidArgument before anything is read or written; ids past them are never read. */
static void test_negative_page_id(void** state) {
  (void)state;
  fix_t f;
  fixSetup(&f);
  const cpclBatch_t good = tuBatch(2, 3, f.qs, f.lens, f.cache.blockTable, f.cache.maxPagesPerSeq);
  const int mp = f.cache.maxPagesPerSeq;
  int32_t* bt = malloc(sizeof(int32_t) * 2 * (size_t)mp);
  memcpy(bt, f.cache.blockTable, sizeof(int32_t) * 2 * (size_t)mp);
  /* sequence 1 holds 7 tokens in pages of 4: pages 0 and 1; page 2 onwards is never read */
  for (int i = 2; i < mp; i++) bt[mp + i] = -1;
  for (int i = 3; i < mp; i++) bt[i] = -7; /* sequence 0: 10 tokens, pages 0..2 */
  cpclBatch_t b = tuBatch(2, 3, f.qs, f.lens, bt, mp);
  assert_int_equal(run(&f, &b), cpclSuccess);
  bt[mp + 1] = -1; /* a page sequence 1's rows read */
  EXPECT_STEP(run(&f, &b), cpclInvalidArgument, "batch->blockTable[1][1] is -1");
  EXPECT_STEP(cpclAttnPartial(f.p, &b, f.q, f.cache.k, f.cache.v, f.out, f.lse, NULL), cpclInvalidArgument,
              "batch->blockTable[1][1] is -1");
  /* the store of sequence 1's one new token (position 6) writes page 1; a poisoned cache must
   * stay as it was */
  const size_t kBytes = (size_t)f.cache.numPages * 4 * 2 * 32 * 4;
  void* kSaved = malloc(kBytes);
  memcpy(kSaved, f.cache.k, kBytes);
  EXPECT_STEP(cpclKvStore(f.p, &b, f.q, f.q, f.cache.k, f.cache.v, NULL), cpclInvalidArgument,
              "batch->blockTable[1][1] is -1");
  assert_memory_equal(kSaved, f.cache.k, kBytes);
  bt[mp + 1] = f.cache.blockTable[mp + 1];
  bt[0] = INT32_MIN; /* sequence 0's first page: read by decode, not written by this store */
  EXPECT_STEP(run(&f, &b), cpclInvalidArgument, "batch->blockTable[0][0] is -2147483648");
  free(kSaved);
  free(bt);
  fixTeardown(&f);
}

static void test_comm_entry_points(void** state) {
  (void)state;
  int v;
  assert_int_equal(cpclCommRank(NULL, &v), cpclInvalidArgument);
  assert_int_equal(cpclCommSize(NULL, &v), cpclInvalidArgument);
  assert_int_equal(cpclCommAxes(NULL, &v, &v, &v, &v), cpclInvalidArgument);
  assert_int_equal(cpclCommDestroy(NULL), cpclInvalidArgument);
  assert_int_equal(cpclCommAbort(NULL), cpclInvalidArgument);
  assert_int_equal(cpclAttnPlanDestroy(NULL), cpclInvalidArgument);
  cpclComm_t c = mkComm(1);
  assert_int_equal(cpclCommRank(c, NULL), cpclInvalidArgument);
  assert_non_null(strstr(cpclGetLastError(c), "rank is NULL"));
  assert_int_equal(cpclCommGetAsyncError(c, NULL), cpclInvalidArgument);
  assert_int_equal(cpclCommDestroy(c), cpclSuccess);
  assert_int_equal(cpclKvLocalLen(5, 0, 0, 1), -1);
  bad += 9;
}

static int report(void** state) {
  (void)state;
  print_message("bad inputs tried: %d\n", bad);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_descriptor),
      cmocka_unit_test(test_batch),
      cmocka_unit_test(test_versioned_batch),
      cmocka_unit_test(test_sparse_batch),
      cmocka_unit_test(test_padding),
      cmocka_unit_test(test_workspace),
      cmocka_unit_test(test_rows_without_sequences),
      cmocka_unit_test(test_query_start_overflow),
      cmocka_unit_test(test_kvstore_after_abort),
      cmocka_unit_test(test_negative_page_id),
      cmocka_unit_test(test_comm_entry_points),
  };
  return cmocka_run_group_tests_name("validation", tests, NULL, report);
}
