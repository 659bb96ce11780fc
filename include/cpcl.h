/*
 * cpcl.h -- Context-Parallel Collective Library, public API.
 *
 * cpcl gives inference engines the collectives of context parallelism (decode context
 * parallelism, DCP; prefill context parallelism, PCP) as single fused operations: one call
 * gathers the queries over the DCP axis, attends to this rank's shard of the paged KV cache,
 * merges the partial results of every rank exactly (log-sum-exp correction, fp32, rank order)
 * and leaves each rank with the output of its own heads.
 *
 * Conventions (as in NCCL):
 *  - Every function returns a cpclResult_t; outputs are written only on success.
 *  - On failure, cpclGetLastError() returns a message naming the argument and its value.
 *  - "Collective" functions must be called by every rank of the communicator, in the same order,
 *    with arguments that agree where documented.
 *  - Host memory (cpclMemHost): calls complete before they return.
 *    CUDA memory (cpclMemCuda): calls are ordered on the given stream, like NCCL: they enqueue
 *    kernels and return; the host never waits for the GPU or for a peer, and a call can be
 *    captured in a CUDA graph and replayed with new contents in the same buffers (batch arrays,
 *    q, KV). The operations of one communicator must be issued in the same order on every rank
 *    and be ordered among themselves (one stream, or streams joined by events), as with NCCL.
 *  - Nothing waits forever: every wait on a peer is bounded by the config's timeoutMs
 *    (cpclTimeout); a peer process on this host that exits is noticed in milliseconds
 *    (cpclRemoteError); either breaks the communicator (cpclCommGetAsyncError). On GPUs the
 *    waits are in the kernels: one that expires gives up (that step's results are not valid),
 *    and the next call on the plan, cpclAttnPlanGetAsyncError and cpclCommGetAsyncError return
 *    cpclRemoteError naming the rank when a peer process on this host has exited, else
 *    cpclTimeout.
 *  - Host memory: before a per-step operation moves data, the ranks agree on it (operation,
 *    plan, rows, the batch contents that must agree, and whether each accepted its own
 *    arguments): a rank that called something else (another operation, another plan, or a
 *    collective of another kind such as cpclAttnPlanCreate), or passed a bad argument, makes
 *    every rank return at once with cpclInvalidUsage naming what it did, and the communicator
 *    stays usable. CUDA memory checks arguments on each rank only (no host exchange per step,
 *    so that steps can be captured in graphs): a rank that skips a step makes its peers time
 *    out.
 *  - Shapes are written [outer][...][inner], row-major, contiguous.
 *
 * Plain C99; no CUDA or NCCL header is needed to include this file.
 */
#ifndef CPCL_H_
#define CPCL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CPCL_API __attribute__((visibility("default")))
#else
#define CPCL_API
#endif

/* CPCL_MAJOR, CPCL_MINOR, CPCL_PATCH and CPCL_VERSION_STRING: configuring checks them against meson.build */
#include "cpcl_version.h"
#define CPCL_VERSION(X, Y, Z) ((X)*10000 + (Y)*100 + (Z))
#define CPCL_VERSION_CODE CPCL_VERSION(CPCL_MAJOR, CPCL_MINOR, CPCL_PATCH)

/* ------------------------------------------------------------------------------------------ */
/* Results and errors                                                                          */
/* ------------------------------------------------------------------------------------------ */

typedef enum {
  cpclSuccess = 0,
  cpclUnhandledCudaError = 1, /* a CUDA call failed */
  cpclSystemError = 2,        /* the OS, the network or an allocation failed */
  cpclInternalError = 3,      /* a bug in cpcl */
  cpclInvalidArgument = 4,    /* a bad argument: the message names it and its value */
  cpclInvalidUsage = 5,       /* a valid call in the wrong context: ranks disagree, a broken comm */
  cpclRemoteError = 6,        /* a peer failed or went away */
  cpclInProgress = 7,         /* not complete yet */
  cpclTimeout = 8,            /* a peer did not answer within the configured timeout */
  cpclUnsupported = 9,        /* not built in, or not available on this machine */
  cpclNumResults = 10
} cpclResult_t;

typedef struct cpclComm* cpclComm_t;         /* a communicator: one context-parallel group */
typedef struct cpclAttnPlan* cpclAttnPlan_t; /* one attention shape on a communicator */

/* A static, human-readable name of a result code. Never NULL. */
CPCL_API const char* cpclGetErrorString(cpclResult_t result);

/* Detail of the last failure: of `comm` when non-NULL, else of the calling thread's last failed
 * call (use NULL for failures of cpclCommInitOob and other calls without a communicator).
 * Returns "" when nothing failed. The string stays valid until the next failing call on the same
 * communicator or thread. */
CPCL_API const char* cpclGetLastError(cpclComm_t comm);

/* Library version as CPCL_VERSION_CODE, e.g. 200 for 0.2.0 (CPCL_MAJOR/MINOR/PATCH and
 * CPCL_VERSION_STRING, from cpcl_version.h, give the headers' version). Not collective. */
CPCL_API cpclResult_t cpclGetVersion(int* version);

/* ------------------------------------------------------------------------------------------ */
/* Types                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef enum { cpclBfloat16 = 0, cpclFloat16 = 1, cpclFloat32 = 2, cpclNumDataTypes = 3 } cpclDataType_t;
typedef enum { cpclMemHost = 0, cpclMemCuda = 1, cpclNumMemTypes = 2 } cpclMemType_t;

typedef void* cpclStream_t; /* a cudaStream_t for cpclMemCuda; NULL for host memory */

/* Out-of-band bootstrap, as in UCC: the caller brings a blocking all-gather (MPI_Allgather, a
 * TCP store, torch.distributed...). allgather() gathers `bytes` bytes from every rank into
 * recvbuf, rank-major ([nranks][bytes]); returns 0 on success. With the host transports cpcl
 * calls it only inside cpclCommInitOob. With transport "ipc" it is also the control plane of
 * plan creation (agreement on the descriptor, exchange of memory handles), so the function and
 * ctx must stay usable until the communicator is destroyed. */
typedef struct {
  int (*allgather)(const void* sendbuf, void* recvbuf, size_t bytes, void* ctx);
  void* ctx;
  int rank;
  int nranks;
} cpclOob_t;

typedef struct {
  size_t size;           /* sizeof(cpclConfig_t); set by CPCL_CONFIG_INITIALIZER */
  int dcpSize;           /* ranks on the DCP axis; must divide nranks; 0 = all ranks */
  int kvInterleave;      /* tokens per interleave run (I); 0 = 1 */
  cpclMemType_t memType; /* where tensors live */
  const char* transport; /* "ucx": host memory between processes (any nodes);
                            "ipc": GPUs of one node, one process each, mapping each other's
                              memory (CUDA IPC): kernels store into peers and raise flags there,
                              the fused schedule's transport;
                            "nccl": GPUs on any nodes, grouped send/receive on the stream (see
                              cpcl_nccl.h for an engine's own NCCL communicator);
                            "self": one rank, host or CUDA;
                            NULL: CPCL_TRANSPORT, else self for one rank, ucx for host memory,
                              ipc for CUDA memory */
  int timeoutMs;         /* longest wait on a peer before cpclTimeout; 0 = CPCL_TIMEOUT_MS */
} cpclConfig_t;

#define CPCL_CONFIG_INITIALIZER \
  { sizeof(cpclConfig_t), 0, 0, cpclMemHost, NULL, 0 }

/* ------------------------------------------------------------------------------------------ */
/* Communicators                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Creates a communicator of oob->nranks ranks (W = pcp x dcp; rank = pcpRank * dcp + dcpRank).
 * Collective over the OOB group. Every rank must pass the same config (dcpSize, kvInterleave,
 * memType, transport) and library version; a disagreement gives cpclInvalidUsage on every rank
 * with a message naming the field and the differing values. A bad field gives
 * cpclInvalidArgument naming it. config may be NULL (all defaults). A rank whose oob->rank
 * or oob->nranks is bad (or whose comm is NULL) still takes part in the first all-gather: it
 * returns cpclInvalidArgument naming the field, and its peers return cpclInvalidUsage naming it
 * at once, never wait for it (oob->allgather is called with the same byte count on every rank;
 * recvbuf then holds at least 1024 slots). A NULL oob or oob->allgather is cpclInvalidArgument
 * on that rank alone. oob->nranks may be up to 1024, but an attention plan serves at most 64
 * ranks (cpclAttnPlanCreate returns cpclUnsupported on a larger communicator); transport "ipc"
 * opens on at most 64.
 * Errors: cpclInvalidArgument, cpclInvalidUsage, cpclSystemError (OOB or transport failure),
 * cpclUnsupported (transport not built in), cpclTimeout. */
CPCL_API cpclResult_t cpclCommInitOob(cpclComm_t* comm, const cpclOob_t* oob, const cpclConfig_t* config);

/* Frees the communicator. Not collective; plans created on it must be destroyed first. */
CPCL_API cpclResult_t cpclCommDestroy(cpclComm_t comm);

/* Unblocks any call waiting on a peer (it returns cpclRemoteError), marks the communicator
 * failed, closes its transport and frees it; comm must not be used afterwards. May be called from
 * another thread while a call is blocked: it returns once that call has. Plans created on comm
 * must still be destroyed with cpclAttnPlanDestroy (the communicator's memory goes with the
 * last of them); any other call on them returns cpclInvalidUsage. */
CPCL_API cpclResult_t cpclCommAbort(cpclComm_t comm);

/* This rank's number in [0, W) and the number of ranks W. Not collective. */
CPCL_API cpclResult_t cpclCommRank(cpclComm_t comm, int* rank);
CPCL_API cpclResult_t cpclCommSize(cpclComm_t comm, int* size);
/* The two axes of the context-parallel group. Any output pointer may be NULL. */
CPCL_API cpclResult_t cpclCommAxes(cpclComm_t comm, int* dcpSize, int* dcpRank, int* pcpSize, int* pcpRank);
/* cpclSuccess while the communicator is healthy; else the communication error that broke it
 * (cpclTimeout, cpclRemoteError, ...). After such an error every operation on the communicator
 * returns cpclInvalidUsage until it is destroyed. CUDA memory: a wait on a peer that expired in
 * the kernels of any of its plans is reported here too, as cpclRemoteError when that peer's
 * process (on this host) has exited, else cpclTimeout; does not synchronise any stream. */
CPCL_API cpclResult_t cpclCommGetAsyncError(cpclComm_t comm, cpclResult_t* asyncError);

/* ------------------------------------------------------------------------------------------ */
/* Attention plans                                                                             */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
  size_t size;           /* sizeof(cpclAttnDesc_t); set by CPCL_ATTN_DESC_INITIALIZER */
  int numQoHeads;        /* H: query/output heads held by this rank */
  int numKvHeads;        /* Hkv: KV heads held by this rank (1 for MLA) */
  int headDimQk;         /* 128 (GQA) or 576 (MLA); a multiple of 8 */
  int headDimVo;         /* 128 (GQA) or 512 (MLA); a multiple of 8 */
  int pageSize;          /* tokens per KV page; a multiple of kvInterleave */
  float smScale;         /* softmax scale, finite and > 0 */
  cpclDataType_t qType;  /* dtype of q, out and partial outputs */
  cpclDataType_t kvType; /* dtype of the KV cache */
  int latentKv;          /* 1: MLA, V is the first headDimVo elements of each K row; vCache NULL */
  int lseBase2;          /* 1: every LSE read or written is base 2 */
  /* Added to the contract: the decode schedule (docs/design.md, "Schedules"), "agrs", "a2a",
   * "pipelined" or "fused";
   * NULL = the CPCL_ALGO environment parameter, else chosen automatically: a2a on host memory
   * and with one rank, fused on GPUs over ipc with dcpSize = all ranks. Every rank must name the
   * same. "fused" (one kernel per step: queries stored into the peers, attention, partials
   * stored into their owners, merge; no host step) needs CUDA memory, transport "ipc" (or one
   * rank) and no PCP axis; its Partial and Combine are a2a's. MLA plans (bf16, 576/512) on GPUs
   * of compute capability 9.0 run the Hopper tensor-core MLA body, a launch of its own that the
   * fused kernel cannot host: their automatic schedule is a2a, and a forced "fused" keeps the
   * CUDA-core MLA body inside the fused kernel (correct, slower; the plan's INFO line says which
   * body runs). CPCL_MLA_SM90=0 turns the Hopper body off (and the automatic choice is fused again).
   * bf16/fp16 GQA plans (D 64/128) on those GPUs run the Hopper GQA body, in every schedule,
   * "fused" included (automatic as for the other GPU plans); CPCL_GQA_SM90=0 turns it off. Only a
   * plan whose split workspace would pass 256 MiB (its splits merged in clusters) keeps the
   * tensor-core body inside the fused kernel (the INFO line says so). */
  const char* algo;
  /* Added to the contract (version 0.2): K, the entries of each query row's list of keys for
   * sparse attention (DeepSeek-V3.2 DSA; cpclBatch_t.topkIndices says which positions); 0 =
   * dense attention. 1 .. 65536, else cpclInvalidArgument naming desc->topk. Every rank must
   * pass the same. A sparse plan holds a [maxTokens][K] int32 list of the local keys each row
   * attends to in its workspace (cpclAttnPlanWorkspaceBytes counts it). cpclAttnPrefill is dense
   * only: on a sparse plan it is cpclUnsupported. */
  int topk;
  /* Added to the contract (version 0.2): the prefill schedule, "allgather" or "ring"; NULL =
   * automatic. Any other name is cpclInvalidArgument; every rank must name the same. Decode
   * ignores it (algo names its schedule). */
  const char* prefillAlgo;
} cpclAttnDesc_t;

#define CPCL_ATTN_DESC_INITIALIZER \
  { sizeof(cpclAttnDesc_t), 0, 0, 128, 128, 16, 0.0f, cpclBfloat16, cpclBfloat16, 0, 0, NULL, 0, NULL }

/* One decode step's batch. Pointers in the plan's memType memory (device memory for CUDA).
 * Versioned like the other structs (since version 0.2): initialise it with
 * CPCL_BATCH_INITIALIZER, then set the fields; a size other than sizeof(cpclBatch_t) is
 * cpclInvalidArgument naming batch->size. */
typedef struct {
  size_t size; /* sizeof(cpclBatch_t); set by CPCL_BATCH_INITIALIZER */
  int numSeqs;
  int numTokens;             /* query rows; == numSeqs when queryStart is NULL */
  const int32_t* queryStart; /* [numSeqs+1] row offsets, or NULL: one row per sequence */
  const int32_t* seqLens;    /* [numSeqs] global KV length, this step's tokens included; 0 = padding */
  const int32_t* blockTable; /* [numSeqs][maxPagesPerSeq] local page ids, >= 0 where a step reads */
  int maxPagesPerSeq;
  /* Sparse attention (desc.topk = K > 0): [numTokens][K] global positions, row t's list of the
   * keys it attends to (the indexer's top-k over the whole sequence, any order, the same on
   * every rank), -1 = none. Required (non-NULL) when desc.topk > 0 and NULL when it is 0, for
   * cpclAttnDecode and cpclAttnPartial (cpclInvalidArgument naming batch->topkIndices
   * otherwise); cpclKvStore ignores it. See "Sparse attention" below. */
  const int32_t* topkIndices;
} cpclBatch_t;

#define CPCL_BATCH_INITIALIZER \
  { sizeof(cpclBatch_t), 0, 0, NULL, NULL, NULL, 0, NULL }
/* Query row j of sequence s (rows queryStart[s]..queryStart[s+1]-1, n of them) sits at global
 * position seqLens[s] - n + j and attends to global positions <= its own (causal). On rank r it
 * sees the local prefix of length cpclKvLocalLen(position + 1, W, r, I), i.e. local tokens
 * 0 .. len-1, in pages blockTable[s][0 .. ceil(len / pageSize) - 1]: those page ids must be
 * >= 0 (entries past them are never read and may hold anything, -1 for example).
 * Padding: a sequence with seqLens[s] == 0 is padding (as engines pad batches to a captured
 * CUDA-graph size): its rows, any number of them, get out = 0 and lse = -inf, partials with
 * lse = -inf, nothing is stored by cpclKvStore, and its block-table row is never read. It is no
 * error. A sequence with 0 < seqLens[s] < its rows is cpclInvalidArgument.
 *
 * Sparse attention (desc.topk = K > 0; DeepSeek-V3.2 DSA under DCP). Row t (row j of sequence
 * s, at position pos = seqLens[s] - n + j) attends to exactly the positions listed in
 * topkIndices[t][0 .. K) instead of to every position <= pos. An entry p is skipped when p < 0
 * (-1 pads short lists), p > pos (causal: past the row's own position, so also p >= seqLens[s])
 * or the sequence is padding; any int32 is accepted, none is an error. Each entry counts once
 * as listed: a position listed twice is attended twice (its weight doubles). Duplicates are the
 * caller's error, never checked (the indexer's top-k has none), and harmless to memory.
 * Each rank keeps only the listed positions it owns (owner and local index of
 * cpclKvLocalLen's layout: owner(p) = (p / I) % W, local index (p / (W I)) I + p % I), in list
 * order, so its attention work is proportional to what it owns, not to K; the partials merge as
 * in dense decode. A row with no listed position owned by a rank has an empty partial there
 * (lse = -inf); a row with no valid entry at all gets out = 0, lse = -inf. The filter runs inside
 * the call (on CUDA a kernel on the stream: no host step, graph-capturable). The block table and
 * its checks are those of dense attention (the pages of the whole local prefix). */

/* Creates a plan for one attention shape on comm: validates desc, checks that every rank passed
 * the same desc and maxTokens (cpclInvalidUsage naming the field otherwise), and allocates and
 * registers every workspace, so the per-step calls below allocate nothing.
 * Collective. Rules (cpclInvalidArgument with the rule and the value otherwise):
 *  - GQA: G = dcpSize * numQoHeads / numKvHeads must be a whole number; gathered head g reads
 *    local KV head g / G.
 *  - MLA (latentKv = 1): numKvHeads == 1 and headDimVo <= headDimQk.
 *  - pageSize % kvInterleave == 0 (a page never splits an interleave run).
 * maxTokens: the most query rows any per-step call will pass (numTokens <= maxTokens).
 * desc->topk in 0 .. 65536 (0 dense, else sparse); desc->prefillAlgo NULL, "allgather" or
 * "ring" (cpclInvalidArgument otherwise).
 * Other errors: cpclUnsupported for a schedule this communicator cannot run ("fused" on host
 * memory, over nccl, or with pcp > 1) or a communicator of more than 64 ranks (the most one
 * plan serves; communicators may be larger); cpclSystemError /
 * cpclUnhandledCudaError when workspace cannot be allocated (its size is in the message). On
 * any error *plan is left untouched.
 * CUDA: synchronises the device after zeroing each workspace buffer (before peers may store into it);
 * with "ipc" the workspace peers store into is registered with every rank. */
CPCL_API cpclResult_t cpclAttnPlanCreate(cpclAttnPlan_t* plan, cpclComm_t comm, const cpclAttnDesc_t* desc,
                                         int maxTokens);

/* Added to the contract (version 0.2). The bytes of workspace the plan owns in its memType's
 * memory (device memory for CUDA): every buffer the per-step calls use, alignment padding
 * included. Always > 0. It is also the size cpclAttnPlanCreateWithWorkspace needs for the same
 * comm, desc and maxTokens. Not counted (and never in a caller's buffer): the plan's host
 * structures, and on CUDA a few bytes of mapped host memory where the kernels record bad batch
 * data. Not collective. */
CPCL_API cpclResult_t cpclAttnPlanWorkspaceBytes(cpclAttnPlan_t plan, size_t* bytes);

/* Added to the contract (version 0.2). cpclAttnPlanCreate, but every workspace buffer is carved
 * from the caller's buffer ws of `bytes` bytes (in the comm's memType memory: device memory
 * allocated with cudaMalloc for CUDA) instead of allocated by the plan, for engines that account
 * for their memory. Collective, same rules and errors as cpclAttnPlanCreate, and:
 *  - ws must be aligned to 256 bytes (cudaMalloc's and a page's alignment both satisfy it);
 *    cpclInvalidArgument naming ws otherwise;
 *  - bytes must be at least what cpclAttnPlanWorkspaceBytes reports for a plan of the same
 *    comm, desc and maxTokens (create one and ask, or pass more); cpclInvalidArgument naming
 *    bytes and the need otherwise (every rank fails at once: the check is agreed on);
 *  - the plan does not zero the rest of ws and never frees it; ws must stay valid, and be used
 *    by nothing else, until cpclAttnPlanDestroy has returned;
 *  - transport "ipc" with more than one rank registers the buffers peers store into with every
 *    rank, which CUDA IPC does for whole allocations only: cpclUnsupported there (create the
 *    plan with cpclAttnPlanCreate). Host memory, one rank and "nccl" take any buffer. */
CPCL_API cpclResult_t cpclAttnPlanCreateWithWorkspace(cpclAttnPlan_t* plan, cpclComm_t comm, const cpclAttnDesc_t* desc,
                                                      int maxTokens, void* ws, size_t bytes);
/* Frees the plan and its workspace. Not collective; no call on it may be in progress (for CUDA,
 * its work on every stream must be complete, and CUDA graphs that captured it destroyed). */
CPCL_API cpclResult_t cpclAttnPlanDestroy(cpclAttnPlan_t plan);

/* Added to the contract. cpclSuccess, or what went wrong after a call returned: the
 * communicator's failure (cpclTimeout, cpclRemoteError, ...), or cpclInvalidArgument when the
 * kernels of a CUDA plan met bad batch data in device memory (queryStart not monotone, seqLens
 * shorter than a sequence's rows but not 0, a local length past its block-table row, a negative
 * page id among the pages a row reads or a store writes). Such rows are left
 * empty (out = 0, lse = -inf, nothing stored), never read out of bounds; the next call on the
 * plan returns the same error with the details, once. Host-memory batches are checked before
 * the call does anything. Not collective; does not synchronise the stream. */
CPCL_API cpclResult_t cpclAttnPlanGetAsyncError(cpclAttnPlan_t plan, cpclResult_t* asyncError);

/* Layouts (element type in brackets):
 *   q       [numTokens][H][headDimQk]                    (qType)
 *   kCache  [numPages][pageSize][Hkv][headDimQk]          (kvType)
 *   vCache  [numPages][pageSize][Hkv][headDimVo]          (kvType); NULL when latentKv
 *   out     [numTokens][H][headDimVo]                     (qType)
 *   lse     [numTokens][H]                                (fp32), may be NULL
 * Gathered heads (the DCP axis): g = dcpRank' * H + h, g in [0, dcp * H).
 *
 * All three operations below are collective over the whole communicator; every rank passes the
 * same numSeqs/numTokens/queryStart/seqLens (its own block table and KV shard). Errors:
 * cpclInvalidArgument for a bad argument of this rank (batch->size not sizeof(cpclBatch_t), NULL
 * pointers, numTokens outside [0, maxTokens], numTokens != 0 with numSeqs == 0, queryStart not
 * starting at 0 / going backwards / not ending at numTokens (row counts are computed in 64 bits:
 * no wrap-around passes), 0 < seqLens[s] < its rows, a local length past its block-table row, a
 * negative page id among the pages a row reads: on host memory before anything is read or
 * written; on CUDA the kernels leave such rows empty and report it as cpclAttnPlanGetAsyncError
 * says), batch->topkIndices NULL on a sparse plan or non-NULL on a dense one, cpclInvalidUsage
 * when another rank rejected its arguments or called a different operation or plan, or (host
 * memory) passed other queryStart, seqLens or topkIndices contents ("rank 1's seqLens differ from rank
 * 0's"; a NULL queryStart equals its explicit {0, 1, .., numSeqs}), or the communicator is
 * broken; cpclTimeout / cpclRemoteError when a peer stalls or dies. An argument error leaves
 * the communicator and plan usable. numTokens == 0 is a valid, empty step. */

/* The fused operation: gather queries over the DCP axis, attend to the local KV shard, merge the
 * partials of all W ranks (fp32, rank order), keep this rank's H heads. PCP ranks (same
 * dcpRank) end with the same result. lse receives the global LSE of each (token, head).
 * A row with no key anywhere gets out = 0 and lse = -inf. */
CPCL_API cpclResult_t cpclAttnDecode(cpclAttnPlan_t plan, const cpclBatch_t* batch, const void* q, const void* kCache,
                                     const void* vCache, void* out, float* lse, cpclStream_t stream);

/* Gather-query-then-attend: the first half of cpclAttnDecode.
 *   partialOut [numTokens][dcp*H][headDimVo] (qType), normalised over this rank's keys
 *   partialLse [numTokens][dcp*H] (fp32); -inf where this rank holds no key for the row */
CPCL_API cpclResult_t cpclAttnPartial(cpclAttnPlan_t plan, const cpclBatch_t* batch, const void* q, const void* kCache,
                                      const void* vCache, void* partialOut, float* partialLse, cpclStream_t stream);

/* LSE-correct-then-reduce-scatter (a drop-in for vLLM's cp_lse_ag_out_rs): merges every rank's
 * partial state for this rank's heads. Inputs as written by cpclAttnPartial; out/lse as in
 * cpclAttnDecode. A partial whose LSE is -inf contributes nothing, whatever its bytes hold. */
CPCL_API cpclResult_t cpclAttnCombine(cpclAttnPlan_t plan, int numTokens, const void* partialOut,
                                      const float* partialLse, void* out, float* lse, cpclStream_t stream);

/* ------------------------------------------------------------------------------------------ */
/* KV placement                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* Number of tokens of a sequence of seqLen tokens held by rank cpRank of cpSize ranks with
 * interleave runs of `interleave` tokens:
 *   (L / (W*I)) * I + clamp(L % (W*I) - r*I, 0, I).
 * Pure function; returns -1 on bad arguments (seqLen < 0, cpSize < 1, cpRank outside
 * [0, cpSize), interleave < 1). */
CPCL_API int64_t cpclKvLocalLen(int64_t seqLen, int cpSize, int cpRank, int interleave);

/* Stores this step's new K/V (the batch's query rows are the new tokens, any number of them, not
 * bounded by maxTokens: a whole prompt may be stored at once) into the local paged
 * cache; each rank writes only the tokens it owns: global position p is owned by rank
 * (p / I) % W and lands at local index (p / (W*I)) * I + p % I, page
 * blockTable[s][local / pageSize], slot local % pageSize.
 *   kNew [numTokens][Hkv][headDimQk], vNew [numTokens][Hkv][headDimVo] (kvType); vNew and
 *   vCache are NULL when latentKv. Padding sequences (seqLens[s] == 0) store nothing. A negative
 * page id where an owned token lands is cpclInvalidArgument before anything is written (host
 * memory; CUDA: the row is skipped and the error reported asynchronously). Not collective
 * (purely local), but like every other call it returns cpclInvalidUsage on a communicator that
 * was aborted or broken by a communication error. */
CPCL_API cpclResult_t cpclKvStore(cpclAttnPlan_t plan, const cpclBatch_t* batch, const void* kNew, const void* vNew,
                                  void* kCache, void* vCache, cpclStream_t stream);

/* ------------------------------------------------------------------------------------------ */
/* Introspection (tools/cpcl_info)                                                             */
/* ------------------------------------------------------------------------------------------ */

/* Build options as one line, e.g. "cuda=no nccl=no ucx=yes hwloc=yes". Static string. */
CPCL_API const char* cpclGetBuildConfig(void);

/* Transport number `index` (0..): its name, whether it was compiled in and whether it can be
 * opened on this machine now. cpclInvalidArgument when index is past the last one. */
CPCL_API cpclResult_t cpclGetTransportInfo(int index, const char** name, int* compiledIn, int* usable);

/* Environment parameter number `index` (0..): its name (CPCL_...), its value as read (after the
 * environment), its default and a one-line description. cpclInvalidArgument past the last. */
CPCL_API cpclResult_t cpclGetParamInfo(int index, const char** name, const char** value, const char** defaultValue,
                                       const char** help);

/* Writes a summary of the machine's topology (NUMA nodes, cores, GPUs, NICs and their local
 * CPUs) into buf as text. cpclUnsupported when built without hwloc. */
CPCL_API cpclResult_t cpclGetTopologySummary(char* buf, size_t len);

/* ------------------------------------------------------------------------------------------ */
/* Prefill                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The new tokens a PCP rank holds in a prefill (head-tail split, so every rank does the same
 * causal work). The newLen new tokens of a sequence are cut into 2*pcpSize chunks of
 * c = ceil(newLen / (2*pcpSize)); chunk i covers [min(i*c, newLen), min((i+1)*c, newLen)) (late
 * chunks may be short or empty). Rank pcpRank holds chunk pcpRank, then chunk 2*pcpSize-1-pcpRank:
 * start[0], len[0] and start[1], len[1] receive them, offsets within the new tokens. Returns
 * len[0] + len[1], the rank's rows of that sequence. Pure function; returns -1 on bad arguments
 * (newLen < 0, pcpSize < 1, pcpRank outside [0, pcpSize), start or len NULL). */
CPCL_API int64_t cpclPcpChunks(int64_t newLen, int pcpSize, int pcpRank, int64_t start[2], int64_t len[2]);

/* One prefill step's batch (DESIGN.md 4.2). Pointers in host memory, except blockTable on a
 * CUDA plan: device memory, as cpclBatch_t's (the host sizes the step's transfers from the
 * lengths; the kernels read the pages). Versioned: initialise it with
 * CPCL_PREFILL_BATCH_INITIALIZER, then set the fields; a size other than
 * sizeof(cpclPrefillBatch_t) is cpclInvalidArgument naming batch->size.
 * The new tokens of sequence s are positions contextLens[s] .. contextLens[s] + newLens[s] - 1;
 * this rank's rows of s are its two head-tail chunks of them (cpclPcpChunks of newLens[s] with
 * its pcpRank), chunk pcpRank first, sequence-major. DCP ranks of one PCP rank pass the same rows
 * (their own query heads) and identical kNew/vNew. */
typedef struct {
  size_t size;                /* sizeof(cpclPrefillBatch_t); set by CPCL_PREFILL_BATCH_INITIALIZER */
  int numSeqs;                /* sequences, 0 .. the plan's maxTokens */
  int numTokens;              /* rows on this rank: sum over s of its chunk lengths (<= maxTokens) */
  const int32_t* queryStart;  /* [numSeqs+1] this rank's row offsets: 0, then + its rows of each s */
  const int32_t* contextLens; /* [numSeqs] tokens of s already in the (sharded) cache, >= 0 */
  const int32_t* newLens;     /* [numSeqs] new tokens of s over all PCP ranks, >= 0 (0: no rows) */
  const int32_t* blockTable;  /* [numSeqs][maxPagesPerSeq] local page ids, >= 0 where read or written */
  int maxPagesPerSeq;
} cpclPrefillBatch_t;

#define CPCL_PREFILL_BATCH_INITIALIZER \
  { sizeof(cpclPrefillBatch_t), 0, 0, NULL, NULL, NULL, NULL, 0 }

/* Prefill attention with the store of the new K/V: every row attends causally to every earlier
 * position of its sequence (and its own): the cached context, sharded over all W ranks as in
 * cpclKvStore, and the new tokens of every PCP rank. The new K/V are also stored into the cache,
 * each rank its owned positions over all W ranks (what cpclKvStore of the same tokens writes);
 * the context part reads positions < contextLens[s] only, so the order of the two never matters.
 *   q      [numTokens][H][headDimQk]        (qType) this rank's rows, its H heads
 *   kNew   [numTokens][Hkv][headDimQk]      (kvType) this rank's rows
 *   vNew   [numTokens][Hkv][headDimVo]      (kvType); NULL when latentKv
 *   kCache, vCache as in the layouts below (vCache NULL when latentKv); written
 *   out    [numTokens][H][headDimVo]        (qType)
 *   lse    [numTokens][H] fp32, may be NULL
 * Collective over the whole communicator; every rank passes the same numSeqs, contextLens and
 * newLens (host memory: agreed on before any data moves, cpclInvalidUsage on every rank
 * otherwise). On a CUDA plan the call is stream-ordered like decode: q, kNew, vNew, the caches,
 * out, lse and batch->blockTable are device memory, while queryStart, contextLens and newLens
 * stay host memory (the host sizes every transfer from them, as NCCL's counts); page ids are then
 * not checked on the host: a negative one reads and writes nothing.
 * Schedules (desc->prefillAlgo, else CPCL_PREFILL_ALGO, else automatic), equal to rounding, each
 * bitwise repeatable from run to run (partials merged in fp32 in a fixed order):
 *   "allgather" (vLLM's): the new K/V all-gathered over the PCP axis, one causal pass;
 *   "ring": the K/V blocks passed round the PCP axis (P steps, attention on one block while the
 *     next moves); the partials of the blocks merged in block order at the end.
 *   Automatic: allgather. Measured with tools/prefill_perf on CPU ranks (8k-token prompts, GQA
 *   and MLA, 2 and 4 ranks, and 4k new after 4k cached on pcp 2 x dcp 2; a loaded 2-core
 *   machine) neither was faster throughout: mostly within noise, ring ahead on the chunked
 *   prefill case, allgather on pcp 4. allgather waits once instead of pcp - 1 times, and host
 *   transports move data inside waits only, so the ring's transfers do not overlap its
 *   attention there.
 * With any contextLens[s] > 0 (for a sequence with new tokens) the context part runs too: the
 * queries are all-gathered over all W ranks, each rank attends to its cache shard, and each
 * row's owner merges the W context partials with the new-token partial (DCP chunked prefill).
 * Workspace (in cpclAttnPlanWorkspaceBytes), sized at plan creation for every plan, the
 * decode-only ones too: on top of decode's, queries and slices for all W ranks instead of
 * the dcpSize of decode (nothing more when pcp = 1), one slice of maxTokens rows for the new-token partial, and
 * allgather: pcp - 1 blocks of maxTokens new K/V rows (pcp on GPU transports); ring: two such blocks and pcp
 * slices; CUDA plans also keep the step's positions, device and pinned host (outside the workspace). Errors:
 * cpclInvalidArgument naming the field for a bad argument of this rank (batch NULL or of another size, numSeqs outside
 * [0, maxTokens], numTokens outside [0, maxTokens] or not this rank's chunk rows, queryStart NULL or not its chunk
 * offsets, contextLens / newLens NULL or negative or past 2^31 - 1 together, a PCP rank's rows past maxTokens, a
 * sequence's local length past its block-table row, a negative page id among the pages it reads or writes, q, kNew,
 * vNew, kCache, vCache or out NULL where needed); cpclInvalidUsage when another rank rejected its arguments, called
 * something else or passed other contextLens/newLens; cpclTimeout / cpclRemoteError when a peer stalls or dies.
 * An argument error leaves the communicator and plan usable. No new token anywhere
 * (every newLens 0) is a valid, empty step. */
CPCL_API cpclResult_t cpclAttnPrefill(cpclAttnPlan_t plan, const cpclPrefillBatch_t* batch, const void* q,
                                      const void* kNew, const void* vNew, void* kCache, void* vCache, void* out,
                                      float* lse, cpclStream_t stream);

/* ------------------------------------------------------------------------------------------ */
/* Bindings (python/cpcl)                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* Added to the contract (version 0.2). The layout of public struct structName ("cpclOob_t",
 * "cpclConfig_t", "cpclAttnDesc_t", "cpclBatch_t", and "cpclPrefillBatch_t" in libraries that have
 * it) as this library was compiled: its sizeof and
 * number of fields; and field number `index` (declaration order, 0..numFields-1): its name,
 * offsetof and sizeof. For bindings in other languages, which check their copies of the structs
 * against these instead of trusting them (the Python package refuses to load a library that
 * disagrees). cpclInvalidArgument naming an unknown struct or an index out of range. Any
 * output pointer may be NULL. Not collective. */
CPCL_API cpclResult_t cpclGetStructLayout(const char* structName, size_t* size, int* numFields);
CPCL_API cpclResult_t cpclGetStructField(const char* structName, int index, const char** fieldName, size_t* offset,
                                         size_t* size);

/* Added to the contract (version 0.2). cpclKvStore in the form engines keep it (vLLM's
 * reshape_and_cache_flash): new row t goes to slot slotMapping[t] of this rank's cache, page
 * slot / pageSize, offset slot % pageSize; slotMapping[t] < 0 skips the row (padding, or a token
 * another rank owns: the engine's slot mapping already says which). The plan gives the dtype,
 * heads, head dims, page size and memory.
 *   slotMapping [numTokens] int64, in the plan's memType memory
 *   kNew: row t ([Hkv][headDimQk], kvType, contiguous) at kNew + t * kNewRowStride elements;
 *   vNew likewise with vNewRowStride and headDimVo; a row stride of 0 means packed rows. Strides
 *   let an engine pass views into its fused qkv projection without a copy.
 *   kCache [numPages][pageSize][Hkv][headDimQk], vCache [numPages][pageSize][Hkv][headDimVo];
 *   vNew and vCache NULL when latentKv.
 * Host memory: a slot >= numPages * pageSize is cpclInvalidArgument naming the row and slot,
 * before anything is written. CUDA: the slots are read on the device only, and such rows are
 * skipped. Other errors: cpclInvalidArgument for NULL pointers, numTokens < 0, numPages < 1, a
 * row stride shorter than a row. Not collective (purely local); stream-ordered on CUDA and
 * capturable in a CUDA graph. */
CPCL_API cpclResult_t cpclKvStoreSlots(cpclAttnPlan_t plan, int64_t numTokens, const int64_t* slotMapping,
                                       const void* kNew, const void* vNew, int64_t kNewRowStride, int64_t vNewRowStride,
                                       void* kCache, void* vCache, int64_t numPages, cpclStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_H_ */
