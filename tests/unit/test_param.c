/* Unit: CPCL_* parameters (parsing, defaults, malformed values), error strings, last error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core.h"

static void test_parse_int(void** state) {
  (void)state;
  int64_t v = 0;
  assert_int_equal(cpclParseInt64("1234", &v), 0);
  assert_int_equal(v, 1234);
  assert_int_equal(cpclParseInt64("-7", &v), 0);
  assert_int_equal(v, -7);
  assert_int_equal(cpclParseInt64(" 42 ", &v), 0);
  assert_int_equal(v, 42);
  assert_int_equal(cpclParseInt64("", &v), -1);
  assert_int_equal(cpclParseInt64("12ms", &v), -1);
  assert_int_equal(cpclParseInt64("abc", &v), -1);
  assert_int_equal(cpclParseInt64("99999999999999999999999", &v), -1);
  assert_int_equal(cpclParseInt64(NULL, &v), -1);
}

static void test_timeout_param(void** state) {
  (void)state;
  unsetenv("CPCL_TIMEOUT_MS");
  cpclParamReset();
  assert_int_equal(cpclParamInt(CPCL_PARAM_TIMEOUT_MS), 60000);
  assert_false(cpclParamIsSet(CPCL_PARAM_TIMEOUT_MS));
  setenv("CPCL_TIMEOUT_MS", "2500", 1);
  assert_int_equal(cpclParamInt(CPCL_PARAM_TIMEOUT_MS), 60000); /* read once, cached */
  cpclParamReset();
  assert_int_equal(cpclParamInt(CPCL_PARAM_TIMEOUT_MS), 2500);
  assert_true(cpclParamIsSet(CPCL_PARAM_TIMEOUT_MS));
  setenv("CPCL_TIMEOUT_MS", "soon", 1);
  cpclParamReset();
  assert_int_equal(cpclParamInt(CPCL_PARAM_TIMEOUT_MS), 60000); /* malformed: default */
  assert_false(cpclParamIsSet(CPCL_PARAM_TIMEOUT_MS));          /* and not counted as set */
  setenv("CPCL_TIMEOUT_MS", "-3", 1);
  cpclParamReset();
  assert_int_equal(cpclParamInt(CPCL_PARAM_TIMEOUT_MS), 60000);
  unsetenv("CPCL_TIMEOUT_MS");
  cpclParamReset();
}

static void test_string_param(void** state) {
  (void)state;
  setenv("CPCL_ALGO", "a2a", 1);
  cpclParamReset();
  assert_string_equal(cpclParamString(CPCL_PARAM_ALGO), "a2a");
  unsetenv("CPCL_ALGO");
  cpclParamReset();
  assert_string_equal(cpclParamString(CPCL_PARAM_ALGO), "");
}

static void test_param_info(void** state) {
  (void)state;
  const char *name, *value, *def, *help;
  int n = 0;
  while (cpclGetParamInfo(n, &name, &value, &def, &help) == cpclSuccess) {
    assert_non_null(strstr(name, "CPCL_"));
    assert_true(strlen(help) > 10);
    n++;
  }
  assert_int_equal(n, CPCL_PARAM_NUM);
  assert_int_equal(cpclGetParamInfo(-1, &name, &value, &def, &help), cpclInvalidArgument);
  assert_non_null(strstr(cpclGetLastError(NULL), "index -1"));
}

static void test_error_strings(void** state) {
  (void)state;
  for (int r = 0; r < cpclNumResults; r++) {
    const char* s = cpclGetErrorString((cpclResult_t)r);
    assert_non_null(s);
    assert_string_not_equal(s, "unknown result code");
    for (int q = 0; q < r; q++) assert_string_not_equal(s, cpclGetErrorString((cpclResult_t)q));
  }
  assert_string_equal(cpclGetErrorString((cpclResult_t)99), "unknown result code");
}

/* a sink gets the message with its rank in front; the thread's record has it bare */
static void test_error_sink(void** state) {
  (void)state;
  char rec[32];
  cpclErrorSink_t sink = {.rank = 3, .buf = rec, .len = sizeof(rec)};
  assert_int_equal(CPCL_SINK_ERR(&sink, cpclTimeout, "peer %d is slow", 1), cpclTimeout);
  assert_string_equal(rec, "rank 3: peer 1 is slow");
  assert_string_equal(cpclThreadLastError(), "peer 1 is slow");
  sink.rank = -1;
  CPCL_SINK_ERR(&sink, cpclTimeout, "a message longer than the record it goes into");
  assert_int_equal(strlen(rec), sizeof(rec) - 1); /* truncated, terminated */
  assert_int_equal(strncmp(rec, "a message longer", 16), 0);
}

static void test_last_error(void** state) {
  (void)state;
  assert_int_equal(CPCL_ERR(NULL, cpclInvalidArgument, "x is %d", 5), cpclInvalidArgument);
  assert_string_equal(cpclGetLastError(NULL), "x is 5");
  int v = 0;
  assert_int_equal(cpclGetVersion(NULL), cpclInvalidArgument);
  assert_string_equal(cpclGetLastError(NULL), "version is NULL");
  assert_int_equal(cpclGetVersion(&v), cpclSuccess);
  assert_int_equal(v, CPCL_VERSION_CODE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_int),  cmocka_unit_test(test_timeout_param), cmocka_unit_test(test_string_param),
      cmocka_unit_test(test_param_info), cmocka_unit_test(test_error_strings), cmocka_unit_test(test_error_sink),
      cmocka_unit_test(test_last_error),
  };
  return cmocka_run_group_tests_name("param", tests, NULL, NULL);
}
