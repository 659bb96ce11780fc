/*
 * test_gpu_faults -- GPU ranks whose peer dies or stalls (issue 18 item 9). The ranks are forked
 * by the test (no mpirun, so no launcher kills the survivors when the victim exits), share the
 * GPUs there are (several processes on one GPU is fine: ipc maps their buffers), bootstrap over
 * shared memory, and run the fused and a2a schedules over "ipc", whose waits are on the device.
 *
 *   - death: the last rank _exit()s right after a good step; the survivors' next step waits on
 *     the device until timeoutMs and gives up; then the host reports it as cpclRemoteError
 *     naming the dead rank (rank 0 through cpclCommGetAsyncError, the others through their next
 *     call), within timeoutMs + 2 s of the death, and the communicator refuses further work;
 *   - stall: the last rank stays alive but skips a step: the survivors see cpclTimeout, as before.
 *
 * Exits 77 (skipped) without a CUDA device. The parent never touches CUDA (a forked child of a
 * process with a CUDA context cannot use CUDA): a probe child counts the devices.
 */
#include <cuda_runtime_api.h>
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
#define TIMEOUT_MS 1500

typedef struct {
  atomic_int count, gen, failed;
  int devices;
  double deathTime;    /* when the victim exited (CLOCK_MONOTONIC, ms) */
  double errorTime[W]; /* when each survivor saw its error */
  int result[W];
  char data[W][SLOT];
} shared_t;

static shared_t* sh;
static int myRank;

static double nowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* All W ranks, or those still alive (a dead victim never arrives: `need` says how many). */
static int barrierOf(int need) {
  int g = atomic_load(&sh->gen);
  if (atomic_fetch_add(&sh->count, 1) == need - 1) {
    atomic_store(&sh->count, 0);
    atomic_fetch_add(&sh->gen, 1);
    return 0;
  }
  double start = nowMs();
  while (atomic_load(&sh->gen) == g) {
    if (nowMs() - start > 30000) return 1; /* never completes: fail, do not hang */
    sched_yield();
  }
  return 0;
}

static int shmAllgather(const void* s, void* r, size_t bytes, void* ctx) {
  (void)ctx;
  if (bytes > SLOT) return 1;
  memcpy(sh->data[myRank], s, bytes);
  if (barrierOf(W)) return 1;
  for (int i = 0; i < W; i++) memcpy((char*)r + (size_t)i * bytes, sh->data[i], bytes);
  return barrierOf(W);
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
#define CUDA_OK(call)                                                  \
  do {                                                                 \
    cudaError_t e_ = (call);                                           \
    CHECK(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_)); \
  } while (0)

static void* toDevice(const void* host, size_t bytes) {
  void* d = NULL;
  CUDA_OK(cudaMalloc(&d, bytes ? bytes : 16));
  if (host && bytes) CUDA_OK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
  return d;
}

/* A small decode every rank can run: 2 sequences of one row, fp32, H = 2 heads per rank. */
typedef struct {
  cpclComm_t comm;
  cpclAttnPlan_t plan;
  cudaStream_t stream;
  void *q, *k, *v, *out;
  float* lse;
  int32_t *lens, *bt;
  cpclBatch_t batch;
} job_t;

static void jobSetup(job_t* j, const char* algo) {
  CUDA_OK(cudaSetDevice(myRank % sh->devices));
  CUDA_OK(cudaStreamCreateWithFlags(&j->stream, cudaStreamNonBlocking));
  cpclOob_t oob = {shmAllgather, NULL, myRank, W};
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.memType = cpclMemCuda;
  cfg.transport = "ipc";
  cfg.timeoutMs = TIMEOUT_MS;
  CHECK(cpclCommInitOob(&j->comm, &oob, &cfg) == cpclSuccess, "comm init");
  int32_t qs[3] = {0, 1, 2}, lens[2] = {100, 37};
  tuProblem_t pb = {.numSeqs = 2,
                    .numTokens = 2,
                    .queryStart = qs,
                    .seqLens = lens,
                    .Hq = 2 * W,
                    .Hkv = 1,
                    .Dqk = 32,
                    .Dv = 32,
                    .qType = cpclFloat32,
                    .kvType = cpclFloat32,
                    .smScale = 0.17f,
                    .seed = 5};
  cpclAttnDesc_t d = tuDesc(&pb, 2, 4);
  d.algo = algo;
  CHECK(cpclAttnPlanCreate(&j->plan, j->comm, &d, 2) == cpclSuccess, "plan (%s)", algo);
  tuCache_t c;
  tuCacheAlloc(&pb, W, myRank, 1, 4, &c);
  tuCacheFill(&pb, W, myRank, 1, &c);
  const size_t row = (size_t)4 * 1 * 32 * sizeof(float);
  j->k = toDevice(c.k, row * c.numPages);
  j->v = toDevice(c.v, row * c.numPages);
  j->bt = toDevice(c.blockTable, sizeof(int32_t) * 2 * c.maxPagesPerSeq);
  j->lens = toDevice(lens, sizeof(lens));
  void* q = tuMakeQ(&pb, myRank * 2, 2);
  j->q = toDevice(q, (size_t)2 * 2 * 32 * sizeof(float));
  free(q);
  j->out = toDevice(NULL, (size_t)2 * 2 * 32 * sizeof(float));
  j->lse = toDevice(NULL, (size_t)2 * 2 * sizeof(float));
  j->batch = tuBatch(2, 2, NULL, j->lens, j->bt, c.maxPagesPerSeq);
  tuCacheFree(&c);
}

static cpclResult_t decode(job_t* j) {
  return cpclAttnDecode(j->plan, &j->batch, j->q, j->k, j->v, j->out, j->lse, j->stream);
}

/* One good step everywhere, checked to be complete and clean. */
static void goodStep(job_t* j) {
  CHECK(decode(j) == cpclSuccess, "good step: %s", cpclGetLastError(j->comm));
  CUDA_OK(cudaStreamSynchronize(j->stream));
  cpclResult_t async;
  CHECK(cpclAttnPlanGetAsyncError(j->plan, &async) == cpclSuccess && async == cpclSuccess, "async %d", async);
}

/* The survivors' view of the step the victim never joins: the kernels give up after the
 * timeout; then rank 0 asks the communicator, the others call again. want: what it must be. */
/* text2 (may be NULL): also in the message of the failure, e.g. the dead rank's name; checked
 * before the next call replaces the message with "the communicator is broken" */
static void survivorCheck(job_t* j, cpclResult_t want, const char* text, const char* text2, double since) {
  double t0 = nowMs();
  CHECK(decode(j) == cpclSuccess, "the step is enqueued: %s", cpclGetLastError(j->comm));
  CUDA_OK(cudaStreamSynchronize(j->stream)); /* returns once the device waits gave up */
  const double waited = nowMs() - t0;
  CHECK(waited >= TIMEOUT_MS * 0.9 && waited < TIMEOUT_MS + 2000, "the device waits gave up after %.0f ms", waited);
  cpclResult_t r, async;
  if (myRank == 0) {
    CHECK(cpclCommGetAsyncError(j->comm, &async) == cpclSuccess, "cpclCommGetAsyncError");
    r = async;
  } else {
    r = decode(j);
  }
  sh->errorTime[myRank] = nowMs() - (since > 0 ? since : t0);
  sh->result[myRank] = r;
  CHECK(r == want, "%s returned %d (%s), expected %d", myRank == 0 ? "cpclCommGetAsyncError" : "the next call", r,
        cpclGetErrorString(r), want);
  CHECK(strstr(cpclGetLastError(j->comm), text) != NULL, "message: %s", cpclGetLastError(j->comm));
  CHECK(text2 == NULL || strstr(cpclGetLastError(j->comm), text2) != NULL, "message names %s: %s", text2,
        cpclGetLastError(j->comm));
  if (myRank == 0) printf("  rank 0: %s\n", cpclGetLastError(j->comm));
  if (since > 0) CHECK(nowMs() - since < TIMEOUT_MS + 2000, "the error came %.0f ms after the death", nowMs() - since);
  /* every query agrees, and the communicator refuses work */
  CHECK(cpclAttnPlanGetAsyncError(j->plan, &async) == cpclSuccess && async == want, "plan async %d", async);
  CHECK(cpclCommGetAsyncError(j->comm, &async) == cpclSuccess && async == want, "comm async %d", async);
  CHECK(decode(j) == cpclInvalidUsage, "a broken communicator must refuse the next step");
}

static void scenarioDeath(const char* algo) {
  job_t j;
  jobSetup(&j, algo);
  goodStep(&j);
  if (barrierOf(W)) CHECK(0, "barrier");
  if (myRank == W - 1) {
    sh->deathTime = nowMs();
    _exit(0); /* mid-run: no destroy, no goodbye */
  }
  char rankText[32];
  snprintf(rankText, sizeof(rankText), "rank %d (pid", W - 1);
  survivorCheck(&j, cpclRemoteError, "has exited", rankText, sh->deathTime);
  /* the survivors stay until each has checked: one that exits first is a second dead peer, and a
   * slower survivor may then rightly name it instead of the victim */
  if (barrierOf(W - 1)) CHECK(0, "survivors' barrier");
  cpclAttnPlanDestroy(j.plan);
  cpclCommAbort(j.comm);
  _exit(0);
}

static void scenarioDeathFused(void) { scenarioDeath("fused"); }
static void scenarioDeathA2a(void) { scenarioDeath("a2a"); }

static void scenarioStall(void) {
  job_t j;
  jobSetup(&j, "fused");
  goodStep(&j);
  if (barrierOf(W)) CHECK(0, "barrier");
  if (myRank != W - 1) survivorCheck(&j, cpclTimeout, "stalled", NULL, 0);
  if (barrierOf(W)) CHECK(0, "final barrier"); /* the staller is alive until the survivors are done */
  cpclAttnPlanDestroy(j.plan);
  cpclCommAbort(j.comm);
  _exit(0);
}

static int runScenario(const char* name, void (*fn)(void), int victim) {
  atomic_store(&sh->count, 0);
  atomic_store(&sh->failed, 0);
  sh->deathTime = 0;
  memset(sh->errorTime, 0, sizeof(sh->errorTime));
  pid_t pids[W];
  for (int r = 0; r < W; r++) {
    pids[r] = fork();
    if (pids[r] == 0) {
      myRank = r;
      fn();
      _exit(0);
    }
  }
  /* reap as they end (a dead victim is reaped at once, as a launcher would); 60 s: a hang */
  int bad = 0, left = W;
  double start = nowMs();
  while (left > 0) {
    int status;
    pid_t p = waitpid(-1, &status, WNOHANG);
    if (p > 0) {
      left--;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) bad = 1;
      continue;
    }
    if (nowMs() - start > 60000) {
      for (int r = 0; r < W; r++) kill(pids[r], SIGKILL);
      fprintf(stderr, "%s: ranks still running after 60 s: a hang\n", name);
      bad = 1;
      while (waitpid(-1, NULL, 0) > 0) {
      }
      break;
    }
    usleep(2000);
  }
  (void)victim;
  if (atomic_load(&sh->failed)) bad = 1;
  printf("%-12s %s  survivors' error after %.0f / %.0f ms (%s; timeout %d ms)\n", name, bad ? "FAIL" : "ok  ",
         sh->errorTime[0], sh->errorTime[1], victim >= 0 ? "since the death" : "since the step", TIMEOUT_MS);
  fflush(stdout);
  return bad;
}

int main(void) {
  sh = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) return 1;
  pid_t probe = fork();
  if (probe == 0) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    sh->devices = n;
    _exit(0);
  }
  waitpid(probe, NULL, 0);
  if (sh->devices <= 0) {
    printf("test_gpu_faults: no CUDA device, skipped\n");
    return 77;
  }
  printf("test_gpu_faults: %d ranks on %d GPU(s), transport ipc\n", W, sh->devices);
  int bad = 0;
  bad |= runScenario("death-fused", scenarioDeathFused, W - 1);
  bad |= runScenario("death-a2a", scenarioDeathA2a, W - 1);
  bad |= runScenario("stall", scenarioStall, -1);
  return bad;
}
