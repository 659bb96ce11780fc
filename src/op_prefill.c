/* op_prefill.c -- cpclAttnPrefill in the operation table (op.h). Every rank agrees on the
 * operation, the plan, the sequences and the step's new tokens over all PCP ranks (the rows the
 * common path counts), and on a digest of contextLens and newLens; each rank checks that its
 * rows are its head-tail chunks (cpclPcpChunks), so all the sizes a schedule moves follow from
 * agreed data. The schedules are under sched/ (prefill.h). */
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "core.h"
#include "kv_layout.h"
#include "op.h"
#include "prefill_layout.h"
#include "sched/prefill.h"

static const cpclPrefillSchedule_t* const schedules[CPCL_NUM_PREFILL_ALGOS] = {
    [CPCL_PREFILL_ALLGATHER] = &cpclPrefillAllgather,
    [CPCL_PREFILL_RING] = &cpclPrefillRing,
};

static const char* scheduleName(const struct cpclAttnPlan* pl) { return schedules[pl->prefillAlgo]->name; }

/* desc->prefillAlgo, else CPCL_PREFILL_ALGO, else allgather: tools/prefill_perf on CPU ranks
 * (np 2 and 4, GQA and MLA, 8k tokens, loaded 2-core machine) found the two within noise; the
 * all-gather waits once instead of pcp - 1 times, and host transports progress only in waits,
 * so the ring's overlap does not exist there. The ring is for transports that move data while
 * the attention runs (issue 15). */
static cpclResult_t prefillSelect(const struct cpclComm* c, const cpclAttnDesc_t* d, cpclPlanSchedules_t* sel,
                                  char* why, size_t whyLen, char* msg, size_t n) {
  const char* forced = d->prefillAlgo ? d->prefillAlgo : cpclParamString(CPCL_PARAM_PREFILL_ALGO);
  const char* from = d->prefillAlgo ? "desc->prefillAlgo" : "CPCL_PREFILL_ALGO";
  const size_t used = strlen(why);
  sel->prefill = CPCL_PREFILL_ALLGATHER;
  if (forced[0]) {
    int found = 0;
    for (int a = 0; a < CPCL_NUM_PREFILL_ALGOS; a++)
      if (strcasecmp(forced, cpclPrefillAlgoNames[a]) == 0) sel->prefill = (cpclPrefillAlgo_t)a, found = 1;
    if (!found) {
      snprintf(msg, n, "%s is \"%.32s\": use allgather or ring", from, forced);
      return cpclInvalidArgument;
    }
    if (used < whyLen) snprintf(why + used, whyLen - used, "; prefill forced by %s", from);
    return cpclSuccess;
  }
  if (used < whyLen) snprintf(why + used, whyLen - used, "; prefill automatic");
  return cpclSuccess;
}

/* Everything this rank can check alone, on host memory, before anything moves. */
static cpclResult_t prefillCheck(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  struct cpclComm* c = pl->comm;
  const cpclPrefillBatch_t* b = st->prefill;
  const char* fn = "cpclAttnPrefill";
  if (pl->desc.topk > 0) /* a dense prefill would silently differ from the engine's sparse one */
    return CPCL_ERR(c, cpclUnsupported,
                    "%s: this plan is sparse (desc->topk %d) and sparse prefill is not built; prefill with a dense "
                    "plan (desc->topk 0) of the same shape",
                    fn, pl->desc.topk);
  if (b == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch is NULL", fn);
  if (b->size != sizeof(cpclPrefillBatch_t))
    return CPCL_ERR(c, cpclInvalidArgument,
                    "%s: batch->size is %zu, expected %zu: initialise the batch with CPCL_PREFILL_BATCH_INITIALIZER",
                    fn, b->size, sizeof(cpclPrefillBatch_t));
  if (b->numSeqs < 0 || b->numSeqs > pl->maxTokens)
    return CPCL_ERR(c, cpclInvalidArgument,
                    "%s: batch->numSeqs is %d: it must be in [0, maxTokens = %d] (the plan sizes its per-sequence "
                    "offsets by maxTokens)",
                    fn, b->numSeqs, pl->maxTokens);
  if (b->numTokens < 0 || b->numTokens > pl->maxTokens)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->numTokens is %d: it must be in [0, maxTokens = %d]", fn,
                    b->numTokens, pl->maxTokens);
  if (b->queryStart == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->queryStart is NULL", fn);
  if (b->numSeqs > 0) {
    if (b->contextLens == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->contextLens is NULL", fn);
    if (b->newLens == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->newLens is NULL", fn);
    if (b->blockTable == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->blockTable is NULL", fn);
    if (b->maxPagesPerSeq < 1)
      return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->maxPagesPerSeq is %d: it must be >= 1", fn,
                      b->maxPagesPerSeq);
  }
  if (b->queryStart[0] != 0)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->queryStart[0] is %d, not 0", fn, b->queryStart[0]);
  const int P = pl->P, pr = c->pcpRank, ps = pl->desc.pageSize;
  int64_t blockRows[CPCL_MAX_PARTS] = {0};
  int64_t mine = 0, any = 0;
  for (int s = 0; s < b->numSeqs; s++) {
    const int64_t ctx = b->contextLens[s], nw = b->newLens[s];
    if (ctx < 0) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->contextLens[%d] is %lld", fn, s, (long long)ctx);
    if (nw < 0) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->newLens[%d] is %lld", fn, s, (long long)nw);
    if (ctx + nw > INT32_MAX)
      return CPCL_ERR(c, cpclInvalidArgument,
                      "%s: batch->contextLens[%d] + newLens[%d] is %lld: positions must fit 31 bits", fn, s, s,
                      (long long)(ctx + nw));
    int64_t start[2], len[2];
    const int64_t rows = cpclPcpChunksOf(nw, P, pr, start, len);
    mine += rows;
    const int64_t got = (int64_t)b->queryStart[s + 1] - b->queryStart[s];
    if (got != rows || b->queryStart[s + 1] != mine)
      return CPCL_ERR(
          c, cpclInvalidArgument,
          "%s: batch->queryStart[%d] is %d: PCP rank %d of %d holds %lld rows of sequence %d (newLens %lld, "
          "chunks [%lld, +%lld) and [%lld, +%lld), cpclPcpChunks), so it must be %lld",
          fn, s + 1, b->queryStart[s + 1], pr, P, (long long)rows, s, (long long)nw, (long long)start[0],
          (long long)len[0], (long long)start[1], (long long)len[1], (long long)mine);
    for (int q = 0; q < P; q++) blockRows[q] += cpclPcpChunksOf(nw, P, q, start, len);
    if (nw == 0) continue; /* nothing read, nothing stored: the block-table row is not read */
    any = 1;
    const int64_t local = cpclKvLocalLenOf(ctx + nw, c->nranks, c->rank, c->interleave);
    if (local > (int64_t)b->maxPagesPerSeq * ps)
      return CPCL_ERR(c, cpclInvalidArgument,
                      "%s: sequence %d holds %lld local tokens on rank %d after this step, more than its block-table "
                      "row (maxPagesPerSeq %d x pageSize %d)",
                      fn, s, (long long)local, c->rank, b->maxPagesPerSeq, ps);
  }
  if (mine != b->numTokens)
    return CPCL_ERR(c, cpclInvalidArgument,
                    "%s: batch->numTokens is %d: PCP rank %d of %d holds %lld rows of these sequences (cpclPcpChunks)",
                    fn, b->numTokens, pr, P, (long long)mine);
  for (int q = 0; q < P; q++)
    if (blockRows[q] > pl->maxTokens)
      return CPCL_ERR(c, cpclInvalidArgument,
                      "%s: batch->newLens give PCP rank %d %lld rows, more than the plan's maxTokens %d", fn, q,
                      (long long)blockRows[q], pl->maxTokens);
  /* page ids, once the shape is known good: the context prefix read and the new tokens written
   * are the local prefix after the step. A CUDA plan's block table is device memory: its kernels
   * read and write nothing through a negative id instead. */
  for (int s = 0; s < b->numSeqs && c->memType == cpclMemHost; s++) {
    if (b->newLens[s] == 0) continue;
    const int64_t local =
        cpclKvLocalLenOf((int64_t)b->contextLens[s] + b->newLens[s], c->nranks, c->rank, c->interleave);
    const int32_t* bt = b->blockTable + (int64_t)s * b->maxPagesPerSeq;
    for (int64_t i = 0; i < (local + ps - 1) / ps; i++)
      if (bt[i] < 0)
        return CPCL_ERR(c, cpclInvalidArgument,
                        "%s: batch->blockTable[%d][%lld] is %d: a page this step reads or writes on rank %d needs an "
                        "id >= 0",
                        fn, s, (long long)i, bt[i], c->rank);
  }
  if (!any) return cpclSuccess; /* an empty step: no tensor is touched */
  if (b->numTokens > 0) {
    if (st->q == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: q is NULL", fn);
    if (st->kNew == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: kNew is NULL", fn);
    if (st->vNew == NULL && !pl->desc.latentKv)
      return CPCL_ERR(c, cpclInvalidArgument, "%s: vNew is NULL (only MLA plans, latentKv = 1, take V from K)", fn);
    if (st->out == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: out is NULL", fn);
  }
  if (st->kCache == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: kCache is NULL", fn);
  if (st->vCache == NULL && !pl->desc.latentKv)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: vCache is NULL (only MLA plans, latentKv = 1, read V from K)", fn);
  return cpclSuccess;
}

/* the lengths every rank must pass alike (its own queryStart and block table differ) */
static void prefillDigest(const struct cpclAttnPlan* pl, const cpclStep_t* st, uint64_t d[CPCL_STEP_DIGESTS]) {
  (void)pl;
  d[0] = cpclDigestInt32(st->prefill->contextLens, st->prefill->numSeqs);
  d[1] = cpclDigestInt32(st->prefill->newLens, st->prefill->numSeqs);
}

static cpclResult_t prefillRun(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  return cpclPrefillRun(pl, st, schedules[pl->prefillAlgo]);
}

const cpclOp_t cpclOpPrefill = {
    .tag = CPCL_OP_PREFILL,
    .name = "cpclAttnPrefill",
    /* rows: the step's new tokens over all PCP ranks, the same on every rank (each rank's own
     * differ along the PCP axis) */
    .agree = CPCL_AGREE_STEP | CPCL_AGREE_ROWS | CPCL_AGREE_SEQS,
    .pages = CPCL_PAGES_NONE, /* its own batch: checked by prefillCheck */
    .bounded = 0,
    .check = prefillCheck,
    .digest = prefillDigest,
    .digestFields = {"batch->contextLens", "batch->newLens"},
    .select = prefillSelect,
    .scheduleName = scheduleName,
    .run = prefillRun,
};

CPCL_API cpclResult_t cpclAttnPrefill(cpclAttnPlan_t plan, const cpclPrefillBatch_t* batch, const void* q,
                                      const void* kNew, const void* vNew, void* kCache, void* vCache, void* out,
                                      float* lse, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclAttnPrefill: plan is NULL");
  /* the common path runs a step when it has rows; a prefill step has work on every rank as soon
   * as any rank has new tokens (each holds a shard of the context), so its rows are the new
   * tokens over all PCP ranks. Read defensively: the check has not run yet. */
  int64_t total = 0;
  if (batch && batch->size == sizeof(*batch) && batch->newLens && batch->numSeqs > 0 &&
      batch->numSeqs <= plan->maxTokens)
    for (int s = 0; s < batch->numSeqs; s++) total += batch->newLens[s] > 0 ? batch->newLens[s] : 0;
  cpclStep_t st = {.prefill = batch,
                   .numTokens = total > INT32_MAX ? INT32_MAX : (int)total,
                   .q = q,
                   .kNew = kNew,
                   .vNew = vNew,
                   .kCache = kCache,
                   .vCache = vCache,
                   .kStore = kCache,
                   .vStore = vCache,
                   .out = out,
                   .lse = lse,
                   .stream = stream};
  return cpclOpRun(plan, &cpclOpPrefill, &st);
}
