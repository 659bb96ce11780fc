/* Unit: the transport tables. Each compiled-in transport declares exactly the capabilities it
 * wires (a declared group is wired whole, an undeclared one is left to its typed stubs), and
 * the stubs fail with cpclUnsupported naming their slot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "transport.h"

static char msg[256];

static void test_compiled_in_caps(void** state) {
  (void)state;
  int compiled = 0;
  for (int i = 0; i < cpclNumTransports; i++) {
    const cpclTransportOps_t* t = cpclTransports[i].ops;
    if (t == NULL) continue;
    compiled++;
    assert_string_equal(t->name, cpclTransports[i].name);
    if (cpclTransportCheckCaps(t, msg, sizeof(msg)) != 0) fail_msg("%s", msg);
    /* the layers above rely on these pairings */
    if (t->memTypes & (1u << cpclMemHost) && strcmp(t->name, "self") != 0) assert_true(t->caps & CPCL_TP_CAP_HOST_P2P);
    if (cpclTransportIsDevice(t)) {
      assert_true(t->caps & CPCL_TP_CAP_CTRL);
      assert_true(t->caps & CPCL_TP_CAP_STREAM_XCHG);
    }
  }
  assert_true(compiled >= 1); /* self is always built */
  assert_int_equal(cpclTransportSelf.caps, 0);
#ifdef CPCL_HAVE_UCX
  assert_int_equal(cpclTransportUcx.caps, CPCL_TP_CAP_HOST_P2P);
#endif
#ifdef CPCL_HAVE_CUDA
  assert_true(cpclTransportIpc.caps & CPCL_TP_CAP_PEER_MAP);
#endif
#ifdef CPCL_HAVE_NCCL
  assert_true(cpclTransportNccl.caps & CPCL_TP_CAP_STREAM_P2P);
  assert_false(cpclTransportNccl.caps & CPCL_TP_CAP_PEER_MAP);
#endif
}

static int fakeUsable(void) { return 1; }
static cpclResult_t fakeInit(const cpclTransportInitArgs_t* args, void** ctx) {
  (void)args;
  *ctx = NULL;
  return cpclSuccess;
}
static cpclResult_t fakeFini(void* ctx) {
  (void)ctx;
  return cpclSuccess;
}
static cpclResult_t fakeRegMem(void* ctx, void* buf, size_t bytes, void** handle) {
  (void)ctx, (void)buf, (void)bytes, (void)handle;
  return cpclSuccess;
}

/* the check itself finds each kind of mismatch */
static void test_check_finds_mismatch(void** state) {
  (void)state;
  cpclTransportOps_t t = {CPCL_TP_NO_HOST_P2P,
                          CPCL_TP_NO_PEER_MAP,
                          CPCL_TP_NO_CTRL,
                          CPCL_TP_NO_STREAM_XCHG,
                          CPCL_TP_NO_STREAM_P2P,
                          .name = "fake",
                          .memTypes = 1u << cpclMemHost,
                          .caps = 0,
                          .usable = fakeUsable,
                          .init = fakeInit,
                          .fini = fakeFini};
  assert_int_equal(cpclTransportCheckCaps(&t, msg, sizeof(msg)), 0);

  t.caps = CPCL_TP_CAP_PEER_MAP; /* declared, nothing wired */
  assert_int_equal(cpclTransportCheckCaps(&t, msg, sizeof(msg)), -1);
  assert_non_null(strstr(msg, "declares the capability of regMem but does not wire it"));

  t.caps = 0;
  t.regMem = fakeRegMem; /* wired, not declared */
  assert_int_equal(cpclTransportCheckCaps(&t, msg, sizeof(msg)), -1);
  assert_non_null(strstr(msg, "does not declare the capability of regMem but wires it"));

  t.caps = CPCL_TP_CAP_PEER_MAP; /* declared, wired in part */
  assert_int_equal(cpclTransportCheckCaps(&t, msg, sizeof(msg)), -1);
  assert_non_null(strstr(msg, "deregMem"));

  t.caps = 0;
  t.regMem = cpclTransportUnsupportedRegMem;
  t.sendrecv = NULL;
  assert_int_equal(cpclTransportCheckCaps(&t, msg, sizeof(msg)), -1);
  assert_non_null(strstr(msg, "sendrecv NULL"));

  t.sendrecv = cpclTransportUnsupportedSendrecv;
  t.caps = 1u << 20;
  assert_int_equal(cpclTransportCheckCaps(&t, msg, sizeof(msg)), -1);
  assert_non_null(strstr(msg, "unknown capability"));
}

static void test_stubs_name_their_slot(void** state) {
  (void)state;
  cpclRequest_t req = {0};
  int done = 0;
  assert_int_equal(cpclTransportUnsupportedIsend(NULL, 1, 0, NULL, 0, &req, NULL), cpclUnsupported);
  assert_non_null(strstr(cpclGetLastError(NULL), "isend"));
  assert_int_equal(cpclTransportUnsupportedTest(NULL, &req, &done), cpclUnsupported);
  assert_non_null(strstr(cpclGetLastError(NULL), "test"));
  assert_int_equal(cpclTransportUnsupportedPeerSync(NULL, NULL), cpclUnsupported);
  assert_non_null(strstr(cpclGetLastError(NULL), "peerSync"));
  assert_int_equal(cpclTransportUnsupportedSendrecv(NULL, 1, NULL, 0, 1, NULL, 0, NULL, NULL), cpclUnsupported);
  assert_non_null(strstr(cpclGetLastError(NULL), "sendrecv"));
  assert_int_equal(cpclTransportSelf.alltoallv(NULL, NULL), cpclUnsupported);
  assert_non_null(strstr(cpclGetLastError(NULL), "alltoallv"));
}

/* self refuses more than one rank with a message naming the count, recorded in the sink too */
static void test_self_init(void** state) {
  (void)state;
  char record[128] = "";
  cpclErrorSink_t sink = {.rank = 2, .buf = record, .len = sizeof(record)};
  cpclTransportInitArgs_t args = {.rank = 0, .nranks = 2, .memType = cpclMemHost, .errors = &sink};
  void* ctx = NULL;
  assert_int_equal(cpclTransportSelf.init(&args, &ctx), cpclInvalidArgument);
  assert_string_equal(record, "rank 2: transport \"self\" serves one rank, not 2");
  assert_string_equal(cpclGetLastError(NULL), "transport \"self\" serves one rank, not 2");
  args.nranks = 1;
  assert_int_equal(cpclTransportSelf.init(&args, &ctx), cpclSuccess);
  assert_int_equal(cpclTransportSelf.fini(ctx), cpclSuccess);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_compiled_in_caps),
      cmocka_unit_test(test_check_finds_mismatch),
      cmocka_unit_test(test_stubs_name_their_slot),
      cmocka_unit_test(test_self_init),
  };
  return cmocka_run_group_tests_name("transport", tests, NULL, NULL);
}
