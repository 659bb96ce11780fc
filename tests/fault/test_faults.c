/* fault: peers that die, stall or disagree, and abort from another thread. The ranks are forked
 * by this test (no mpirun, so the launcher never kills the survivors first) and bootstrap through
 * an all-gather over shared memory. Each scenario checks what every surviving rank returns and
 * how long it took. Prints one line per scenario with the measured times. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cpcl.h"
#include "testutil.h"

#define W 3
#define SLOT (64 * 1024)
#define TIMEOUT_MS 3000

typedef struct {
  atomic_int count, gen;
  atomic_int failed;
  double deathTime; /* when the victim died (CLOCK_MONOTONIC, ms) */
  double killAt;    /* the parent SIGKILLs the victim at this time, when set */
  int killSig;      /* what it sends then (0: SIGKILL); a stopped victim is killed once done */
  atomic_int done;  /* survivors finished checking (the parent then kills a stopped victim) */
  double callMs;    /* a scenario's measured length of one good call */
  char message[W][160];
  double errorTime[W]; /* when each survivor saw its error */
  int result[W];       /* what each rank's call returned */
  char data[W][SLOT];
} shared_t;

static shared_t* sh;
static int myRank;

#define CPCL_MAX_F(a, b) ((a) > (b) ? (a) : (b))

static double nowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int barrier(void) {
  int g = atomic_load(&sh->gen);
  if (atomic_fetch_add(&sh->count, 1) == W - 1) {
    atomic_store(&sh->count, 0);
    atomic_fetch_add(&sh->gen, 1);
    return 0;
  }
  double start = nowMs();
  while (atomic_load(&sh->gen) == g) {
    if (nowMs() - start > 20000) return 1; /* a bootstrap that never completes: fail, do not hang */
    sched_yield();
  }
  return 0;
}

static int shmAllgather(const void* s, void* r, size_t bytes, void* ctx) {
  (void)ctx;
  if (bytes > SLOT) return 1;
  memcpy(sh->data[myRank], s, bytes);
  if (barrier()) return 1;
  for (int i = 0; i < W; i++) memcpy((char*)r + (size_t)i * bytes, sh->data[i], bytes);
  return barrier();
}

#define CHECK(cond, ...)                                                \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "[rank %d] %s:%d: ", myRank, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                     \
      fprintf(stderr, " (last error: %s)\n", cpclGetLastError(NULL));   \
      atomic_store(&sh->failed, 1);                                     \
      _exit(1);                                                         \
    }                                                                   \
  } while (0)

/* A small decode problem every rank can run. */
typedef struct {
  cpclComm_t comm;
  cpclAttnPlan_t plan;
  tuProblem_t pb;
  int32_t qs[3], lens[2];
  tuCache_t cache;
  void *q, *out;
  float* lse;
  cpclBatch_t batch;
} job_t;

static void jobSetup(job_t* j) {
  cpclOob_t oob = {shmAllgather, NULL, myRank, W};
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.timeoutMs = TIMEOUT_MS;
  CHECK(cpclCommInitOob(&j->comm, &oob, &cfg) == cpclSuccess, "comm init");
  j->qs[0] = 0, j->qs[1] = 1, j->qs[2] = 2;
  j->lens[0] = 100, j->lens[1] = 37;
  j->pb = (tuProblem_t){.numSeqs = 2,
                        .numTokens = 2,
                        .queryStart = j->qs,
                        .seqLens = j->lens,
                        .Hq = 2 * W,
                        .Hkv = 1,
                        .Dqk = 32,
                        .Dv = 32,
                        .qType = cpclFloat32,
                        .kvType = cpclFloat32,
                        .smScale = 0.17f,
                        .seed = 5};
  cpclAttnDesc_t d = tuDesc(&j->pb, 2, 4);
  CHECK(cpclAttnPlanCreate(&j->plan, j->comm, &d, 2) == cpclSuccess, "plan");
  tuCacheAlloc(&j->pb, W, myRank, 1, 4, &j->cache);
  tuCacheFill(&j->pb, W, myRank, 1, &j->cache);
  j->q = tuMakeQ(&j->pb, myRank * 2, 2);
  j->out = malloc(2 * 2 * 32 * 4);
  j->lse = malloc(2 * 2 * 4);
  j->batch = tuBatch(2, 2, j->qs, j->lens, j->cache.blockTable, j->cache.maxPagesPerSeq);
}

static cpclResult_t decode(job_t* j) {
  return cpclAttnDecode(j->plan, &j->batch, j->q, j->cache.k, j->cache.v, j->out, j->lse, NULL);
}

/* ---- scenarios, run in each forked rank ---- */

/* rank 2 is SIGKILLed between steps; the others' next decode must fail with cpclRemoteError
 * (not hang, not succeed) within the timeout + 2 s, and the comm then refuses further work */
static void scenarioDeath(void) {
  job_t j;
  jobSetup(&j);
  for (int i = 0; i < 5; i++) CHECK(decode(&j) == cpclSuccess, "warm-up decode %d", i);
  if (myRank == 2) {
    sh->deathTime = nowMs();
    raise(SIGKILL);
  }
  usleep(50000);
  cpclResult_t r = decode(&j);
  sh->errorTime[myRank] = nowMs();
  sh->result[myRank] = r;
  CHECK(r == cpclRemoteError, "decode after a peer died returned %d (%s)", r, cpclGetErrorString(r));
  CHECK(sh->errorTime[myRank] - sh->deathTime < TIMEOUT_MS + 2000, "error took %.0f ms",
        sh->errorTime[myRank] - sh->deathTime);
  cpclResult_t async;
  cpclCommGetAsyncError(j.comm, &async);
  CHECK(async == cpclRemoteError, "async error %d", async);
  CHECK(decode(&j) == cpclInvalidUsage, "a broken comm must refuse further steps");
  cpclAttnPlanDestroy(j.plan);
  CHECK(cpclCommDestroy(j.comm) == cpclSuccess, "destroy after a failure");
  _exit(0);
}

/* mid-operation: ranks 0 and 1 are inside a decode, waiting for rank 2, when the parent SIGKILLs
 * it; they must return cpclRemoteError within the timeout + 2 s of its death */
static void scenarioDeathMid(void) {
  job_t j;
  jobSetup(&j);
  CHECK(decode(&j) == cpclSuccess, "first decode");
  if (myRank == 2) {
    sh->killAt = nowMs() + 300;
    for (;;) pause(); /* never joins the next step; killed by the parent */
  }
  cpclResult_t r = decode(&j);
  sh->errorTime[myRank] = nowMs();
  CHECK(r == cpclRemoteError, "decode while a peer was killed returned %d", r);
  CHECK(sh->deathTime > 0 && sh->errorTime[myRank] - sh->deathTime < TIMEOUT_MS + 2000, "error %.0f ms after death",
        sh->errorTime[myRank] - sh->deathTime);
  _exit(0);
}

/* rank 2 sleeps past the timeout: the others get cpclTimeout, in [timeout, timeout + 2 s] */
static void scenarioStall(void) {
  job_t j;
  jobSetup(&j);
  CHECK(decode(&j) == cpclSuccess, "first decode");
  if (myRank == 2) {
    usleep((TIMEOUT_MS + 1500) * 1000);
    _exit(0);
  }
  double t0 = nowMs();
  cpclResult_t r = decode(&j);
  double dt = nowMs() - t0;
  sh->errorTime[myRank] = dt;
  CHECK(r == cpclTimeout, "decode with a stalled peer returned %d", r);
  CHECK(dt >= TIMEOUT_MS * 0.9 && dt < TIMEOUT_MS + 2000, "timeout after %.0f ms", dt);
  CHECK(strstr(cpclGetLastError(j.comm), "within") != NULL, "message: %s", cpclGetLastError(j.comm));
  /* issue 18 item 5: the broken comm refuses the local store too */
  r = cpclKvStore(j.plan, &j.batch, j.q, j.q, j.cache.k, j.cache.v, NULL);
  CHECK(r == cpclInvalidUsage, "cpclKvStore on a comm broken by a timeout returned %d", r);
  _exit(0);
}

/* prefill: pcp 3 (dcp 1), ring schedule, a fresh 48-token prompt (only the ring moves data).
 * After one good step rank 2 sleeps past the timeout instead of joining the next; ranks 0 and 1
 * get cpclTimeout in [timeout, timeout + 2 s] (at the step's agreement: a peer that stalls inside
 * the ring cannot be staged from outside the library) */
static void scenarioPrefillStall(void) {
  cpclOob_t oob = {shmAllgather, NULL, myRank, W};
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.timeoutMs = TIMEOUT_MS;
  cfg.dcpSize = 1;
  cpclComm_t comm;
  CHECK(cpclCommInitOob(&comm, &oob, &cfg) == cpclSuccess, "comm init");
  int32_t full[1] = {48}, ctx[1] = {0}, nw[1] = {48};
  tuProblem_t pb = {.numSeqs = 1,
                    .seqLens = full,
                    .Hq = 2,
                    .Hkv = 1,
                    .Dqk = 32,
                    .Dv = 32,
                    .qType = cpclFloat32,
                    .kvType = cpclFloat32,
                    .smScale = 0.17f,
                    .seed = 9};
  cpclAttnDesc_t d = tuDesc(&pb, 2, 4);
  d.prefillAlgo = "ring";
  cpclAttnPlan_t plan;
  CHECK(cpclAttnPlanCreate(&plan, comm, &d, 48) == cpclSuccess, "plan");
  tuCache_t c;
  tuCacheAlloc(&pb, W, myRank, 1, 4, &c);
  int64_t st[2], ln[2];
  const int rows = (int)cpclPcpChunks(48, W, myRank, st, ln);
  int32_t qs[2] = {0, rows};
  cpclPrefillBatch_t b = CPCL_PREFILL_BATCH_INITIALIZER;
  b.numSeqs = 1, b.numTokens = rows, b.queryStart = qs, b.contextLens = ctx, b.newLens = nw;
  b.blockTable = c.blockTable, b.maxPagesPerSeq = c.maxPagesPerSeq;
  float* buf = calloc((size_t)rows * 2 * 32, sizeof(float));
  float* lse = calloc((size_t)rows * 2, sizeof(float));
  float* out = calloc((size_t)rows * 2 * 32, sizeof(float));
  CHECK(cpclAttnPrefill(plan, &b, buf, buf, buf, c.k, c.v, out, lse, NULL) == cpclSuccess, "first prefill");
  if (myRank == 2) {
    usleep((TIMEOUT_MS + 1500) * 1000);
    _exit(0);
  }
  double t0 = nowMs();
  cpclResult_t r = cpclAttnPrefill(plan, &b, buf, buf, buf, c.k, c.v, out, lse, NULL);
  double dt = nowMs() - t0;
  sh->errorTime[myRank] = dt;
  CHECK(r == cpclTimeout, "prefill with a stalled peer returned %d", r);
  CHECK(dt >= TIMEOUT_MS * 0.9 && dt < TIMEOUT_MS + 2000, "timeout after %.0f ms", dt);
  CHECK(strstr(cpclGetLastError(comm), "within") != NULL, "message: %s", cpclGetLastError(comm));
  /* the broken comm refuses the next prefill */
  CHECK(cpclAttnPrefill(plan, &b, buf, buf, buf, c.k, c.v, out, lse, NULL) == cpclInvalidUsage, "after the timeout");
  _exit(0);
}

/* A pcp 3 ring prefill long enough that a signal can land while the ring runs: a fresh prompt
 * of PF_TOKENS tokens, 8 query heads on 1 KV head (each call is mostly attention). */
/* about 0.5-1 s a call in a release build; the sanitizer/debug build runs the host kernel some 40x
 * slower, so its prompt is 4x shorter (16x less causal work) to keep a call near 1-2 s, well
 * inside the scenario's 30 s watchdog */
#if defined(__SANITIZE_ADDRESS__) || !defined(NDEBUG)
#define PF_TOKENS 1536
#else
#define PF_TOKENS 6144
#endif
#define PF_HQ 8
#define PF_D 64
typedef struct {
  cpclComm_t comm;
  cpclAttnPlan_t plan;
  tuCache_t cache;
  cpclPrefillBatch_t b;
  int32_t qs[2], ctx[1], nw[1];
  float *q, *out, *lse;
} pfJob_t;

static void pfSetup(pfJob_t* j) {
  cpclOob_t oob = {shmAllgather, NULL, myRank, W};
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.timeoutMs = TIMEOUT_MS;
  cfg.dcpSize = 1;
  CHECK(cpclCommInitOob(&j->comm, &oob, &cfg) == cpclSuccess, "comm init");
  static int32_t full[1] = {PF_TOKENS};
  tuProblem_t pb = {.numSeqs = 1,
                    .seqLens = full,
                    .Hq = PF_HQ,
                    .Hkv = 1,
                    .Dqk = PF_D,
                    .Dv = PF_D,
                    .qType = cpclFloat32,
                    .kvType = cpclFloat32,
                    .smScale = 0.125f,
                    .seed = 11};
  cpclAttnDesc_t d = tuDesc(&pb, PF_HQ, 16);
  d.prefillAlgo = "ring";
  int64_t st[2], ln[2];
  const int rows = (int)cpclPcpChunks(PF_TOKENS, W, myRank, st, ln);
  CHECK(cpclAttnPlanCreate(&j->plan, j->comm, &d, PF_TOKENS / W + 2) == cpclSuccess, "plan: %s",
        cpclGetLastError(NULL));
  tuCacheAlloc(&pb, W, myRank, 1, 16, &j->cache);
  j->qs[0] = 0, j->qs[1] = rows, j->ctx[0] = 0, j->nw[0] = PF_TOKENS;
  j->b = (cpclPrefillBatch_t)CPCL_PREFILL_BATCH_INITIALIZER;
  j->b.numSeqs = 1, j->b.numTokens = rows, j->b.queryStart = j->qs, j->b.contextLens = j->ctx, j->b.newLens = j->nw;
  j->b.blockTable = j->cache.blockTable, j->b.maxPagesPerSeq = j->cache.maxPagesPerSeq;
  j->q = calloc((size_t)rows * PF_HQ * PF_D, sizeof(float));
  for (size_t i = 0; i < (size_t)rows * PF_HQ * PF_D; i++) j->q[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  j->out = calloc((size_t)rows * PF_HQ * PF_D, sizeof(float));
  j->lse = calloc((size_t)rows * PF_HQ, sizeof(float));
}

static cpclResult_t pfCall(pfJob_t* j) {
  /* K and V of the new tokens: the query rows, enough for the attention to do real work */
  return cpclAttnPrefill(j->plan, &j->b, j->q, j->q, j->q, j->cache.k, j->cache.v, j->out, j->lse, NULL);
}

/* One good call, timed on the victim; then every rank enters the next call together and the
 * parent sends `sig` to rank 2 a sixth of a call later: after the step's agreement (a few ms),
 * during the attention of the ring's first block, before the victim forwards anything. */
static void pfStartFaulty(pfJob_t* j, int sig) {
  double t0 = nowMs();
  CHECK(pfCall(j) == cpclSuccess, "first prefill: %s", cpclGetLastError(j->comm));
  if (myRank == 2) sh->callMs = nowMs() - t0;
  CHECK(barrier() == 0, "barrier");
  if (myRank == 2) {
    sh->killSig = sig;
    sh->killAt = nowMs() + sh->callMs / 6;
    cpclResult_t r = pfCall(j);
    /* reached only when the signal came too late: the survivors' checks fail too */
    CHECK(0, "the victim's prefill returned %d before the parent's signal", r);
  }
}

/* the survivors' error came from inside the ring (its waits or posts), not from the agreement */
static int inRing(const char* m) {
  return strstr(m, "(ring)") != NULL || strstr(m, "cpclAttnPrefill: posting") != NULL;
}

/* mid-ring death: pcp 3 ring, rank 2 SIGKILLed during the ring; ranks 0 and 1 must return
 * cpclRemoteError within the timeout + 2 s of its death. Rank 0 waits on rank 2's block and
 * sees it gone; rank 1 waits on rank 2 (its send) or on rank 0 (the next block, which rank 0
 * never forwards) and sees whichever of them has exited. */
static void scenarioPrefillDeathMid(void) {
  pfJob_t j;
  pfSetup(&j);
  pfStartFaulty(&j, SIGKILL);
  const double t0 = nowMs();
  cpclResult_t r = pfCall(&j);
  sh->errorTime[myRank] = nowMs();
  snprintf(sh->message[myRank], sizeof(sh->message[0]), "%s", cpclGetLastError(j.comm));
  CHECK(r == cpclRemoteError, "prefill while a peer was killed mid-ring returned %d (%s)", r, cpclGetErrorString(r));
  CHECK(sh->deathTime > t0, "the victim died %.0f ms before the call", t0 - sh->deathTime);
  CHECK(sh->errorTime[myRank] - sh->deathTime < TIMEOUT_MS + 2000, "error %.0f ms after death",
        sh->errorTime[myRank] - sh->deathTime);
  CHECK(inRing(sh->message[myRank]), "not a ring error: %s", sh->message[myRank]);
  CHECK(pfCall(&j) == cpclInvalidUsage, "a broken comm must refuse the next prefill");
  _exit(0);
}

/* mid-ring stall: rank 2 SIGSTOPped during the ring (killed once the others are done); ranks 0
 * and 1 get cpclTimeout about timeoutMs after the stop (their wait starts after the first
 * block's attention). Both stay alive until both are done, so neither sees the other exit. */
static void scenarioPrefillStallMid(void) {
  pfJob_t j;
  pfSetup(&j);
  pfStartFaulty(&j, SIGSTOP);
  const double t0 = nowMs();
  cpclResult_t r = pfCall(&j);
  sh->errorTime[myRank] = nowMs();
  snprintf(sh->message[myRank], sizeof(sh->message[0]), "%s", cpclGetLastError(j.comm));
  CHECK(r == cpclTimeout, "prefill with a peer stopped mid-ring returned %d (%s)", r, cpclGetErrorString(r));
  const double dt = sh->errorTime[myRank] - sh->deathTime;
  CHECK(sh->deathTime > t0, "the victim stopped %.0f ms before the call", t0 - sh->deathTime);
  CHECK(dt >= TIMEOUT_MS * 0.9 && dt < TIMEOUT_MS + 2000, "timeout %.0f ms after the stop", dt);
  CHECK(inRing(sh->message[myRank]) && strstr(sh->message[myRank], "within"), "message: %s", sh->message[myRank]);
  atomic_fetch_add(&sh->done, 1);
  while (atomic_load(&sh->done) < W - 1) usleep(1000);
  _exit(0);
}

static void* abortLater(void* arg) {
  usleep(300000);
  cpclCommAbort((cpclComm_t)arg);
  return NULL;
}

/* rank 0 blocks in a decode no peer joins; a second thread aborts it: the call returns
 * promptly with an error, long before the timeout */
static void scenarioAbort(void) {
  job_t j;
  jobSetup(&j);
  if (myRank == 0) {
    pthread_t th;
    pthread_create(&th, NULL, abortLater, j.comm);
    double t0 = nowMs();
    cpclResult_t r = decode(&j);
    double dt = nowMs() - t0;
    pthread_join(th, NULL);
    sh->errorTime[0] = dt;
    CHECK(r == cpclRemoteError, "aborted decode returned %d", r);
    CHECK(strstr(cpclGetLastError(NULL), "aborted") != NULL, "message: %s", cpclGetLastError(NULL));
    CHECK(dt >= 250 && dt < 1500, "abort (after 300 ms) unblocked the call after %.0f ms", dt);
    /* the plan outlives the aborted comm: it refuses work, and destroying it frees both */
    CHECK(decode(&j) == cpclInvalidUsage, "a plan of an aborted comm must refuse work");
    CHECK(cpclKvStore(j.plan, &j.batch, j.q, j.q, j.cache.k, j.cache.v, NULL) == cpclInvalidUsage,
          "cpclKvStore on a plan of an aborted comm must refuse work (issue 18 item 5)");
    CHECK(cpclAttnPlanDestroy(j.plan) == cpclSuccess, "plan destroy after abort");
  } else {
    usleep(1500000); /* alive, but never joining the step: only the abort can end rank 0's wait */
  }
  _exit(0);
}

/* rank 1 calls cpclAttnCombine while the others call cpclAttnDecode: every rank gets
 * cpclInvalidUsage, nothing moves, and the next agreeing step succeeds */
static void scenarioMismatch(void) {
  job_t j;
  jobSetup(&j);
  cpclResult_t r;
  if (myRank == 1) {
    void* p = calloc(2 * 2 * W * 32, 4);
    float* pl = calloc(2 * 2 * W, 4);
    r = cpclAttnCombine(j.plan, 2, p, pl, j.out, j.lse, NULL);
    free(p);
    free(pl);
  } else {
    r = decode(&j);
  }
  CHECK(r == cpclInvalidUsage, "mismatched operations returned %d", r);
  CHECK(strstr(cpclGetLastError(j.comm), "disagree") != NULL, "message: %s", cpclGetLastError(j.comm));
  CHECK(decode(&j) == cpclSuccess, "the next agreeing step: %s", cpclGetLastError(j.comm));
  /* the same operation on two plans, in swapped order on rank 1 */
  cpclAttnDesc_t d2 = tuDesc(&j.pb, 2, 4); /* the same shape, another plan */
  cpclAttnPlan_t other;
  CHECK(cpclAttnPlanCreate(&other, j.comm, &d2, 2) == cpclSuccess, "second plan");
  cpclAttnPlan_t first = myRank == 1 ? other : j.plan;
  r = cpclAttnDecode(first, &j.batch, j.q, j.cache.k, j.cache.v, j.out, j.lse, NULL);
  CHECK(r == cpclInvalidUsage, "decode on different plans returned %d", r);
  CHECK(strstr(cpclGetLastError(j.comm), "plan #") != NULL, "message: %s", cpclGetLastError(j.comm));
  CHECK(decode(&j) == cpclSuccess, "then the same plan everywhere: %s", cpclGetLastError(j.comm));
  _exit(0);
}

/* rank 2 passes numTokens > maxTokens: it gets cpclInvalidArgument naming it, the others
 * cpclInvalidUsage naming rank 2, at once; the next good step succeeds everywhere */
static void scenarioBadArgument(void) {
  job_t j;
  jobSetup(&j);
  cpclBatch_t bad = j.batch;
  if (myRank == 2) bad.numTokens = 99;
  double t0 = nowMs();
  cpclResult_t r = cpclAttnDecode(j.plan, &bad, j.q, j.cache.k, j.cache.v, j.out, j.lse, NULL);
  double dt = nowMs() - t0;
  if (myRank == 2) {
    CHECK(r == cpclInvalidArgument, "bad rank returned %d", r);
    CHECK(strstr(cpclGetLastError(j.comm), "numTokens is 99") != NULL, "message: %s", cpclGetLastError(j.comm));
  } else {
    CHECK(r == cpclInvalidUsage, "good ranks returned %d", r);
    CHECK(strstr(cpclGetLastError(j.comm), "rank 2 rejected") != NULL, "message: %s", cpclGetLastError(j.comm));
  }
  CHECK(dt < 1000, "argument error took %.0f ms to reach every rank", dt);
  CHECK(decode(&j) == cpclSuccess, "the next good step: %s", cpclGetLastError(j.comm));
  cpclAttnPlanDestroy(j.plan);
  cpclCommDestroy(j.comm);
  _exit(0);
}

/* issue 18 item 3: rank 1 creates a plan while the others decode. The two calls exchange
 * control records of different kinds: every rank must see the disagreement (cpclInvalidUsage
 * naming what the others called), nothing may be truncated or left in flight, and the next
 * agreeing calls (a decode, then a plan creation everywhere) succeed on every rank. */
static void scenarioPlanVsDecode(void) {
  job_t j;
  jobSetup(&j);
  cpclResult_t r;
  cpclAttnDesc_t d = tuDesc(&j.pb, 2, 4);
  cpclAttnPlan_t other = NULL;
  double t0 = nowMs();
  if (myRank == 1)
    r = cpclAttnPlanCreate(&other, j.comm, &d, 2);
  else
    r = decode(&j);
  double dt = nowMs() - t0;
  CHECK(r == cpclInvalidUsage, "plan creation against a decode returned %d (%s)", r, cpclGetErrorString(r));
  CHECK(strstr(cpclGetLastError(j.comm), myRank == 1 ? "called cpclAttnDecode" : "rank 1 called cpclAttnPlanCreate"),
        "message: %s", cpclGetLastError(j.comm));
  CHECK(dt < 1000, "the disagreement took %.0f ms to reach every rank", dt);
  CHECK(decode(&j) == cpclSuccess, "the next agreeing step: %s", cpclGetLastError(j.comm));
  CHECK(cpclAttnPlanCreate(&other, j.comm, &d, 2) == cpclSuccess, "then a plan everywhere: %s",
        cpclGetLastError(j.comm));
  r = cpclAttnDecode(other, &j.batch, j.q, j.cache.k, j.cache.v, j.out, j.lse, NULL);
  CHECK(r == cpclSuccess, "a decode on the new plan: %s", cpclGetLastError(j.comm));
  CHECK(cpclAttnPlanDestroy(other) == cpclSuccess, "destroy");
  /* the other way round: rank 0 decodes while the others create */
  if (myRank == 0)
    r = decode(&j);
  else
    r = cpclAttnPlanCreate(&other, j.comm, &d, 2);
  CHECK(r == cpclInvalidUsage, "decode against plan creations returned %d", r);
  CHECK(decode(&j) == cpclSuccess, "and the next agreeing step: %s", cpclGetLastError(j.comm));
  _exit(0);
}

/* issue 18 item 7: same counts, different contents. seqLens on rank 1, then queryStart on rank
 * 2, differ: every rank returns cpclInvalidUsage naming the field and the rank, before any data
 * moves, and the next agreeing step succeeds. A NULL queryStart agrees with its explicit form. */
static void scenarioContents(void) {
  job_t j;
  jobSetup(&j);
  int32_t lens[2] = {100, 38}, qs[3] = {0, 0, 2};
  cpclBatch_t b = j.batch;
  if (myRank == 1) b.seqLens = lens;
  cpclResult_t r = cpclAttnDecode(j.plan, &b, j.q, j.cache.k, j.cache.v, j.out, j.lse, NULL);
  CHECK(r == cpclInvalidUsage, "seqLens that differ returned %d", r);
  CHECK(strstr(cpclGetLastError(j.comm), "rank 1's seqLens differ from rank 0's"), "message: %s",
        cpclGetLastError(j.comm));
  CHECK(decode(&j) == cpclSuccess, "the next agreeing step: %s", cpclGetLastError(j.comm));
  b = j.batch;
  if (myRank == 2) b.queryStart = qs;
  r = cpclAttnPartial(j.plan, &b, j.q, j.cache.k, j.cache.v, j.out, j.lse, NULL);
  CHECK(r == cpclInvalidUsage, "queryStart that differs returned %d", r);
  CHECK(strstr(cpclGetLastError(j.comm), "rank 2's queryStart differ from rank 0's"), "message: %s",
        cpclGetLastError(j.comm));
  CHECK(decode(&j) == cpclSuccess, "the next agreeing step: %s", cpclGetLastError(j.comm));
  b = j.batch;
  if (myRank == 0) b.queryStart = NULL; /* one row per sequence: the same rows as {0, 1, 2} */
  CHECK(cpclAttnDecode(j.plan, &b, j.q, j.cache.k, j.cache.v, j.out, j.lse, NULL) == cpclSuccess,
        "NULL against the explicit queryStart: %s", cpclGetLastError(j.comm));
  _exit(0);
}

/* issue 18 item 8: a rank whose oob->rank or oob->nranks is bad still takes part in the first
 * all-gather, so its peers fail at once, naming it, instead of waiting in the all-gather (the
 * test's bootstrap gives up after 20 s). Then a good init works. */
static void scenarioBadOob(void) {
  static const struct {
    int who, rank, nranks;
    const char *own, *peers;
  } cases[] = {
      {2, 7, W, "oob->rank is 7", "rank 2 passed bad out-of-band arguments (oob->rank 7, oob->nranks 3"},
      {2, 2, 0, "oob->nranks is 0", "rank 2 passed bad out-of-band arguments (oob->rank 2, oob->nranks 0"},
      {0, -1, W, "oob->rank is -1", "rank 0 passed bad out-of-band arguments (oob->rank -1, oob->nranks 3"},
      {1, 1, 2000, "oob->nranks is 2000", "rank 1 passed bad out-of-band arguments (oob->rank 1, oob->nranks 2000"},
      /* locally plausible, but not this group: every rank sees the group is not what it says */
      {1, 1, 2, "slot 2 holds rank 2 of 3 ranks, but oob->nranks is 2 here", "slot 1 holds rank 1 of 2 ranks"},
      {2, 0, 1, "slot 1 holds rank 1 of 3 ranks, but oob->nranks is 1 here", "slot 2 holds rank 0 of 1 ranks"},
  };
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    cpclOob_t oob = {shmAllgather, NULL, myRank, W};
    if (myRank == cases[k].who) oob.rank = cases[k].rank, oob.nranks = cases[k].nranks;
    cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
    cfg.timeoutMs = TIMEOUT_MS;
    cpclComm_t comm = NULL;
    double t0 = nowMs();
    cpclResult_t r = cpclCommInitOob(&comm, &oob, &cfg);
    double dt = nowMs() - t0;
    const int bad = myRank == cases[k].who;
    CHECK(r == (bad && k < 4 ? cpclInvalidArgument : cpclInvalidUsage), "case %zu: init returned %d (%s)", k, r,
          cpclGetErrorString(r));
    CHECK(strstr(cpclGetLastError(NULL), bad ? cases[k].own : cases[k].peers), "case %zu: message: %s", k,
          cpclGetLastError(NULL));
    CHECK(comm == NULL, "case %zu: no communicator on failure", k);
    CHECK(dt < 1000, "case %zu: init with a bad rank took %.0f ms", k, dt);
    sh->errorTime[myRank] = CPCL_MAX_F(sh->errorTime[myRank], dt);
  }
  job_t j;
  jobSetup(&j);
  CHECK(decode(&j) == cpclSuccess, "a good init after the bad ones: %s", cpclGetLastError(j.comm));
  _exit(0);
}

static int runScenario(const char* name, void (*fn)(void), int victim) {
  memset(sh, 0, sizeof(*sh));
  pid_t pids[W];
  for (int r = 0; r < W; r++) {
    pids[r] = fork();
    if (pids[r] == 0) {
      myRank = r;
      fn();
      _exit(0);
    }
  }
  /* reap as they end; a rank still running after 30 s is a hang: kill and fail */
  int bad = 0, left = W;
  double start = nowMs();
  while (left > 0) {
    int status;
    pid_t p = waitpid(-1, &status, WNOHANG);
    if (p > 0) {
      left--;
      int r = 0;
      while (r < W && pids[r] != p) r++;
      const int killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      if (!(r == victim && killed) && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) bad = 1;
      continue;
    }
    if (sh->killAt > 0 && victim >= 0 && nowMs() >= sh->killAt && sh->deathTime == 0) {
      sh->deathTime = nowMs();
      kill(pids[victim], sh->killSig ? sh->killSig : SIGKILL);
    }
    if (sh->killSig == SIGSTOP && atomic_load(&sh->done) == W - 1) {
      kill(pids[victim], SIGKILL); /* stopped: the survivors are done with it */
      sh->killSig = SIGKILL;
    }
    if (nowMs() - start > 30000) {
      for (int r = 0; r < W; r++) kill(pids[r], SIGKILL);
      fprintf(stderr, "%s: ranks still running after 30 s: a hang\n", name);
      bad = 1;
      while (waitpid(-1, NULL, 0) > 0) {
      }
      break;
    }
    usleep(2000);
  }
  if (atomic_load(&sh->failed)) bad = 1;
  printf("%-14s %s", name, bad ? "FAIL" : "ok  ");
  if (fn == scenarioPrefillDeathMid || fn == scenarioPrefillStallMid)
    printf("  call %.0f ms, signal %.0f ms in; survivors' error %.0f / %.0f ms after it (timeout %d ms)", sh->callMs,
           sh->callMs / 6, sh->errorTime[0] - sh->deathTime, sh->errorTime[1] - sh->deathTime, TIMEOUT_MS);
  if (fn == scenarioDeath || fn == scenarioDeathMid)
    printf("  survivors' error %.0f / %.0f ms after the peer's death (timeout %d ms)", sh->errorTime[0] - sh->deathTime,
           sh->errorTime[1] - sh->deathTime, TIMEOUT_MS);
  if (fn == scenarioStall || fn == scenarioPrefillStall)
    printf("  cpclTimeout after %.0f / %.0f ms", sh->errorTime[0], sh->errorTime[1]);
  if (fn == scenarioAbort) printf("  aborted call returned after %.0f ms", sh->errorTime[0]);
  if (fn == scenarioBadOob)
    printf("  slowest init with a bad rank: %.0f / %.0f / %.0f ms", sh->errorTime[0], sh->errorTime[1],
           sh->errorTime[2]);
  printf("\n");
  fflush(stdout);
  return bad;
}

int main(void) {
  sh = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) return 1;
  int bad = 0;
  bad |= runScenario("bad-argument", scenarioBadArgument, -1);
  bad |= runScenario("mismatch", scenarioMismatch, -1);
  bad |= runScenario("plan-vs-decode", scenarioPlanVsDecode, -1);
  bad |= runScenario("contents", scenarioContents, -1);
  bad |= runScenario("bad-oob", scenarioBadOob, -1);
  bad |= runScenario("abort", scenarioAbort, -1);
  bad |= runScenario("stall", scenarioStall, -1);
  bad |= runScenario("prefill-stall", scenarioPrefillStall, -1);
  bad |= runScenario("death", scenarioDeath, 2);
  bad |= runScenario("death-mid-op", scenarioDeathMid, 2);
  bad |= runScenario("prefill-death-mid-ring", scenarioPrefillDeathMid, 2);
  bad |= runScenario("prefill-stall-mid-ring", scenarioPrefillStallMid, 2);
  return bad;
}
