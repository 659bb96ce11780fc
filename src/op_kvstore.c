/* op_kvstore.c -- cpclKvStore in the operation table (op.h): local (no agreement, no message),
 * any number of rows (it uses no workspace), the pages where this rank's new tokens land. */
#include "core.h"
#include "op.h"

static cpclResult_t kvStoreCheck(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  struct cpclComm* c = pl->comm;
  if (st->numTokens == 0) return cpclSuccess;
  if (st->kNew == NULL || st->kStore == NULL)
    return CPCL_ERR(c, cpclInvalidArgument, "cpclKvStore: kNew (%p) and kCache (%p) are needed", st->kNew, st->kStore);
  if (!pl->desc.latentKv && (st->vNew == NULL || st->vStore == NULL))
    return CPCL_ERR(c, cpclInvalidArgument, "cpclKvStore: vNew (%p) and vCache (%p) are needed (latentKv = 0)",
                    st->vNew, st->vStore);
  return cpclSuccess;
}

static const char* kvStoreSchedule(const struct cpclAttnPlan* pl) { return "local"; }

static cpclResult_t kvStoreRun(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  const struct cpclComm* c = pl->comm;
  const cpclAttnDesc_t* d = &pl->desc;
  const cpclBatch_t* b = st->batch;
  const cpclKvStoreParams_t p = {.errorFlag = pl->errorDev,
                                 .numSeqs = b->numSeqs,
                                 .numTokens = b->numTokens,
                                 .queryStart = b->queryStart,
                                 .seqLens = b->seqLens,
                                 .blockTable = b->blockTable,
                                 .maxPagesPerSeq = b->maxPagesPerSeq,
                                 .cpSize = c->nranks,
                                 .cpRank = c->rank,
                                 .interleave = c->interleave,
                                 .pageSize = d->pageSize,
                                 .numKvHeads = d->numKvHeads,
                                 .headDimQk = d->headDimQk,
                                 .headDimVo = d->headDimVo,
                                 .latentKv = d->latentKv,
                                 .kvType = d->kvType,
                                 .kNew = st->kNew,
                                 .vNew = d->latentKv ? NULL : st->vNew,
                                 .kCache = st->kStore,
                                 .vCache = d->latentKv ? NULL : st->vStore};
  return pl->exec->kvStore(&p, st->stream);
}

const cpclOp_t cpclOpKvStore = {
    .tag = CPCL_OP_KVSTORE,
    .name = "cpclKvStore",
    .agree = 0,
    .pages = CPCL_PAGES_STORE,
    .bounded = 0,
    .check = kvStoreCheck,
    .scheduleName = kvStoreSchedule,
    .run = kvStoreRun,
};
