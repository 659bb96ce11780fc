/* attn.c -- the per-step entry points: each fills a step and runs its entry of the operation
 * table (op.h); and the batch check every operation with a batch shares. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "kv_layout.h"
#include "op.h"

/* Host memory: queryStart, seqLens and the ids of the block-table pages this rank walks are
 * read too. Row counts are 64-bit: differences of 32-bit offsets must not wrap. */
cpclResult_t cpclBatchCheck(struct cpclAttnPlan* pl, const cpclBatch_t* b, int maxTokens, int pages, const char* fn) {
  struct cpclComm* c = pl->comm;
  if (b == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch is NULL", fn);
  if (b->size != sizeof(cpclBatch_t))
    return CPCL_ERR(c, cpclInvalidArgument,
                    "%s: batch->size is %zu, expected %zu: initialise the batch with CPCL_BATCH_INITIALIZER", fn,
                    b->size, sizeof(cpclBatch_t));
  /* the store ignores the list, so an engine passes one batch to both */
  if (pages == CPCL_PAGES_READ && pl->desc.topk == 0 && b->topkIndices != NULL)
    return CPCL_ERR(c, cpclInvalidArgument,
                    "%s: batch->topkIndices is %p but the plan is dense (desc->topk 0): pass NULL, or create the plan "
                    "with desc->topk = K for sparse attention",
                    fn, (const void*)b->topkIndices);
  if (pages == CPCL_PAGES_READ && pl->desc.topk > 0 && b->topkIndices == NULL)
    return CPCL_ERR(c, cpclInvalidArgument,
                    "%s: batch->topkIndices is NULL but the plan is sparse (desc->topk %d): pass the [numTokens][%d] "
                    "global positions each row attends to (-1 = none)",
                    fn, pl->desc.topk, pl->desc.topk);
  if (b->numSeqs < 0) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->numSeqs is %d", fn, b->numSeqs);
  if (b->numTokens < 0 || b->numTokens > maxTokens)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->numTokens is %d: it must be in [0, maxTokens = %d]", fn,
                    b->numTokens, maxTokens);
  if (b->queryStart == NULL && b->numTokens != b->numSeqs)
    return CPCL_ERR(c, cpclInvalidArgument,
                    "%s: batch->queryStart is NULL (one row per sequence) but numTokens %d != numSeqs %d", fn,
                    b->numTokens, b->numSeqs);
  if (b->numSeqs == 0) {
    if (b->numTokens != 0) /* rows belong to sequences: these would be read from nowhere */
      return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->numTokens is %d but numSeqs is 0: every row needs a sequence",
                      fn, b->numTokens);
    return cpclSuccess;
  }
  if (b->seqLens == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->seqLens is NULL", fn);
  if (b->blockTable == NULL) return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->blockTable is NULL", fn);
  if (b->maxPagesPerSeq < 1)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->maxPagesPerSeq is %d", fn, b->maxPagesPerSeq);
  if (c->memType != cpclMemHost) return cpclSuccess; /* device contents are checked on the device */
  if (b->queryStart && b->queryStart[0] != 0)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->queryStart[0] is %d, not 0", fn, b->queryStart[0]);
  const int ps = pl->desc.pageSize;
  const int64_t cap = (int64_t)b->maxPagesPerSeq * ps;
  for (int s = 0; s < b->numSeqs; s++) {
    const int64_t rows = b->queryStart ? (int64_t)b->queryStart[s + 1] - b->queryStart[s] : 1;
    if (rows < 0)
      return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->queryStart goes backwards at sequence %d (%d -> %d)", fn, s,
                      b->queryStart[s], b->queryStart[s + 1]);
    if (b->seqLens[s] == 0) continue; /* padding: no key read, nothing stored, its block-table row unread */
    if (b->seqLens[s] < rows)
      return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->seqLens[%d] is %d, fewer than its %lld query rows", fn, s,
                      b->seqLens[s], (long long)rows);
    const int64_t local = cpclKvLocalLenOf(b->seqLens[s], c->nranks, c->rank, c->interleave);
    if (local > cap)
      return CPCL_ERR(c, cpclInvalidArgument,
                      "%s: sequence %d holds %lld local tokens on rank %d, more than its block-table row "
                      "(maxPagesPerSeq %d x pageSize %d)",
                      fn, s, (long long)local, c->rank, b->maxPagesPerSeq, ps);
  }
  if (b->queryStart && b->queryStart[b->numSeqs] != b->numTokens)
    return CPCL_ERR(c, cpclInvalidArgument, "%s: batch->queryStart[numSeqs] is %d, not numTokens %d", fn,
                    b->queryStart[b->numSeqs], b->numTokens);
  /* The page ids, once the shape is known good (so no row count sends the reads astray): the
   * pages the step walks. Attention reads the whole local prefix; a store writes where this
   * rank's new tokens (local indices [before, local)) land. */
  for (int s = 0; s < b->numSeqs; s++) {
    if (b->seqLens[s] == 0) continue;
    const int64_t rows = b->queryStart ? (int64_t)b->queryStart[s + 1] - b->queryStart[s] : 1;
    const int64_t local = cpclKvLocalLenOf(b->seqLens[s], c->nranks, c->rank, c->interleave);
    int64_t first = 0;
    if (pages == CPCL_PAGES_STORE) {
      const int64_t before = cpclKvLocalLenOf(b->seqLens[s] - rows, c->nranks, c->rank, c->interleave);
      if (before == local) continue; /* no new token of s lands on this rank */
      first = before / ps;
    }
    const int32_t* bt = b->blockTable + (int64_t)s * b->maxPagesPerSeq;
    for (int64_t i = first; i < (local + ps - 1) / ps; i++)
      if (bt[i] < 0)
        return CPCL_ERR(c, cpclInvalidArgument,
                        "%s: batch->blockTable[%d][%lld] is %d: a page this step %s on rank %d needs an id >= 0", fn, s,
                        (long long)i, bt[i], pages == CPCL_PAGES_STORE ? "writes" : "reads", c->rank);
  }
  return cpclSuccess;
}

CPCL_API cpclResult_t cpclAttnDecode(cpclAttnPlan_t plan, const cpclBatch_t* batch, const void* q, const void* kCache,
                                     const void* vCache, void* out, float* lse, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclAttnDecode: plan is NULL");
  cpclStep_t st = {
      .batch = batch, .q = q, .kCache = kCache, .vCache = vCache, .out = out, .lse = lse, .stream = stream};
  return cpclOpRun(plan, &cpclOpDecode, &st);
}

CPCL_API cpclResult_t cpclAttnPartial(cpclAttnPlan_t plan, const cpclBatch_t* batch, const void* q, const void* kCache,
                                      const void* vCache, void* partialOut, float* partialLse, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclAttnPartial: plan is NULL");
  cpclStep_t st = {.batch = batch,
                   .q = q,
                   .kCache = kCache,
                   .vCache = vCache,
                   .out = partialOut,
                   .lse = partialLse,
                   .stream = stream};
  return cpclOpRun(plan, &cpclOpPartial, &st);
}

CPCL_API cpclResult_t cpclAttnCombine(cpclAttnPlan_t plan, int numTokens, const void* partialOut,
                                      const float* partialLse, void* out, float* lse, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclAttnCombine: plan is NULL");
  cpclStep_t st = {
      .numTokens = numTokens, .in = partialOut, .inLse = partialLse, .out = out, .lse = lse, .stream = stream};
  return cpclOpRun(plan, &cpclOpCombine, &st);
}

CPCL_API int64_t cpclKvLocalLen(int64_t seqLen, int cpSize, int cpRank, int interleave) {
  if (seqLen < 0 || cpSize < 1 || cpRank < 0 || cpRank >= cpSize || interleave < 1) return -1;
  return cpclKvLocalLenOf(seqLen, cpSize, cpRank, interleave);
}

CPCL_API cpclResult_t cpclKvStore(cpclAttnPlan_t plan, const cpclBatch_t* batch, const void* kNew, const void* vNew,
                                  void* kCache, void* vCache, cpclStream_t stream) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclKvStore: plan is NULL");
  cpclStep_t st = {.batch = batch, .kNew = kNew, .vNew = vNew, .kStore = kCache, .vStore = vCache, .stream = stream};
  return cpclOpRun(plan, &cpclOpKvStore, &st);
}
