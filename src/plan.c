/* plan.c -- attention plan creation: descriptor validation (GQA and MLA rules), agreement of
 * every rank on it, the schedule, and every workspace allocated once. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "coll.h"
#include "core.h"
#include "op.h"
#include "plan.h"

const char* const cpclAlgoNames[CPCL_NUM_ALGOS] = {"agrs", "a2a", "pipelined", "fused"};
const char* const cpclPrefillAlgoNames[CPCL_NUM_PREFILL_ALGOS] = {"allgather", "ring"};

#define CPCL_MAX_HEAD_DIM 1024

cpclResult_t cpclAttnDescCheck(const struct cpclComm* c, const cpclAttnDesc_t* d, int maxTokens, char* msg, size_t n) {
  if (d->size != sizeof(cpclAttnDesc_t)) {
    snprintf(msg, n, "desc->size is %zu, expected %zu: initialise it with CPCL_ATTN_DESC_INITIALIZER", d->size,
             sizeof(cpclAttnDesc_t));
    return cpclInvalidArgument;
  }
#define CHECK_RANGE(field, lo, hi)                                                                           \
  if (d->field < (lo) || d->field > (hi)) {                                                                  \
    snprintf(msg, n, "desc->" #field " is %d: it must be in [%d, %d]", (int)d->field, (int)(lo), (int)(hi)); \
    return cpclInvalidArgument;                                                                              \
  }
  CHECK_RANGE(numQoHeads, 1, 4096)
  CHECK_RANGE(numKvHeads, 1, 4096)
  CHECK_RANGE(headDimQk, 8, CPCL_MAX_HEAD_DIM)
  CHECK_RANGE(headDimVo, 8, CPCL_MAX_HEAD_DIM)
  CHECK_RANGE(pageSize, 1, 1 << 20)
  CHECK_RANGE(qType, 0, cpclNumDataTypes - 1)
  CHECK_RANGE(kvType, 0, cpclNumDataTypes - 1)
  CHECK_RANGE(latentKv, 0, 1)
  CHECK_RANGE(lseBase2, 0, 1)
#undef CHECK_RANGE
  if (d->topk < 0 || d->topk > CPCL_MAX_TOPK) {
    snprintf(msg, n, "desc->topk is %d: it must be in [0, %d] (0 dense attention, K > 0 sparse)", d->topk,
             CPCL_MAX_TOPK);
    return cpclInvalidArgument;
  }
  if (d->prefillAlgo != NULL && strcasecmp(d->prefillAlgo, "allgather") != 0 &&
      strcasecmp(d->prefillAlgo, "ring") != 0) {
    snprintf(msg, n, "desc->prefillAlgo is \"%.32s\": use allgather, ring or NULL (automatic)", d->prefillAlgo);
    return cpclInvalidArgument;
  }
  if (d->headDimQk % 8 || d->headDimVo % 8) {
    snprintf(msg, n, "desc->headDimQk %d / headDimVo %d: both must be multiples of 8 (16-byte vector loads)",
             d->headDimQk, d->headDimVo);
    return cpclInvalidArgument;
  }
  if (!isfinite(d->smScale) || d->smScale <= 0.f) {
    snprintf(msg, n, "desc->smScale is %g: it must be finite and > 0 (usually 1/sqrt(headDimQk))", d->smScale);
    return cpclInvalidArgument;
  }
  if (d->pageSize % c->interleave) {
    snprintf(msg, n,
             "desc->pageSize %d is not a multiple of the communicator's kvInterleave %d: a page must hold "
             "whole interleave runs",
             d->pageSize, c->interleave);
    return cpclInvalidArgument;
  }
  if (maxTokens < 1 || maxTokens > (1 << 24)) {
    snprintf(msg, n, "maxTokens is %d: it must be in [1, %d]", maxTokens, 1 << 24);
    return cpclInvalidArgument;
  }
  const int gathered = c->dcpSize * d->numQoHeads;
  if (d->latentKv) {
    if (d->numKvHeads != 1) {
      snprintf(msg, n, "MLA (desc->latentKv = 1) has one latent KV head, but desc->numKvHeads is %d", d->numKvHeads);
      return cpclInvalidArgument;
    }
    if (d->headDimVo > d->headDimQk) {
      snprintf(msg, n,
               "MLA: V is the first headDimVo elements of each K row, so desc->headDimVo %d must be <= "
               "headDimQk %d",
               d->headDimVo, d->headDimQk);
      return cpclInvalidArgument;
    }
  } else if (gathered % d->numKvHeads) {
    snprintf(msg, n,
             "GQA: the %d gathered query heads (dcpSize %d x numQoHeads %d) are not a whole number of groups "
             "of numKvHeads %d; choose numQoHeads so that dcpSize * numQoHeads is a multiple of numKvHeads",
             gathered, c->dcpSize, d->numQoHeads, d->numKvHeads);
    return cpclInvalidArgument;
  }
  if (c->nranks > CPCL_MAX_PARTS) {
    snprintf(msg, n, "the communicator has %d ranks; attention plans merge at most %d partials", c->nranks,
             CPCL_MAX_PARTS);
    return cpclUnsupported;
  }
  return cpclSuccess;
}

/* What every rank must agree on, exchanged even when this rank's desc is invalid. */
typedef struct {
  int32_t valid;
  int32_t numQoHeads, numKvHeads, headDimQk, headDimVo, pageSize, qType, kvType, latentKv, lseBase2, maxTokens;
  float smScale;
  int32_t algo;
  int32_t userWs;       /* the caller's workspace: every rank creates its plan the same way */
  int32_t prefillAlgo;  /* 0 automatic, 1 allgather, 2 ring */
  int32_t prefillSched; /* the prefill schedule chosen (desc, CPCL_PREFILL_ALGO, automatic) */
  int32_t topk;
} planDigest_t;

static cpclResult_t digestCompare(const planDigest_t* all, int W, char* msg, size_t n) {
  for (int r = 0; r < W; r++)
    if (!all[r].valid) {
      snprintf(msg, n, "rank %d passed an invalid attention descriptor (its own error names the field)", r);
      return cpclInvalidUsage;
    }
#define FIELD(f, what)                                                                                                \
  for (int r = 1; r < W; r++)                                                                                         \
    if (all[r].f != all[0].f) {                                                                                       \
      snprintf(msg, n, "ranks disagree on %s: rank 0 has %d, rank %d has %d", what, (int)all[0].f, r, (int)all[r].f); \
      return cpclInvalidUsage;                                                                                        \
    }
  FIELD(numQoHeads, "desc->numQoHeads")
  FIELD(numKvHeads, "desc->numKvHeads")
  FIELD(headDimQk, "desc->headDimQk")
  FIELD(headDimVo, "desc->headDimVo")
  FIELD(pageSize, "desc->pageSize")
  FIELD(qType, "desc->qType")
  FIELD(kvType, "desc->kvType")
  FIELD(latentKv, "desc->latentKv")
  FIELD(lseBase2, "desc->lseBase2")
  FIELD(maxTokens, "maxTokens")
  FIELD(topk, "desc->topk")
  FIELD(algo, "the schedule (desc->algo / CPCL_ALGO)")
  FIELD(prefillAlgo, "desc->prefillAlgo (0 NULL, 1 allgather, 2 ring)")
  FIELD(prefillSched, "the prefill schedule (desc->prefillAlgo / CPCL_PREFILL_ALGO; 0 allgather, 1 ring)")
  FIELD(userWs, "whether the plan uses the caller's workspace (cpclAttnPlanCreateWithWorkspace)")
#undef FIELD
  for (int r = 1; r < W; r++)
    if (memcmp(&all[r].smScale, &all[0].smScale, sizeof(float)) != 0) {
      snprintf(msg, n, "ranks disagree on desc->smScale: rank 0 has %g, rank %d has %g", all[0].smScale, r,
               all[r].smScale);
      return cpclInvalidUsage;
    }
  return cpclSuccess;
}

int cpclPlanFusedPossible(const struct cpclComm* c, char* msg, size_t n) {
  if (c->memType != cpclMemCuda) {
    snprintf(msg, n, "fused needs CUDA memory; this communicator moves host memory over %s", c->transportName);
    return 0;
  }
  if (c->nranks > 1 && !(c->tp->caps & CPCL_TP_CAP_PEER_MAP)) {
    snprintf(msg, n,
             "fused needs GPU peers that map each other's memory (transport \"ipc\"); this communicator uses %s",
             c->transportName);
    return 0;
  }
  if (c->pcpSize > 1) {
    snprintf(msg, n, "fused covers the DCP axis alone (dcpSize = all ranks); this communicator has pcp %d x dcp %d",
             c->pcpSize, c->dcpSize);
    return 0;
  }
  return 1;
}

static void planFree(struct cpclAttnPlan* pl) {
  const cpclExecOps_t* e = pl->exec;
  struct cpclComm* c = pl->comm;
  if (c && c->tpCtx) { /* an aborted comm's transport is gone, and its mappings with it */
    if (pl->regQ) c->tp->deregMem(c->tpCtx, pl->regQ);
    if (pl->regRecv) c->tp->deregMem(c->tpCtx, pl->regRecv);
    if (pl->regLse) c->tp->deregMem(c->tpCtx, pl->regLse);
    if (pl->regPfKv) c->tp->deregMem(c->tpCtx, pl->regPfKv);
  }
  if (e && !pl->wsUser) { /* a caller's buffer stays the caller's */
    e->free(pl->localSync);
    e->free(pl->qGather);
    e->free(pl->sendBuf);
    e->free(pl->recvBuf);
    e->free(pl->partialO);
    e->free(pl->partialLse);
    e->free(pl->lseAll);
    e->free(pl->lseGlobal);
    e->free(pl->scratch);
    e->free(pl->splitCounters);
    e->free(pl->pfNew);
    e->free(pl->pfKv);
    e->free(pl->pfRing);
    e->free(pl->topkLocal);
    e->free(pl->topkCount);
  }
  if (e && pl->pfStager) e->stageFree(pl->pfStager);
  if (e) e->errorFlagFree(pl->errorHost);
  free(pl->reqs);
  free(pl);
}

/* where the Hopper GQA body merges a row's splits (cpclAttnParams_t.gqaSm90Workspace), for the INFO line */
static const char* gqaMergeWhere(int form) {
  return form == 2   ? "merged through the workspace in the last split's tail"
         : form == 1 ? "merged through the workspace by a second kernel"
                     : "in one cluster";
}

/* Whether plans register their buffers with every peer (peer-mapped transports: ipc). */
static int planRegistersPeers(const struct cpclComm* c) {
  return c->memType == cpclMemCuda && c->nranks > 1 && (c->tp->caps & CPCL_TP_CAP_PEER_MAP);
}

/* One workspace buffer of the plan: counted in wsBytes, then the next part of the caller's
 * buffer, or its own allocation (zeroed, like the whole of a caller's buffer that is used). */
static cpclResult_t planTake(struct cpclAttnPlan* pl, void* ptrOut, size_t bytes, const char* what) {
  const size_t sz = CPCL_ALIGN_UP(bytes ? bytes : 1, CPCL_WS_ALIGN);
  const size_t off = pl->wsBytes;
  pl->wsBytes += sz;
  if (pl->wsMeasure) return cpclSuccess;
  if (pl->wsUser) {
    *(void**)ptrOut = (char*)pl->wsUser + off;
    return cpclSuccess;
  }
  return pl->exec->alloc(pl->comm, ptrOut, bytes, what);
}

/* Every workspace buffer, in one order (the carving of a caller's buffer depends on it). */
static cpclResult_t planLayout(struct cpclAttnPlan* pl) {
  const cpclExecOps_t* e = pl->exec;
  const cpclAttnDesc_t* d = &pl->desc;
  const size_t T = (size_t)pl->maxTokens, DH = (size_t)pl->D * pl->H, Dv = (size_t)d->headDimVo;
  const size_t counters = e->attnCounterCount(pl->maxTokens, (int)DH);
  if (counters) CPCLCHECK(planTake(pl, &pl->splitCounters, counters * sizeof(unsigned), "split counters"));
  /* host plans serve prefill too: its context part gathers the queries of all W ranks and sends
   * a slice to every rank (decode uses the first D of each) */
  const size_t blocks = pl->prefillSlots ? (size_t)pl->W : (size_t)pl->D;
  CPCLCHECK(planTake(pl, &pl->qGather, blocks * T * pl->H * d->headDimQk * pl->qElem, "gathered queries"));
  CPCLCHECK(planTake(pl, &pl->sendBuf, blocks * pl->sliceCap, "partial send slices"));
  CPCLCHECK(planTake(pl, &pl->recvBuf, pl->W * pl->sliceCap, "partial receive slices"));
  CPCLCHECK(planTake(pl, &pl->scratch, pl->scratchBytes, "attention scratch"));
  if (pl->algo == CPCL_ALGO_AGRS) {
    CPCLCHECK(planTake(pl, &pl->partialO, T * DH * Dv * pl->qElem, "agrs partial output"));
    CPCLCHECK(planTake(pl, &pl->partialLse, T * DH * sizeof(float), "agrs partial LSE"));
    CPCLCHECK(planTake(pl, &pl->lseAll, pl->W * T * DH * sizeof(float), "agrs gathered LSE"));
    CPCLCHECK(planTake(pl, &pl->lseGlobal, T * DH * sizeof(float), "agrs global LSE"));
  }
  if (pl->prefillSlots) {
    CPCLCHECK(planTake(pl, &pl->pfNew, pl->sliceCap, "prefill new-token partial"));
    /* device transports put block b in slot b (one place on every rank, for one-sided stores) */
    const size_t kvSlots = pl->prefillAlgo == CPCL_PREFILL_RING               ? (pl->P > 1 ? 2 : 0)
                           : pl->P > 1 && cpclTransportIsDevice(pl->comm->tp) ? (size_t)pl->P
                                                                              : (size_t)pl->P - 1;
    if (kvSlots) CPCLCHECK(planTake(pl, &pl->pfKv, kvSlots * pl->pfKvCap, "prefill K/V blocks"));
    if (pl->prefillAlgo == CPCL_PREFILL_RING && pl->P > 1)
      CPCLCHECK(planTake(pl, &pl->pfRing, (size_t)pl->P * pl->sliceCap, "prefill ring partials"));
  }
  if (d->topk > 0) { /* the filter's compacted lists (kernels/topk_params.h), rewritten each step; where
                      * the attention filters itself, a list a row and 64-head chunk (attn_params.h topkRaw) */
    const size_t chunks = pl->topkInKernel ? (size_t)(pl->D * pl->H + 63) / 64 : 1;
    CPCLCHECK(planTake(pl, &pl->topkLocal, T * chunks * (size_t)d->topk * sizeof(int32_t), "top-k local key lists"));
    CPCLCHECK(planTake(pl, &pl->topkCount, T * sizeof(int32_t), "top-k key counts"));
  }
  if (pl->comm->memType == cpclMemCuda && pl->W == 1) { /* one rank: the fused kernel's flags */
    const size_t ints = cpclSyncBlockInts(1);
    CPCLCHECK(planTake(pl, &pl->localSync, ints * sizeof(int), "fused kernel flags"));
  }
  return cpclSuccess;
}

/* The plan's shape and sizes, before anything is allocated. */
static void planInit(struct cpclAttnPlan* pl, struct cpclComm* comm, const cpclAttnDesc_t* desc, int maxTokens,
                     const cpclPlanSchedules_t* sel, const cpclExecOps_t* exec) {
  const cpclAlgo_t algo = sel->algo;
  pl->comm = comm;
  pl->desc = *desc;
  pl->maxTokens = maxTokens;
  pl->W = comm->nranks;
  pl->D = comm->dcpSize;
  pl->P = comm->pcpSize;
  pl->H = desc->numQoHeads;
  pl->G = pl->D * pl->H / desc->numKvHeads;
  pl->qElem = cpclKDtypeSize(desc->qType);
  pl->algo = algo;
  pl->exec = exec;
  pl->sliceCap = cpclSliceBytes(pl, maxTokens);
  pl->scratchBytes = exec->attnWorkspaceBytes(desc, maxTokens, pl->D * pl->H, &pl->maxSplits, &pl->mlaSm90Splits,
                                              &pl->gqaSm90Splits, &pl->gqaSm90ChunkMin, &pl->gqaSm90Workspace);
  /* the fused kernel's sparse steps run the CUDA-core body, which reads the filter kernel's lists */
  pl->topkInKernel = desc->topk > 0 && algo != CPCL_ALGO_FUSED && exec->topkInAttention != NULL &&
                     exec->topkInAttention(desc, maxTokens, pl->D * pl->H);
  pl->prefillAlgo = sel->prefill;
  pl->prefillSlots = 1;
  if (pl->prefillSlots) {
    const size_t pfScratch = exec->prefillWorkspaceBytes(desc->headDimQk, desc->headDimVo);
    if (pfScratch > pl->scratchBytes) pl->scratchBytes = pfScratch; /* one step at a time: shared */
    const size_t row = (size_t)desc->numKvHeads * (desc->headDimQk + (desc->latentKv ? 0 : desc->headDimVo));
    pl->pfKvCap = CPCL_ALIGN_UP((size_t)maxTokens * row * cpclKDtypeSize(desc->kvType), 64);
  }
}

/* Peer-mapped transports: register the buffers peers store into, and keep the peers' addresses.
 * One rank: the peers are this rank, and the fused kernel's flags live on the plan. */
static cpclResult_t planMapPeers(struct cpclAttnPlan* pl) {
  struct cpclComm* c = pl->comm;
  if (c->memType != cpclMemCuda) return cpclSuccess;
  if (pl->W == 1) { /* the flags are the plan's own (planLayout) */
    pl->peerQ[0] = pl->qGather;
    pl->peerRecv[0] = pl->recvBuf;
    return cpclSuccess;
  }
  if (!planRegistersPeers(c)) return cpclSuccess; /* nccl: two-sided */
  const size_t T = (size_t)pl->maxTokens, DH = (size_t)pl->D * pl->H;
  /* prefill plans gather the queries of all W ranks (planLayout) */
  const size_t qBlocks = pl->prefillSlots ? (size_t)pl->W : (size_t)pl->D;
  CPCLCHECK(c->tp->regMem(c->tpCtx, pl->qGather, qBlocks * T * pl->H * pl->desc.headDimQk * pl->qElem, &pl->regQ));
  CPCLCHECK(c->tp->regMem(c->tpCtx, pl->recvBuf, pl->W * pl->sliceCap, &pl->regRecv));
  if (pl->lseAll) CPCLCHECK(c->tp->regMem(c->tpCtx, pl->lseAll, pl->W * T * DH * sizeof(float), &pl->regLse));
  if (pl->pfKv && pl->prefillAlgo == CPCL_PREFILL_ALLGATHER)
    CPCLCHECK(c->tp->regMem(c->tpCtx, pl->pfKv, (size_t)pl->P * pl->pfKvCap, &pl->regPfKv));
  else if (pl->pfKv)
    CPCLCHECK(c->tp->regMem(c->tpCtx, pl->pfKv, 2 * pl->pfKvCap, &pl->regPfKv));
  for (int p = 0; p < pl->W; p++) {
    CPCLCHECK(c->tp->peerPtr(c->tpCtx, pl->regQ, p, &pl->peerQ[p]));
    CPCLCHECK(c->tp->peerPtr(c->tpCtx, pl->regRecv, p, &pl->peerRecv[p]));
  }
  return cpclSuccess;
}

cpclResult_t cpclPlanPeerSync(struct cpclAttnPlan* pl, cpclPeerSync_t* s) {
  if (pl->W > 1) return pl->comm->tp->peerSync(pl->comm->tpCtx, s);
  cpclPeerSyncInit(s, 1, 0, pl->localSync, (unsigned long long)pl->comm->timeoutMs * 1000000ull);
  cpclPeerSyncSetPeer(s, 0, pl->localSync);
  return cpclSuccess;
}

static void planLink(struct cpclAttnPlan* pl, int link);

/* Plan creation, with the plan's own workspace (ws NULL) or carved from the caller's. */
static cpclResult_t planCreate(struct cpclAttnPlan** planOut, struct cpclComm* comm, const cpclAttnDesc_t* desc,
                               int maxTokens, void* ws, size_t wsBytes, const char* fn) {
  CPCLCHECK(cpclCommEnter(comm, fn));
  cpclResult_t res = cpclSuccess;
  struct cpclAttnPlan* pl = NULL;
  char msg[512] = "", why[256] = "";
  cpclPlanSchedules_t sel = {.algo = CPCL_NUM_ALGOS, .prefill = CPCL_PREFILL_ALLGATHER};
  const cpclExecOps_t* exec = cpclExecOf(comm->memType);
  cpclResult_t own = cpclAttnDescCheck(comm, desc, maxTokens, msg, sizeof(msg));
  if (own == cpclSuccess) own = cpclOpsSelect(comm, desc, &sel, why, sizeof(why), msg, sizeof(msg));
  const cpclAlgo_t algo = sel.algo;
  if (own == cpclSuccess && exec == NULL) {
    snprintf(msg, sizeof(msg), "CUDA memory needs cpcl built with CUDA (cpclGetBuildConfig: %s)", cpclGetBuildConfig());
    own = cpclUnsupported;
  }
  if (own == cpclSuccess && ws != NULL) { /* before the agreement, so that every rank fails together */
    struct cpclAttnPlan sizing;
    memset(&sizing, 0, sizeof(sizing));
    planInit(&sizing, comm, desc, maxTokens, &sel, exec);
    sizing.wsMeasure = 1;
    (void)planLayout(&sizing);
    if ((uintptr_t)ws % CPCL_WS_ALIGN) {
      snprintf(msg, sizeof(msg), "ws is %p: it must be aligned to %d bytes", ws, CPCL_WS_ALIGN);
      own = cpclInvalidArgument;
    } else if (wsBytes < sizing.wsBytes) {
      snprintf(msg, sizeof(msg), "bytes is %zu: this plan needs %zu bytes of workspace (cpclAttnPlanWorkspaceBytes)",
               wsBytes, sizing.wsBytes);
      own = cpclInvalidArgument;
    } else if (planRegistersPeers(comm)) {
      snprintf(msg, sizeof(msg),
               "a caller's workspace cannot be used over transport %s with %d ranks: peers map the plan's buffers "
               "with CUDA IPC, which shares whole allocations only; use cpclAttnPlanCreate",
               comm->transportName, comm->nranks);
      own = cpclUnsupported;
    }
  }

  planDigest_t mine = {.valid = own == cpclSuccess,
                       .maxTokens = maxTokens,
                       .algo = algo,
                       .userWs = ws != NULL,
                       .prefillSched = (int32_t)sel.prefill};
  if (own == cpclSuccess) {
    mine.numQoHeads = desc->numQoHeads;
    mine.numKvHeads = desc->numKvHeads;
    mine.headDimQk = desc->headDimQk;
    mine.headDimVo = desc->headDimVo;
    mine.pageSize = desc->pageSize;
    mine.qType = desc->qType;
    mine.kvType = desc->kvType;
    mine.latentKv = desc->latentKv;
    mine.lseBase2 = desc->lseBase2;
    mine.smScale = desc->smScale;
    mine.topk = desc->topk;
    mine.prefillAlgo = desc->prefillAlgo == NULL ? 0 : strcasecmp(desc->prefillAlgo, "allgather") == 0 ? 1 : 2;
  }
  planDigest_t* all = NULL;
  CPCLCHECKGOTO(cpclCalloc(comm, &all, (size_t)comm->nranks, sizeof(*all), "plan digests"), res, out);
  _Static_assert(sizeof(planDigest_t) <= CPCL_CTRL_PAYLOAD_BYTES, "a plan digest fits a control record");
  CPCLCHECKGOTO(cpclCtrlExchange(comm, CPCL_CTRL_PLAN, 0, comm->plansCreated, &mine, sizeof(mine)), res, out);
  if (own != cpclSuccess) {
    res = CPCL_ERR(comm, own, "%s: %s", fn, msg);
    goto out;
  }
  CPCLCHECKGOTO(cpclCtrlAgreeCall(comm, fn), res, out);
  for (int r = 0; r < comm->nranks; r++) memcpy(&all[r], cpclCtrlPayload(comm, r), sizeof(all[r]));
  if ((res = digestCompare(all, comm->nranks, msg, sizeof(msg))) != cpclSuccess) {
    res = CPCL_ERR(comm, res, "%s: %s", fn, msg);
    goto out;
  }

  CPCLCHECKGOTO(cpclCalloc(comm, &pl, 1, sizeof(*pl), "attention plan"), res, out);
  planInit(pl, comm, desc, maxTokens, &sel, exec);
  pl->wsUser = ws;
  CPCLCHECKGOTO(exec->errorFlagAlloc(comm, &pl->errorHost, &pl->errorDev), res, out);
  CPCLCHECKGOTO(planLayout(pl), res, out);
  if (ws) CPCLCHECKGOTO(exec->zeroSync(comm, ws, pl->wsBytes, "the caller's workspace"), res, out);
  CPCLCHECKGOTO(cpclCalloc(comm, &pl->reqs, 4 * (size_t)pl->W, sizeof(cpclRequest_t), "plan requests"), res, out);
  if (pl->prefillSlots) {
    const size_t ints = (size_t)pl->P * (2 * (size_t)maxTokens + 1) + (size_t)maxTokens;
    CPCLCHECKGOTO(exec->stageAlloc(comm, ints * sizeof(int32_t), &pl->pfStager), res, out);
  }
  CPCLCHECKGOTO(planMapPeers(pl), res, out);
  comm->numPlans++;
  pl->serial = comm->plansCreated++;
  planLink(pl, 1);
  char body[320] = "";
  if (pl->mlaSm90Splits > 0 && algo == CPCL_ALGO_FUSED)
    snprintf(body, sizeof(body),
             "; MLA on the CUDA-core body inside the fused kernel (the Hopper MLA body, up to %d splits, runs in "
             "cpclAttnPartial and the other schedules)",
             pl->mlaSm90Splits);
  else if (pl->mlaSm90Splits > 0)
    snprintf(body, sizeof(body), "; MLA on the Hopper body (sm_90, CPCL_MLA_SM90=0 turns it off), up to %d splits",
             pl->mlaSm90Splits);
  else if (desc->topk > 0)
    snprintf(body, sizeof(body),
             "; sparse attention over each row's owned top-%d positions (the CUDA-core body on GPUs)", desc->topk);
  else if (pl->gqaSm90Splits > 0 && algo == CPCL_ALGO_FUSED &&
           (pl->gqaSm90Workspace == 0 || cpclParamInt(CPCL_PARAM_GQA_SM90_FUSED) == 0))
    snprintf(body, sizeof(body),
             "; GQA on the tensor-core body inside the fused kernel (the Hopper GQA body, up to %d splits %s, runs "
             "in cpclAttnPartial and the other schedules)",
             pl->gqaSm90Splits, gqaMergeWhere(pl->gqaSm90Workspace));
  else if (pl->gqaSm90Splits > 0 && algo == CPCL_ALGO_FUSED)
    snprintf(body, sizeof(body),
             "; GQA on the Hopper body inside the fused kernel (sm_90, CPCL_GQA_SM90=0 turns it off), up to %d "
             "splits of >= %d keys %s",
             pl->gqaSm90Splits, pl->gqaSm90ChunkMin, gqaMergeWhere(2));
  else if (pl->gqaSm90Splits > 0)
    snprintf(body, sizeof(body),
             "; GQA on the Hopper body (sm_90, CPCL_GQA_SM90=0 turns it off), up to %d splits of >= %d keys %s",
             pl->gqaSm90Splits, pl->gqaSm90ChunkMin, gqaMergeWhere(pl->gqaSm90Workspace));
  if (desc->topk > 0 && pl->mlaSm90Splits > 0) { /* the Hopper body's sparse form */
    const size_t used = strlen(body);
    snprintf(body + used, sizeof(body) - used, "; sparse attention over each row's owned top-%d positions", desc->topk);
  }
  INFO(CPCL_PLAN,
       "plan #%d rank %d: H %d Hkv %d D %d/%d page %d G %d maxTokens %d on %s memory; schedule %s (%s); prefill %s; "
       "attention splits up to %d per row%s; workspace %zu bytes (%.1f MiB, %s)",
       pl->serial, comm->rank, pl->H, desc->numKvHeads, desc->headDimQk, desc->headDimVo, desc->pageSize, pl->G,
       maxTokens, exec->name, cpclAlgoNames[algo], why,
       pl->prefillSlots ? cpclPrefillAlgoNames[pl->prefillAlgo] : "none", pl->maxSplits, body, pl->wsBytes,
       pl->wsBytes / 1048576.0, ws ? "the caller's" : "allocated by the plan");
  *planOut = pl;
  pl = NULL;
out:
  free(all);
  if (pl) planFree(pl);
  cpclCommLeave(comm);
  return res;
}

CPCL_API cpclResult_t cpclAttnPlanCreate(cpclAttnPlan_t* planOut, cpclComm_t comm, const cpclAttnDesc_t* desc,
                                         int maxTokens) {
  if (planOut == NULL) return CPCL_ERR(comm, cpclInvalidArgument, "cpclAttnPlanCreate: plan is NULL");
  if (comm == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclAttnPlanCreate: comm is NULL");
  if (desc == NULL) return CPCL_ERR(comm, cpclInvalidArgument, "cpclAttnPlanCreate: desc is NULL");
  return planCreate(planOut, comm, desc, maxTokens, NULL, 0, "cpclAttnPlanCreate");
}

CPCL_API cpclResult_t cpclAttnPlanCreateWithWorkspace(cpclAttnPlan_t* planOut, cpclComm_t comm,
                                                      const cpclAttnDesc_t* desc, int maxTokens, void* ws,
                                                      size_t bytes) {
  const char* fn = "cpclAttnPlanCreateWithWorkspace";
  if (planOut == NULL) return CPCL_ERR(comm, cpclInvalidArgument, "%s: plan is NULL", fn);
  if (comm == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "%s: comm is NULL", fn);
  if (desc == NULL) return CPCL_ERR(comm, cpclInvalidArgument, "%s: desc is NULL", fn);
  if (ws == NULL) return CPCL_ERR(comm, cpclInvalidArgument, "%s: ws is NULL (use cpclAttnPlanCreate)", fn);
  return planCreate(planOut, comm, desc, maxTokens, ws, bytes, fn);
}

CPCL_API cpclResult_t cpclAttnPlanWorkspaceBytes(cpclAttnPlan_t plan, size_t* bytes) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "cpclAttnPlanWorkspaceBytes: plan is NULL");
  if (bytes == NULL) return CPCL_ERR(plan->comm, cpclInvalidArgument, "cpclAttnPlanWorkspaceBytes: bytes is NULL");
  *bytes = plan->wsBytes;
  return cpclSuccess;
}

CPCL_API cpclResult_t cpclAttnPlanDestroy(cpclAttnPlan_t plan) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "plan is NULL");
  struct cpclComm* comm = plan->comm;
  planLink(plan, 0);
  planFree(plan);
  cpclCommPlanGone(comm); /* may free an aborted communicator: last */
  return cpclSuccess;
}

/* A device-side wait of this plan on rank `waited` expired (CPCL_KERR_TIMEOUT). The kernels
 * cannot tell a dead peer from a slow one; the host can, for peers on this host: a process that
 * exited is cpclRemoteError naming it (the waited-on rank first, then any other), as the host
 * transports' waits report it; otherwise cpclTimeout. Either breaks the communicator. */
static cpclResult_t planPeerFailure(struct cpclAttnPlan* pl, int waited, int expected, int saw) {
  struct cpclComm* c = pl->comm;
  int dead = waited >= 0 && waited < c->nranks && waited != c->rank && !cpclPeerAlive(c, waited) ? waited : -1;
  for (int p = 0; p < c->nranks && dead < 0; p++)
    if (p != c->rank && !cpclPeerAlive(c, p)) dead = p;
  if (dead >= 0) {
    cpclCommFail(c, cpclRemoteError);
    return CPCL_ERR(c, cpclRemoteError,
                    "an earlier step of this plan waited on rank %d for more than %d ms, and rank %d (pid %d) has "
                    "exited: the results of that step are not valid. The communicator is broken: abort it",
                    waited, c->timeoutMs, dead, (int)c->peerPid[dead]);
  }
  cpclCommFail(c, cpclTimeout);
  return CPCL_ERR(c, cpclTimeout,
                  "an earlier step of this plan waited on rank %d for more than %d ms (timeoutMs / "
                  "CPCL_TIMEOUT_MS; it expected step %d and saw %d): that rank stalled, and the "
                  "results of that step are not valid. The communicator is broken: abort it",
                  waited, c->timeoutMs, expected, saw);
}

cpclResult_t cpclCommDevicePeerError(struct cpclComm* comm) {
  cpclResult_t r = cpclSuccess;
  while (atomic_flag_test_and_set_explicit(&comm->plansLock, memory_order_acquire)) {
  }
  for (struct cpclAttnPlan* pl = comm->plans; pl && r == cpclSuccess; pl = pl->nextPlan) {
    volatile int* f = pl->errorHost;
    if (f && f[0] == CPCL_KERR_TIMEOUT) r = planPeerFailure(pl, f[1], f[2], f[3]); /* kept for the plan's next call */
  }
  atomic_flag_clear_explicit(&comm->plansLock, memory_order_release);
  return r;
}

/* The plans of a communicator, for cpclCommGetAsyncError (a watchdog thread may ask while
 * another creates or destroys plans). */
static void planLink(struct cpclAttnPlan* pl, int link) {
  struct cpclComm* c = pl->comm;
  while (atomic_flag_test_and_set_explicit(&c->plansLock, memory_order_acquire)) {
  }
  if (link) {
    pl->nextPlan = c->plans;
    c->plans = pl;
  } else {
    struct cpclAttnPlan** at = &c->plans;
    while (*at && *at != pl) at = &(*at)->nextPlan;
    if (*at) *at = pl->nextPlan;
  }
  atomic_flag_clear_explicit(&c->plansLock, memory_order_release);
}

cpclResult_t cpclPlanDeviceError(struct cpclAttnPlan* pl, int clear) {
  volatile int* f = pl->errorHost;
  if (f == NULL || f[0] == CPCL_KERR_NONE) return cpclSuccess;
  const int code = f[0], seq = f[1], value = f[2], limit = f[3];
  char what[256];
  switch (code) {
    case CPCL_KERR_QUERY_START:
      snprintf(what, sizeof(what), "batch->queryStart is not monotone at sequence %d (%d -> %d)", seq, value, limit);
      break;
    case CPCL_KERR_TIMEOUT:
      if (clear)
        for (int i = CPCL_KERR_WORDS - 1; i >= 0; i--) f[i] = 0;
      return planPeerFailure(pl, seq, value, limit);
    case CPCL_KERR_PAGE:
      snprintf(what, sizeof(what), "batch->blockTable[%d][%d] is %d, a page a row reads or a store writes", seq, limit,
               value);
      break;
    case CPCL_KERR_SEQ_LEN:
      snprintf(what, sizeof(what), "batch->seqLens[%d] is %d, fewer than its %d query rows", seq, value, limit);
      break;
    default:
      snprintf(what, sizeof(what),
               "sequence %d holds %d local tokens, more than its block-table row (maxPagesPerSeq x pageSize = %d)", seq,
               value, limit);
  }
  if (clear)
    for (int i = CPCL_KERR_WORDS - 1; i >= 0; i--) f[i] = 0;
  return CPCL_ERR(pl->comm, cpclInvalidArgument,
                  "an earlier step of this plan had bad batch data in device memory: %s (those rows were left empty)",
                  what);
}

CPCL_API cpclResult_t cpclAttnPlanGetAsyncError(cpclAttnPlan_t plan, cpclResult_t* asyncError) {
  if (plan == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "plan is NULL");
  if (asyncError == NULL) return CPCL_ERR(plan->comm, cpclInvalidArgument, "asyncError is NULL");
  cpclResult_t r = (cpclResult_t)atomic_load(&plan->comm->asyncError);
  if (r == cpclSuccess) r = cpclPlanDeviceError(plan, 0);
  *asyncError = r;
  return cpclSuccess;
}
