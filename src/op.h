/*
 * op.h -- the per-step operations of a plan as one table. An entry says everything the common
 * path (op.c) needs to run its operation: the public name and the tag its messages carry, what
 * the ranks agree on before any data moves, which batch pages it walks, the checks of its own
 * arguments, how plan creation picks its schedule, and the call into that schedule.
 *
 * The common path of every operation (cpclOpRun):
 *   1. validate: the batch (cpclBatchCheck, when the operation takes one), then the entry's check;
 *   2. enter the communicator (an aborted or broken one refuses every operation);
 *   3. agree (host memory, W > 1, entries with agree != 0): one small all-gather of the step
 *      header, so that a rank with bad arguments or another operation stops every rank;
 *   4. run the entry's schedule.
 *
 * Adding an operation (as cpclAttnPrefill, op_prefill.c) is a new entry in its own op_<name>.c, listed in
 * op.c's table, a tag in cpclOpTag_t, and its schedules under sched/.
 */
#ifndef CPCL_OP_H_
#define CPCL_OP_H_

#include "sched/sched.h"

/* What the ranks compare before a step (cpclOp_t.agree). The operation, the plan and whether
 * each rank accepted its own arguments are always part of it. */
enum {
  CPCL_AGREE_STEP = 1 << 0, /* an agreed step: without it the operation is local (no exchange) */
  CPCL_AGREE_ROWS = 1 << 1, /* numTokens: every rank passes the same rows */
  CPCL_AGREE_SEQS = 1 << 2, /* numSeqs */
};

/* Digests of batch contents per step (cpclOp_t.digest): slots of the step agreement. */
#define CPCL_STEP_DIGESTS 4

/* The batch pages a step reads or writes (cpclBatchCheck checks their ids on host memory). */
typedef enum {
  CPCL_PAGES_NONE = 0,  /* no batch */
  CPCL_PAGES_READ = 1,  /* attention: every page of each sequence's local prefix */
  CPCL_PAGES_STORE = 2, /* store: the pages where this rank's new tokens land */
} cpclPages_t;

/* The schedules plan creation chose, one per family of operations. */
typedef struct {
  cpclAlgo_t algo;           /* decode, and its halves Partial and Combine */
  cpclPrefillAlgo_t prefill; /* cpclAttnPrefill */
} cpclPlanSchedules_t;

typedef struct cpclOp {
  cpclOpTag_t tag;  /* carried by its messages and in the step agreement */
  const char* name; /* the public entry point, in messages */
  unsigned agree;   /* CPCL_AGREE_* */
  cpclPages_t pages;
  int bounded; /* numTokens <= the plan's maxTokens (its workspace holds the rows) */
  /* this operation's own arguments (the batch is checked before); records the message */
  cpclResult_t (*check)(struct cpclAttnPlan* pl, const cpclStep_t* st);
  /* plan creation: picks the family's schedule (desc, environment, machine) into sel and says
   * why, for the plan's INFO line; NULL where the family's first entry picks it */
  cpclResult_t (*select)(const struct cpclComm* c, const cpclAttnDesc_t* d, cpclPlanSchedules_t* sel, char* why,
                         size_t whyLen, char* msg, size_t msgLen);
  /* Host memory, agreed steps: the batch contents every rank must pass alike, beyond the counts
   * (decode: queryStart and seqLens; not the block table, which is each rank's own). Fills
   * d[k] for each k with digestFields[k] set, from a batch that passed its checks; the step
   * agreement compares them, so ranks with different contents fail together with
   * cpclInvalidUsage naming the field. NULL: the counts alone. */
  void (*digest)(const struct cpclAttnPlan* pl, const cpclStep_t* st, uint64_t d[CPCL_STEP_DIGESTS]);
  const char* digestFields[CPCL_STEP_DIGESTS]; /* the fields' names in messages */
  /* the schedule's name (TRACE, NVTX) and the step itself */
  const char* (*scheduleName)(const struct cpclAttnPlan* pl);
  cpclResult_t (*run)(struct cpclAttnPlan* pl, const cpclStep_t* st);
} cpclOp_t;

/* the entries (op_decode.c, op_kvstore.c) */
extern const cpclOp_t cpclOpDecode, cpclOpPartial, cpclOpCombine, cpclOpKvStore, cpclOpPrefill;

/* The entry of a tag, or NULL. */
const cpclOp_t* cpclOpOf(int tag);
/* Plan creation: every entry's select in table order. On failure msg names the field. */
cpclResult_t cpclOpsSelect(const struct cpclComm* c, const cpclAttnDesc_t* d, cpclPlanSchedules_t* sel, char* why,
                           size_t whyLen, char* msg, size_t msgLen);
/* Runs one step of op on pl (st filled by the entry point; st->seq is set here). */
cpclResult_t cpclOpRun(struct cpclAttnPlan* pl, const cpclOp_t* op, cpclStep_t* st);

/* 64-bit digest of n int32 values (NULL v: the identity 0, 1, .., n - 1, as a NULL queryStart
 * means): one word changed always changes it. Four FNV-1a lanes, so it runs at about a word per
 * cycle; the step agreement pays it on every agreed host step. */
uint64_t cpclDigestInt32(const int32_t* v, int n);
/* The digest hook of the decode family: queryStart (its implicit form when NULL) and seqLens. */
void cpclOpDigestRows(const struct cpclAttnPlan* pl, const cpclStep_t* st, uint64_t d[CPCL_STEP_DIGESTS]);

/* Checks shared by the attending entries: q, kCache and vCache (when there are rows). */
cpclResult_t cpclOpCheckAttend(struct cpclAttnPlan* pl, const cpclStep_t* st);

#endif /* CPCL_OP_H_ */
