/*
 * prefill.h -- the schedules of cpclAttnPrefill (DESIGN.md 4.2), written over the transport
 * table and the executor like the decode schedules.
 *
 * Rank r = (pcp pr, dcp dr) of W = P x D ranks holds T_pr rows: its head-tail chunks of every
 * sequence's new tokens, its H heads (gathered heads dr*H .. dr*H+H-1), and the K/V of those rows.
 * Every rank computes the rows and positions of every PCP rank's block from contextLens and
 * newLens alone (cpclPrefillLayout), so no sizes are ever exchanged.
 *
 *   new tokens (the schedule): the K/V blocks of the P ranks (pcp b, dr), b = 0..P-1 (DCP peers
 *     hold identical K/V), attended causally by this rank's rows and heads:
 *       allgather: all-gather the blocks over the PCP axis, one pass over all P;
 *       ring: P steps; at step i the rank holds block (pr - i) mod P, posts its send to the next
 *         rank and the receive of the following block, attends, waits; the partial of block b
 *         lands in slice b and the P slices merge in block order 0..P-1 (independent of the
 *         ring's direction). Each rank stores every block it sees (owned positions over W).
 *   context (common, when a sequence with new tokens has contextLens > 0): the queries of all W
 *     ranks are gathered (all-to-all of q; block p = rank p's rows and heads); each rank attends
 *     to its cache shard (cacheLens = contextLens) for the rows of each PCP block b and all D*H
 *     gathered heads, writing rank p's part straight into send slot p; the slots go to their
 *     owners (all-to-all), and each owner merges the W context partials (rank order) and the
 *     new-token partial, fp32: the merge of DESIGN.md 1.
 * Without context the schedule writes the new-token result straight into out / lse.
 */
#ifndef CPCL_SCHED_PREFILL_H_
#define CPCL_SCHED_PREFILL_H_

#include "sched.h"

/* Where the new tokens' result goes: [T][H][Dv] (qType) and [T][H] fp32 (lse may be NULL). */
typedef struct {
  void* o;
  float* lse;
} cpclPrefillTarget_t;

typedef struct {
  const char* name;
  /* the new tokens' partial of this rank's rows and heads into tgt, and the store of every
   * block's owned rows */
  cpclResult_t (*newTokens)(struct cpclAttnPlan* pl, const cpclStep_t* st, const cpclPrefillTarget_t* tgt);
} cpclPrefillSchedule_t;

extern const cpclPrefillSchedule_t cpclPrefillAllgather, cpclPrefillRing;

/* ---- shared pieces (prefill_common.c) ---- */

/* Block b's row offsets [numSeqs + 1] and positions [rows] (cpclPrefillLayout fills them). */
static inline const int32_t* cpclPrefillRowStart(const struct cpclAttnPlan* pl, int b) {
  return pl->pfRowStart + (size_t)b * ((size_t)pl->maxTokens + 1);
}
static inline const int32_t* cpclPrefillPos(const struct cpclAttnPlan* pl, int b) {
  return pl->pfPos + (size_t)b * (size_t)pl->maxTokens;
}
/* The same, and the step's contextLens, as the kernels read them (exec->stageEnd's view). */
static inline const int32_t* cpclPrefillRowStartK(const struct cpclAttnPlan* pl, int b) {
  return pl->pfKLayout + (size_t)b * ((size_t)pl->maxTokens + 1);
}
static inline const int32_t* cpclPrefillPosK(const struct cpclAttnPlan* pl, int b) {
  return pl->pfKLayout + (size_t)pl->P * ((size_t)pl->maxTokens + 1) + (size_t)b * (size_t)pl->maxTokens;
}
static inline const int32_t* cpclPrefillCtxK(const struct cpclAttnPlan* pl) {
  return pl->pfKLayout + (size_t)pl->P * (2 * (size_t)pl->maxTokens + 1);
}
/* Bytes of one new K row and one V row (0 for MLA) of all KV heads. */
size_t cpclPrefillKRowBytes(const struct cpclAttnPlan* pl);
size_t cpclPrefillVRowBytes(const struct cpclAttnPlan* pl);
/* K/V slot i of pfKv: K rows at the start, V rows after maxTokens K rows. */
void cpclPrefillKvSlot(const struct cpclAttnPlan* pl, int i, void** k, void** v);

/* The rows and positions of every PCP rank's block (the batch was validated). */
void cpclPrefillLayout(struct cpclAttnPlan* pl, const cpclPrefillBatch_t* b);
/* The new K/V rows of PCP block b at k / v. */
cpclPrefillKvBlock_t cpclPrefillBlock(const struct cpclAttnPlan* pl, int b, const void* k, const void* v);
/* Attention parameters of this rank's rows and own heads against no keys yet (the caller adds
 * the blocks), writing to tgt. */
void cpclPrefillOwnParams(const struct cpclAttnPlan* pl, const cpclStep_t* st, const cpclPrefillTarget_t* tgt,
                          cpclPrefillParams_t* p);
/* Makes the attention p also store its blocks' owned rows into the step's cache (kStore /
 * vStore): the executor's prefill does both, the Hopper body in one pass. */
void cpclPrefillStoreTo(const struct cpclAttnPlan* pl, const cpclStep_t* st, cpclPrefillParams_t* p);
/* Stream-ordered exchange of one step over a device transport: x's fields as in cpclXfer_t. */
cpclResult_t cpclPrefillDeviceXchg(struct cpclAttnPlan* pl, const cpclStep_t* st, const void* const* sends,
                                   const size_t* sb, void* const* recvs, const size_t* rb, void* remote);
/* Posts a tagged host send (send = 1) or receive of bytes with peer; stage tells the messages of
 * one step apart. A failure breaks the communicator. */
cpclResult_t cpclPrefillPost(struct cpclAttnPlan* pl, const cpclStep_t* st, int send, int peer, int stage, void* buf,
                             size_t bytes, cpclRequest_t* req);
/* Cancels the active requests of reqs[0 .. n). */
void cpclPrefillCancel(struct cpclAttnPlan* pl, cpclRequest_t* reqs, int n);
/* One merge of the parts (o[i], lse[i]) of T rows in the given order, in slice layout, into
 * out / lse. n <= CPCL_MAX_PARTS. */
cpclResult_t cpclPrefillMerge(struct cpclAttnPlan* pl, const cpclStep_t* st, int n, const void* const* o,
                              const float* const* lse, void* out, float* outLse);

/* The whole step: layout, the schedule's new tokens, the context part and the merge. */
cpclResult_t cpclPrefillRun(struct cpclAttnPlan* pl, const cpclStep_t* st, const cpclPrefillSchedule_t* sched);

#endif /* CPCL_SCHED_PREFILL_H_ */
