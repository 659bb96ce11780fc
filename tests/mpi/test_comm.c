/* mpi: communicator creation, the DCP/PCP axes, disagreement and bad-config paths, and the
 * internal collectives (all-gather, variable all-to-all, barrier), the per-communicator scratch
 * arrays and the creation log. Run under mpirun -np 1..4. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coll.h"
#include "comm.h"
#include "mpi_check.h"
#include "mpi_oob.h"

#ifdef CPCL_HAVE_NCCL
#include <cuda_runtime_api.h>
#endif

static MPI_Comm world = MPI_COMM_WORLD;
static int rank, W;

static void test_create(int dcp) {
  cpclOob_t oob;
  cpclMpiOob(&oob, &world);
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.dcpSize = dcp;
  cfg.kvInterleave = 3;
  cpclComm_t comm = NULL;
  CPCL_OK(cpclCommInitOob(&comm, &oob, &cfg));
  int r, n, ds, dr, ps, pr;
  CPCL_OK(cpclCommRank(comm, &r));
  CPCL_OK(cpclCommSize(comm, &n));
  CPCL_OK(cpclCommAxes(comm, &ds, &dr, &ps, &pr));
  int d = dcp ? dcp : W;
  EXPECT(r == rank && n == W);
  EXPECT(ds == d && dr == rank % d && ps == W / d && pr == rank / d);
  EXPECT(pr * ds + dr == rank);
  cpclResult_t async = cpclInternalError;
  CPCL_OK(cpclCommGetAsyncError(comm, &async));
  EXPECT(async == cpclSuccess);
  CPCL_OK(cpclCommDestroy(comm));
}

static void test_disagree(void) {
  if (W < 2) return;
  cpclOob_t oob;
  cpclMpiOob(&oob, &world);
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.kvInterleave = rank == W - 1 ? 16 : 1;
  cpclComm_t comm = NULL;
  EXPECT_RES(cpclCommInitOob(&comm, &oob, &cfg), cpclInvalidUsage);
  EXPECT(comm == NULL);
  char want[128];
  snprintf(want, sizeof(want), "ranks disagree on kvInterleave: rank 0 has 1, rank %d has 16", W - 1);
  EXPECT(strstr(cpclGetLastError(NULL), want) != NULL);
}

static void test_bad_field(void) {
  cpclOob_t oob;
  cpclMpiOob(&oob, &world);
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  if (rank == 0) cfg.timeoutMs = -1;
  cpclComm_t comm = NULL;
  if (rank == 0) {
    EXPECT_RES(cpclCommInitOob(&comm, &oob, &cfg), cpclInvalidArgument);
    EXPECT(strstr(cpclGetLastError(NULL), "config->timeoutMs is -1") != NULL);
  } else {
    EXPECT_RES(cpclCommInitOob(&comm, &oob, &cfg), cpclInvalidUsage);
    EXPECT(strstr(cpclGetLastError(NULL), "rank 0 passed an invalid config") != NULL);
  }
  EXPECT(comm == NULL);
}

static void test_collectives(void) {
  cpclOob_t oob;
  cpclMpiOob(&oob, &world);
  cpclComm_t comm = NULL;
  CPCL_OK(cpclCommInitOob(&comm, &oob, NULL));
  /* all-gather, several sizes including 0 and one past an eager threshold */
  size_t sizes[] = {0, 1, 7, 4096, 300000};
  for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
    size_t b = sizes[si];
    unsigned char* s = malloc(b + 1);
    unsigned char* r = malloc(b * W + 1);
    for (size_t i = 0; i < b; i++) s[i] = (unsigned char)(rank * 31 + i * 7);
    memset(r, 0xee, b * W);
    CPCL_OK(cpclAllgather(comm, s, r, b, NULL, NULL));
    for (int p = 0; p < W; p++)
      for (size_t i = 0; i < b; i++) EXPECT(r[p * b + i] == (unsigned char)(p * 31 + i * 7));
    free(s);
    free(r);
  }
  /* in place */
  int* g = malloc(sizeof(int) * W);
  g[rank] = 1000 + rank;
  CPCL_OK(cpclAllgather(comm, &g[rank], g, sizeof(int), NULL, NULL));
  for (int p = 0; p < W; p++) EXPECT(g[p] == 1000 + p);
  free(g);
  /* variable all-to-all: rank r sends (r + 2p) % 5 * 100 ints to p, some of them 0 */
  const void* sends[16];
  void* recvs[16];
  size_t sb[16], rb[16];
  for (int p = 0; p < W; p++) {
    size_t ns = (size_t)((rank + 2 * p) % 5) * 100, nr = (size_t)((p + 2 * rank) % 5) * 100;
    int* sp = malloc(ns * sizeof(int) + 4);
    for (size_t i = 0; i < ns; i++) sp[i] = rank * 1000000 + p * 1000 + (int)i;
    sends[p] = sp;
    sb[p] = ns * sizeof(int);
    recvs[p] = malloc(nr * sizeof(int) + 4);
    rb[p] = nr * sizeof(int);
  }
  CPCL_OK(cpclAlltoallv(comm, sends, sb, recvs, rb, NULL, NULL));
  for (int p = 0; p < W; p++) {
    const int* rp = recvs[p];
    for (size_t i = 0; i < rb[p] / sizeof(int); i++) EXPECT(rp[i] == p * 1000000 + rank * 1000 + (int)i);
    free((void*)sends[p]);
    free(recvs[p]);
  }
  for (int i = 0; i < 10; i++) CPCL_OK(cpclBarrier(comm));
  CPCL_OK(cpclCommDestroy(comm));
}

/* ranks that disagree on the attention descriptor, or one that passes a bad one, all fail */
static void test_plan_agreement(void) {
  cpclOob_t oob;
  cpclMpiOob(&oob, &world);
  cpclComm_t comm = NULL;
  CPCL_OK(cpclCommInitOob(&comm, &oob, NULL));
  cpclAttnDesc_t d = CPCL_ATTN_DESC_INITIALIZER;
  d.numQoHeads = 2;
  d.numKvHeads = 1;
  d.headDimQk = d.headDimVo = 64;
  d.smScale = 0.125f;
  cpclAttnPlan_t plan = NULL;
  if (W > 1) {
    cpclAttnDesc_t mine = d;
    if (rank == W - 1) mine.headDimVo = 32;
    EXPECT_RES(cpclAttnPlanCreate(&plan, comm, &mine, 4), cpclInvalidUsage);
    char want[128];
    snprintf(want, sizeof(want), "ranks disagree on desc->headDimVo: rank 0 has 64, rank %d has 32", W - 1);
    EXPECT(strstr(cpclGetLastError(comm), want) != NULL);
    mine = d;
    if (rank == 0) mine.smScale = NAN;
    EXPECT_RES(cpclAttnPlanCreate(&plan, comm, &mine, 4), rank == 0 ? cpclInvalidArgument : cpclInvalidUsage);
    EXPECT(strstr(cpclGetLastError(comm), rank == 0 ? "desc->smScale is nan" : "rank 0 passed an invalid") != NULL);
    EXPECT(plan == NULL);
  }
  /* and the communicator is still good for a plan they agree on */
  CPCL_OK(cpclAttnPlanCreate(&plan, comm, &d, 4));
  CPCL_OK(cpclAttnPlanDestroy(plan));
  CPCL_OK(cpclCommDestroy(comm));
}

#ifdef CPCL_HAVE_NCCL
/* nccl's per-peer stream-ordered send/receive (CPCL_TP_CAP_STREAM_P2P), as a ring step: every
 * rank sends its block to the next rank and receives the previous rank's, then the ring turns
 * the other way with a block of a different size. Needs a GPU per rank. */
static void test_nccl_sendrecv(void) {
  int devs = 0;
  if (cudaGetDeviceCount(&devs) != cudaSuccess) devs = 0;
  if (W < 2 || devs < W) {
    if (rank == 0) printf("test_comm: nccl sendrecv skipped (%d ranks, %d GPUs)\n", W, devs);
    return;
  }
  EXPECT(cudaSetDevice(rank) == cudaSuccess);
  cpclOob_t oob;
  cpclMpiOob(&oob, &world);
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  cfg.memType = cpclMemCuda;
  cfg.transport = "nccl";
  cpclComm_t comm = NULL;
  CPCL_OK(cpclCommInitOob(&comm, &oob, &cfg));
  EXPECT(comm->tp->caps & CPCL_TP_CAP_STREAM_P2P);
  const size_t n = 1 << 18;
  int* h = malloc(n * sizeof(int));
  int *dSend = NULL, *dRecv = NULL;
  cudaStream_t s = NULL;
  EXPECT(cudaMalloc((void**)&dSend, n * sizeof(int)) == cudaSuccess);
  EXPECT(cudaMalloc((void**)&dRecv, n * sizeof(int)) == cudaSuccess);
  EXPECT(cudaStreamCreate(&s) == cudaSuccess);
  const int next = (rank + 1) % W, prev = (rank + W - 1) % W;
  for (int dir = 0; dir < 2; dir++) {
    const size_t count = dir == 0 ? n : n / 3 + 1;
    const int to = dir == 0 ? next : prev, from = dir == 0 ? prev : next;
    for (size_t i = 0; i < count; i++) h[i] = rank * 1000003 + (int)i + dir;
    EXPECT(cudaMemcpy(dSend, h, count * sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);
    EXPECT(cudaMemset(dRecv, 0xff, n * sizeof(int)) == cudaSuccess);
    CPCL_OK(comm->tp->sendrecv(comm->tpCtx, to, dSend, count * sizeof(int), from, dRecv, count * sizeof(int), NULL, s));
    EXPECT(cudaStreamSynchronize(s) == cudaSuccess);
    EXPECT(cudaMemcpy(h, dRecv, n * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
    for (size_t i = 0; i < count; i++) EXPECT(h[i] == from * 1000003 + (int)i + dir);
    if (count < n) EXPECT(h[count] == -1); /* nothing past the block */
  }
  /* a peer that is this rank is an error, never a hang */
  EXPECT_RES(comm->tp->sendrecv(comm->tpCtx, rank, dSend, 4, prev, dRecv, 4, NULL, s), cpclInternalError);
  cudaStreamDestroy(s);
  cudaFree(dSend);
  cudaFree(dRecv);
  free(h);
  CPCL_OK(cpclCommDestroy(comm));
  if (rank == 0) printf("test_comm: nccl sendrecv passed on %d GPUs\n", W);
}
#endif

static char logPath[128];

/* The INFO lines of communicator creation say what was chosen and why (test_create ran with the
 * log at INFO into logPath). */
static void test_creation_log(void) {
  FILE* f = fopen(logPath, "r");
  EXPECT(f != NULL);
  static char text[1 << 16];
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = 0;
  char want[160];
  snprintf(want, sizeof(want), "rank %d/%d dcp %d/%d pcp 0/1 (dcpSize 0: all ranks) interleave 3 memory host", rank, W,
           rank, W);
  EXPECT(strstr(text, want) != NULL);
  EXPECT(strstr(text, W == 1 ? "transport self (automatic: one rank)" : "transport ucx (automatic: host memory)"));
  EXPECT(strstr(text, getenv("CPCL_TIMEOUT_MS") ? "ms (CPCL_TIMEOUT_MS)" : "ms (the default)") != NULL);
  snprintf(want, sizeof(want), " of its %d peers run on this host", W - 1);
  EXPECT(W == 1 || strstr(text, want) != NULL);
  snprintf(want, sizeof(want), "ucx: rank %d connected to %d peers", rank, W - 1);
  EXPECT(W == 1 || strstr(text, want) != NULL);
  EXPECT(W > 1 || strstr(text, "self: one rank") != NULL);
  /* a transfer of this rank's own messages is TRACE, not INFO */
  EXPECT(strstr(text, "all-to-all seq") == NULL);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &W);
  /* before the first cpcl call: the log configuration is read once */
  snprintf(logPath, sizeof(logPath), "/tmp/cpcl_test_comm.%d.log", (int)getpid());
  setenv("CPCL_DEBUG", "INFO", 1);
  setenv("CPCL_DEBUG_SUBSYS", "INIT,NET,TOPO,COMM", 1);
  setenv("CPCL_DEBUG_FILE", logPath, 1);
  test_create(0);
  test_creation_log();
  for (int d = 1; d <= W; d++)
    if (W % d == 0) test_create(d);
  test_disagree();
  test_bad_field();
  test_collectives();
  test_plan_agreement();
#ifdef CPCL_HAVE_NCCL
  test_nccl_sendrecv();
#endif
  unlink(logPath);
  if (rank == 0) printf("test_comm: %d ranks passed\n", W);
  MPI_Finalize();
  return 0;
}
