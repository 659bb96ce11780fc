/* op_decode.c -- the decode family of the operation table (op.h): cpclAttnDecode and its two
 * halves, cpclAttnPartial and cpclAttnCombine. Every rank agrees on the operation, the rows and
 * the sequences of each step; the three run the schedule plan creation picked (sched/). */
#include <stdint.h>
#include <strings.h>

#include "core.h"
#include "op.h"

static const cpclSchedule_t* const schedules[CPCL_NUM_ALGOS] = {
    [CPCL_ALGO_AGRS] = &cpclScheduleAgrs,
    [CPCL_ALGO_A2A] = &cpclScheduleA2a,
    [CPCL_ALGO_PIPELINED] = &cpclSchedulePipelined,
    [CPCL_ALGO_FUSED] = &cpclScheduleFused,
};

static const char* scheduleName(const struct cpclAttnPlan* pl) { return schedules[pl->algo]->name; }

/* desc->algo, else CPCL_ALGO, else the automatic choice for this shape and memory; why says
 * which of the three decided, and the rule (the plan's INFO line). */
static cpclResult_t decodeSelect(const struct cpclComm* c, const cpclAttnDesc_t* d, cpclPlanSchedules_t* sel, char* why,
                                 size_t whyLen, char* msg, size_t n) {
  const char* forced = d->algo ? d->algo : cpclParamString(CPCL_PARAM_ALGO);
  const char* from = d->algo ? "desc->algo" : "CPCL_ALGO";
  char cannot[256];
  sel->algo = CPCL_NUM_ALGOS;
  if (forced[0]) {
    for (int a = 0; a < CPCL_NUM_ALGOS; a++)
      if (strcasecmp(forced, cpclAlgoNames[a]) == 0) sel->algo = (cpclAlgo_t)a;
    if (sel->algo == CPCL_NUM_ALGOS) {
      snprintf(msg, n, "%s is \"%.32s\": use agrs, a2a, pipelined or fused", from, forced);
      return cpclInvalidArgument;
    }
    if (sel->algo == CPCL_ALGO_FUSED && !cpclPlanFusedPossible(c, cannot, sizeof(cannot))) {
      snprintf(msg, n, "%s is fused: %s", from, cannot);
      return cpclUnsupported;
    }
    snprintf(why, whyLen, "forced by %s", from);
    return cpclSuccess;
  }
  /* a body the fused kernel cannot host (the Hopper MLA body): a2a runs it, and is faster than
   * the fused kernel around the CUDA-core body by far more than the fusion saves */
  const cpclExecOps_t* exec = cpclExecOf(c->memType);
  const char* own = exec ? exec->attnOwnBody(d, c->dcpSize * d->numQoHeads) : NULL;
  /* Host: a2a (measured in tools/dcp_decode_perf, see README): one exchange of packed slices,
   * and on CPU ranks the transfers are memory copies that pipelining cannot hide.
   * GPU peers that map each other's memory: fused, one kernel and no host step. With one rank
   * there is nothing to exchange, and a2a is the attention kernel alone. */
  if (c->nranks > 1 && own != NULL && cpclPlanFusedPossible(c, cannot, sizeof(cannot))) {
    sel->algo = CPCL_ALGO_A2A;
    snprintf(why, whyLen, "automatic: a2a, since the attention runs %s, which the fused kernel cannot host", own);
  } else if (c->nranks > 1 && cpclPlanFusedPossible(c, cannot, sizeof(cannot))) {
    sel->algo = CPCL_ALGO_FUSED;
    snprintf(why, whyLen, "automatic: GPU peers map each other's memory over %s, one kernel per step",
             c->transportName);
  } else {
    sel->algo = CPCL_ALGO_A2A;
    if (c->nranks == 1)
      snprintf(why, whyLen, "automatic: one rank, the attention kernel alone");
    else
      snprintf(why, whyLen, "automatic: a2a, since %.200s", cannot);
  }
  return cpclSuccess;
}

cpclResult_t cpclOpCheckAttend(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  struct cpclComm* c = pl->comm;
  const char* fn = cpclOpOf(st->op)->name;
  if (st->numTokens == 0) return cpclSuccess;
  if (st->q == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: q is NULL", fn);
  if (st->kCache == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: kCache is NULL", fn);
  if (st->vCache == NULL && !pl->desc.latentKv)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: vCache is NULL (only MLA plans, latentKv = 1, read V from K)", fn);
  return cpclSuccess;
}

static cpclResult_t decodeCheck(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  CPCLCHECK(cpclOpCheckAttend(pl, st));
  if (st->numTokens > 0 && st->out == NULL)
    return CPCL_ERR(pl->comm, cpclInvalidArgument, "cpclAttnDecode: out is NULL");
  return cpclSuccess;
}

static cpclResult_t partialCheck(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  CPCLCHECK(cpclOpCheckAttend(pl, st));
  if (st->numTokens > 0 && (st->out == NULL || st->lse == NULL))
    return CPCL_ERR(pl->comm, cpclInvalidArgument, "cpclAttnPartial: partialOut (%p) and partialLse (%p) are needed",
                    st->out, (void*)st->lse);
  return cpclSuccess;
}

static cpclResult_t combineCheck(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  if (st->numTokens > 0 && (st->in == NULL || st->inLse == NULL || st->out == NULL))
    return CPCL_ERR(pl->comm, cpclInvalidArgument, "cpclAttnCombine: partialOut, partialLse and out are needed");
  return cpclSuccess;
}

/* Sparse plans filter first: the schedules are the dense ones, only the attention reads lists. */
static cpclResult_t decodeRun(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  CPCLCHECK(cpclStepTopkFilter(pl, st));
  return schedules[pl->algo]->decode(pl, st, st->out, st->lse);
}
static cpclResult_t partialRun(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  CPCLCHECK(cpclStepTopkFilter(pl, st));
  return schedules[pl->algo]->partial(pl, st, st->out, st->lse);
}

/* The rows' contents, and on sparse plans the lists: the same on every rank (DESIGN.md §4.3). */
static void decodeDigest(const struct cpclAttnPlan* pl, const cpclStep_t* st, uint64_t d[CPCL_STEP_DIGESTS]) {
  cpclOpDigestRows(pl, st, d);
  d[2] = 0;
  if (pl->desc.topk == 0) return;
  const int64_t n = (int64_t)st->batch->numTokens * pl->desc.topk;
  const int64_t chunk = (int64_t)1 << 30; /* cpclDigestInt32 counts in int */
  for (int64_t i = 0; i < n; i += chunk)
    d[2] =
        (d[2] ^ cpclDigestInt32(st->batch->topkIndices + i, (int)(n - i < chunk ? n - i : chunk))) * 1099511628211ULL;
}
static cpclResult_t combineRun(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  return schedules[pl->algo]->combine(pl, st, st->in, st->inLse, st->out, st->lse);
}

const cpclOp_t cpclOpDecode = {
    .tag = CPCL_OP_DECODE,
    .name = "cpclAttnDecode",
    .agree = CPCL_AGREE_STEP | CPCL_AGREE_ROWS | CPCL_AGREE_SEQS,
    .pages = CPCL_PAGES_READ,
    .bounded = 1,
    .check = decodeCheck,
    .select = decodeSelect, /* for the whole family */
    .digest = decodeDigest,
    .digestFields = {"queryStart", "seqLens", "topkIndices"},
    .scheduleName = scheduleName,
    .run = decodeRun,
};

const cpclOp_t cpclOpPartial = {
    .tag = CPCL_OP_PARTIAL,
    .name = "cpclAttnPartial",
    .agree = CPCL_AGREE_STEP | CPCL_AGREE_ROWS | CPCL_AGREE_SEQS,
    .pages = CPCL_PAGES_READ,
    .bounded = 1,
    .check = partialCheck,
    .digest = decodeDigest,
    .digestFields = {"queryStart", "seqLens", "topkIndices"},
    .scheduleName = scheduleName,
    .run = partialRun,
};

/* No batch: the ranks agree on the rows only (every rank passes -1 sequences). */
const cpclOp_t cpclOpCombine = {
    .tag = CPCL_OP_COMBINE,
    .name = "cpclAttnCombine",
    .agree = CPCL_AGREE_STEP | CPCL_AGREE_ROWS | CPCL_AGREE_SEQS,
    .pages = CPCL_PAGES_NONE,
    .bounded = 1,
    .check = combineCheck,
    .scheduleName = scheduleName,
    .run = combineRun,
};
