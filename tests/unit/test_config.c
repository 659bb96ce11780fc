/* Unit: config validation and defaults (cpclConfigResolve) and the init digest comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "comm.h"
#include "core.h"

static char msg[512];

static void test_defaults(void** state) {
  (void)state;
  cpclResolvedConfig_t rc;
  assert_int_equal(cpclConfigResolve(NULL, 4, &rc, msg, sizeof(msg)), cpclSuccess);
  assert_int_equal(rc.dcpSize, 4);
  assert_int_equal(rc.interleave, 1);
  assert_int_equal(rc.memType, cpclMemHost);
  assert_true(rc.timeoutMs > 0);
#ifdef CPCL_HAVE_UCX
  assert_string_equal(rc.transport, "ucx");
#endif
  assert_string_equal(rc.transportFrom, "automatic: host memory");
  assert_int_equal(cpclConfigResolve(NULL, 1, &rc, msg, sizeof(msg)), cpclSuccess);
  assert_string_equal(rc.transport, "self");
  assert_string_equal(rc.transportFrom, "automatic: one rank");
}

static void test_size_field(void** state) {
  (void)state;
  cpclResolvedConfig_t rc;
  cpclConfig_t c = CPCL_CONFIG_INITIALIZER;
  c.size = sizeof(c) - 4;
  assert_int_equal(cpclConfigResolve(&c, 2, &rc, msg, sizeof(msg)), cpclInvalidArgument);
  assert_non_null(strstr(msg, "config->size"));
}

static void test_bad_fields(void** state) {
  (void)state;
  cpclResolvedConfig_t rc;
  cpclConfig_t c = CPCL_CONFIG_INITIALIZER;
  c.dcpSize = 3;
  assert_int_equal(cpclConfigResolve(&c, 4, &rc, msg, sizeof(msg)), cpclInvalidArgument);
  assert_non_null(strstr(msg, "config->dcpSize is 3"));
  c.dcpSize = -1;
  assert_int_equal(cpclConfigResolve(&c, 4, &rc, msg, sizeof(msg)), cpclInvalidArgument);
  c = (cpclConfig_t)CPCL_CONFIG_INITIALIZER;
  c.kvInterleave = -2;
  assert_int_equal(cpclConfigResolve(&c, 4, &rc, msg, sizeof(msg)), cpclInvalidArgument);
  assert_non_null(strstr(msg, "config->kvInterleave is -2"));
  c = (cpclConfig_t)CPCL_CONFIG_INITIALIZER;
  c.memType = (cpclMemType_t)7;
  assert_int_equal(cpclConfigResolve(&c, 4, &rc, msg, sizeof(msg)), cpclInvalidArgument);
  assert_non_null(strstr(msg, "config->memType is 7"));
  c = (cpclConfig_t)CPCL_CONFIG_INITIALIZER;
  c.timeoutMs = -5;
  assert_int_equal(cpclConfigResolve(&c, 4, &rc, msg, sizeof(msg)), cpclInvalidArgument);
  assert_non_null(strstr(msg, "config->timeoutMs is -5"));
  c = (cpclConfig_t)CPCL_CONFIG_INITIALIZER;
  c.transport = "carrier-pigeon";
  assert_int_equal(cpclConfigResolve(&c, 4, &rc, msg, sizeof(msg)), cpclInvalidArgument);
  assert_non_null(strstr(msg, "carrier-pigeon"));
  c.transport = "self";
  assert_int_equal(cpclConfigResolve(&c, 4, &rc, msg, sizeof(msg)), cpclInvalidArgument);
  assert_non_null(strstr(msg, "one rank"));
}

static void test_values_kept(void** state) {
  (void)state;
  cpclResolvedConfig_t rc;
  cpclConfig_t c = CPCL_CONFIG_INITIALIZER;
  c.dcpSize = 2;
  c.kvInterleave = 16;
  c.timeoutMs = 1234;
  assert_int_equal(cpclConfigResolve(&c, 6, &rc, msg, sizeof(msg)), cpclSuccess);
  assert_int_equal(rc.dcpSize, 2);
  assert_int_equal(rc.interleave, 16);
  assert_int_equal(rc.timeoutMs, 1234);
  assert_string_equal(rc.timeoutFrom, "config->timeoutMs");
  c = (cpclConfig_t)CPCL_CONFIG_INITIALIZER;
  c.transport = "self";
  assert_int_equal(cpclConfigResolve(&c, 1, &rc, msg, sizeof(msg)), cpclSuccess);
  assert_string_equal(rc.transportFrom, "config->transport");
}

/* where the timeout comes from, for the creation log: config, then CPCL_TIMEOUT_MS, then default */
static void test_timeout_source(void** state) {
  (void)state;
  cpclResolvedConfig_t rc;
  setenv("CPCL_TIMEOUT_MS", "777", 1);
  cpclParamReset();
  assert_int_equal(cpclConfigResolve(NULL, 1, &rc, msg, sizeof(msg)), cpclSuccess);
  assert_int_equal(rc.timeoutMs, 777);
  assert_string_equal(rc.timeoutFrom, "CPCL_TIMEOUT_MS");
  setenv("CPCL_TIMEOUT_MS", "0", 1);
  cpclParamReset();
  assert_int_equal(cpclConfigResolve(NULL, 1, &rc, msg, sizeof(msg)), cpclSuccess);
  assert_int_equal(rc.timeoutMs, CPCL_DEFAULT_TIMEOUT_MS);
  assert_string_equal(rc.timeoutFrom, "the default");
  unsetenv("CPCL_TIMEOUT_MS");
  cpclParamReset();
  assert_int_equal(cpclConfigResolve(NULL, 1, &rc, msg, sizeof(msg)), cpclSuccess);
  assert_string_equal(rc.timeoutFrom, "the default");
}

static void test_transport_env(void** state) {
  (void)state;
  cpclResolvedConfig_t rc;
  setenv("CPCL_TRANSPORT", "nosuch", 1);
  cpclParamReset();
  assert_int_equal(cpclConfigResolve(NULL, 2, &rc, msg, sizeof(msg)), cpclInvalidArgument);
  assert_non_null(strstr(msg, "CPCL_TRANSPORT"));
  unsetenv("CPCL_TRANSPORT");
  cpclParamReset();
}

static cpclCommDigest_t digest(int rank, int nranks) {
  cpclCommDigest_t d;
  memset(&d, 0, sizeof(d));
  d.magic = 0x4c435043u;
  d.version = CPCL_VERSION_CODE;
  d.rank = rank;
  d.nranks = nranks;
  d.argsValid = 1;
  d.configValid = 1;
  d.dcpSize = nranks;
  d.interleave = 1;
  d.memType = cpclMemHost;
  strcpy(d.transport, "ucx");
  return d;
}

static void test_digest(void** state) {
  (void)state;
  cpclCommDigest_t all[6]; /* two slots past the group: zero, as a fresh buffer */
  memset(all, 0, sizeof(all));
  for (int r = 0; r < 4; r++) all[r] = digest(r, 4);
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclSuccess);

  all[3].dcpSize = 2;
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclInvalidUsage);
  assert_string_equal(msg, "ranks disagree on dcpSize: rank 0 has 4, rank 3 has 2");
  all[3] = digest(3, 4);
  all[2].interleave = 16;
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclInvalidUsage);
  assert_non_null(strstr(msg, "kvInterleave"));
  all[2] = digest(2, 4);
  strcpy(all[1].transport, "nccl");
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclInvalidUsage);
  assert_non_null(strstr(msg, "\"nccl\""));
  all[1] = digest(1, 4);
  all[1].version += 1;
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclInvalidUsage);
  assert_non_null(strstr(msg, "version"));
  all[1] = digest(1, 4);
  all[0].configValid = 0;
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclInvalidUsage);
  assert_non_null(strstr(msg, "rank 0 passed an invalid config"));
  all[0] = digest(0, 4);
  all[2].rank = 1; /* a broken OOB that returns blocks out of order */
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclInvalidUsage);
  assert_non_null(strstr(msg, "out-of-band"));
  all[2] = digest(2, 4);
  /* issue 18 item 8: a rank with bad oob arguments still sends its digest, marked */
  all[3] = digest(9, 4);
  all[3].argsValid = 0;
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclInvalidUsage);
  assert_string_equal(msg,
                      "rank 3 passed bad out-of-band arguments (oob->rank 9, oob->nranks 4; its own error names them)");
  all[3] = digest(3, 4);
  /* the all-gather filled a slot past this rank's nranks: the group is larger than it was told */
  all[4] = digest(4, 5);
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclInvalidUsage);
  assert_non_null(strstr(msg, "slot 4 holds rank 4 of 5 ranks, but oob->nranks is 4 here"));
  memset(&all[4], 0, sizeof(all[4]));
  assert_int_equal(cpclCommDigestCompare(all, 4, 6, msg, sizeof(msg)), cpclSuccess);
}

static void test_init_bad_oob(void** state) {
  (void)state;
  cpclComm_t comm = NULL;
  assert_int_equal(cpclCommInitOob(&comm, NULL, NULL), cpclInvalidArgument);
  assert_non_null(strstr(cpclGetLastError(NULL), "oob is NULL"));
  cpclOob_t oob = {NULL, NULL, 0, 1};
  assert_int_equal(cpclCommInitOob(&comm, &oob, NULL), cpclInvalidArgument);
  assert_non_null(strstr(cpclGetLastError(NULL), "oob->allgather"));
  assert_null(comm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),     cmocka_unit_test(test_size_field),     cmocka_unit_test(test_bad_fields),
      cmocka_unit_test(test_values_kept),  cmocka_unit_test(test_transport_env),  cmocka_unit_test(test_digest),
      cmocka_unit_test(test_init_bad_oob), cmocka_unit_test(test_timeout_source),
  };
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
