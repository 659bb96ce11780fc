/* Unit: the C side of the bindings, so that it also runs under the sanitizers (a Python
 * interpreter cannot load an instrumented library): the struct layouts the Python package checks
 * at import (cpclGetStructLayout / cpclGetStructField) and the KV store by slot mapping
 * (cpclKvStoreSlots) on host memory: strided rows, skipped rows, MLA, and every bad argument. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpcl.h"
#include "testutil.h"

#define EXPECT_MSG(call, res, text)                                          \
  do {                                                                       \
    assert_int_equal((call), (res));                                         \
    if (strstr(cpclGetLastError(NULL), text) == NULL)                        \
      fail_msg("message \"%s\" lacks \"%s\"", cpclGetLastError(NULL), text); \
  } while (0)

typedef struct {
  const char* name;
  size_t offset, size;
} field_t;

static void checkStruct(const char* name, size_t size, const field_t* fields, int n) {
  size_t got = 0;
  int count = -1;
  assert_int_equal(cpclGetStructLayout(name, &got, &count), cpclSuccess);
  assert_int_equal(got, size);
  assert_int_equal(count, n);
  for (int i = 0; i < n; i++) {
    const char* fn = NULL;
    size_t off = 0, fs = 0;
    assert_int_equal(cpclGetStructField(name, i, &fn, &off, &fs), cpclSuccess);
    assert_string_equal(fn, fields[i].name);
    assert_int_equal(off, fields[i].offset);
    assert_int_equal(fs, fields[i].size);
  }
  EXPECT_MSG(cpclGetStructField(name, n, NULL, NULL, NULL), cpclInvalidArgument, "index is");
  EXPECT_MSG(cpclGetStructField(name, -1, NULL, NULL, NULL), cpclInvalidArgument, "index is -1");
}

#define F(S, M) \
  { #M, offsetof(S, M), sizeof(((S*)0)->M) }

static void test_struct_layouts(void** state) {
  (void)state;
  const field_t oob[] = {F(cpclOob_t, allgather), F(cpclOob_t, ctx), F(cpclOob_t, rank), F(cpclOob_t, nranks)};
  checkStruct("cpclOob_t", sizeof(cpclOob_t), oob, 4);
  const field_t cfg[] = {F(cpclConfig_t, size),    F(cpclConfig_t, dcpSize),   F(cpclConfig_t, kvInterleave),
                         F(cpclConfig_t, memType), F(cpclConfig_t, transport), F(cpclConfig_t, timeoutMs)};
  checkStruct("cpclConfig_t", sizeof(cpclConfig_t), cfg, 6);
  const field_t desc[] = {F(cpclAttnDesc_t, size),      F(cpclAttnDesc_t, numQoHeads), F(cpclAttnDesc_t, numKvHeads),
                          F(cpclAttnDesc_t, headDimQk), F(cpclAttnDesc_t, headDimVo),  F(cpclAttnDesc_t, pageSize),
                          F(cpclAttnDesc_t, smScale),   F(cpclAttnDesc_t, qType),      F(cpclAttnDesc_t, kvType),
                          F(cpclAttnDesc_t, latentKv),  F(cpclAttnDesc_t, lseBase2),   F(cpclAttnDesc_t, algo),
                          F(cpclAttnDesc_t, topk),      F(cpclAttnDesc_t, prefillAlgo)};
  checkStruct("cpclAttnDesc_t", sizeof(cpclAttnDesc_t), desc, 14);
  const field_t batch[] = {F(cpclBatch_t, size),           F(cpclBatch_t, numSeqs),    F(cpclBatch_t, numTokens),
                           F(cpclBatch_t, queryStart),     F(cpclBatch_t, seqLens),    F(cpclBatch_t, blockTable),
                           F(cpclBatch_t, maxPagesPerSeq), F(cpclBatch_t, topkIndices)};
  checkStruct("cpclBatch_t", sizeof(cpclBatch_t), batch, 8);
  EXPECT_MSG(cpclGetStructLayout("cpclNope_t", NULL, NULL), cpclInvalidArgument, "\"cpclNope_t\"");
  EXPECT_MSG(cpclGetStructLayout(NULL, NULL, NULL), cpclInvalidArgument, "structName is NULL");
}

enum { HKV = 2, D = 16, PAGE = 4, PAGES = 6, T = 9, STRIDE = 3 * HKV * D };

static cpclAttnPlan_t mkPlan(cpclComm_t* c, int latent) {
  assert_int_equal(tuSelfComm(c, 1, cpclMemHost), cpclSuccess);
  cpclAttnDesc_t d = CPCL_ATTN_DESC_INITIALIZER;
  d.numQoHeads = d.numKvHeads = latent ? 1 : HKV;
  d.headDimQk = D;
  d.headDimVo = latent ? D / 2 : D;
  d.pageSize = PAGE;
  d.smScale = 0.25f;
  d.qType = d.kvType = cpclBfloat16;
  d.latentKv = latent;
  cpclAttnPlan_t p = NULL;
  assert_int_equal(cpclAttnPlanCreate(&p, *c, &d, 1), cpclSuccess);
  return p;
}

static void test_kv_store_slots(void** state) {
  (void)state;
  for (int latent = 0; latent <= 1; latent++) {
    cpclComm_t c;
    cpclAttnPlan_t p = mkPlan(&c, latent);
    const int hkv = latent ? 1 : HKV, row = hkv * D;
    /* a fused [T][q | k | v] buffer of bf16; k and v are row-strided views into it */
    uint16_t* fused = calloc(T * STRIDE, sizeof(uint16_t));
    for (int i = 0; i < T * STRIDE; i++) fused[i] = (uint16_t)(i * 7 + 1);
    const uint16_t* kNew = fused + HKV * D;
    const uint16_t* vNew = fused + 2 * HKV * D;
    int64_t slots[T] = {5, -1, 0, 23, 7, -3, 12, 1, 16};
    uint16_t* kc = calloc(PAGES * PAGE * row, sizeof(uint16_t));
    uint16_t* vc = calloc(PAGES * PAGE * row, sizeof(uint16_t));
    assert_int_equal(
        cpclKvStoreSlots(p, T, slots, kNew, latent ? NULL : vNew, STRIDE, STRIDE, kc, latent ? NULL : vc, PAGES, NULL),
        cpclSuccess);
    for (int s = 0; s < PAGES * PAGE; s++) {
      int t = -1;
      for (int i = 0; i < T; i++)
        if (slots[i] == s) t = i;
      for (int e = 0; e < row; e++) {
        assert_int_equal(kc[s * row + e], t < 0 ? 0 : kNew[t * STRIDE + e]);
        assert_int_equal(vc[s * row + e], (t < 0 || latent) ? 0 : vNew[t * STRIDE + e]);
      }
    }
    /* packed rows (stride 0) give the same cache */
    uint16_t* packed = calloc(T * row, sizeof(uint16_t));
    for (int t = 0; t < T; t++) memcpy(packed + t * row, kNew + t * STRIDE, row * sizeof(uint16_t));
    uint16_t* kc2 = calloc(PAGES * PAGE * row, sizeof(uint16_t));
    if (latent) {
      assert_int_equal(cpclKvStoreSlots(p, T, slots, packed, NULL, 0, 0, kc2, NULL, PAGES, NULL), cpclSuccess);
      assert_memory_equal(kc, kc2, PAGES * PAGE * row * sizeof(uint16_t));
    }
    /* bad arguments: a slot past the cache writes nothing */
    memset(kc2, 0, PAGES * PAGE * row * sizeof(uint16_t));
    slots[4] = PAGES * PAGE;
    EXPECT_MSG(cpclKvStoreSlots(p, T, slots, kNew, vNew, STRIDE, STRIDE, kc2, vc, PAGES, NULL), cpclInvalidArgument,
               "slotMapping[4] is 24, past the cache");
    for (int i = 0; i < PAGES * PAGE * row; i++) assert_int_equal(kc2[i], 0);
    slots[4] = 7;
    EXPECT_MSG(cpclKvStoreSlots(p, -1, slots, kNew, vNew, 0, 0, kc2, vc, PAGES, NULL), cpclInvalidArgument,
               "numTokens is -1");
    EXPECT_MSG(cpclKvStoreSlots(p, T, NULL, kNew, vNew, 0, 0, kc2, vc, PAGES, NULL), cpclInvalidArgument,
               "slotMapping");
    EXPECT_MSG(cpclKvStoreSlots(p, T, slots, kNew, vNew, row - 1, 0, kc2, vc, PAGES, NULL), cpclInvalidArgument,
               "kNewRowStride");
    EXPECT_MSG(cpclKvStoreSlots(p, T, slots, kNew, vNew, 0, 0, kc2, vc, 0, NULL), cpclInvalidArgument, "numPages is 0");
    if (!latent)
      EXPECT_MSG(cpclKvStoreSlots(p, T, slots, kNew, NULL, 0, 0, kc2, vc, PAGES, NULL), cpclInvalidArgument, "vNew");
    EXPECT_MSG(cpclKvStoreSlots(NULL, T, slots, kNew, vNew, 0, 0, kc2, vc, PAGES, NULL), cpclInvalidArgument,
               "plan is NULL");
    assert_int_equal(cpclKvStoreSlots(p, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, 0, NULL), cpclSuccess);
    free(fused);
    free(packed);
    free(kc);
    free(vc);
    free(kc2);
    assert_int_equal(cpclAttnPlanDestroy(p), cpclSuccess);
    assert_int_equal(cpclCommDestroy(c), cpclSuccess);
  }
}

/* like every operation, the store refuses an aborted communicator */
static void test_kv_store_slots_after_abort(void** state) {
  (void)state;
  cpclComm_t c;
  cpclAttnPlan_t p = mkPlan(&c, 0);
  uint16_t rows[2 * HKV * D] = {0}, kc[PAGES * PAGE * HKV * D], vc[PAGES * PAGE * HKV * D];
  const int64_t slots[2] = {0, 1};
  assert_int_equal(cpclKvStoreSlots(p, 2, slots, rows, rows, 0, 0, kc, vc, PAGES, NULL), cpclSuccess);
  assert_int_equal(cpclCommAbort(c), cpclSuccess);
  assert_int_equal(cpclKvStoreSlots(p, 2, slots, rows, rows, 0, 0, kc, vc, PAGES, NULL), cpclInvalidUsage);
  assert_int_equal(cpclAttnPlanDestroy(p), cpclSuccess);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_struct_layouts),
      cmocka_unit_test(test_kv_store_slots),
      cmocka_unit_test(test_kv_store_slots_after_abort),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
