/* comm.h -- the communicator: one context-parallel group of W = pcp x dcp ranks. */
#ifndef CPCL_COMM_H_
#define CPCL_COMM_H_

#include <stdatomic.h>
#include <stdint.h>

#include "base/error.h"
#include "cpcl.h"
#include "rank_limit.h"
#include "transport.h"

/* The most ranks of a communicator. Larger than what a plan supports (CPCL_MAX_RANKS, the one
 * limit of the attention operations, kernels/rank_limit.h): a communicator costs only arrays
 * sized by its ranks, and the message tag carries a 16-bit source rank. */
#define CPCL_MAX_COMM_RANKS 1024

/* Operation tags carried in every message (transport.h tag layout), so that ranks that issue
 * different operations never match each other's messages. */
typedef enum {
  CPCL_OP_BOOTSTRAP = 1,
  CPCL_OP_ALLGATHER = 2,
  CPCL_OP_ALLTOALL = 3,
  CPCL_OP_BARRIER = 4,
  CPCL_OP_DECODE = 5,
  CPCL_OP_PARTIAL = 6,
  CPCL_OP_COMBINE = 7,
  CPCL_OP_KVSTORE = 8, /* local: no message; named in the operation table (op.h) */
  CPCL_OP_PREFILL = 9,
} cpclOpTag_t;

struct cpclComm {
  int rank, nranks;
  int dcpSize, dcpRank, pcpSize, pcpRank;
  int interleave;
  cpclMemType_t memType;
  int timeoutMs;
  char transportName[16];
  const cpclTransportOps_t* tp;
  void* tpCtx;

  uint32_t seq;        /* sequence number of the next collective, the same on every rank */
  int32_t* peerPid;    /* [nranks] process ids, from the init digests */
  uint8_t* peerLocal;  /* [nranks] 1 when the peer runs on this host (its death can be seen) */
  cpclRequest_t* reqs; /* [4 * nranks] request slots for the blocking collectives */
  /* Per-rank arrays of the per-step calls, [nranks] each and sized at creation: the steps neither
   * allocate nor keep per-rank arrays on the stack. One user at a time, as reqs: the blocking
   * collectives fill them and do not nest. */
  struct {
    const void** sendbufs;
    void** recvbufs;
    size_t* sendBytes;
    size_t* recvBytes;
    unsigned char* ctrl; /* [nranks][CPCL_CTRL_RECORD_BYTES]: all-gathers of small host records */
  } scratch;
  int numPlans;               /* plans still alive on this comm */
  struct cpclAttnPlan* plans; /* those plans, linked (plan.c), under plansLock */
  atomic_flag plansLock;
  int plansCreated; /* plans ever created: a plan's number, the same on every rank */

  atomic_int asyncError; /* cpclSuccess, or the communication error that broke the comm */
  atomic_int aborted;    /* set by cpclCommAbort, possibly from another thread */
  atomic_int busy;       /* calls in progress */
  int released;          /* aborted with plans alive: freed when the last plan is destroyed */

  char lastError[1024];
  cpclErrorSink_t errors; /* points at lastError: what base/ and the transport record into */
};

/* The bytes of every control record (coll.h: a header saying what it is, then its payload), as
 * sent and as received: the step agreement, plan creation's digest and the barrier token alike. */
#define CPCL_CTRL_RECORD_BYTES 128

/* cpclCommInitOob, with `adopt` handed to the transport (cpclTransportInitArgs_t.adopt) is
 * declared in transport.h: cpclCommInitAdopt. */

/* Called by cpclAttnPlanDestroy once a plan is gone: frees an aborted communicator whose last
 * plan this was. */
void cpclCommPlanGone(struct cpclComm* comm);
/* Entry and exit of every operation: refuses a broken or aborted communicator. */
cpclResult_t cpclCommEnter(struct cpclComm* comm, const char* func);
void cpclCommLeave(struct cpclComm* comm);
/* 0 when rank `peer` is known to be gone (a process on this host that exited or is a zombie);
 * 1 otherwise. A system call: for the slow path of waits only. */
int cpclPeerAlive(const struct cpclComm* comm, int peer);
/* The device-side record of a failed peer wait in any plan of comm (CUDA: the kernels record a
 * wait that expired), converted as the plan's next call would: cpclRemoteError when the peer's
 * process has exited, else cpclTimeout (and the comm is broken); cpclSuccess when none. The
 * record stays for the plan's own next call. Implemented with the plans (plan.c). */
cpclResult_t cpclCommDevicePeerError(struct cpclComm* comm);
/* Marks the communicator broken by a communication failure (first error wins). */
cpclResult_t cpclCommFail(struct cpclComm* comm, cpclResult_t err);

/* The digest ranks exchange at init so that a disagreement is an error, never a hang. */
typedef struct {
  uint32_t magic;
  int32_t version;
  int32_t nranks;
  int32_t rank;
  int32_t argsValid;   /* 0 when this rank's own oob->rank / oob->nranks (or comm) were bad */
  int32_t configValid; /* 0 when this rank's own config (or arguments) were invalid */
  int32_t dcpSize;
  int32_t interleave;
  int32_t memType;
  char transport[16];
  /* not compared: where each rank lives, for liveness checks */
  uint64_t hostHash;
  int32_t pid;
} cpclCommDigest_t;

/* Compares digests of nranks ranks, in a buffer of slots >= nranks digests zeroed before the
 * all-gather (a digest past nranks means the group is larger than this rank was told); on
 * disagreement writes a message naming the rank with bad arguments, or the first field that
 * differs and the values, and returns cpclInvalidUsage. */
cpclResult_t cpclCommDigestCompare(const cpclCommDigest_t* all, int nranks, int slots, char* msg, size_t msgLen);

/* The most slots of the first all-gather (a bad oob->nranks beyond it gets CPCL_MAX_COMM_RANKS). */
#define CPCL_MAX_OOB_SLOTS 65536

/* A config after validation and defaults: what the ranks must agree on. */
typedef struct {
  int dcpSize;
  int interleave;
  cpclMemType_t memType;
  char transport[16];
  int timeoutMs;
  const char* transportFrom; /* why this transport: "config->transport", "CPCL_TRANSPORT", "automatic ..." */
  const char* timeoutFrom;   /* "config->timeoutMs", "CPCL_TIMEOUT_MS" or "the default" */
} cpclResolvedConfig_t;

/* Validates config (NULL = defaults) for nranks ranks and fills in defaults, the transport
 * included (config, then CPCL_TRANSPORT, then automatic). On a bad field writes a message
 * naming it and its value and returns cpclInvalidArgument (cpclUnsupported for a transport not
 * built in). Touches no communicator. */
cpclResult_t cpclConfigResolve(const cpclConfig_t* config, int nranks, cpclResolvedConfig_t* out, char* msg,
                               size_t msgLen);

#endif /* CPCL_COMM_H_ */
