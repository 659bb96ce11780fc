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

uint64_t cpclDigestInt32(const int32_t* v, int n) {
  const uint64_t prime = 1099511628211ULL, basis = 1469598103934665603ULL;
  uint64_t h0 = basis, h1 = basis ^ 1, h2 = basis ^ 2, h3 = basis ^ 3;
  int i = 0;
#define WORD(k) (uint64_t)(uint32_t)(v ? v[k] : (int32_t)(k))
  for (; i + 4 <= n; i += 4) {
    h0 = (h0 ^ WORD(i)) * prime;
    h1 = (h1 ^ WORD(i + 1)) * prime;
    h2 = (h2 ^ WORD(i + 2)) * prime;
    h3 = (h3 ^ WORD(i + 3)) * prime;
  }
  for (; i < n; i++) h0 = (h0 ^ WORD(i)) * prime;
#undef WORD
  /* each fold is a bijection of the lane folded in, so a lane that differs stays different */
  uint64_t x = ((basis ^ (uint64_t)(uint32_t)n) * prime ^ h0) * prime;
  x = (x ^ h1) * prime;
  x = (x ^ h2) * prime;
  return (x ^ h3) * prime;
}

void cpclOpDigestRows(const struct cpclAttnPlan* pl, const cpclStep_t* st, uint64_t d[CPCL_STEP_DIGESTS]) {
  (void)pl;
  const cpclBatch_t* b = st->batch;
  d[0] = cpclDigestInt32(b->queryStart, b->numSeqs + 1);
  d[1] = cpclDigestInt32(b->seqLens, b->numSeqs);
}

/* What ranks exchange before a step moves any data, after the control header (which names the
 * operation and the plan): the rows, and whether it accepted its own arguments, and the digests
 * of the contents its entry declares. */
typedef struct {
  int32_t numTokens, numSeqs, valid, numDigests;
  uint64_t digest[CPCL_STEP_DIGESTS];
} stepRecord_t;

/* Agreement of every rank on this step (host memory, W > 1): a rank that rejected its arguments
 * or called another operation makes every rank return before any data moves, the arguments'
 * owner with its own error and the others with cpclInvalidUsage naming it. The communicator and
 * the plan stay usable. Device memory checks this on the device with its transport. */
static cpclResult_t stepAgree(struct cpclAttnPlan* pl, const cpclOp_t* op, const cpclStep_t* st, cpclResult_t own) {
  struct cpclComm* c = pl->comm;
  if (!(op->agree & CPCL_AGREE_STEP) || c->nranks == 1 || c->memType != cpclMemHost) return own;
  stepRecord_t mine;
  memset(&mine, 0, sizeof(mine));
  mine.numTokens = st->numTokens;
  mine.numSeqs = st->batch ? st->batch->numSeqs : st->prefill ? st->prefill->numSeqs : -1;
  mine.valid = own == cpclSuccess;
  if (own == cpclSuccess && op->digest && (st->batch || st->prefill)) { /* contents are read only once checked */
    op->digest(pl, st, mine.digest);
    for (int k = 0; k < CPCL_STEP_DIGESTS; k++)
      if (op->digestFields[k]) mine.numDigests = k + 1;
  }
  _Static_assert(sizeof(stepRecord_t) <= CPCL_CTRL_PAYLOAD_BYTES, "a step record fits a control record");
  char saved[sizeof(c->lastError)];
  memcpy(saved, c->lastError, sizeof(saved));
  CPCLCHECK(cpclCtrlExchange(c, CPCL_CTRL_STEP, st->op, pl->serial, &mine, sizeof(mine)));
  if (own != cpclSuccess) {
    memcpy(c->lastError, saved, sizeof(saved)); /* keep this rank's own message */
    return own;
  }
  CPCLCHECK(cpclCtrlAgreeCall(c, op->name));
  stepRecord_t all;
  for (int r = 0; r < c->nranks; r++) {
    const int plan = cpclCtrlRecord(c, r)->plan;
    memcpy(&all, cpclCtrlPayload(c, r), sizeof(all));
    if (!all.valid)
      return CPCL_ERR(c, cpclInvalidUsage, "%s: rank %d rejected its arguments for %s (its error names them)", op->name,
                      r, nameOf(st->op));
    if (plan != pl->serial || ((op->agree & CPCL_AGREE_ROWS) && all.numTokens != mine.numTokens) ||
        ((op->agree & CPCL_AGREE_SEQS) && all.numSeqs != mine.numSeqs))
      return CPCL_ERR(c, cpclInvalidUsage,
                      "ranks disagree on the step: rank %d called %s on plan #%d with %d rows of %d sequences, rank %d "
                      "called %s on plan #%d with %d rows of %d sequences",
                      c->rank, op->name, pl->serial, mine.numTokens, mine.numSeqs, r, nameOf(st->op), plan,
                      all.numTokens, all.numSeqs);
  }
  /* Contents: the first rank whose field differs from rank 0's, the same message on every rank. */
  stepRecord_t first;
  memcpy(&first, cpclCtrlPayload(c, 0), sizeof(first));
  for (int k = 0; k < mine.numDigests; k++)
    for (int r = 1; r < c->nranks; r++) {
      memcpy(&all, cpclCtrlPayload(c, r), sizeof(all));
      if (all.digest[k] != first.digest[k])
        return CPCL_ERR(c, cpclInvalidUsage,
                        "%s: rank %d's %s differ from rank 0's (same %d sequences and %d rows): every rank must pass "
                        "the same batch contents; nothing moved",
                        op->name, r, op->digestFields[k], mine.numSeqs, mine.numTokens);
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
          c->rank, st->numTokens,
          st->batch     ? st->batch->numSeqs
          : st->prefill ? st->prefill->numSeqs
                        : 0,
          sched, st->seq);
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
