/* prefill_allgather.c -- vLLM's PCP prefill: the new K/V of every PCP rank all-gathered over the
 * PCP axis (among the ranks of this rank's dcpRank, which hold the same KV heads), then one
 * causal pass of this rank's rows over all P blocks. One round of transfers; the attention
 * starts when every block is in. Host transports: tagged messages, peer blocks in slots 0 .. P-2;
 * device transports: one stream-ordered exchange for K and one for V, block b in slot b (the
 * same place on every rank, where a one-sided transport stores it). */
#include "coll.h"
#include "core.h"
#include "prefill.h"

/* block b's K/V: this rank's own where the caller left them, a peer's in slot b (device
 * transports) or b or b - 1 (host) */
static void blockAt(const struct cpclAttnPlan* pl, const cpclStep_t* st, int b, void** k, void** v) {
  const int pr = pl->comm->pcpRank;
  if (b == pr) {
    *k = (void*)st->kNew;
    *v = (void*)st->vNew;
    return;
  }
  cpclPrefillKvSlot(pl, b < pr || cpclTransportIsDevice(pl->comm->tp) ? b : b - 1, k, v);
}

static cpclResult_t gatherDevice(struct cpclAttnPlan* pl, const cpclStep_t* st) {
  struct cpclComm* c = pl->comm;
  const int D = pl->D, pr = c->pcpRank, dr = c->dcpRank, T = pl->pfRows[pr];
  const size_t rowBytes[2] = {cpclPrefillKRowBytes(pl), cpclPrefillVRowBytes(pl)};
  const void** sends = c->scratch.sendbufs;
  void** recvs = c->scratch.recvbufs;
  size_t *sb = c->scratch.sendBytes, *rb = c->scratch.recvBytes;
  for (int part = 0; part < (rowBytes[1] ? 2 : 1); part++) {
    for (int p = 0; p < c->nranks; p++) {
      const int b = p / D, peer = p % D == dr && p != c->rank; /* the same KV heads, another block */
      void *k, *v;
      cpclPrefillKvSlot(pl, b, &k, &v);
      sends[p] = part ? st->vNew : st->kNew;
      recvs[p] = part ? v : k;
      sb[p] = peer ? (size_t)T * rowBytes[part] : 0;
      rb[p] = peer ? (size_t)pl->pfRows[b] * rowBytes[part] : 0;
    }
    void *myK, *myV;
    cpclPrefillKvSlot(pl, pr, &myK, &myV);
    CPCLCHECK(cpclPrefillDeviceXchg(pl, st, sends, sb, recvs, rb, part ? myV : myK));
  }
  return cpclSuccess;
}

static cpclResult_t allgatherNew(struct cpclAttnPlan* pl, const cpclStep_t* st, const cpclPrefillTarget_t* tgt) {
  struct cpclComm* c = pl->comm;
  const int P = pl->P, D = pl->D, pr = c->pcpRank, dr = c->dcpRank, T = pl->pfRows[pr];
  const size_t kRow = cpclPrefillKRowBytes(pl), vRow = cpclPrefillVRowBytes(pl);
  cpclRequest_t* reqs = pl->reqs; /* 4 (P - 1) <= 4 W */
  int n = 0;
  cpclResult_t res = cpclSuccess;
  if (cpclTransportIsDevice(c->tp)) {
    if (P > 1) CPCLCHECK(gatherDevice(pl, st));
    goto attend;
  }
  for (int i = 0; i < 4 * P; i++) reqs[i].active = 0;
  for (int b = 0; b < P; b++) {
    if (b == pr || pl->pfRows[b] == 0) continue;
    void *k, *v;
    blockAt(pl, st, b, &k, &v);
    const int peer = b * D + dr;
    CPCLCHECKGOTO(cpclPrefillPost(pl, st, 0, peer, 0, k, (size_t)pl->pfRows[b] * kRow, &reqs[n++]), res, fail);
    if (vRow)
      CPCLCHECKGOTO(cpclPrefillPost(pl, st, 0, peer, 1, v, (size_t)pl->pfRows[b] * vRow, &reqs[n++]), res, fail);
  }
  for (int b = 0; b < P && T > 0; b++) {
    if (b == pr) continue;
    const int peer = b * D + dr;
    CPCLCHECKGOTO(cpclPrefillPost(pl, st, 1, peer, 0, (void*)st->kNew, (size_t)T * kRow, &reqs[n++]), res, fail);
    if (vRow)
      CPCLCHECKGOTO(cpclPrefillPost(pl, st, 1, peer, 1, (void*)st->vNew, (size_t)T * vRow, &reqs[n++]), res, fail);
  }
  CPCLCHECK(cpclWaitAll(c, reqs, n, "cpclAttnPrefill (allgather): K/V gather over the PCP axis"));

attend:;
  cpclPrefillParams_t p;
  cpclPrefillOwnParams(pl, st, tgt, &p);
  p.numKvBlocks = P;
  for (int b = 0; b < P; b++) {
    void *k, *v;
    blockAt(pl, st, b, &k, &v);
    p.kv[b] = cpclPrefillBlock(pl, b, k, v);
  }
  cpclPrefillStoreTo(pl, st, &p); /* every block's owned rows, with the attention */
  CPCLCHECK(pl->exec->prefill(&p, st->stream));
  return cpclSuccess;
fail:
  cpclPrefillCancel(pl, reqs, n);
  return res;
}

const cpclPrefillSchedule_t cpclPrefillAllgather = {.name = "allgather", .newTokens = allgatherNew};
