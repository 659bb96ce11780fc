/* Unit: KV placement (kv_layout.h, cpclKvLocalLen) against brute force, and equality with vLLM's
 * virtual-block slot mapping when pageSize % I == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "cpcl.h"
#include "kv_layout.h"

static void test_brute_force(void** state) {
  (void)state;
  for (int W = 1; W <= 8; W++)
    for (int I = 1; I <= 17; I++) {
      int64_t count[8] = {0};
      for (int64_t L = 0; L <= 300; L++) {
        /* token L - 1 joins: recount brute force incrementally */
        if (L > 0) {
          int64_t p = L - 1;
          int o = cpclKvOwner(p, W, I);
          assert_true(o >= 0 && o < W);
          assert_int_equal(o, (int)((p / I) % W));
          /* the owner's local index of p is the count of its tokens before p */
          assert_int_equal(cpclKvLocalIndex(p, W, I), count[o]);
          count[o]++;
        }
        int64_t total = 0;
        for (int r = 0; r < W; r++) {
          assert_int_equal(cpclKvLocalLenOf(L, W, r, I), count[r]);
          assert_int_equal(cpclKvLocalLen(L, W, r, I), count[r]);
          total += count[r];
        }
        assert_int_equal(total, L);
      }
    }
}

static void test_bad_args(void** state) {
  (void)state;
  assert_int_equal(cpclKvLocalLen(-1, 2, 0, 1), -1);
  assert_int_equal(cpclKvLocalLen(10, 0, 0, 1), -1);
  assert_int_equal(cpclKvLocalLen(10, 2, 2, 1), -1);
  assert_int_equal(cpclKvLocalLen(10, 2, -1, 1), -1);
  assert_int_equal(cpclKvLocalLen(10, 2, 0, 0), -1);
}

/* vLLM (DCP with cp_kv_cache_interleave_size): a virtual block of pageSize * W positions maps
 * to one page per rank. */
static void vllmSlot(int64_t p, int W, int I, int pageSize, const int32_t* bt, int rank, int* owned, int64_t* slot) {
  int64_t vbs = (int64_t)pageSize * W;
  int64_t block = bt[p / vbs];
  int64_t off = p % vbs;
  *owned = (off / I) % W == rank;
  *slot = block * pageSize + off / ((int64_t)W * I) * I + off % I;
}

static void test_vllm_slot_mapping(void** state) {
  (void)state;
  /* positions < 400 and a virtual block of pageSize * W >= 1 tokens: up to 400 blocks */
  int32_t bt[400];
  for (int i = 0; i < 400; i++) bt[i] = (i * 13 + 5) % 400;
  for (int W = 1; W <= 8; W++)
    for (int I = 1; I <= 8; I++)
      for (int mult = 1; mult <= 4; mult++) {
        int pageSize = I * mult;
        for (int64_t p = 0; p < 400; p++)
          for (int r = 0; r < W; r++) {
            int owned;
            int64_t vslot;
            vllmSlot(p, W, I, pageSize, bt, r, &owned, &vslot);
            assert_int_equal(owned, cpclKvOwner(p, W, I) == r);
            if (!owned) continue;
            int64_t li = cpclKvLocalIndex(p, W, I);
            assert_int_equal((int64_t)bt[li / pageSize] * pageSize + li % pageSize, vslot);
          }
      }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_brute_force),
      cmocka_unit_test(test_bad_args),
      cmocka_unit_test(test_vllm_slot_mapping),
  };
  return cmocka_run_group_tests_name("kv_layout", tests, NULL, NULL);
}
