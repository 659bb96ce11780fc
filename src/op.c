/* op.c -- the operation table and the path every per-step operation takes (op.h): validation,
 * entry into the communicator, the agreement of every rank, the schedule. */
#include <string.h>

#include "coll.h"
#include "core.h"
#include "op.h"

/* Indexed by tag. Order matters for select: the first entry of a family picks its schedule. */
static const cpclOp_t* const table[] = {
    [CPCL_OP_DECODE] = &cpclOpDecode,   [CPCL_OP_PARTIAL] = &cpclOpPartial, [CPCL_OP_COMBINE] = &cpclOpCombine,
    [CPCL_OP_KVSTORE] = &cpclOpKvStore, [CPCL_OP_PREFILL] = &cpclOpPrefill,
};
#define TABLE_LEN ((int)(sizeof(table) / sizeof(table[0])))

const cpclOp_t* cpclOpOf(int tag) { return tag >= 0 && tag < TABLE_LEN ? table[tag] : NULL; }

static const char* nameOf(int tag) {
  const cpclOp_t* op = cpclOpOf(tag);
  return op ? op->name : "an unknown operation";
}

cpclResult_t cpclOpsSelect(const struct cpclComm* c, const cpclAttnDesc_t* d, cpclPlanSchedules_t* sel, char* why,
                           size_t whyLen, char* msg, size_t msgLen) {
  for (int t = 0; t < TABLE_LEN; t++)
    if (table[t] && table[t]->select) CPCLCHECK(table[t]->select(c, d, sel, why, whyLen, msg, msgLen));
  return cpclSuccess;
}

/* What ranks exchange before a step moves any data: which operation each called, on how many
 * rows, and whether it accepted its own arguments. */
typedef struct {
  uint32_t magic;
  int32_t op, plan, numTokens, numSeqs, valid;
  uint64_t digest; /* the entry's digest of its host contents (cpclOp_t.digest), else 0 */
} stepHeader_t;

/* Agreement of every rank on this step (host memory, W > 1): a rank that rejected its arguments
 * or called another operation makes every rank return before any data moves, the arguments'
 * owner with its own error and the others with cpclInvalidUsage naming it. The communicator and
 * the plan stay usable. Device memory checks this on the device with its transport. */
static cpclResult_t stepAgree(struct cpclAttnPlan* pl, const cpclOp_t* op, const cpclStep_t* st, cpclResult_t own) {
  struct cpclComm* c = pl->comm;
  if (!(op->agree & CPCL_AGREE_STEP) || c->nranks == 1 || c->memType != cpclMemHost) return own;
  stepHeader_t mine = {0x53544550u,
                       st->op,
                       pl->serial,
                       st->numTokens,
                       st->batch ? st->batch->numSeqs : -1,
                       own == cpclSuccess,
                       own == cpclSuccess && op->digest ? op->digest(pl, st) : 0};
  _Static_assert(sizeof(stepHeader_t) <= CPCL_CTRL_RECORD_BYTES, "a step header fits a control record");
  stepHeader_t* all = (stepHeader_t*)c->scratch.ctrl;
  char saved[sizeof(c->lastError)];
  memcpy(saved, c->lastError, sizeof(saved));
  CPCLCHECK(cpclCtrlAllgather(c, &mine, all, sizeof(mine)));
  if (own != cpclSuccess) {
    memcpy(c->lastError, saved, sizeof(saved)); /* keep this rank's own message */
    return own;
  }
  for (int r = 0; r < c->nranks; r++) {
    if (!all[r].valid)
      return CPCL_ERR(c, cpclInvalidUsage, "%s: rank %d rejected its arguments for %s (its error names them)", op->name,
                      r, nameOf(all[r].op));
    if (all[r].op != mine.op || all[r].plan != mine.plan ||
        ((op->agree & CPCL_AGREE_ROWS) && all[r].numTokens != mine.numTokens) ||
        ((op->agree & CPCL_AGREE_SEQS) && all[r].numSeqs != mine.numSeqs))
      return CPCL_ERR(c, cpclInvalidUsage,
                      "ranks disagree on the step: rank %d called %s on plan #%d with %d rows of %d sequences, rank %d "
                      "called %s on plan #%d with %d rows of %d sequences",
                      c->rank, op->name, mine.plan, mine.numTokens, mine.numSeqs, r, nameOf(all[r].op), all[r].plan,
                      all[r].numTokens, all[r].numSeqs);
    if (all[r].digest != mine.digest)
      return CPCL_ERR(c, cpclInvalidUsage,
                      "ranks disagree on the step: %s of rank %d and rank %d differ (%s; digests %016llx, %016llx)",
                      op->digestWhat, c->rank, r, op->name, (unsigned long long)mine.digest,
                      (unsigned long long)all[r].digest);
  }
  return cpclSuccess;
}

/* This rank's own verdict on its arguments (no communication). */
static cpclResult_t stepCheck(struct cpclAttnPlan* pl, const cpclOp_t* op, const cpclStep_t* st) {
  const int maxTokens = op->bounded ? pl->maxTokens : INT32_MAX;
  if (op->pages != CPCL_PAGES_NONE) {
    CPCLCHECK(cpclBatchCheck(pl, st->batch, maxTokens, op->pages, op->name));
  } else if (st->numTokens < 0 || st->numTokens > maxTokens) {
    return CPCL_ERR(pl->comm, cpclInvalidArgument, "%s: numTokens is %d: it must be in [0, maxTokens = %d]", op->name,
                    st->numTokens, maxTokens);
  }
  return op->check ? op->check(pl, st) : cpclSuccess;
}

cpclResult_t cpclOpRun(struct cpclAttnPlan* pl, const cpclOp_t* op, cpclStep_t* st) {
  struct cpclComm* c = pl->comm;
  st->op = op->tag;
  st->seq = 0;
  if (op->pages != CPCL_PAGES_NONE && st->batch) st->numTokens = st->batch->numTokens;
  cpclResult_t own = stepCheck(pl, op, st);
  CPCLCHECK(cpclCommEnter(c, op->name));
  /* bad device data met by an earlier step's kernels: report it here, once */
  if (own == cpclSuccess) own = cpclPlanDeviceError(pl, 1);
  cpclResult_t res = stepAgree(pl, op, st, own);
  if (res == cpclSuccess && st->numTokens > 0) {
    if (op->agree & CPCL_AGREE_STEP) st->seq = cpclNextSeq(c);
    const char* sched = op->scheduleName(pl);
    TRACE(CPCL_SCHED, "%s plan #%d rank %d: %d rows of %d sequences, schedule %s, step %u", op->name, pl->serial,
          c->rank, st->numTokens, st->batch ? st->batch->numSeqs : 0, sched, st->seq);
    char range[64];
    snprintf(range, sizeof(range), "%s %s", op->name, sched);
    CPCL_NVTX_PUSH(range);
    res = op->run(pl, st);
    CPCL_NVTX_POP();
    if (res != cpclSuccess) /* kernels record the detail on the thread */
      snprintf(c->lastError, sizeof(c->lastError), "rank %d: %s", c->rank, cpclGetLastError(NULL));
  }
  cpclCommLeave(c);
  return res;
}
