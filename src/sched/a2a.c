/* a2a.c -- all-gather q, attend, one all-to-all of packed (o, lse) slices to the head owners,
 * exact fp32 merge at the owner in rank order. Two collectives instead of the engines' three,
 * and the merge never rounds a corrected partial to the output dtype. */
#include "core.h"
#include "sched.h"

static cpclResult_t a2aDecode(struct cpclAttnPlan* pl, const cpclStep_t* st, void* out, float* lse) {
  CPCLCHECK(cpclStepGatherQ(pl, st));
  cpclAttnParams_t p;
  cpclStepAttnParams(pl, st, 0, pl->D * pl->H, &p);
  if (pl->W == 1) { /* one partial is the answer: write it in place, no exchange, no merge */
    cpclStepTargetPartial(pl, st->numTokens, out, lse, &p);
    return pl->exec->attend(&p, st->stream);
  }
  cpclStepTargetSlices(pl, st->numTokens, &p);
  CPCLCHECK(pl->exec->attend(&p, st->stream));
  CPCLCHECK(cpclStepExchangeSlices(pl, st, cpclSliceBytes(pl, st->numTokens)));
  return cpclStepMergeSlices(pl, st, CPCL_MERGE_LSE, out, lse);
}

static cpclResult_t a2aCombine(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* partialOut,
                               const float* partialLse, void* out, float* lse) {
  CPCLCHECK(cpclStepPackSlices(pl, st, partialOut, partialLse, 0));
  CPCLCHECK(cpclStepExchangeSlices(pl, st, cpclSliceBytes(pl, st->numTokens)));
  return cpclStepMergeSlices(pl, st, CPCL_MERGE_LSE, out, lse);
}

const cpclSchedule_t cpclScheduleA2a = {
    .name = "a2a",
    .decode = a2aDecode,
    .partial = cpclStepPartialGathered,
    .combine = a2aCombine,
};
