/* common.c -- the building blocks the schedules share (sched.h). */
#include <string.h>

#include "coll.h"
#include "core.h"
#include "sched.h"

void cpclStepAttnParams(const struct cpclAttnPlan* pl, const cpclStep_t* st, int headBegin, int numHeads,
                        cpclAttnParams_t* p) {
  const cpclAttnDesc_t* d = &pl->desc;
  const cpclBatch_t* b = st->batch;
  const struct cpclComm* c = pl->comm;
  memset(p, 0, sizeof(*p));
  p->numSeqs = b->numSeqs;
  p->numTokens = st->numTokens;
  p->queryStart = b->queryStart;
  p->seqLens = b->seqLens;
  p->blockTable = b->blockTable;
  p->maxPagesPerSeq = b->maxPagesPerSeq;
  p->cpSize = c->nranks;
  p->cpRank = c->rank;
  p->interleave = c->interleave;
  p->pageSize = d->pageSize;
  p->numKvHeads = d->numKvHeads;
  p->headDimQk = d->headDimQk;
  p->headDimVo = d->headDimVo;
  p->latentKv = d->latentKv;
  p->groupSize = pl->G;
  p->headBegin = headBegin;
  p->numHeads = numHeads;
  p->headsPerBlock = pl->H;
  p->smScale = d->smScale;
  p->lseBase2 = d->lseBase2;
  p->qType = d->qType;
  p->kvType = d->kvType;
  p->q = pl->D == 1 ? st->q : pl->qGather; /* nothing to gather: read the caller's queries */
  p->qTokenStride = (int64_t)pl->H * d->headDimQk;
  p->qBlockStride = (int64_t)st->numTokens * pl->H * d->headDimQk;
  p->kCache = st->kCache;
  p->vCache = d->latentKv ? NULL : st->vCache;
  p->workspace = pl->scratch;
  p->workspaceBytes = pl->scratchBytes;
  p->maxSplits = pl->maxSplits;
  p->narrowOnly = pl->maxTokens < CPCL_WIDE_MIN_TOKENS; /* fixed per plan (kernels/cuda/attn_mma.cuh) */
  p->mlaSm90Splits = pl->mlaSm90Splits;                 /* 0 unless the plan runs the Hopper MLA body */
  p->gqaSm90Splits = pl->gqaSm90Splits;                 /* 0 unless the plan runs the Hopper GQA body */
  p->gqaSm90ChunkMin = pl->gqaSm90ChunkMin;
  p->gqaSm90Workspace = pl->gqaSm90Workspace;
  p->splitCounters = pl->splitCounters;
  p->errorFlag = pl->errorDev;
  if (d->topk > 0) { /* cpclStepTopkFilter wrote them before the schedule ran, or the attention does */
    p->sparseIdx = pl->topkLocal;
    p->sparseCount = pl->topkCount;
    p->sparseStride = d->topk;
    if (pl->topkInKernel) p->topkRaw = b->topkIndices; /* the attention filters (attn_params.h) */
  }
}

cpclResult_t cpclStepTopkFilter(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  const cpclBatch_t* b = st->batch;
  const struct cpclComm* c = pl->comm;
  /* a plan whose attention filters itself runs no filter kernel (cpclStepAttnParams' topkRaw) */
  if (pl->desc.topk == 0 || st->numTokens == 0 || pl->topkInKernel) return cpclSuccess;
  const cpclTopkFilterParams_t f = {.numSeqs = b->numSeqs,
                                    .numTokens = st->numTokens,
                                    .queryStart = b->queryStart,
                                    .seqLens = b->seqLens,
                                    .topk = pl->desc.topk,
                                    .topkIndices = b->topkIndices,
                                    .cpSize = c->nranks,
                                    .cpRank = c->rank,
                                    .interleave = c->interleave,
                                    .localIdx = pl->topkLocal,
                                    .count = pl->topkCount,
                                    .errorFlag = pl->errorDev};
  return pl->exec->topkFilter(&f, st->stream);
}

void cpclStepTargetPartial(const struct cpclAttnPlan* pl, int T, void* partialOut, float* partialLse,
                           cpclAttnParams_t* p) {
  const int Dv = pl->desc.headDimVo;
  p->out = partialOut;
  p->oBlockStride = (int64_t)pl->H * Dv;
  p->oTokenStride = (int64_t)pl->D * pl->H * Dv;
  p->lse = partialLse;
  p->lseBlockStride = pl->H;
  p->lseTokenStride = (int64_t)pl->D * pl->H;
}

void cpclStepTargetSlices(const struct cpclAttnPlan* pl, int T, cpclAttnParams_t* p) {
  p->out = pl->sendBuf;
  p->oBlockStride = (int64_t)(pl->sliceCap / pl->qElem);
  p->oTokenStride = (int64_t)pl->H * pl->desc.headDimVo;
  p->lse = (float*)((char*)pl->sendBuf + cpclSliceLseOffset(pl, T));
  p->lseBlockStride = (int64_t)(pl->sliceCap / sizeof(float));
  p->lseTokenStride = pl->H;
}

cpclResult_t cpclStepAlltoallv(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* const* sends,
                               const size_t* sb, void* const* recvs, const size_t* rb, void* remote, int postOnly) {
  struct cpclComm* c = pl->comm;
  if (!cpclTransportIsDevice(c->tp)) return cpclAlltoallv(c, sends, sb, recvs, rb, pl->exec, st->stream);
  const int me = c->rank;
  if (recvs[me] != sends[me] && sb[me])
    CPCLCHECK(pl->exec->copy2d(recvs[me], sb[me], sends[me], sb[me], sb[me], 1, st->stream));
  const cpclXfer_t x = {.sendbufs = sends,
                        .sendBytes = sb,
                        .recvbufs = recvs,
                        .recvBytes = rb,
                        .remote = remote,
                        .postOnly = postOnly,
                        .errorFlag = pl->errorDev,
                        .stream = st->stream};
  CPCL_NVTX_PUSH(postOnly ? "cpcl exchange (post)" : "cpcl exchange");
  cpclResult_t res = c->tp->alltoallv(c->tpCtx, &x);
  CPCL_NVTX_POP();
  if (res != cpclSuccess) {
    cpclCommFail(c, res);
    return CPCL_ERR_WRAP(c, res, cpclThreadLastError(), "%s transport", c->transportName);
  }
  return cpclSuccess;
}

cpclResult_t cpclStepGatherQPost(struct cpclAttnPlan* pl, const cpclStep_t* st, int postOnly) {
  struct cpclComm* c = pl->comm;
  const size_t bytes = (size_t)st->numTokens * pl->H * pl->desc.headDimQk * pl->qElem;
  const void** sends = c->scratch.sendbufs;
  void** recvs = c->scratch.recvbufs;
  size_t *sb = c->scratch.sendBytes, *rb = c->scratch.recvBytes;
  for (int p = 0; p < c->nranks; p++) {
    const int same = p / pl->D == c->pcpRank; /* in this rank's DCP group */
    sends[p] = st->q;
    recvs[p] = (char*)pl->qGather + (size_t)(p % pl->D) * bytes;
    sb[p] = rb[p] = same ? bytes : 0;
  }
  if (pl->D == 1) return cpclSuccess; /* cpclStepAttnParams reads st->q directly */
  /* rank p receives this rank's block at block dcpRank of its qGather */
  return cpclStepAlltoallv(pl, st, sends, sb, recvs, rb, (char*)pl->qGather + (size_t)c->dcpRank * bytes, postOnly);
}

cpclResult_t cpclStepGatherQ(struct cpclAttnPlan* pl, const cpclStep_t* st) { return cpclStepGatherQPost(pl, st, 0); }

cpclResult_t cpclStepPartialGathered(struct cpclAttnPlan* pl, const cpclStep_t* st, void* partialOut,
                                     float* partialLse) {
  CPCLCHECK(cpclStepGatherQ(pl, st));
  cpclAttnParams_t p;
  cpclStepAttnParams(pl, st, 0, pl->D * pl->H, &p);
  cpclStepTargetPartial(pl, st->numTokens, partialOut, partialLse, &p);
  return pl->exec->attend(&p, st->stream);
}

cpclResult_t cpclStepPackSlices(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* partialOut,
                                const float* partialLse, int oOnly) {
  const int T = st->numTokens;
  const size_t oRow = (size_t)pl->H * pl->desc.headDimVo * pl->qElem, lRow = (size_t)pl->H * sizeof(float);
  for (int j = 0; j < pl->D; j++) {
    char* slot = cpclSendSlot(pl, j);
    CPCLCHECK(pl->exec->copy2d(slot, oRow, (const char*)partialOut + j * oRow, pl->D * oRow, oRow, T, st->stream));
    if (!oOnly)
      CPCLCHECK(pl->exec->copy2d(slot + cpclSliceLseOffset(pl, T), lRow, (const char*)partialLse + j * lRow,
                                 pl->D * lRow, lRow, T, st->stream));
  }
  return cpclSuccess;
}

cpclResult_t cpclStepExchangeSlices(struct cpclAttnPlan* pl, const cpclStep_t* st, size_t bytes) {
  struct cpclComm* c = pl->comm;
  const void** sends = c->scratch.sendbufs;
  void** recvs = c->scratch.recvbufs;
  size_t *sb = c->scratch.sendBytes, *rb = c->scratch.recvBytes;
  for (int p = 0; p < c->nranks; p++) {
    sends[p] = cpclSendSlot(pl, p % pl->D);                          /* rank p owns the heads of DCP rank p % D */
    recvs[p] = p == c->rank ? (void*)sends[p] : cpclRecvSlot(pl, p); /* own part: read in place */
    sb[p] = rb[p] = bytes;
  }
  /* rank p receives this rank's slice in its receive slot for this rank */
  return cpclStepAlltoallv(pl, st, sends, sb, recvs, rb, cpclRecvSlot(pl, c->rank), 0);
}

cpclMergeParams_t cpclPlanMergeParams(const struct cpclAttnPlan* pl, int mode, int n, int T, void* out, float* lse) {
  const int Dv = pl->desc.headDimVo;
  return (cpclMergeParams_t){
      .mode = mode,
      .numParts = n,
      .numTokens = T,
      .numHeads = pl->H,
      .headDim = Dv,
      .dtype = pl->desc.qType,
      .lseBase2 = pl->desc.lseBase2,
      .oTokenStride = (int64_t)pl->H * Dv,
      .lseTokenStride = pl->H,
      .out = out,
      .outTokenStride = (int64_t)pl->H * Dv,
      .outLse = lse,
      .outLseTokenStride = pl->H,
  };
}

void cpclStepMergeParams(const struct cpclAttnPlan* pl, int T, int mode, void* out, float* lse, int ownInRecv,
                         cpclMergeParams_t* m) {
  const size_t lseOff = cpclSliceLseOffset(pl, T);
  *m = cpclPlanMergeParams(pl, mode, pl->W, T, out, mode == CPCL_MERGE_LSE ? lse : NULL);
  for (int p = 0; p < pl->W; p++) {
    const char* slot = p == pl->comm->rank && !ownInRecv ? cpclSendSlot(pl, pl->comm->dcpRank) : cpclRecvSlot(pl, p);
    m->o[p] = slot;
    m->lse[p] = (const float*)(slot + lseOff);
  }
}

cpclResult_t cpclStepMergeSlices(struct cpclAttnPlan* pl, const cpclStep_t* st, int mode, void* out, float* lse) {
  cpclMergeParams_t m;
  cpclStepMergeParams(pl, st->numTokens, mode, out, lse, 0, &m);
  return pl->exec->merge(&m, st->stream);
}
