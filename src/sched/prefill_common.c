/* prefill_common.c -- what both prefill schedules share (prefill.h): the blocks' layout, the
 * kernel parameters, the store, host messages, the context part and the final merge. */
#include <string.h>

#include "coll.h"
#include "core.h"
#include "prefill.h"
#include "prefill_layout.h"

size_t cpclPrefillKRowBytes(const struct cpclAttnPlan* pl) {
  return (size_t)pl->desc.numKvHeads * pl->desc.headDimQk * cpclKDtypeSize(pl->desc.kvType);
}
size_t cpclPrefillVRowBytes(const struct cpclAttnPlan* pl) {
  return pl->desc.latentKv ? 0 : (size_t)pl->desc.numKvHeads * pl->desc.headDimVo * cpclKDtypeSize(pl->desc.kvType);
}

void cpclPrefillKvSlot(const struct cpclAttnPlan* pl, int i, void** k, void** v) {
  char* base = (char*)pl->pfKv + (size_t)i * pl->pfKvCap;
  *k = base;
  *v = pl->desc.latentKv ? NULL : base + (size_t)pl->maxTokens * cpclPrefillKRowBytes(pl);
}

void cpclPrefillLayout(struct cpclAttnPlan* pl, const cpclPrefillBatch_t* b) {
  for (int blk = 0; blk < pl->P; blk++) {
    int32_t* rs = pl->pfRowStart + (size_t)blk * ((size_t)pl->maxTokens + 1);
    int32_t* pos = pl->pfPos + (size_t)blk * (size_t)pl->maxTokens;
    int rows = 0;
    for (int s = 0; s < b->numSeqs; s++) {
      rs[s] = rows;
      int64_t start[2], len[2];
      cpclPcpChunksOf(b->newLens[s], pl->P, blk, start, len);
      for (int c = 0; c < 2; c++)
        for (int64_t j = 0; j < len[c]; j++) pos[rows++] = (int32_t)(b->contextLens[s] + start[c] + j);
    }
    rs[b->numSeqs] = rows;
    pl->pfRows[blk] = rows;
  }
}

cpclPrefillKvBlock_t cpclPrefillBlock(const struct cpclAttnPlan* pl, int b, const void* k, const void* v) {
  return (cpclPrefillKvBlock_t){.k = k,
                                .v = pl->desc.latentKv ? NULL : v,
                                .rowStart = cpclPrefillRowStartK(pl, b),
                                .pos = cpclPrefillPosK(pl, b)};
}

/* the parameters every prefill attention shares: shapes, heads' KV mapping, scratch */
static void baseParams(const struct cpclAttnPlan* pl, const cpclStep_t* st, cpclPrefillParams_t* p) {
  const cpclAttnDesc_t* d = &pl->desc;
  const cpclPrefillBatch_t* b = st->prefill;
  memset(p, 0, sizeof(*p));
  p->numSeqs = b->numSeqs;
  p->blockTable = b->blockTable;
  p->maxPagesPerSeq = b->maxPagesPerSeq;
  p->pageSize = d->pageSize;
  p->cpSize = pl->W;
  p->cpRank = pl->comm->rank;
  p->interleave = pl->comm->interleave;
  p->numKvHeads = d->numKvHeads;
  p->headDimQk = d->headDimQk;
  p->headDimVo = d->headDimVo;
  p->latentKv = d->latentKv;
  p->groupSize = pl->G;
  p->headsPerBlock = pl->H;
  p->smScale = d->smScale;
  p->lseBase2 = d->lseBase2;
  p->qType = d->qType;
  p->kvType = d->kvType;
  p->outType = d->qType;
  p->workspace = pl->scratch;
  p->workspaceBytes = pl->scratchBytes;
}

void cpclPrefillOwnParams(const struct cpclAttnPlan* pl, const cpclStep_t* st, const cpclPrefillTarget_t* tgt,
                          cpclPrefillParams_t* p) {
  const int pr = pl->comm->pcpRank;
  baseParams(pl, st, p);
  p->numTokens = pl->pfRows[pr];
  p->queryStart = cpclPrefillRowStartK(pl, pr);
  p->queryPos = cpclPrefillPosK(pl, pr);
  /* this rank's heads are gathered heads dcpRank*H ..: block strides 0 put block dcpRank at
   * the caller's pointers */
  p->headBegin = pl->comm->dcpRank * pl->H;
  p->numHeads = pl->H;
  p->q = st->q;
  p->qTokenStride = (int64_t)pl->H * pl->desc.headDimQk;
  p->out = tgt->o;
  p->oTokenStride = (int64_t)pl->H * pl->desc.headDimVo;
  p->lse = tgt->lse;
  p->lseTokenStride = pl->H;
}

void cpclPrefillStoreTo(const struct cpclAttnPlan* pl, const cpclStep_t* st, cpclPrefillParams_t* p) {
  p->storeK = st->kStore;
  p->storeV = pl->desc.latentKv ? NULL : st->vStore;
}

cpclResult_t cpclPrefillPost(struct cpclAttnPlan* pl, const cpclStep_t* st, int send, int peer, int stage, void* buf,
                             size_t bytes, cpclRequest_t* req) {
  struct cpclComm* c = pl->comm;
  req->peer = peer;
  const uint64_t tag = cpclMakeTag(st->seq, st->op, stage, send ? c->rank : peer);
  cpclResult_t res = send ? c->tp->isend(c->tpCtx, peer, tag, buf, bytes, req, st->stream)
                          : c->tp->irecv(c->tpCtx, peer, tag, buf, bytes, req, st->stream);
  if (res != cpclSuccess) {
    cpclCommFail(c, res);
    return CPCL_ERR(c, res, "cpclAttnPrefill: posting a %s of %zu bytes %s rank %d failed: %s",
                    send ? "send" : "receive", bytes, send ? "to" : "from", peer, cpclGetLastError(NULL));
  }
  return cpclSuccess;
}

void cpclPrefillCancel(struct cpclAttnPlan* pl, cpclRequest_t* reqs, int n) {
  for (int i = 0; i < n; i++)
    if (reqs[i].active) pl->comm->tp->cancel(pl->comm->tpCtx, &reqs[i]);
}

cpclResult_t cpclPrefillMerge(struct cpclAttnPlan* pl, const cpclStep_t* st, int n, const void* const* o,
                              const float* const* lse, void* out, float* outLse) {
  cpclMergeParams_t m = cpclPlanMergeParams(pl, CPCL_MERGE_LSE, n, pl->pfRows[pl->comm->pcpRank], out, outLse);
  for (int i = 0; i < n; i++) {
    m.o[i] = o[i];
    m.lse[i] = lse[i];
  }
  return pl->exec->merge(&m, st->stream);
}

/* The context part (prefill.h): gathered queries of all W ranks against this rank's cache shard,
 * each owner's partial to its owner, the merge with the new tokens' partial (in pfNew). */
static cpclResult_t contextPart(struct cpclAttnPlan* pl, const cpclStep_t* st, void* out, float* lse) {
  struct cpclComm* c = pl->comm;
  const cpclAttnDesc_t* d = &pl->desc;
  const int W = pl->W, D = pl->D, H = pl->H, me = c->rank, pr = c->pcpRank, T = pl->pfRows[pr];
  const size_t qRow = (size_t)H * d->headDimQk * pl->qElem, slotQ = (size_t)pl->maxTokens * qRow;
  const void** sends = c->scratch.sendbufs;
  void** recvs = c->scratch.recvbufs;
  size_t *sb = c->scratch.sendBytes, *rb = c->scratch.recvBytes;

  /* 1. every rank's queries: block p of qGather = rank p's rows and heads. With D == 1 this
   * rank's own block is read where the caller left it (the blocks of one PCP rank need one
   * stride only when there are several). */
  for (int p = 0; p < W; p++) {
    sends[p] = st->q;
    recvs[p] = p == me && D == 1 ? (void*)st->q : (char*)pl->qGather + (size_t)p * slotQ;
    sb[p] = (size_t)T * qRow;
    rb[p] = (size_t)pl->pfRows[p / D] * qRow;
  }
  /* one-sided transports: rank p receives this rank's block at block `me` of its qGather */
  if (W > 1) CPCLCHECK(cpclStepAlltoallv(pl, st, sends, sb, recvs, rb, (char*)pl->qGather + (size_t)me * slotQ, 0));

  /* 2. the rows of each PCP block against the shard, every gathered head, into the send slots
   * of their owners (b, j), j = 0..D-1 */
  for (int b = 0; b < pl->P; b++) {
    if (pl->pfRows[b] == 0) continue;
    cpclPrefillParams_t p;
    baseParams(pl, st, &p);
    p.numTokens = pl->pfRows[b];
    p.queryStart = cpclPrefillRowStartK(pl, b);
    p.queryPos = cpclPrefillPosK(pl, b);
    p.cacheLens = cpclPrefillCtxK(pl);
    p.kCache = st->kCache;
    p.vCache = d->latentKv ? NULL : st->vCache;
    p.headBegin = 0;
    p.numHeads = D * H;
    p.q = W == 1 || (b == pr && D == 1) ? st->q : (const char*)pl->qGather + (size_t)b * D * slotQ;
    p.qBlockStride = (int64_t)(slotQ / pl->qElem);
    p.qTokenStride = (int64_t)H * d->headDimQk;
    char* slot0 = cpclSendSlot(pl, b * D);
    p.out = slot0;
    p.oBlockStride = (int64_t)(pl->sliceCap / pl->qElem);
    p.oTokenStride = (int64_t)H * d->headDimVo;
    p.lse = (float*)(slot0 + cpclSliceLseOffset(pl, pl->pfRows[b]));
    p.lseBlockStride = (int64_t)(pl->sliceCap / sizeof(float));
    p.lseTokenStride = H;
    CPCLCHECK(pl->exec->prefill(&p, st->stream));
  }

  /* 3. each slot to its owner; this rank's own part is read in place */
  for (int p = 0; p < W; p++) {
    sends[p] = cpclSendSlot(pl, p);
    recvs[p] = p == me ? (void*)sends[p] : cpclRecvSlot(pl, p);
    sb[p] = cpclSliceBytes(pl, pl->pfRows[p / D]);
    rb[p] = cpclSliceBytes(pl, T);
  }
  if (W > 1) CPCLCHECK(cpclStepAlltoallv(pl, st, sends, sb, recvs, rb, cpclRecvSlot(pl, me), 0));

  /* 4. the W context partials in rank order, then the new tokens' */
  const size_t lseOff = cpclSliceLseOffset(pl, T);
  const void* o[CPCL_MAX_PARTS];
  const float* l[CPCL_MAX_PARTS];
  for (int p = 0; p < W; p++) {
    const char* slot = p == me ? cpclSendSlot(pl, me) : cpclRecvSlot(pl, p);
    o[p] = slot;
    l[p] = (const float*)(slot + lseOff);
  }
  const void* newO = pl->pfNew;
  const float* newL = (const float*)((const char*)pl->pfNew + lseOff);
  if (W < CPCL_MAX_PARTS) {
    o[W] = newO;
    l[W] = newL;
    return cpclPrefillMerge(pl, st, W + 1, o, l, out, lse);
  }
  /* W + 1 partials exceed one merge: the context first, into this rank's own receive slot
   * (unused: its own part sits in its send slot), then that with the new tokens' */
  char* mid = cpclRecvSlot(pl, me);
  CPCLCHECK(cpclPrefillMerge(pl, st, W, o, l, mid, (float*)(mid + lseOff)));
  const void* o2[2] = {mid, newO};
  const float* l2[2] = {(const float*)(mid + lseOff), newL};
  return cpclPrefillMerge(pl, st, 2, o2, l2, out, lse);
}

cpclResult_t cpclPrefillDeviceXchg(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* const* sends,
                                   const size_t* sb, void* const* recvs, const size_t* rb, void* remote) {
  return cpclStepAlltoallv(pl, st, sends, sb, recvs, rb, remote, 0);
}

/* The layout of the step in the executor's staging, and the kernels' view of it. */
static cpclResult_t stageLayout(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  const cpclPrefillBatch_t* b = st->prefill;
  const size_t T = (size_t)pl->maxTokens, P = (size_t)pl->P;
  void* host;
  CPCLCHECK(pl->exec->stageBegin(pl->pfStager, st->stream, &host));
  pl->pfRowStart = host;
  pl->pfPos = pl->pfRowStart + P * (T + 1);
  pl->pfCtx = pl->pfPos + P * T;
  cpclPrefillLayout(pl, b);
  if (b->numSeqs > 0) memcpy(pl->pfCtx, b->contextLens, sizeof(int32_t) * (size_t)b->numSeqs);
  size_t maxRows = 0;
  for (int q = 0; q < pl->P; q++) maxRows = (size_t)pl->pfRows[q] > maxRows ? (size_t)pl->pfRows[q] : maxRows;
  const size_t i4 = sizeof(int32_t);
  const cpclStageRange_t r[3] = {
      {0, (T + 1) * i4, ((size_t)b->numSeqs + 1) * i4, P},
      {P * (T + 1) * i4, T * i4, maxRows * i4, P},
      {P * (2 * T + 1) * i4, (size_t)b->numSeqs * i4, (size_t)b->numSeqs * i4, 1},
  };
  const void* view;
  CPCLCHECK(pl->exec->stageEnd(pl->pfStager, st->stream, r, 3, &view));
  pl->pfKLayout = view;
  return cpclSuccess;
}

cpclResult_t cpclPrefillRun(struct cpclAttnPlan* pl, const cpclStep_t* st, const cpclPrefillSchedule_t* sched) {
  const cpclPrefillBatch_t* b = st->prefill;
  CPCLCHECK(stageLayout(pl, st));
  /* every rank sees the same lengths (agreed on), so every rank takes the same path */
  int context = 0;
  for (int s = 0; s < b->numSeqs && !context; s++) context = b->contextLens[s] > 0 && b->newLens[s] > 0;
  if (!context) {
    const cpclPrefillTarget_t tgt = {st->out, st->lse};
    return sched->newTokens(pl, st, &tgt);
  }
  const int T = pl->pfRows[pl->comm->pcpRank];
  const cpclPrefillTarget_t tgt = {pl->pfNew, (float*)((char*)pl->pfNew + cpclSliceLseOffset(pl, T))};
  CPCLCHECK(sched->newTokens(pl, st, &tgt));
  return contextPart(pl, st, st->out, st->lse);
}
