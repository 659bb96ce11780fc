/* coll.h -- internal collectives over the transport ops table (host memory, blocking). The
 * schedules and plan creation use these; every one carries the comm's sequence number and an
 * operation tag, and every wait is bounded by the comm's timeout. */
#ifndef CPCL_COLL_H_
#define CPCL_COLL_H_

#include <stddef.h>

#include "comm.h"

/* Waits until the n requests complete, driving progress. Bounded by comm->timeoutMs (then
 * cancels them and returns cpclTimeout) and by cpclCommAbort (cpclRemoteError). A failure
 * breaks the communicator (cpclCommFail) and names `what` in the message. */
cpclResult_t cpclWaitAll(struct cpclComm* comm, cpclRequest_t* reqs, int n, const char* what);

/* Waits until any one of the n requests completes; *index is its position. Same bounds. */
cpclResult_t cpclWaitAny(struct cpclComm* comm, cpclRequest_t* reqs, int n, int* index, const char* what);

struct cpclExecOps;

/* Rank-major all-gather of `bytes` bytes from every rank: recvbuf [nranks][bytes]. sendbuf may
 * alias recvbuf + rank * bytes (in place). exec copies the own block (NULL: host memcpy, for
 * host memory such as digests), on stream. */
cpclResult_t cpclAllgather(struct cpclComm* comm, const void* sendbuf, void* recvbuf, size_t bytes,
                           const struct cpclExecOps* exec, cpclStream_t stream);

/* All-to-all of variable sizes: rank r sends sendbufs[p] (sendBytes[p] bytes) to every rank p
 * and receives recvBytes[p] bytes from p into recvbufs[p]. The self block is copied locally by
 * exec (NULL: memcpy), skipped when the two pointers are the same. */
cpclResult_t cpclAlltoallv(struct cpclComm* comm, const void* const* sendbufs, const size_t* sendBytes,
                           void* const* recvbufs, const size_t* recvBytes, const struct cpclExecOps* exec,
                           cpclStream_t stream);

/* All-gather of host bytes between the ranks' host code: over the transport for host
 * transports, over its control plane for device transports. Every rank must pass the same bytes:
 * the control exchanges below go through here with one fixed size. */
cpclResult_t cpclCtrlAllgather(struct cpclComm* comm, const void* sendbuf, void* recvbuf, size_t bytes);

/* Control records: what the ranks' host code exchanges to agree before acting (the wire-up
 * barrier, plan creation, the step agreement). Every record has the same size on the wire,
 * CPCL_CTRL_RECORD_BYTES, whatever its kind, and says what it is: ranks that are in different
 * calls (one creates a plan while the others decode) exchange whole records and see the
 * disagreement, where records of different sizes on one tag would truncate (UCX) or hang. */
typedef enum { CPCL_CTRL_BARRIER = 1, CPCL_CTRL_PLAN = 2, CPCL_CTRL_STEP = 3 } cpclCtrlKind_t;
typedef struct {
  uint32_t magic;
  uint16_t kind;  /* cpclCtrlKind_t */
  uint16_t op;    /* CPCL_CTRL_STEP: the operation's cpclOpTag_t; else 0 */
  int32_t plan;   /* the plan a step runs on, or the number a new plan takes; -1: none */
  uint32_t bytes; /* of payload that follows */
} cpclCtrlHeader_t;
#define CPCL_CTRL_PAYLOAD_BYTES (CPCL_CTRL_RECORD_BYTES - sizeof(cpclCtrlHeader_t))

/* One control record from every rank into comm->scratch.ctrl (cpclCtrlRecord). A failure to move
 * them breaks the communicator; their contents are not checked here (cpclCtrlAgreeCall). */
cpclResult_t cpclCtrlExchange(struct cpclComm* comm, cpclCtrlKind_t kind, int op, int plan, const void* payload,
                              size_t bytes);
/* Rank r's record of the last exchange, and its payload. */
static inline const cpclCtrlHeader_t* cpclCtrlRecord(const struct cpclComm* comm, int r) {
  return (const cpclCtrlHeader_t*)(comm->scratch.ctrl + (size_t)r * CPCL_CTRL_RECORD_BYTES);
}
static inline const void* cpclCtrlPayload(const struct cpclComm* comm, int r) {
  return (const unsigned char*)cpclCtrlRecord(comm, r) + sizeof(cpclCtrlHeader_t);
}
/* After cpclCtrlExchange: cpclSuccess when every rank sent a record of this rank's kind and
 * operation; else cpclInvalidUsage, fn's message naming what the first other rank called. */
cpclResult_t cpclCtrlAgreeCall(struct cpclComm* comm, const char* fn);

cpclResult_t cpclBarrier(struct cpclComm* comm);

/* The next sequence number: every collective call takes one, on every rank alike. */
static inline uint32_t cpclNextSeq(struct cpclComm* comm) { return comm->seq++; }

#endif /* CPCL_COLL_H_ */
