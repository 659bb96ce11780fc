/*
 * pipelined.c -- per peer: attention for DCP rank j's heads starts the moment j's queries
 * arrive, and that partial leaves for its owners as soon as it is computed, so transfers of
 * other peers' queries and partials overlap the compute.
 *
 * On device transports the same order runs on the stream: the queries are posted to every peer
 * at once, and before the attention of DCP rank j's heads the stream waits for j's queries
 * alone (waitFrom), so the kernels of the first peers overlap the arrival of the others'.
 *
 * Requests (plan->reqs, 4 W slots): [0, D) query receives by DCP rank, [D, 2D) query sends,
 * [2D, 2D + W) partial receives by rank, [2D + W, 2D + 2W) partial sends.
 * Messages carry the call's sequence number; stage 0 = queries, stage 1 = partial slices.
 */
#include "coll.h"
#include "core.h"
#include "sched.h"

static cpclResult_t post(struct cpclAttnPlan* pl, const cpclStep_t* st, int send, int peer, int stage, void* buf,
                         size_t bytes, cpclRequest_t* req) {
  struct cpclComm* c = pl->comm;
  req->peer = peer;
  const uint64_t tag = cpclMakeTag(st->seq, st->op, stage, send ? c->rank : peer);
  cpclResult_t res = send ? c->tp->isend(c->tpCtx, peer, tag, buf, bytes, req, st->stream)
                          : c->tp->irecv(c->tpCtx, peer, tag, buf, bytes, req, st->stream);
  if (res != cpclSuccess) cpclCommFail(c, res);
  return res;
}

static void cancelAll(struct cpclAttnPlan* pl) {
  for (int i = 0; i < 4 * pl->W; i++)
    if (pl->reqs[i].active) pl->comm->tp->cancel(pl->comm->tpCtx, &pl->reqs[i]);
}

static void attnTarget(struct cpclAttnPlan* pl, const cpclStep_t* st, int j, int slices, void* partialOut,
                       float* partialLse, cpclAttnParams_t* p) {
  cpclStepAttnParams(pl, st, j * pl->H, pl->H, p);
  if (slices)
    cpclStepTargetSlices(pl, st->numTokens, p);
  else
    cpclStepTargetPartial(pl, st->numTokens, partialOut, partialLse, p);
}

static cpclResult_t attendAsArrivingDevice(struct cpclAttnPlan* pl, const cpclStep_t* st, int slices, void* partialOut,
                                           float* partialLse) {
  struct cpclComm* c = pl->comm;
  const int D = pl->D, me = c->dcpRank, base = c->pcpRank * D;
  CPCLCHECK(cpclStepGatherQPost(pl, st, 1));
  for (int k = 0; k < D; k++) {
    const int j = (me + k) % D;
    if (j != me) {
      cpclResult_t res = c->tp->waitFrom(c->tpCtx, base + j, pl->errorDev, st->stream);
      if (res != cpclSuccess) {
        cpclCommFail(c, res);
        return CPCL_ERR_WRAP(c, res, cpclThreadLastError(), "pipelined: waiting for rank %d's queries", base + j);
      }
    }
    cpclAttnParams_t p;
    attnTarget(pl, st, j, slices, partialOut, partialLse, &p);
    CPCLCHECK(pl->exec->attend(&p, st->stream));
  }
  return slices ? cpclStepExchangeSlices(pl, st, cpclSliceBytes(pl, st->numTokens)) : cpclSuccess;
}

/* Gathers q peer by peer and attends to each peer's heads as it lands. With slices set, each
 * peer's partial goes to its owners right away; otherwise it is written to partialOut/Lse. */
static cpclResult_t attendAsArriving(struct cpclAttnPlan* pl, const cpclStep_t* st, int slices, void* partialOut,
                                     float* partialLse) {
  struct cpclComm* c = pl->comm;
  const int D = pl->D, W = pl->W, T = st->numTokens, me = c->dcpRank, base = c->pcpRank * D;
  const size_t qBytes = (size_t)T * pl->H * pl->desc.headDimQk * pl->qElem, sBytes = cpclSliceBytes(pl, T);
  cpclRequest_t *qRecv = pl->reqs, *qSend = pl->reqs + D, *pRecv = pl->reqs + 2 * D, *pSend = pl->reqs + 2 * D + W;
  cpclResult_t res = cpclSuccess;
  if (cpclTransportIsDevice(c->tp)) return attendAsArrivingDevice(pl, st, slices, partialOut, partialLse);
  for (int i = 0; i < 4 * W; i++) pl->reqs[i].active = 0;

  if (slices)
    for (int p = 0; p < W; p++)
      if (p != c->rank) CPCLCHECKGOTO(post(pl, st, 0, p, 1, cpclRecvSlot(pl, p), sBytes, &pRecv[p]), res, fail);
  for (int j = 0; j < D; j++)
    if (j != me)
      CPCLCHECKGOTO(post(pl, st, 0, base + j, 0, (char*)pl->qGather + j * qBytes, qBytes, &qRecv[j]), res, fail);
  if (D > 1) /* own block beside the peers' (with D == 1 the kernel reads st->q) */
    CPCLCHECKGOTO(pl->exec->copy2d((char*)pl->qGather + me * qBytes, qBytes, st->q, qBytes, qBytes, 1, st->stream), res,
                  fail);
  for (int j = 0; j < D; j++)
    if (j != me) CPCLCHECKGOTO(post(pl, st, 1, base + j, 0, (void*)st->q, qBytes, &qSend[j]), res, fail);

  int nSend = 0;
  for (int done = 0, j = me; done < D; done++) {
    if (done > 0) CPCLCHECKGOTO(cpclWaitAny(c, qRecv, D, &j, "pipelined: query gather"), res, fail);
    cpclAttnParams_t p;
    attnTarget(pl, st, j, slices, partialOut, partialLse, &p);
    CPCLCHECKGOTO(pl->exec->attend(&p, st->stream), res, fail);
    if (slices) /* owners of DCP rank j's heads: (pcp, j) for every pcp */
      for (int q = 0; q < pl->P; q++)
        if (q * D + j != c->rank)
          CPCLCHECKGOTO(post(pl, st, 1, q * D + j, 1, cpclSendSlot(pl, j), sBytes, &pSend[nSend++]), res, fail);
  }
  CPCLCHECKGOTO(cpclWaitAll(c, pl->reqs, 4 * W, "pipelined: partial exchange"), res, fail);
  return cpclSuccess;
fail:
  cancelAll(pl);
  return res;
}

static cpclResult_t pipelinedDecode(struct cpclAttnPlan* pl, const cpclStep_t* st, void* out, float* lse) {
  CPCLCHECK(attendAsArriving(pl, st, 1, NULL, NULL));
  return cpclStepMergeSlices(pl, st, CPCL_MERGE_LSE, out, lse);
}

static cpclResult_t pipelinedPartial(struct cpclAttnPlan* pl, const cpclStep_t* st, void* partialOut,
                                     float* partialLse) {
  return attendAsArriving(pl, st, 0, partialOut, partialLse);
}

static cpclResult_t pipelinedCombine(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* partialOut,
                                     const float* partialLse, void* out, float* lse) {
  /* nothing to overlap: the partials exist already */
  return cpclScheduleA2a.combine(pl, st, partialOut, partialLse, out, lse);
}

const cpclSchedule_t cpclSchedulePipelined = {
    .name = "pipelined",
    .decode = pipelinedDecode,
    .partial = pipelinedPartial,
    .combine = pipelinedCombine,
};
