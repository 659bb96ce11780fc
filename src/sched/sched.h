/*
 * sched.h -- the schedules of the attention operations (DESIGN.md §5). Each is written once over
 * the transport ops table (moving bytes) and the executor (computing), so the CPU tests run the
 * orchestration the GPU runs.
 *
 * Data flow for the fused decode on rank r = (pcp, d) of W = P x D ranks, T rows, H heads/rank:
 *   1. gather q over the DCP group: qGather block j = rank (pcp, j)'s q [T][H][Dqk]
 *   2. attend: gathered heads g = j*H + h against the local shard -> one partial per head
 *   3. slice j of the partial (heads of DCP rank j) goes to every rank (*, j): its owners
 *   4. each rank merges the W slices it receives, in rank order, into its own H heads
 * agrs runs 3-4 as the engines do (all-gather LSE, correct, reduce-scatter of corrected o);
 * a2a as one all-to-all of packed (o, lse) slices; pipelined overlaps 2 with 1 and 3 per peer.
 */
#ifndef CPCL_SCHED_H_
#define CPCL_SCHED_H_

#include "plan.h"

/* One call's inputs, as the public entry points received and validated them. */
typedef struct {
  const cpclBatch_t* batch;          /* NULL for the operations without one (Combine, Prefill) */
  const cpclPrefillBatch_t* prefill; /* Prefill: its batch; numTokens is then the step's new
                                        tokens over all PCP ranks (this rank's: prefill->numTokens) */
  int numTokens;
  const void* q;
  const void* kCache;
  const void* vCache;
  void* out;          /* Decode, Combine: out; Partial: partialOut */
  float* lse;         /* Decode, Combine: lse (may be NULL); Partial: partialLse */
  const void* in;     /* Combine: partialOut */
  const float* inLse; /* Combine: partialLse */
  const void* kNew;   /* KvStore: the new tokens, stored into kStore / vStore */
  const void* vNew;
  void* kStore;
  void* vStore;
  cpclStream_t stream;
  uint32_t seq; /* this call's sequence number (tags its messages) */
  int op;       /* cpclOpTag_t */
} cpclStep_t;

typedef struct {
  const char* name;
  cpclResult_t (*decode)(struct cpclAttnPlan* pl, const cpclStep_t* st, void* out, float* lse);
  cpclResult_t (*partial)(struct cpclAttnPlan* pl, const cpclStep_t* st, void* partialOut, float* partialLse);
  cpclResult_t (*combine)(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* partialOut,
                          const float* partialLse, void* out, float* lse);
} cpclSchedule_t;

extern const cpclSchedule_t cpclScheduleAgrs, cpclScheduleA2a, cpclSchedulePipelined, cpclScheduleFused;

/* ---- building blocks shared by the schedules (common.c) ---- */

/* Attention parameters for gathered heads [headBegin, headBegin + numHeads) reading qGather,
 * with out/lse addressing left for the caller to fill. */
void cpclStepAttnParams(const struct cpclAttnPlan* pl, const cpclStep_t* st, int headBegin, int numHeads,
                        cpclAttnParams_t* p);
/* Sparse plans: the step's top-k filter into the plan's lists (topk_params.h), which every
 * attention of the step then reads; nothing for dense plans. Runs before the schedule. */
cpclResult_t cpclStepTopkFilter(struct cpclAttnPlan* pl, const cpclStep_t* st);
/* out/lse addressing of the public partial layout [T][D*H][Dv] and [T][D*H] */
void cpclStepTargetPartial(const struct cpclAttnPlan* pl, int T, void* partialOut, float* partialLse,
                           cpclAttnParams_t* p);
/* out/lse addressing of the per-owner slices (cpclSendSlot) */
void cpclStepTargetSlices(const struct cpclAttnPlan* pl, int T, cpclAttnParams_t* p);

/* An all-to-all of a step (cpclAlltoallv's arguments) over the comm's transport: host messages,
 * or stream-ordered device transfers. remote: where, in a buffer registered on every rank, each
 * peer receives this rank's block (the same place on every rank), for one-sided transports.
 * postOnly: send only; the transport's waitFrom() completes each receive. */
cpclResult_t cpclStepAlltoallv(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* const* sends,
                               const size_t* sb, void* const* recvs, const size_t* rb, void* remote, int postOnly);
/* 1: all-gather of q over the DCP group into qGather (postOnly as above) */
cpclResult_t cpclStepGatherQ(struct cpclAttnPlan* pl, const cpclStep_t* st);
cpclResult_t cpclStepGatherQPost(struct cpclAttnPlan* pl, const cpclStep_t* st, int postOnly);
/* 1 + 2 into the public partial layout (the partial op of every non-pipelined schedule) */
cpclResult_t cpclStepPartialGathered(struct cpclAttnPlan* pl, const cpclStep_t* st, void* partialOut,
                                     float* partialLse);
/* public partial layout -> slices (o, and lse unless oOnly) */
cpclResult_t cpclStepPackSlices(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* partialOut,
                                const float* partialLse, int oOnly);
/* 3: slices to their owners (bytes per slice: cpclSliceBytes, or the o part alone) */
cpclResult_t cpclStepExchangeSlices(struct cpclAttnPlan* pl, const cpclStep_t* st, size_t bytes);
/* the merge of n partials of T rows of this plan's heads into out (lse: the merged LSE, NULL for
 * none); the parts, m.o and m.lse, are the caller's to fill */
cpclMergeParams_t cpclPlanMergeParams(const struct cpclAttnPlan* pl, int mode, int n, int T, void* out, float* lse);
/* merge parameters of 4 for T rows; ownInRecv: this rank's own slice sits in its receive slot
 * (the fused kernel) rather than its send slot */
void cpclStepMergeParams(const struct cpclAttnPlan* pl, int T, int mode, void* out, float* lse, int ownInRecv,
                         cpclMergeParams_t* m);
/* 4: merge the W received slices into out / lse (mode CPCL_MERGE_LSE or CPCL_MERGE_SUM) */
cpclResult_t cpclStepMergeSlices(struct cpclAttnPlan* pl, const cpclStep_t* st, int mode, void* out, float* lse);

#endif /* CPCL_SCHED_H_ */
