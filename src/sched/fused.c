/*
 * fused.c -- the fused decode (DESIGN.md §5): one kernel per step on each rank of the DCP group,
 * no host step between. The kernel (kernels/cuda/fused_kernel.cuh) stores this rank's queries into
 * block dcpRank of every peer's qGather and raises the peer's flag, attends to the gathered
 * queries as their flags come up, stores each block's partial straight into its owner's receive
 * slot for this rank and raises the owner's flag, and merges the D partials of this rank's heads.
 * Peers' buffers are the plan's registered qGather and recvBuf (plan->peerQ, peerRecv); the
 * flags are the transport's (or the plan's own with one rank), with epochs, so nothing is reset
 * between steps and a captured graph replays correctly.
 *
 * Partial and Combine are the halves of a2a: the fused kernel is the whole step.
 */
#include <string.h>

#include "core.h"
#include "sched.h"

#define CPCL_FUSED_PUT_BYTES (32 << 10) /* queries per put CTA */

static cpclResult_t fusedDecode(struct cpclAttnPlan* pl, const cpclStep_t* st, void* out, float* lse) {
  struct cpclComm* c = pl->comm;
  const int T = st->numTokens, D = pl->D, me = c->dcpRank, H = pl->H;
  cpclFusedParams_t f;
  memset(&f, 0, sizeof(f));
  cpclStepAttnParams(pl, st, 0, D * H, &f.attn);
  /* CPCL_GQA_SM90_FUSED=0: the tensor-core body inside the kernel (the Hopper GQA body's fused
   * form, gqa_sm90_fused.cu, is new in session 16; this keeps the measured one a setting away) */
  if (cpclParamInt(CPCL_PARAM_GQA_SM90_FUSED) == 0) f.attn.gqaSm90Splits = 0;
  f.attn.oTokenStride = (int64_t)H * pl->desc.headDimVo;
  f.attn.lseTokenStride = H;
  const size_t lseOff = cpclSliceLseOffset(pl, T);
  f.qSrc = st->q;
  f.qBytes = (size_t)T * H * pl->desc.headDimQk * pl->qElem;
  for (int j = 0; j < D; j++) {
    char* slot = (char*)pl->peerRecv[j] + (size_t)me * pl->sliceCap; /* rank j's slot for this rank */
    f.attn.outBlock[j] = slot;
    f.attn.lseBlock[j] = (float*)(slot + lseOff);
    f.attn.qBlock[j] = j == me ? st->q : (char*)pl->qGather + (size_t)j * f.qBytes; /* own block: no copy */
    f.qDst[j] = (char*)pl->peerQ[j] + (size_t)me * f.qBytes;
  }
  CPCLCHECK(cpclPlanPeerSync(pl, &f.sync));
  f.dcpSize = D;
  f.dcpRank = me;
  cpclStepMergeParams(pl, T, CPCL_MERGE_LSE, out, lse, 1, &f.merge);
  f.numPutCtas = (int)CPCL_MIN(8, CPCL_MAX(1, (f.qBytes + CPCL_FUSED_PUT_BYTES - 1) / CPCL_FUSED_PUT_BYTES));
  /* at most 64 merge CTAs (half an H100's SMs): they wait, and must leave room for attention */
  f.numMergeCtas = (int)CPCL_MIN(64, CPCL_MAX(1, (T * H + 3) / 4));
  if (D == 1) { /* nothing to send and one partial to merge: the attention writes the answer */
    f.attn.outBlock[0] = out;
    f.attn.lseBlock[0] = lse;
    f.numPutCtas = f.numMergeCtas = 0;
  }
  CPCL_NVTX_PUSH("cpcl fused kernel");
  cpclResult_t res = pl->exec->fused(&f, st->stream);
  CPCL_NVTX_POP();
  return res;
}

static cpclResult_t fusedPartial(struct cpclAttnPlan* pl, const cpclStep_t* st, void* partialOut, float* partialLse) {
  return cpclScheduleA2a.partial(pl, st, partialOut, partialLse);
}

static cpclResult_t fusedCombine(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* partialOut,
                                 const float* partialLse, void* out, float* lse) {
  return cpclScheduleA2a.combine(pl, st, partialOut, partialLse, out, lse);
}

const cpclSchedule_t cpclScheduleFused = {
    .name = "fused",
    .decode = fusedDecode,
    .partial = fusedPartial,
    .combine = fusedCombine,
};
