/* coll.c -- bounded waits and the internal collectives (all-gather, all-to-all, barrier).
 * Direct exchanges with every peer: at the size of a context-parallel group (a plan serves at
 * most CPCL_MAX_RANKS ranks, and groups are a few to a few tens of ranks) that is one round of
 * latency, which beats a ring's W - 1. */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "coll.h"
#include "core.h"
#include "exec.h"
#include "op.h"

static inline double nowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static cpclResult_t waitFailed(struct cpclComm* comm, cpclRequest_t* reqs, int n, cpclResult_t err, const char* what,
                               int peer) {
  for (int i = 0; i < n; i++)
    if (reqs[i].active) comm->tp->cancel(comm->tpCtx, &reqs[i]);
  cpclCommFail(comm, err);
  if (err == cpclTimeout)
    return CPCL_ERR(comm, err, "%s: no answer from rank %d within %d ms (timeoutMs / CPCL_TIMEOUT_MS)", what, peer,
                    comm->timeoutMs);
  if (atomic_load(&comm->aborted)) return CPCL_ERR(comm, err, "%s: the communicator was aborted", what);
  return CPCL_ERR_WRAP(comm, err, cpclThreadLastError(), "%s: transfer with rank %d failed", what, peer);
}

/* One turn of the wait loop over reqs: progress, test each active request. With `any`, stops at
 * the first completion, so each completion is reported exactly once. */
static cpclResult_t pollOnce(struct cpclComm* comm, cpclRequest_t* reqs, int n, int any, int* remaining, int* completed,
                             int* failedPeer) {
  cpclResult_t res = comm->tp->progress(comm->tpCtx);
  if (res != cpclSuccess) return res;
  *completed = -1;
  int left = 0;
  for (int i = 0; i < n; i++) {
    if (!reqs[i].active) continue;
    int done = 0;
    res = comm->tp->test(comm->tpCtx, &reqs[i], &done);
    if (res != cpclSuccess) {
      *failedPeer = reqs[i].peer;
      return res;
    }
    if (done) {
      reqs[i].active = 0;
      if (*completed < 0) *completed = i;
      if (any) {
        *remaining = 1; /* unknown, and not needed: the caller returns this one */
        return cpclSuccess;
      }
    } else {
      left++;
    }
  }
  *remaining = left;
  return cpclSuccess;
}

/* how often a waiter checks that the peers it waits on are still alive */
#define CPCL_LIVENESS_MS 20.0

static cpclResult_t waitLoop(struct cpclComm* comm, cpclRequest_t* reqs, int n, int any, int* index, const char* what) {
  int pending = 0;
  for (int i = 0; i < n && !pending; i++) pending = reqs[i].active;
  if (!pending) { /* nothing posted (one rank, or only empty blocks): no transport to drive */
    if (index) *index = -1;
    return cpclSuccess;
  }
  double start = -1, lastLiveness = 0;
  for (unsigned spin = 0;; spin++) {
    int remaining = 0, completed = -1, failedPeer = -1;
    cpclResult_t res = pollOnce(comm, reqs, n, any, &remaining, &completed, &failedPeer);
    if (res != cpclSuccess) return waitFailed(comm, reqs, n, cpclRemoteError, what, failedPeer);
    if (remaining == 0 || (any && completed >= 0)) {
      if (index) *index = completed;
      if (any && completed >= 0)
        TRACE(CPCL_COMM, "%s: request %d (rank %d) complete", what, completed, reqs[completed].peer);
      return cpclSuccess;
    }
    if (atomic_load_explicit(&comm->aborted, memory_order_relaxed))
      return waitFailed(comm, reqs, n, cpclRemoteError, what, -1);
    /* More ranks than cores (CPU ranks, oversubscribed CI): a spinning waiter would burn the
     * time slice its peer needs to make progress. After a short spin, give the core away. */
    if (spin > 64) sched_yield();
    if ((spin & 255) == 0) {
      double t = nowMs();
      if (start < 0)
        start = lastLiveness = t;
      else if (t - start > comm->timeoutMs) {
        int peer = -1;
        for (int i = 0; i < n && peer < 0; i++)
          if (reqs[i].active) peer = reqs[i].peer;
        return waitFailed(comm, reqs, n, cpclTimeout, what, peer);
      } else if (t - lastLiveness > CPCL_LIVENESS_MS) {
        /* a peer we still wait on whose process is gone will never answer: say so now */
        lastLiveness = t;
        for (int i = 0; i < n; i++)
          if (reqs[i].active && !cpclPeerAlive(comm, reqs[i].peer)) {
            cpclCommFail(comm, cpclRemoteError);
            for (int k = 0; k < n; k++)
              if (reqs[k].active) comm->tp->cancel(comm->tpCtx, &reqs[k]);
            return CPCL_ERR(comm, cpclRemoteError, "%s: rank %d (pid %d) has exited", what, reqs[i].peer,
                            (int)comm->peerPid[reqs[i].peer]);
          }
      }
    }
  }
}

cpclResult_t cpclWaitAll(struct cpclComm* comm, cpclRequest_t* reqs, int n, const char* what) {
  return waitLoop(comm, reqs, n, 0, NULL, what);
}

cpclResult_t cpclWaitAny(struct cpclComm* comm, cpclRequest_t* reqs, int n, int* index, const char* what) {
  /* a request that completed earlier and was already reported is inactive: skip it */
  return waitLoop(comm, reqs, n, 1, index, what);
}

cpclResult_t cpclAlltoallv(struct cpclComm* comm, const void* const* sendbufs, const size_t* sendBytes,
                           void* const* recvbufs, const size_t* recvBytes, const struct cpclExecOps* exec,
                           cpclStream_t stream) {
  uint32_t seq = cpclNextSeq(comm);
  int W = comm->nranks, me = comm->rank, n = 0;
  cpclRequest_t* reqs = comm->reqs;
  cpclResult_t res;
  /* post every receive before any send, so eager messages land in place */
  for (int k = 1; k < W; k++) {
    int p = (me + k) % W;
    if (recvBytes[p] == 0) continue;
    reqs[n].peer = p;
    TRACE(CPCL_COMM, "all-to-all seq %u: receive %zu bytes from rank %d", seq, recvBytes[p], p);
    CPCLCHECKGOTO(comm->tp->irecv(comm->tpCtx, p, cpclMakeTag(seq, CPCL_OP_ALLTOALL, 0, p), recvbufs[p], recvBytes[p],
                                  &reqs[n], NULL),
                  res, fail);
    n++;
  }
  for (int k = 1; k < W; k++) {
    int p = (me - k + W) % W;
    if (sendBytes[p] == 0) continue;
    reqs[n].peer = p;
    TRACE(CPCL_COMM, "all-to-all seq %u: send %zu bytes to rank %d", seq, sendBytes[p], p);
    CPCLCHECKGOTO(comm->tp->isend(comm->tpCtx, p, cpclMakeTag(seq, CPCL_OP_ALLTOALL, 0, me), sendbufs[p], sendBytes[p],
                                  &reqs[n], NULL),
                  res, fail);
    n++;
  }
  if (recvbufs[me] != sendbufs[me] && sendBytes[me]) {
    if (exec)
      CPCLCHECKGOTO(exec->copy2d(recvbufs[me], sendBytes[me], sendbufs[me], sendBytes[me], sendBytes[me], 1, stream),
                    res, fail);
    else
      memcpy(recvbufs[me], sendbufs[me], sendBytes[me]);
  }
  res = cpclWaitAll(comm, reqs, n, "all-to-all");
  if (res == cpclSuccess) TRACE(CPCL_COMM, "all-to-all seq %u: %d transfers complete", seq, n);
  return res;
fail:
  for (int i = 0; i < n; i++)
    if (reqs[i].active) comm->tp->cancel(comm->tpCtx, &reqs[i]);
  cpclCommFail(comm, res);
  return CPCL_ERR_WRAP(comm, res, cpclThreadLastError(), "all-to-all: posting a transfer failed");
}

cpclResult_t cpclAllgather(struct cpclComm* comm, const void* sendbuf, void* recvbuf, size_t bytes,
                           const struct cpclExecOps* exec, cpclStream_t stream) {
  int W = comm->nranks;
  const void** sends = comm->scratch.sendbufs;
  void** recvs = comm->scratch.recvbufs;
  size_t *sb = comm->scratch.sendBytes, *rb = comm->scratch.recvBytes;
  for (int p = 0; p < W; p++) {
    sends[p] = sendbuf;
    recvs[p] = (char*)recvbuf + (size_t)p * bytes;
    sb[p] = rb[p] = bytes;
  }
  return cpclAlltoallv(comm, sends, sb, recvs, rb, exec, stream);
}

cpclResult_t cpclCtrlAllgather(struct cpclComm* comm, const void* sendbuf, void* recvbuf, size_t bytes) {
  if (!(comm->tp->caps & CPCL_TP_CAP_CTRL)) return cpclAllgather(comm, sendbuf, recvbuf, bytes, NULL, NULL);
  TRACE(CPCL_COMM, "control all-gather of %zu bytes over %s", bytes, comm->transportName);
  cpclResult_t res = comm->tp->ctrlAllgather(comm->tpCtx, sendbuf, recvbuf, bytes);
  if (res != cpclSuccess) {
    cpclCommFail(comm, res);
    return CPCL_ERR_WRAP(comm, res, cpclThreadLastError(), "control all-gather");
  }
  return cpclSuccess;
}

#define CPCL_CTRL_MAGIC 0x4c525443u /* "CTRL" */

cpclResult_t cpclCtrlExchange(struct cpclComm* comm, cpclCtrlKind_t kind, int op, int plan, const void* payload,
                              size_t bytes) {
  _Static_assert(sizeof(cpclCtrlHeader_t) == 16, "the control header is 16 bytes on the wire");
  if (bytes > CPCL_CTRL_PAYLOAD_BYTES)
    return CPCL_ERR(comm, cpclInternalError, "a control record of %zu bytes exceeds the %zu of its slot", bytes,
                    (size_t)CPCL_CTRL_PAYLOAD_BYTES);
  /* zeroed whole: the padding goes on the wire too, and records compare field by field */
  unsigned char rec[CPCL_CTRL_RECORD_BYTES];
  memset(rec, 0, sizeof(rec));
  const cpclCtrlHeader_t h = {
      .magic = CPCL_CTRL_MAGIC, .kind = (uint16_t)kind, .op = (uint16_t)op, .plan = plan, .bytes = (uint32_t)bytes};
  memcpy(rec, &h, sizeof(h));
  if (bytes) memcpy(rec + sizeof(h), payload, bytes);
  return cpclCtrlAllgather(comm, rec, comm->scratch.ctrl, sizeof(rec));
}

/* What a control record says its sender was doing, for messages. */
static void describeCall(const cpclCtrlHeader_t* h, char* buf, size_t n) {
  if (h->magic != CPCL_CTRL_MAGIC) {
    snprintf(buf, n, "something else (a record of another cpcl version or no control record)");
    return;
  }
  switch (h->kind) {
    case CPCL_CTRL_BARRIER:
      snprintf(buf, n, "cpclCommInitOob (its wire-up barrier)");
      return;
    case CPCL_CTRL_PLAN:
      snprintf(buf, n, "cpclAttnPlanCreate (plan #%d)", (int)h->plan);
      return;
    case CPCL_CTRL_STEP: {
      const cpclOp_t* op = cpclOpOf(h->op);
      snprintf(buf, n, "%s on plan #%d", op ? op->name : "an unknown operation", (int)h->plan);
      return;
    }
    default:
      snprintf(buf, n, "an unknown control call (kind %d)", (int)h->kind);
  }
}

cpclResult_t cpclCtrlAgreeCall(struct cpclComm* comm, const char* fn) {
  const cpclCtrlHeader_t* mine = cpclCtrlRecord(comm, comm->rank);
  for (int r = 0; r < comm->nranks; r++) {
    const cpclCtrlHeader_t* h = cpclCtrlRecord(comm, r);
    if (h->magic == mine->magic && h->kind == mine->kind && h->op == mine->op) continue;
    char theirs[128], ours[128];
    describeCall(h, theirs, sizeof(theirs));
    describeCall(mine, ours, sizeof(ours));
    return CPCL_ERR(comm, cpclInvalidUsage,
                    "%s: ranks disagree on the collective call: rank %d called %s while rank %d called %s (every rank "
                    "must make the same collective calls in the same order); nothing moved, the communicator still "
                    "works",
                    fn, r, theirs, comm->rank, ours);
  }
  return cpclSuccess;
}

cpclResult_t cpclBarrier(struct cpclComm* comm) {
  TRACE(CPCL_COMM, "barrier seq %u", comm->seq);
  CPCLCHECK(cpclCtrlExchange(comm, CPCL_CTRL_BARRIER, 0, -1, NULL, 0));
  return cpclCtrlAgreeCall(comm, "cpclCommInitOob");
}
