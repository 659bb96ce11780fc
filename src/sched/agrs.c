/* agrs.c -- what engines run today (vLLM's cp_lse_ag_out_rs), kept as the in-library baseline:
 * all-gather q, attend, all-gather every rank's LSEs, correct each partial in place
 * (o *= exp(lse_r - lse), rounded to the output dtype), reduce-scatter the corrected partials
 * over the heads (summed in rank order). Three collectives and a correction pass. */
#include "coll.h"
#include "core.h"
#include "sched.h"

static cpclResult_t agrsCombine(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* partialOut,
                                const float* partialLse, void* out, float* lse) {
  const int T = st->numTokens, DH = pl->D * pl->H, Dv = pl->desc.headDimVo;
  const size_t oBytes = (size_t)T * DH * Dv * pl->qElem, lBytes = (size_t)T * DH * sizeof(float);
  /* the correction writes in place: work on the plan's copy unless it is the plan's already */
  if (partialOut != pl->partialO)
    CPCLCHECK(pl->exec->copy2d(pl->partialO, oBytes, partialOut, oBytes, oBytes, 1, st->stream));
  /* all-gather of the LSEs over all W ranks */
  {
    const void** sends = pl->comm->scratch.sendbufs;
    void** recvs = pl->comm->scratch.recvbufs;
    size_t* sz = pl->comm->scratch.sendBytes;
    for (int p = 0; p < pl->W; p++) {
      sends[p] = partialLse;
      recvs[p] = (char*)pl->lseAll + (size_t)p * lBytes;
      sz[p] = lBytes;
    }
    CPCLCHECK(cpclStepAlltoallv(pl, st, sends, sz, recvs, sz, recvs[pl->comm->rank], 0));
  }
  cpclMergeParams_t g = {.mode = CPCL_MERGE_LSE,
                         .numParts = pl->W,
                         .numTokens = T,
                         .numHeads = DH,
                         .headDim = 0,
                         .dtype = pl->desc.qType,
                         .lseBase2 = pl->desc.lseBase2,
                         .lseTokenStride = DH,
                         .outLse = pl->lseGlobal,
                         .outLseTokenStride = DH};
  for (int p = 0; p < pl->W; p++) g.lse[p] = pl->lseAll + (size_t)p * T * DH;
  CPCLCHECK(pl->exec->merge(&g, st->stream));
  cpclCorrectParams_t c = {.numTokens = T,
                           .numHeads = DH,
                           .headDim = Dv,
                           .dtype = pl->desc.qType,
                           .lseBase2 = pl->desc.lseBase2,
                           .o = pl->partialO,
                           .oTokenStride = (int64_t)DH * Dv,
                           .lse = partialLse,
                           .lseTokenStride = DH,
                           .lseGlobal = pl->lseGlobal,
                           .lseGlobalTokenStride = DH};
  CPCLCHECK(pl->exec->correct(&c, st->stream));
  /* reduce-scatter: slice j of the corrected o to the ranks (*, j), summed there */
  CPCLCHECK(cpclStepPackSlices(pl, st, pl->partialO, NULL, 1));
  CPCLCHECK(cpclStepExchangeSlices(pl, st, (size_t)T * pl->H * Dv * pl->qElem));
  CPCLCHECK(cpclStepMergeSlices(pl, st, CPCL_MERGE_SUM, out, NULL));
  if (lse) {
    const size_t row = (size_t)pl->H * sizeof(float);
    CPCLCHECK(pl->exec->copy2d(lse, row, pl->lseGlobal + (size_t)pl->comm->dcpRank * pl->H, DH * sizeof(float), row, T,
                               st->stream));
  }
  return cpclSuccess;
}

static cpclResult_t agrsDecode(struct cpclAttnPlan* pl, const cpclStep_t* st, void* out, float* lse) {
  CPCLCHECK(cpclStepPartialGathered(pl, st, pl->partialO, pl->partialLse));
  return agrsCombine(pl, st, pl->partialO, pl->partialLse, out, lse);
}

const cpclSchedule_t cpclScheduleAgrs = {
    .name = "agrs",
    .decode = agrsDecode,
    .partial = cpclStepPartialGathered,
    .combine = agrsCombine,
};
