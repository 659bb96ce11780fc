/*
 * peer_sync.h -- the peer-synchronisation protocol of ranks on one node, in one place: the flag
 * block each rank owns, the counters the kernels keep in it, and the split counters of the
 * attention kernel. Used by the transport that maps the blocks (transport/ipc), the plan (one
 * rank keeps its block on the plan) and the kernels (kernels/cuda/peer_sync.cuh, p2p.cu,
 * fused_kernel.cuh). Plain C.
 *
 * Ranks see each other's buffers through peer pointers (CUDA IPC or NCCL windows) and
 * synchronise through flags in those buffers, with no host step. The flag block of a rank, in
 * ints, for W ranks (cpclSyncFlagIndex, cpclSyncCountersIndex):
 *
 *   [0]                      epoch     this rank's count of exchanges begun (advanced by kernels)
 *   [1 + p]                  ready[p]  written by rank p: p has consumed every exchange before the
 *                                      value, so this rank's buffers may be written again
 *   [1 + (1 + k) W + p]      data[k][p] written by rank p: p's data of exchange `value` is in
 *                                      place (k: cpclSyncKind_t)
 *   [roundup(1 + 4 W, 4) ..] counters  CPCL_SYNC_COUNTERS unsigned, local only (cpclSyncCounter_t)
 *
 * Values only grow, so buffers are reused without a reset, and a CUDA graph that replays the
 * launches advances the epoch on the device. Every wait is bounded by timeoutNs: one that
 * expires records CPCL_KERR_TIMEOUT in the plan's error flag and gives up (later waits give up at
 * once), so a dead or stalled peer costs one timeout, never a hang.
 */
#ifndef CPCL_PEER_SYNC_H_
#define CPCL_PEER_SYNC_H_

#include <string.h>

#include "params_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* the kinds of data flag: plain exchanges, the fused kernel's queries, its partials */
typedef enum { CPCL_SYNC_XCHG = 0, CPCL_SYNC_Q = 1, CPCL_SYNC_PART = 2, CPCL_SYNC_KINDS = 3 } cpclSyncKind_t;

/* the flags of the block; CPCL_SLOT_DATA + k is data flag kind k */
typedef enum { CPCL_SLOT_EPOCH = 0, CPCL_SLOT_READY = 1, CPCL_SLOT_DATA = 2 } cpclSyncSlot_t;

/* index (in ints) of flag `slot` written by rank `peer` in a block of nranks ranks; the epoch has
 * no peer */
CPCL_HD size_t cpclSyncFlagIndex(int nranks, int slot, int peer) {
  return slot == CPCL_SLOT_EPOCH ? 0 : 1 + (size_t)(slot - CPCL_SLOT_READY) * nranks + peer;
}
/* the counters start 16-byte aligned after the flags */
CPCL_HD size_t cpclSyncCountersIndex(int nranks) { return (1 + (size_t)(1 + CPCL_SYNC_KINDS) * nranks + 3) / 4 * 4; }

/* The kernels' counters (local to a rank, zero between launches: the kernel that uses one
 * re-arms it). Scalars, then arrays of CPCL_MAX_PARTS, one per block or put. */
typedef enum {
  CPCL_CTR_PUT_TICKETS = 0, /* fused: put tickets taken */
  CPCL_CTR_PUT_DONE,        /* fused: put chunks stored */
  CPCL_CTR_XCHG_DONE,       /* exchange: CTAs finished */
  CPCL_CTR_MERGE_DONE,      /* fused: merge CTAs finished */
  CPCL_CTR_SCALARS,
  CPCL_CTR_BLOCK_HEADS = CPCL_CTR_SCALARS, /* [j] fused: heads of gathered block j finished */
  CPCL_CTR_PUT_CTAS,                       /* [i] exchange: CTAs of put i finished */
  CPCL_CTR_BLOCK_EPOCH,                    /* [j] fused: the epoch at which block j was last completed (not re-armed) */
  CPCL_CTR_SLOTS
} cpclSyncCounter_t;
#define CPCL_SYNC_COUNTERS (CPCL_CTR_SCALARS + (CPCL_CTR_SLOTS - CPCL_CTR_SCALARS) * CPCL_MAX_PARTS)

/* index of counter `slot` (element j of an array slot; 0 for a scalar) */
CPCL_HD int cpclSyncCounterIndex(int slot, int j) {
  return slot < CPCL_CTR_SCALARS ? slot : CPCL_CTR_SCALARS + (slot - CPCL_CTR_SCALARS) * CPCL_MAX_PARTS + j;
}

/* ints of one rank's flag block */
CPCL_HD size_t cpclSyncBlockInts(int nranks) { return cpclSyncCountersIndex(nranks) + CPCL_SYNC_COUNTERS; }

/* One rank's view of the protocol, as the kernels take it. */
typedef struct {
  int nranks, rank;
  int* epoch;
  int* readyIn;                                  /* [nranks] in this rank's block */
  int* dataIn[CPCL_SYNC_KINDS];                  /* [nranks] in this rank's block */
  int* readyOut[CPCL_MAX_PARTS];                 /* &ready[rank] in rank p's block, as mapped here; NULL for self */
  int* dataOut[CPCL_SYNC_KINDS][CPCL_MAX_PARTS]; /* &data[k][rank] in rank p's block (self: own) */
  unsigned* counters;                            /* CPCL_SYNC_COUNTERS in this rank's block */
  unsigned long long timeoutNs;
} cpclPeerSync_t;

/* The view of this rank's block `local` (cpclSyncBlockInts(nranks) ints); then the peers' blocks
 * with cpclPeerSyncSetPeer, this rank's own included. */
static inline void cpclPeerSyncInit(cpclPeerSync_t* s, int nranks, int rank, int* local, unsigned long long timeoutNs) {
  memset(s, 0, sizeof(*s));
  s->nranks = nranks;
  s->rank = rank;
  s->epoch = local + cpclSyncFlagIndex(nranks, CPCL_SLOT_EPOCH, 0);
  s->readyIn = local + cpclSyncFlagIndex(nranks, CPCL_SLOT_READY, 0);
  for (int k = 0; k < CPCL_SYNC_KINDS; k++) s->dataIn[k] = local + cpclSyncFlagIndex(nranks, CPCL_SLOT_DATA + k, 0);
  s->counters = (unsigned*)(local + cpclSyncCountersIndex(nranks));
  s->timeoutNs = timeoutNs;
}
/* rank p's block as this rank maps it (its own block for p == rank) */
static inline void cpclPeerSyncSetPeer(cpclPeerSync_t* s, int p, int* block) {
  s->readyOut[p] = p == s->rank ? NULL : block + cpclSyncFlagIndex(s->nranks, CPCL_SLOT_READY, s->rank);
  for (int k = 0; k < CPCL_SYNC_KINDS; k++)
    s->dataOut[k][p] = block + cpclSyncFlagIndex(s->nranks, CPCL_SLOT_DATA + k, s->rank);
}

/* Split counters of the CUDA attention (cpclAttnParams_t.splitCounters), a separate buffer of
 * the plan: one per (row t, KV head index kv of nKv, head chunk c of chunksPerKv), counting the
 * KV splits of that cell that finished; the last one merges and re-arms it. */
CPCL_HD int cpclSplitCounterIndex(int t, int kv, int nKv, int c, int chunksPerKv) {
  return (t * nKv + kv) * chunksPerKv + c;
}
/* enough for maxTokens rows of numHeads heads: grid x * y <= rows x (KV heads + 2) x head chunks
 * <= rows x 2 (numHeads + 16) */
CPCL_HD size_t cpclSplitCounterCount(int maxTokens, int numHeads) { return (size_t)maxTokens * 2 * (numHeads + 16); }

#ifdef __cplusplus
}
#endif

#endif /* CPCL_PEER_SYNC_H_ */
