/* plan.h -- an attention plan: one shape on one communicator, with every workspace sized and
 * allocated at creation so the per-step calls allocate nothing. */
#ifndef CPCL_PLAN_H_
#define CPCL_PLAN_H_

#include "comm.h"
#include "core.h"
#include "exec.h"
#include "peer_sync.h"

/* Alignment of every workspace buffer carved from a caller's buffer, and of that buffer. */
#define CPCL_WS_ALIGN 256

/* Plans for at least this many rows run GQA groups of more than 16 heads through the wide
 * tensor-core body (measured faster from batch 8 on, slower at batch 1). */
#define CPCL_WIDE_MIN_TOKENS 8

typedef enum {
  CPCL_ALGO_AGRS = 0,
  CPCL_ALGO_A2A = 1,
  CPCL_ALGO_PIPELINED = 2,
  CPCL_ALGO_FUSED = 3,
  CPCL_NUM_ALGOS
} cpclAlgo_t;
extern const char* const cpclAlgoNames[CPCL_NUM_ALGOS];

/* The prefill schedules (sched/prefill.h). */
typedef enum { CPCL_PREFILL_ALLGATHER = 0, CPCL_PREFILL_RING = 1, CPCL_NUM_PREFILL_ALGOS } cpclPrefillAlgo_t;
extern const char* const cpclPrefillAlgoNames[CPCL_NUM_PREFILL_ALGOS];

struct cpclAttnPlan {
  struct cpclComm* comm;
  cpclAttnDesc_t desc;
  int maxTokens;
  int serial;        /* creation number on its comm: the same plan on every rank */
  int W, D, P, H, G; /* ranks, DCP size, PCP size, heads per rank, GQA group over gathered heads */
  size_t qElem;      /* bytes per element of q / out / partials */
  cpclAlgo_t algo;   /* the schedule every call of this plan runs */
  const cpclExecOps_t* exec;

  /* workspace, in the comm's memType memory */
  void* qGather;           /* [D][T][H][Dqk]: block j = DCP rank j's queries, as received */
  size_t sliceCap;         /* bytes per slice slot at maxTokens */
  void* sendBuf;           /* [D] slots: slice j = partial of DCP rank j's heads, for its owners */
  void* recvBuf;           /* [W] slots: rank p's slice for this rank's heads (own slot unused) */
  void* partialO;          /* agrs: [T][D*H][Dv] */
  float* partialLse;       /* agrs: [T][D*H] */
  float* lseAll;           /* agrs: [W][T][D*H] */
  float* lseGlobal;        /* agrs: [T][D*H] */
  void* scratch;           /* attention kernel workspace (host scratch, or CUDA split partials) */
  int maxSplits;           /* CUDA: KV splits per row at most (fixed per plan: batch-invariant) */
  int mlaSm90Splits;       /* CUDA: the Hopper MLA body's (0: the plan does not run it) */
  int gqaSm90Splits;       /* CUDA: the Hopper GQA body's most splits a row (0: the plan does not run it) */
  int gqaSm90ChunkMin;     /*       its chunk */
  int gqaSm90Workspace;    /*       and its form: 1 the workspace merge, 0 clusters (attn_params.h) */
  unsigned* splitCounters; /* CUDA: zeroed once; the attention kernel leaves them zero */
  int* errorHost;          /* CUDA: the kernels' record of bad batch data (params_common.h), host view */
  int* errorDev;           /*       and device view */
  size_t scratchBytes;
  cpclRequest_t* reqs; /* [4 W]: the pipelined schedule's transfers */
  int topkInKernel;    /* sparse plans: the attention filters the lists itself (exec topkInAttention) */
  int32_t* topkLocal;  /* sparse plans: [maxTokens][topk] each row's owned keys, local indices */
  int32_t* topkCount;  /*               [maxTokens] how many (kernels/topk_params.h) */

  /* Prefill (sched/prefill.h). The schedule, the rows and positions of every PCP rank's block
   * of the step (host structures, rewritten each step, in the executor's staging area: pfStager),
   * the kernels' view of them (the same memory on the host, a device copy on CUDA), and the
   * workspace: qGather and sendBuf hold W blocks / slots (decode uses the first D). */
  cpclPrefillAlgo_t prefillAlgo;
  int prefillSlots;           /* 1: this plan holds the prefill workspace */
  void* pfStager;             /* exec->stageAlloc: the layout's staging, [P][T + 1] | [P][T] | [T] */
  int32_t* pfRowStart;        /* [P][maxTokens + 1]: block b's rows of sequence s start at [b][s] */
  int32_t* pfPos;             /* [P][maxTokens]: global position of each row of block b */
  int32_t* pfCtx;             /* [maxTokens]: the step's contextLens (the kernels read them) */
  const int32_t* pfKLayout;   /* the kernels' view of pfRowStart | pfPos | pfCtx (this step's) */
  void* regPfKv;              /* ipc: pfKv registered (peers store K/V blocks into it) */
  int pfRows[CPCL_MAX_PARTS]; /* rows of block b (PCP rank b's numTokens) */
  void* pfNew;                /* one slice of maxTokens rows: the new tokens' partial when merged */
  size_t pfKvCap;             /* bytes per new K/V block slot: K rows, then V rows */
  void* pfKv;                 /* allgather: [P - 1] slots ([P] on device transports), ring: [2] slots */
  void* pfRing;               /* ring: [P] slices, the partial of each source block */

  /* Workspace accounting: wsBytes sums every buffer above in memType memory, each rounded up to
   * CPCL_WS_ALIGN (cpclAttnPlanWorkspaceBytes). With a caller's buffer (wsUser) each buffer is
   * the next wsBytes of it; otherwise each is its own allocation, so that peer-mapped transports
   * can register it whole. */
  void* wsUser;
  size_t wsBytes;
  int wsMeasure; /* sizing only: take nothing */

  /* peer-mapped transports (ipc): qGather, recvBuf and lseAll registered on every rank */
  void *regQ, *regRecv, *regLse;
  void* peerQ[CPCL_MAX_PARTS];    /* rank p's qGather as mapped here (own: qGather) */
  void* peerRecv[CPCL_MAX_PARTS]; /* rank p's recvBuf as mapped here */
  int* localSync;                 /* one rank: the flag block of the fused kernel, on the plan */
  struct cpclAttnPlan* nextPlan;  /* the comm's list of live plans (cpclCommGetAsyncError) */
};

/* The flags the fused kernel synchronises through: the transport's, or the plan's own with one
 * rank. */
cpclResult_t cpclPlanPeerSync(struct cpclAttnPlan* pl, cpclPeerSync_t* s);

/* Validates a descriptor for comm (plan creation); on failure writes a message naming the field,
 * its value and the fix. */
cpclResult_t cpclAttnDescCheck(const struct cpclComm* c, const cpclAttnDesc_t* d, int maxTokens, char* msg, size_t n);
/* Validates a batch against a plan (numTokens up to maxTokens); host memory: the contents too,
 * and the ids of the block-table pages the step walks (pages: cpclPages_t, op.h). On failure
 * records the message on the comm, naming fn, the argument and its value. */
cpclResult_t cpclBatchCheck(struct cpclAttnPlan* pl, const cpclBatch_t* b, int maxTokens, int pages, const char* fn);
/* Whether this communicator can run the fused kernel, and if not, why (msg). */
int cpclPlanFusedPossible(const struct cpclComm* c, char* msg, size_t n);

/* cpclSuccess, or cpclInvalidArgument with the message when a kernel of this plan met bad batch
 * data in device memory since the last call (clear: forget it once reported). */
cpclResult_t cpclPlanDeviceError(struct cpclAttnPlan* pl, int clear);

/* Slice layout for T tokens: o [T][H][Dv] (qType) at 0, lse [T][H] fp32 at cpclSliceLseOffset. */
static inline size_t cpclSliceLseOffset(const struct cpclAttnPlan* pl, int T) {
  return CPCL_ALIGN_UP((size_t)T * pl->H * pl->desc.headDimVo * pl->qElem, 16);
}
static inline size_t cpclSliceBytes(const struct cpclAttnPlan* pl, int T) {
  return cpclSliceLseOffset(pl, T) + CPCL_ALIGN_UP((size_t)T * pl->H * sizeof(float), 16);
}
static inline char* cpclRecvSlot(const struct cpclAttnPlan* pl, int p) {
  return (char*)pl->recvBuf + (size_t)p * pl->sliceCap;
}
/* Slice j (DCP rank j's heads) of this rank's partial, for the ranks (*, j). The merge reads this
 * rank's own part straight from its send slot: no copy into the receive slot. */
static inline char* cpclSendSlot(const struct cpclAttnPlan* pl, int j) {
  return (char*)pl->sendBuf + (size_t)j * pl->sliceCap;
}

#endif /* CPCL_PLAN_H_ */
