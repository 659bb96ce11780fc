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

/* All-gather of host bytes between the ranks' host code (agreement, registration): over the
 * transport for host transports, over its control plane for device transports. */
cpclResult_t cpclCtrlAllgather(struct cpclComm* comm, const void* sendbuf, void* recvbuf, size_t bytes);

cpclResult_t cpclBarrier(struct cpclComm* comm);

/* The next sequence number: every collective call takes one, on every rank alike. */
static inline uint32_t cpclNextSeq(struct cpclComm* comm) { return comm->seq++; }

#endif /* CPCL_COLL_H_ */
