/* comm.c -- communicator creation over the caller's out-of-band all-gather, the agreement check,
 * the DCP/PCP axes, teardown and abort. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "coll.h"
#include "comm.h"
#include "core.h"

#define CPCL_DIGEST_MAGIC 0x4c435043u /* "CPCL" */

cpclResult_t cpclConfigResolve(const cpclConfig_t* config, int nranks, cpclResolvedConfig_t* out, char* msg,
                               size_t msgLen) {
  cpclConfig_t defaults = CPCL_CONFIG_INITIALIZER;
  const cpclConfig_t* c = config ? config : &defaults;
  msg[0] = 0;
  if (c->size != sizeof(cpclConfig_t)) {
    snprintf(msg, msgLen, "config->size is %zu, expected %zu: initialise it with CPCL_CONFIG_INITIALIZER", c->size,
             sizeof(cpclConfig_t));
    return cpclInvalidArgument;
  }
  if (c->dcpSize < 0 || (c->dcpSize > 0 && nranks % c->dcpSize != 0)) {
    snprintf(msg, msgLen, "config->dcpSize is %d: it must be 0 (all ranks) or divide the %d ranks", c->dcpSize, nranks);
    return cpclInvalidArgument;
  }
  if (c->kvInterleave < 0) {
    snprintf(msg, msgLen, "config->kvInterleave is %d: it must be >= 0 (0 means 1)", c->kvInterleave);
    return cpclInvalidArgument;
  }
  if ((int)c->memType < 0 || c->memType >= cpclNumMemTypes) {
    snprintf(msg, msgLen, "config->memType is %d: use cpclMemHost (0) or cpclMemCuda (1)", (int)c->memType);
    return cpclInvalidArgument;
  }
  if (c->timeoutMs < 0) {
    snprintf(msg, msgLen, "config->timeoutMs is %d: it must be >= 0 (0 means CPCL_TIMEOUT_MS)", c->timeoutMs);
    return cpclInvalidArgument;
  }
  const char* tp = c->transport;
  const char* from = "config->transport";
  if (tp == NULL || tp[0] == 0) {
    tp = cpclParamString(CPCL_PARAM_TRANSPORT);
    from = "CPCL_TRANSPORT";
  }
  if (tp[0] == 0) {
    /* automatic: one rank needs nobody; host memory goes over UCX; GPU ranks of one node (the
     * DCP group of an engine) map each other's memory; cpclCommInitNccl names "nccl" itself */
    tp = nranks == 1 ? "self" : c->memType == cpclMemHost ? "ucx" : "ipc";
    from = "the automatic choice";
    out->transportFrom = nranks == 1                 ? "automatic: one rank"
                         : c->memType == cpclMemHost ? "automatic: host memory"
                                                     : "automatic: CUDA memory";
  } else {
    out->transportFrom = from;
  }
  const cpclTransportEntry_t* e = cpclTransportFind(tp);
  if (e == NULL) {
    snprintf(msg, msgLen, "%s is \"%.32s\": use \"ucx\", \"nccl\", \"ipc\" or \"self\"", from, tp);
    return cpclInvalidArgument;
  }
  if (e->ops == NULL) {
    snprintf(msg, msgLen, "%s is \"%s\", which this build of cpcl does not include (see cpcl_info)", from, tp);
    return cpclUnsupported;
  }
  if (!(e->ops->memTypes & (1u << c->memType))) {
    snprintf(msg, msgLen, "%s is \"%s\", which does not move %s memory", from, tp,
             c->memType == cpclMemHost ? "host" : "CUDA");
    return cpclInvalidArgument;
  }
  if (strcmp(tp, "self") == 0 && nranks != 1) {
    snprintf(msg, msgLen, "%s is \"self\", which serves one rank, not %d", from, nranks);
    return cpclInvalidArgument;
  }
  out->dcpSize = c->dcpSize ? c->dcpSize : nranks;
  out->interleave = c->kvInterleave ? c->kvInterleave : 1;
  out->memType = c->memType;
  snprintf(out->transport, sizeof(out->transport), "%s", tp);
  out->timeoutMs = c->timeoutMs ? c->timeoutMs : (int)CPCL_MIN(cpclParamInt(CPCL_PARAM_TIMEOUT_MS), 1 << 30);
  out->timeoutFrom = c->timeoutMs                            ? "config->timeoutMs"
                     : cpclParamIsSet(CPCL_PARAM_TIMEOUT_MS) ? "CPCL_TIMEOUT_MS"
                                                             : "the default";
  if (out->timeoutMs == 0) {
    out->timeoutMs = CPCL_DEFAULT_TIMEOUT_MS;
    out->timeoutFrom = "the default";
  }
  return cpclSuccess;
}

cpclResult_t cpclCommDigestCompare(const cpclCommDigest_t* all, int nranks, int slots, char* msg, size_t msgLen) {
  /* a rank that rejected its own oob arguments sent them anyway: name it */
  for (int r = 0; r < nranks; r++)
    if (all[r].magic == CPCL_DIGEST_MAGIC && !all[r].argsValid) {
      snprintf(msg, msgLen,
               "rank %d passed bad out-of-band arguments (oob->rank %d, oob->nranks %d; its own error names them)", r,
               all[r].rank, all[r].nranks);
      return cpclInvalidUsage;
    }
  /* the caller's all-gather filled more slots than this rank's nranks: the group is larger */
  for (int r = nranks; r < slots; r++)
    if (all[r].magic == CPCL_DIGEST_MAGIC) {
      snprintf(msg, msgLen,
               "the out-of-band all-gather is inconsistent: slot %d holds rank %d of %d ranks, but oob->nranks is %d "
               "here",
               r, all[r].rank, all[r].nranks, nranks);
      return cpclInvalidUsage;
    }
  for (int r = 0; r < nranks; r++) {
    if (all[r].magic != CPCL_DIGEST_MAGIC || all[r].rank != r || all[r].nranks != nranks) {
      snprintf(msg, msgLen,
               "the out-of-band all-gather is inconsistent: slot %d holds rank %d of %d ranks (expected rank %d of %d)",
               r, all[r].rank, all[r].nranks, r, nranks);
      return cpclInvalidUsage;
    }
  }
  for (int r = 0; r < nranks; r++) {
    if (!all[r].configValid) {
      snprintf(msg, msgLen, "rank %d passed an invalid config (its own error names the field)", r);
      return cpclInvalidUsage;
    }
  }
#define CPCL_DIGEST_FIELD(field, what)                                                                         \
  for (int r = 1; r < nranks; r++)                                                                             \
    if (all[r].field != all[0].field) {                                                                        \
      snprintf(msg, msgLen, "ranks disagree on %s: rank 0 has %d, rank %d has %d", what, (int)all[0].field, r, \
               (int)all[r].field);                                                                             \
      return cpclInvalidUsage;                                                                                 \
    }
  CPCL_DIGEST_FIELD(version, "the cpcl version")
  CPCL_DIGEST_FIELD(dcpSize, "dcpSize")
  CPCL_DIGEST_FIELD(interleave, "kvInterleave")
  CPCL_DIGEST_FIELD(memType, "memType")
#undef CPCL_DIGEST_FIELD
  for (int r = 1; r < nranks; r++)
    if (strncmp(all[r].transport, all[0].transport, sizeof(all[0].transport)) != 0) {
      snprintf(msg, msgLen, "ranks disagree on the transport: rank 0 has \"%.16s\", rank %d has \"%.16s\"",
               all[0].transport, r, all[r].transport);
      return cpclInvalidUsage;
    }
  return cpclSuccess;
}

static void commFree(struct cpclComm* comm) {
  if (comm->tp && comm->tpCtx) comm->tp->fini(comm->tpCtx);
  free(comm->reqs);
  free(comm->scratch.sendbufs);
  free(comm->scratch.recvbufs);
  free(comm->scratch.sendBytes);
  free(comm->scratch.recvBytes);
  free(comm->scratch.ctrl);
  free(comm->peerPid);
  free(comm->peerLocal);
  free(comm);
}

/* Ranks with the same key can see each other's processes: same host name and same PID
 * namespace (containers may share a host name but not their process ids). */
static uint64_t hostHash(void) {
  char name[512] = "";
  gethostname(name, 255);
  name[255] = 0;
  size_t len = strlen(name);
  ssize_t n = readlink("/proc/self/ns/pid", name + len, sizeof(name) - len - 1);
  if (n > 0) name[len + (size_t)n] = 0;
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (const char* c = name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
  return h;
}

int cpclPeerAlive(const struct cpclComm* comm, int peer) {
  if (peer < 0 || peer >= comm->nranks || !comm->peerLocal || !comm->peerLocal[peer]) return 1;
  const pid_t pid = comm->peerPid[peer];
  if (kill(pid, 0) != 0 && errno == ESRCH) return 0;
  /* an exited child that nobody reaped yet still answers kill(): read its state */
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE* f = fopen(path, "r");
  if (f == NULL) return 1; /* no /proc: assume alive, the timeout still bounds the wait */
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  const char* close = strrchr(buf, ')');
  return !(close && (close[2] == 'Z' || close[2] == 'X'));
}

cpclErrorSink_t* cpclCommErrors(struct cpclComm* comm) {
  if (comm == NULL) return NULL;
  /* set at creation; filled here for a communicator built by hand (the fuzzer's) */
  if (comm->errors.buf != comm->lastError)
    comm->errors = (cpclErrorSink_t){.rank = comm->rank, .buf = comm->lastError, .len = sizeof(comm->lastError)};
  return &comm->errors;
}

CPCL_API const char* cpclGetLastError(cpclComm_t comm) { return comm ? comm->lastError : cpclThreadLastError(); }

CPCL_API cpclResult_t cpclCommInitOob(cpclComm_t* commOut, const cpclOob_t* oob, const cpclConfig_t* config) {
  return cpclCommInitAdopt(commOut, oob, config, NULL);
}

/* Slots of the first (digest) all-gather: the caller's all-gather writes one per rank of the real
 * group, which a rank with a bad oob->nranks does not know. At least CPCL_MAX_COMM_RANKS, so that
 * any group a good rank accepts fits whatever this rank's own nranks says; more when nranks asks
 * for more (a group that large fails on every rank, but must not overflow here). */
static int digestSlots(int nranks) {
  return nranks > CPCL_MAX_COMM_RANKS && nranks <= CPCL_MAX_OOB_SLOTS ? nranks : CPCL_MAX_COMM_RANKS;
}

cpclResult_t cpclCommInitAdopt(cpclComm_t* commOut, const cpclOob_t* oob, const cpclConfig_t* config, void* adopt) {
  /* Without an all-gather this rank cannot tell its peers anything: it fails alone. */
  if (oob == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "oob is NULL");
  if (oob->allgather == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "oob->allgather is NULL");

  /* Validate locally, but exchange the digest whatever the outcome: a rank that returned early
   * would leave the others blocked in the all-gather. The first all-gather has the same byte
   * count on every rank (one digest), whatever this rank's nranks, so a bad rank still takes
   * part and its peers fail at once, naming it. */
  char msg[512];
  cpclResult_t own = cpclSuccess;
  const int argsValid = oob->nranks >= 1 && oob->nranks <= CPCL_MAX_COMM_RANKS && oob->rank >= 0 &&
                        oob->rank < oob->nranks && commOut != NULL;
  if (commOut == NULL) {
    snprintf(msg, sizeof(msg), "comm is NULL");
    own = cpclInvalidArgument;
  } else if (oob->nranks < 1 || oob->nranks > CPCL_MAX_COMM_RANKS) {
    snprintf(msg, sizeof(msg), "oob->nranks is %d: it must be in [1, %d]", oob->nranks, CPCL_MAX_COMM_RANKS);
    own = cpclInvalidArgument;
  } else if (oob->rank < 0 || oob->rank >= oob->nranks) {
    snprintf(msg, sizeof(msg), "oob->rank is %d: it must be in [0, %d)", oob->rank, oob->nranks);
    own = cpclInvalidArgument;
  }
  cpclResolvedConfig_t rc;
  memset(&rc, 0, sizeof(rc));
  if (own == cpclSuccess) own = cpclConfigResolve(config, oob->nranks, &rc, msg, sizeof(msg));

  cpclCommDigest_t mine;
  memset(&mine, 0, sizeof(mine));
  mine.magic = CPCL_DIGEST_MAGIC;
  mine.version = CPCL_VERSION_CODE;
  mine.nranks = oob->nranks;
  mine.rank = oob->rank;
  mine.argsValid = argsValid;
  mine.configValid = own == cpclSuccess;
  mine.dcpSize = rc.dcpSize;
  mine.interleave = rc.interleave;
  mine.memType = rc.memType;
  memcpy(mine.transport, rc.transport, sizeof(mine.transport));
  mine.hostHash = hostHash();
  mine.pid = (int32_t)getpid();

  const int slots = digestSlots(oob->nranks);
  cpclCommDigest_t* all = calloc((size_t)slots, sizeof(*all));
  if (all == NULL) return CPCL_ERR(NULL, cpclSystemError, "allocation of the init digests failed");
  if (oob->allgather(&mine, all, sizeof(mine), oob->ctx) != 0) {
    free(all);
    return CPCL_ERR(NULL, cpclSystemError, "the out-of-band all-gather (oob->allgather) returned an error");
  }
  if (own != cpclSuccess) {
    free(all);
    return CPCL_ERR(NULL, own, "%s", msg);
  }
  cpclResult_t agree = cpclCommDigestCompare(all, oob->nranks, slots, msg, sizeof(msg));
  if (agree != cpclSuccess) {
    free(all);
    return CPCL_ERR(NULL, agree, "%s", msg);
  }

  struct cpclComm* comm = calloc(1, sizeof(*comm));
  int32_t* pids = calloc((size_t)oob->nranks, sizeof(int32_t));
  uint8_t* local = calloc((size_t)oob->nranks, 1);
  if (comm == NULL || pids == NULL || local == NULL) {
    free(all);
    free(comm);
    free(pids);
    free(local);
    return CPCL_ERR(NULL, cpclSystemError, "allocation of the communicator failed");
  }
  int numLocal = 0;
  for (int r = 0; r < oob->nranks; r++) {
    pids[r] = all[r].pid;
    local[r] = all[r].hostHash == mine.hostHash && r != oob->rank;
    numLocal += local[r];
  }
  free(all);
  comm->peerPid = pids;
  comm->peerLocal = local;
  comm->rank = oob->rank;
  comm->nranks = oob->nranks;
  comm->errors = (cpclErrorSink_t){.rank = comm->rank, .buf = comm->lastError, .len = sizeof(comm->lastError)};
  comm->dcpSize = rc.dcpSize;
  comm->dcpRank = comm->rank % rc.dcpSize;
  comm->pcpSize = comm->nranks / rc.dcpSize;
  comm->pcpRank = comm->rank / rc.dcpSize;
  comm->interleave = rc.interleave;
  comm->memType = rc.memType;
  comm->timeoutMs = rc.timeoutMs;
  memcpy(comm->transportName, rc.transport, sizeof(comm->transportName));
  comm->tp = cpclTransportFind(rc.transport)->ops;
  atomic_init(&comm->asyncError, cpclSuccess);
  atomic_init(&comm->aborted, 0);
  atomic_init(&comm->busy, 0);
  atomic_flag_clear(&comm->plansLock);
  cpclResult_t res = cpclSuccess;
  const size_t W = (size_t)comm->nranks;
  CPCLCHECKGOTO(cpclCalloc(comm, &comm->reqs, 4 * W, sizeof(cpclRequest_t), "request slots"), res, fail);
  CPCLCHECKGOTO(cpclCalloc(comm, &comm->scratch.sendbufs, W, sizeof(void*), "per-rank send pointers"), res, fail);
  CPCLCHECKGOTO(cpclCalloc(comm, &comm->scratch.recvbufs, W, sizeof(void*), "per-rank receive pointers"), res, fail);
  CPCLCHECKGOTO(cpclCalloc(comm, &comm->scratch.sendBytes, W, sizeof(size_t), "per-rank send sizes"), res, fail);
  CPCLCHECKGOTO(cpclCalloc(comm, &comm->scratch.recvBytes, W, sizeof(size_t), "per-rank receive sizes"), res, fail);
  CPCLCHECKGOTO(cpclCalloc(comm, &comm->scratch.ctrl, W, CPCL_CTRL_RECORD_BYTES, "per-rank control records"), res,
                fail);
  if (comm->nranks > 1)
    INFO(CPCL_TOPO, "comm %p rank %d: %d of its %d peers run on this host (same host name and PID namespace)%s",
         (void*)comm, comm->rank, numLocal, comm->nranks - 1,
         numLocal == comm->nranks - 1 ? "" : "; the others' liveness is left to the transport and the timeout");
  const cpclTransportInitArgs_t targs = {.rank = comm->rank,
                                         .nranks = comm->nranks,
                                         .memType = comm->memType,
                                         .timeoutMs = comm->timeoutMs,
                                         .peerLocal = comm->peerLocal,
                                         .oob = oob,
                                         .adopt = adopt,
                                         .errors = &comm->errors};
  INFO(CPCL_INIT, "comm %p rank %d: opening transport %s (%s)%s", (void*)comm, comm->rank, comm->transportName,
       rc.transportFrom, adopt ? " on the caller's handle" : "");
  CPCLCHECKGOTO(comm->tp->init(&targs, &comm->tpCtx), res, fail);
  /* Wire-up check: a barrier over the new endpoints proves every pair can talk, and keeps any
   * rank from tearing its endpoints down before its peers have connected to them. */
  if (comm->nranks > 1) CPCLCHECKGOTO(cpclBarrier(comm), res, fail);
  INFO(CPCL_INIT,
       "comm %p rank %d/%d dcp %d/%d pcp %d/%d (dcpSize %s) interleave %d%s memory %s transport %s (%s) timeout %d ms "
       "(%s)",
       (void*)comm, comm->rank, comm->nranks, comm->dcpRank, comm->dcpSize, comm->pcpRank, comm->pcpSize,
       config && config->dcpSize ? "from config" : "0: all ranks", comm->interleave,
       config && config->kvInterleave ? "" : " (default)", comm->memType == cpclMemHost ? "host" : "CUDA",
       comm->transportName, rc.transportFrom, comm->timeoutMs, rc.timeoutFrom);
  *commOut = comm;
  return cpclSuccess;
fail:
  /* keep the transport's message: it is the thread's last error already */
  commFree(comm);
  return res;
}

cpclResult_t cpclCommEnter(struct cpclComm* comm, const char* func) {
  atomic_fetch_add(&comm->busy, 1);
  if (atomic_load(&comm->aborted)) {
    atomic_fetch_sub(&comm->busy, 1);
    return CPCL_ERR(comm, cpclInvalidUsage, "%s: the communicator was aborted", func);
  }
  int err = atomic_load(&comm->asyncError);
  if (err != cpclSuccess) {
    atomic_fetch_sub(&comm->busy, 1);
    return CPCL_ERR(comm, cpclInvalidUsage, "%s: the communicator is broken by an earlier %s; destroy it", func,
                    cpclGetErrorString((cpclResult_t)err));
  }
  return cpclSuccess;
}

void cpclCommLeave(struct cpclComm* comm) { atomic_fetch_sub(&comm->busy, 1); }

cpclResult_t cpclCommFail(struct cpclComm* comm, cpclResult_t err) {
  int expected = cpclSuccess;
  if (atomic_compare_exchange_strong(&comm->asyncError, &expected, (int)err))
    INFO(CPCL_COMM, "comm %p rank %d is broken: %s; later calls return cpclInvalidUsage", (void*)comm, comm->rank,
         cpclGetErrorString(err));
  return err;
}

CPCL_API cpclResult_t cpclCommDestroy(cpclComm_t comm) {
  if (comm == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "comm is NULL");
  if (comm->numPlans > 0)
    return CPCL_ERR(comm, cpclInvalidUsage,
                    "cpclCommDestroy: %d plan(s) still use this communicator; destroy them first", comm->numPlans);
  if (atomic_load(&comm->busy) > 0)
    return CPCL_ERR(comm, cpclInvalidUsage,
                    "cpclCommDestroy: a call on this communicator is in progress; use cpclCommAbort");
  INFO(CPCL_INIT, "comm %p rank %d destroyed", (void*)comm, comm->rank);
  commFree(comm);
  return cpclSuccess;
}

CPCL_API cpclResult_t cpclCommAbort(cpclComm_t comm) {
  if (comm == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "comm is NULL");
  atomic_store(&comm->aborted, 1);
  cpclCommFail(comm, cpclRemoteError);
  /* a blocked call sees the flag within one turn of its wait loop and returns */
  struct timespec ts = {0, 100000};
  while (atomic_load(&comm->busy) > 0) nanosleep(&ts, NULL);
  INFO(CPCL_INIT, "comm %p rank %d aborted", (void*)comm, comm->rank);
  if (comm->numPlans > 0) {
    /* plans still point here: close the transport now, free the rest with the last plan */
    if (comm->tp && comm->tpCtx) comm->tp->fini(comm->tpCtx);
    comm->tpCtx = NULL;
    comm->released = 1;
    return cpclSuccess;
  }
  commFree(comm);
  return cpclSuccess;
}

void cpclCommPlanGone(struct cpclComm* comm) {
  comm->numPlans--;
  if (comm->released && comm->numPlans == 0) commFree(comm);
}

CPCL_API cpclResult_t cpclCommRank(cpclComm_t comm, int* rank) {
  if (comm == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "comm is NULL");
  if (rank == NULL) return CPCL_ERR(comm, cpclInvalidArgument, "rank is NULL");
  *rank = comm->rank;
  return cpclSuccess;
}

CPCL_API cpclResult_t cpclCommSize(cpclComm_t comm, int* size) {
  if (comm == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "comm is NULL");
  if (size == NULL) return CPCL_ERR(comm, cpclInvalidArgument, "size is NULL");
  *size = comm->nranks;
  return cpclSuccess;
}

CPCL_API cpclResult_t cpclCommAxes(cpclComm_t comm, int* dcpSize, int* dcpRank, int* pcpSize, int* pcpRank) {
  if (comm == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "comm is NULL");
  if (dcpSize) *dcpSize = comm->dcpSize;
  if (dcpRank) *dcpRank = comm->dcpRank;
  if (pcpSize) *pcpSize = comm->pcpSize;
  if (pcpRank) *pcpRank = comm->pcpRank;
  return cpclSuccess;
}

CPCL_API cpclResult_t cpclCommGetAsyncError(cpclComm_t comm, cpclResult_t* asyncError) {
  if (comm == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "comm is NULL");
  if (asyncError == NULL) return CPCL_ERR(comm, cpclInvalidArgument, "asyncError is NULL");
  cpclResult_t r = (cpclResult_t)atomic_load(&comm->asyncError);
  /* GPU ranks wait on the device: a wait that expired is in a plan's record until converted */
  if (r == cpclSuccess && comm->memType == cpclMemCuda) r = cpclCommDevicePeerError(comm);
  *asyncError = r;
  return cpclSuccess;
}

CPCL_API cpclResult_t cpclGetVersion(int* version) {
  if (version == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "version is NULL");
  *version = CPCL_VERSION_CODE;
  return cpclSuccess;
}
