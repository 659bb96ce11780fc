/* attn.c -- the per-step entry points: validation of every argument (before any communication,
 * the same checks on every rank), then the plan's schedule. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "core.h"
#include "kv_layout.h"
#include "sched/sched.h"

static const cpclSchedule_t* const schedules[CPCL_NUM_ALGOS] = {
    [CPCL_ALGO_AGRS] = &cpclScheduleAgrs,
    [CPCL_ALGO_A2A] = &cpclScheduleA2a,
    [CPCL_ALGO_PIPELINED] = &cpclSchedulePipelined,
    [CPCL_ALGO_FUSED] = &cpclScheduleFused,
};

/* Host memory: queryStart, seqLens and this rank's block-table reach are read too. */
cpclResult_t cpclBatchCheck(struct cpclAttnPlan* pl, const cpclBatch_t* b, int maxTokens, const char* fn) {
  struct cpclComm* c = pl->comm;
  if (b == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch is NULL", fn);
  if (b->numSeqs < 0) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->numSeqs is %d", fn, b->numSeqs);
  if (b->numTokens < 0 || b->numTokens > maxTokens)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->numTokens is %d: it must be in [0, maxTokens = %d]", fn,
                    b->numTokens, maxTokens);
  if (b->queryStart == NULL && b->numTokens != b->numSeqs)
    return CPCL_ERR(c, cpclInvalidArgument,
                    "%s: batch->queryStart is NULL (one row per sequence) but numTokens %d != numSeqs %d", fn,
                    b->numTokens, b->numSeqs);
  if (b->numSeqs == 0) return cpclSuccess;
  if (b->seqLens == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->seqLens is NULL", fn);
  if (b->blockTable == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->blockTable is NULL", fn);
  if (b->maxPagesPerSeq < 1)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->maxPagesPerSeq is %d", fn, b->maxPagesPerSeq);
  if (c->memType != cpclMemHost) return cpclSuccess; /* device contents are checked on the device */
  if (b->queryStart && b->queryStart[0] != 0)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->queryStart[0] is %d, not 0", fn, b->queryStart[0]);
  const int64_t cap = (int64_t)b->maxPagesPerSeq * pl->desc.pageSize;
  for (int s = 0; s < b->numSeqs; s++) {
    const int rows = b->queryStart ? b->queryStart[s + 1] - b->queryStart[s] : 1;
    if (rows < 0)
      return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->queryStart goes backwards at sequence %d (%d -> %d)", fn, s,
                      b->queryStart[s], b->queryStart[s + 1]);
    if (b->seqLens[s] < rows)
      return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->seqLens[%d] is %d, fewer than its %d query rows", fn, s,
                      b->seqLens[s], rows);
    const int64_t local = cpclKvLocalLenOf(b->seqLens[s], c->nranks, c->rank, c->interleave);
    if (local > cap)
      return CPCL_ERR(c, cpclInvalidArgument,
                      "%s: sequence %d holds %lld local tokens on rank %d, more than its block-table row "
                      "(maxPagesPerSeq %d x pageSize %d)",
                      fn, s, (long long)local, c->rank, b->maxPagesPerSeq, pl->desc.pageSize);
  }
  if (b->queryStart && b->queryStart[b->numSeqs] != b->numTokens)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->queryStart[numSeqs] is %d, not numTokens %d", fn,
                    b->queryStart[b->numSeqs], b->numTokens);
  return cpclSuccess;
}

/* Validates one step's arguments and fills st (always, so the step can be agreed on even when
 * this rank's arguments are bad). */
static cpclResult_t stepBegin(struct cpclAttnPlan* pl, const cpclBatch_t* b, int numTokens, int op, const void* q,
                              const void* k, const void* v, cpclStream_t stream, const char* fn, cpclStep_t* st) {
  struct cpclComm* c = pl->comm;
  st->batch = b;
  st->numTokens = b ? b->numTokens : numTokens;
  st->q = q;
  st->kCache = k;
  st->vCache = v;
  st->stream = stream;
  st->op = op;
  st->seq = 0;
  if (op != CPCL_OP_COMBINE) { /* the operations that attend take a batch */
    CPCLCHECK(cpclBatchCheck(pl, b, pl->maxTokens, fn));
    numTokens = b->numTokens;
    if (numTokens > 0 && q == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: q is NULL", fn);
    if (numTokens > 0 && k == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: kCache is NULL", fn);
    if (numTokens > 0 && v == NULL && !pl->desc.latentKv)
      return CPCL_ERR(c, cpclInvalidArgument, "%s: vCache is NULL (only MLA plans, latentKv = 1, read V from K)", fn);
  } else if (numTokens < 0 || numTokens > pl->maxTokens) {
    return CPCL_ERR(c, cpclInvalidArgument, "%s: numTokens is %d: it must be in [0, maxTokens = %d]", fn, numTokens,
                    pl->maxTokens);
  }
  return cpclSuccess;
}

static const char* opName(int op) {
  return op == CPCL_OP_DECODE ? "cpclAttnDecode" : op == CPCL_OP_PARTIAL ? "cpclAttnPartial" : "cpclAttnCombine";
}

/* What ranks exchange before a step moves any data: which operation each called, on how many
 * rows, and whether it accepted its own arguments. */
typedef struct {
  uint32_t magic;
  int32_t op, plan, numTokens, numSeqs, valid;
} stepHeader_t;

/* Agreement of every rank on this step (host memory, W > 1): a rank that rejected its arguments
 * or called another operation makes every rank return before any data moves, the arguments'
 * owner with its own error and the others with cpclInvalidUsage naming it. The communicator and
 * the plan stay usable. Device memory checks this on the device with its transport. */
static cpclResult_t stepAgree(struct cpclAttnPlan* pl, const cpclStep_t* st, cpclResult_t own) {
  struct cpclComm* c = pl->comm;
  if (c->nranks == 1 || c->memType != cpclMemHost) return own;
  stepHeader_t mine = {0x53544550u,       st->op, pl->serial, st->numTokens, st->batch ? st->batch->numSeqs : -1,
                       own == cpclSuccess};
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
      return CPCL_ERR(c, cpclInvalidUsage, "%s: rank %d rejected its arguments for %s (its error names them)",
                      opName(st->op), r, opName(all[r].op));
    if (all[r].op != mine.op || all[r].plan != mine.plan || all[r].numTokens != mine.numTokens ||
        all[r].numSeqs != mine.numSeqs)
      return CPCL_ERR(c, cpclInvalidUsage,
                      "ranks disagree on the step: rank %d called %s on plan #%d with %d rows of %d sequences, rank %d "
                      "called %s on plan #%d with %d rows of %d sequences",
                      c->rank, opName(mine.op), mine.plan, mine.numTokens, mine.numSeqs, r, opName(all[r].op),
                      all[r].plan, all[r].numTokens, all[r].numSeqs);
  }
  return cpclSuccess;
}

/* Runs one operation: enters the comm (refusing a broken one), agrees on the step with every
 * rank (own: this rank's validation result), numbers it, runs the plan's schedule. */
static cpclResult_t runStep(struct cpclAttnPlan* pl, cpclStep_t* st, cpclResult_t own, void* out, float* lse,
                            const void* partialOut, const float* partialLse) {
  struct cpclComm* c = pl->comm;
  CPCLCHECK(cpclCommEnter(c, opName(st->op)));
  /* bad device data met by an earlier step's kernels: report it here, once */
  if (own == cpclSuccess) own = cpclPlanDeviceError(pl, 1);
  cpclResult_t res = stepAgree(pl, st, own);
  if (res == cpclSuccess && st->numTokens > 0) {
    st->seq = cpclNextSeq(c);
    const cpclSchedule_t* sched = schedules[pl->algo];
    char range[64];
    snprintf(range, sizeof(range), "%s %s", opName(st->op), sched->name);
    CPCL_NVTX_PUSH(range);
    switch (st->op) {
      case CPCL_OP_DECODE:
        res = sched->decode(pl, st, out, lse);
        break;
      case CPCL_OP_PARTIAL:
        res = sched->partial(pl, st, out, lse);
        break;
      default:
        res = sched->combine(pl, st, partialOut, partialLse, out, lse);
        break;
    }
    CPCL_NVTX_POP();
    if (res != cpclSuccess) /* kernels record the detail on the thread */
      snprintf(c->lastError, sizeof(c->lastError), "rank %d: %s", c->rank, cpclGetLastError(NULL));
  }
  cpclCommLeave(c);
  return res;
}

CPCL_API cpclResult_t cpclAttnDecode(cpclAttnPlan_t plan, const cpclBatch_t* batch, const void* q, const void* kCache,
                                     const void* vCache, void* out, float* lse, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclAttnDecode: plan is NULL");
  cpclStep_t st;
  cpclResult_t own = stepBegin(plan, batch, 0, CPCL_OP_DECODE, q, kCache, vCache, stream, "cpclAttnDecode", &st);
  if (own == cpclSuccess && out == NULL && st.numTokens > 0)
    own = CPCL_ERR(plan->comm, cpclInvalidArgument, "cpclAttnDecode: out is NULL");
  return runStep(plan, &st, own, out, lse, NULL, NULL);
}

CPCL_API cpclResult_t cpclAttnPartial(cpclAttnPlan_t plan, const cpclBatch_t* batch, const void* q, const void* kCache,
                                      const void* vCache, void* partialOut, float* partialLse, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclAttnPartial: plan is NULL");
  cpclStep_t st;
  cpclResult_t own = stepBegin(plan, batch, 0, CPCL_OP_PARTIAL, q, kCache, vCache, stream, "cpclAttnPartial", &st);
  if (own == cpclSuccess && (partialOut == NULL || partialLse == NULL) && st.numTokens > 0)
    own = CPCL_ERR(plan->comm, cpclInvalidArgument, "cpclAttnPartial: partialOut (%p) and partialLse (%p) are needed",
                   partialOut, (void*)partialLse);
  return runStep(plan, &st, own, partialOut, partialLse, NULL, NULL);
}

CPCL_API cpclResult_t cpclAttnCombine(cpclAttnPlan_t plan, int numTokens, const void* partialOut,
                                      const float* partialLse, void* out, float* lse, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclAttnCombine: plan is NULL");
  cpclStep_t st;
  cpclResult_t own =
      stepBegin(plan, NULL, numTokens, CPCL_OP_COMBINE, NULL, NULL, NULL, stream, "cpclAttnCombine", &st);
  if (own == cpclSuccess && (partialOut == NULL || partialLse == NULL || out == NULL) && numTokens > 0)
    own = CPCL_ERR(plan->comm, cpclInvalidArgument, "cpclAttnCombine: partialOut, partialLse and out are needed");
  return runStep(plan, &st, own, out, lse, partialOut, partialLse);
}

CPCL_API int64_t cpclKvLocalLen(int64_t seqLen, int cpSize, int cpRank, int interleave) {
  if (seqLen < 0 || cpSize < 1 || cpRank < 0 || cpRank >= cpSize || interleave < 1) return -1;
  return cpclKvLocalLenOf(seqLen, cpSize, cpRank, interleave);
}

CPCL_API cpclResult_t cpclKvStore(cpclAttnPlan_t plan, const cpclBatch_t* batch, const void* kNew, const void* vNew,
                                  void* kCache, void* vCache, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclKvStore: plan is NULL");
  struct cpclComm* c = plan->comm;
  CPCLCHECK(cpclBatchCheck(plan, batch, INT_MAX, "cpclKvStore")); /* no workspace: any count */
  if (batch->numTokens == 0) return cpclSuccess;
  if (kNew == NULL || kCache == NULL)
    return CPCL_ERR(c, cpclInvalidArgument, "cpclKvStore: kNew (%p) and kCache (%p) are needed", kNew, kCache);
  if (!plan->desc.latentKv && (vNew == NULL || vCache == NULL))
    return CPCL_ERR(c, cpclInvalidArgument, "cpclKvStore: vNew (%p) and vCache (%p) are needed (latentKv = 0)", vNew,
                    vCache);
  CPCLCHECK(cpclPlanDeviceError(plan, 1));
  const cpclAttnDesc_t* d = &plan->desc;
  cpclKvStoreParams_t p = {.errorFlag = plan->errorDev,
                           .numSeqs = batch->numSeqs,
                           .numTokens = batch->numTokens,
                           .queryStart = batch->queryStart,
                           .seqLens = batch->seqLens,
                           .blockTable = batch->blockTable,
                           .maxPagesPerSeq = batch->maxPagesPerSeq,
                           .cpSize = c->nranks,
                           .cpRank = c->rank,
                           .interleave = c->interleave,
                           .pageSize = d->pageSize,
                           .numKvHeads = d->numKvHeads,
                           .headDimQk = d->headDimQk,
                           .headDimVo = d->headDimVo,
                           .latentKv = d->latentKv,
                           .kvType = d->kvType,
                           .kNew = kNew,
                           .vNew = d->latentKv ? NULL : vNew,
                           .kCache = kCache,
                           .vCache = d->latentKv ? NULL : vCache};
  return plan->exec->kvStore(&p, stream);
}
