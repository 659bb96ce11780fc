/* prefill_ring.c -- ring attention over the PCP axis: P steps among the ranks of this rank's
 * dcpRank. At step i the rank holds block (pcpRank - i) mod P; it posts that block's send to the
 * next rank and the receive of the next block from the previous one (two slots, alternating),
 * attends to the block it holds and stores its owned rows, then waits (device transports: one
 * stream-ordered sendrecv per step, K then V, on the plan's second stream, forked from the
 * caller's before the attention and joined after it, so the next block moves during it). With the head-tail chunks
 * every rank has the same causal work at every step. The partial of block b lands in ring slice
 * b, and the P slices merge in block order 0..P-1 at the end: the result does not depend on the
 * ring's direction or on arrival order, bit for bit.
 *
 * Host transports move data only when driven, so the attention drives the transport after each
 * of its query tiles (cpclPrefillParams_t.progress): the next block moves while this one is
 * attended, and the wait after it finds the transfer done or nearly. */
#include "coll.h"
#include "core.h"
#include "prefill.h"

/* the transport's progress, from inside the host kernel; a failure shows in the wait after it */
static void ringProgress(void* ctx) {
  struct cpclComm* c = ctx;
  (void)c->tp->progress(c->tpCtx);
}

/* One ring step over a device transport: this block to next, the following one from prev, on
 * the stream. Called on every rank at every step, sizes 0 included: one-sided transports count
 * their exchanges (epochs), so every rank makes the same number. */
static cpclResult_t ringDeviceStep(struct cpclAttnPlan* pl, cpclStream_t stream, int next, const void* k, const void* v,
                                   size_t sendRows, int prev, void* nk, void* nv, size_t recvRows) {
  struct cpclComm* c = pl->comm;
  if (!(c->tp->caps & CPCL_TP_CAP_STREAM_P2P))
    return CPCL_ERR(c, cpclUnsupported, "cpclAttnPrefill (ring): transport %s has no stream-ordered sendrecv",
                    c->transportName);
  const size_t rowBytes[2] = {cpclPrefillKRowBytes(pl), cpclPrefillVRowBytes(pl)};
  for (int part = 0; part < (rowBytes[1] ? 2 : 1); part++) {
    CPCL_NVTX_PUSH("cpcl prefill ring step");
    cpclResult_t res = c->tp->sendrecv(c->tpCtx, next, part ? v : k, sendRows * rowBytes[part], prev, part ? nv : nk,
                                       recvRows * rowBytes[part], pl->errorDev, stream);
    CPCL_NVTX_POP();
    if (res != cpclSuccess) {
      cpclCommFail(c, res);
      return CPCL_ERR_WRAP(c, res, cpclThreadLastError(), "cpclAttnPrefill (ring): %s transport", c->transportName);
    }
  }
  return cpclSuccess;
}

static cpclResult_t ringNew(struct cpclAttnPlan* pl, const cpclStep_t* st, const cpclPrefillTarget_t* tgt) {
  struct cpclComm* c = pl->comm;
  const int P = pl->P, D = pl->D, pr = c->pcpRank, dr = c->dcpRank, T = pl->pfRows[pr];
  const int next = ((pr + 1) % P) * D + dr, prev = ((pr + P - 1) % P) * D + dr;
  const size_t kRow = cpclPrefillKRowBytes(pl), vRow = cpclPrefillVRowBytes(pl);
  const size_t lseOff = cpclSliceLseOffset(pl, T);
  cpclRequest_t* reqs = pl->reqs;
  cpclResult_t res = cpclSuccess;
  void* curK = (void*)st->kNew;
  void* curV = (void*)st->vNew;
  int n = 0;
  for (int i = 0; i < P; i++) {
    const int b = (pr + P - i) % P, nb = (pr + 2 * P - i - 1) % P;
    void *nextK = NULL, *nextV = NULL;
    n = 0;
    for (int k = 0; k < 4; k++) reqs[k].active = 0;
    const int side = i < P - 1 && cpclTransportIsDevice(c->tp);
    if (side) {
      /* on the plan's second stream, forked after step i - 1's attention and store (which read
       * the slot the next block lands in), joined before step i + 1: block i + 1 moves while
       * block i is attended */
      cpclPrefillKvSlot(pl, (i + 1) % 2, &nextK, &nextV);
      cpclStream_t ss;
      CPCLCHECK(pl->exec->sideFork(pl->pfStager, st->stream, &ss));
      CPCLCHECK(
          ringDeviceStep(pl, ss, next, curK, curV, (size_t)pl->pfRows[b], prev, nextK, nextV, (size_t)pl->pfRows[nb]));
    } else if (i < P - 1) { /* the block of step i + 1 moves while this one is attended */
      cpclPrefillKvSlot(pl, (i + 1) % 2, &nextK, &nextV);
      if (pl->pfRows[nb] > 0) {
        CPCLCHECKGOTO(cpclPrefillPost(pl, st, 0, prev, 2 * i, nextK, (size_t)pl->pfRows[nb] * kRow, &reqs[n++]), res,
                      fail);
        if (vRow)
          CPCLCHECKGOTO(cpclPrefillPost(pl, st, 0, prev, 2 * i + 1, nextV, (size_t)pl->pfRows[nb] * vRow, &reqs[n++]),
                        res, fail);
      }
      if (pl->pfRows[b] > 0) {
        CPCLCHECKGOTO(cpclPrefillPost(pl, st, 1, next, 2 * i, curK, (size_t)pl->pfRows[b] * kRow, &reqs[n++]), res,
                      fail);
        if (vRow)
          CPCLCHECKGOTO(cpclPrefillPost(pl, st, 1, next, 2 * i + 1, curV, (size_t)pl->pfRows[b] * vRow, &reqs[n++]),
                        res, fail);
      }
    }
    /* one pcp rank: the only block's partial is the answer */
    char* slice = P > 1 ? (char*)pl->pfRing + (size_t)b * pl->sliceCap : NULL;
    const cpclPrefillTarget_t part = {slice ? (void*)slice : tgt->o, slice ? (float*)(slice + lseOff) : tgt->lse};
    cpclPrefillParams_t p;
    cpclPrefillOwnParams(pl, st, &part, &p);
    p.numKvBlocks = 1;
    p.kv[0] = cpclPrefillBlock(pl, b, curK, curV);
    if (n > 0 && (c->tp->caps & CPCL_TP_CAP_HOST_P2P)) {
      p.progress = ringProgress;
      p.progressCtx = c;
    }
    cpclPrefillStoreTo(pl, st, &p); /* the passing block's owned rows, with the attention */
    CPCLCHECKGOTO(pl->exec->prefill(&p, st->stream), res, fail);
    CPCLCHECK(cpclWaitAll(c, reqs, n, "cpclAttnPrefill (ring): K/V block from the previous PCP rank"));
    if (side) CPCLCHECK(pl->exec->sideJoin(pl->pfStager, st->stream));
    curK = nextK;
    curV = nextV;
  }
  if (P == 1) return cpclSuccess;
  const void* o[CPCL_MAX_PARTS];
  const float* l[CPCL_MAX_PARTS];
  for (int b = 0; b < P; b++) {
    const char* slice = (const char*)pl->pfRing + (size_t)b * pl->sliceCap;
    o[b] = slice;
    l[b] = (const float*)(slice + lseOff);
  }
  return cpclPrefillMerge(pl, st, P, o, l, tgt->o, tgt->lse);
fail:
  cpclPrefillCancel(pl, reqs, n);
  return res;
}

const cpclPrefillSchedule_t cpclPrefillRing = {.name = "ring", .newTokens = ringNew};
