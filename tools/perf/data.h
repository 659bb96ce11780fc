/*
 * data.h -- what the perf tools over the public header share besides the driver: buffers in the
 * run's memory (host, or CUDA with -g 1), deterministic test data, paged KV caches filled
 * through cpclKvStore (the placement under test is the library's own), one-rank communicators
 * and the element-wise comparison of the -c check. A process of an mpirun tool; failures of the
 * library or of CUDA print and MPI_Abort.
 */
#ifndef CPCL_PERF_DATA_H_
#define CPCL_PERF_DATA_H_

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "cpcl.h"
#include "driver.h"

/* A library call that must succeed: else the rank, the call and the library's error are printed
 * and the job aborted (a perf run has nothing to recover). */
#define PERF_CHECK(call)                                                   \
  do {                                                                     \
    cpclResult_t r_ = (call);                                              \
    if (r_ != cpclSuccess) perfCheckFailed(r_, __FILE__, __LINE__, #call); \
  } while (0)
void perfCheckFailed(cpclResult_t r, const char* file, int line, const char* call);

/* the KV shape a tool runs */
typedef struct {
  int Hkv, Dqk, Dv, mla; /* KV heads, head dims; mla: V is the first Dv elements of each K row */
  int page, interleave;  /* tokens per page, KV interleave */
  int type;              /* cpclDataType_t of q, KV and out */
} perfKv_t;

/* The run's memory: gpu 0 host, 1 CUDA (device rank % GPUs, a non-blocking stream). */
void perfDataInit(int gpu, int rank);
extern int perfGpu;         /* the run's memory: 0 host, 1 CUDA */
extern void* perfGpuStream; /* a cudaStream_t with -g 1 */
cpclStream_t perfRunStream(void);
void perfSync(void); /* the run's stream, when it has one */

/* zeroed memory of the run's type; a copy of host data; copies; 0xff bytes; freed */
void* perfAlloc(size_t bytes);
void* perfCopyIn(void* dst, const void* src, size_t bytes);
void* perfDup(const void* src, size_t bytes);
void perfCopyOut(void* dst, const void* src, size_t bytes);
void perfPoison(void* p, size_t bytes);
void perfFree(void* p);

size_t perfElemSize(cpclDataType_t t);
/* row of n values in [-1, 1) keyed by (a, b): the same wherever and however it is generated */
void perfGenRow(void* dst, size_t off, int n, uint64_t a, uint64_t b, cpclDataType_t t);

/* a batch built field by field (compiles before and after cpclBatch_t gained its size) */
cpclBatch_t perfBatch(int numSeqs, int numTokens, const int32_t* queryStart, const int32_t* seqLens,
                      const int32_t* blockTable, int maxPagesPerSeq);

typedef struct {
  int maxPages, numPages;
  int32_t* blockTable; /* host */
  int32_t* btRun;      /* in the memory of the cache */
  void *k, *v;
  int run; /* 1: in the run's memory (CUDA with -g 1), 0: host */
} perfCache_t;

/* The paged cache of the shard of (cpSize, cpRank) for B sequences of L tokens, in the run's
 * memory (onRun) or on the host, filled through cpclKvStore of plan. */
void perfCacheBuild(const perfKv_t* kv, cpclAttnPlan_t plan, int cpSize, int cpRank, int B, int L, perfCache_t* c,
                    int onRun);
void perfCacheFree(perfCache_t* c);

/* a one-rank communicator (transport "self") of memType */
cpclComm_t perfSelfComm(const perfKv_t* kv, cpclMemType_t memType);
/* The run's communicator over the MPI ranks of *world (which must outlive it), in the run's
 * memory: dcpSize, kvInterleave and transport (NULL: automatic) as given. */
cpclComm_t perfMpiComm(MPI_Comm* world, int dcpSize, int interleave, const char* transport);
/* -m 1 fixes the MLA shape (headDimQk 576, headDimVo 512, 1 KV head): sets it, or returns
 * perfArgError's code where -d, -v or -K asked for another (a conflict, not a default). */
int perfMlaShape(perf_t* perf, int* Dqk, int* Dv, int* Hkv);
/* the descriptor of kv with H query heads */
cpclAttnDesc_t perfDesc(const perfKv_t* kv, int H);

/* elements of out [T][H][Dv] farther than the dtype's tolerance from ref [T][Hq][Dv] at heads
 * dr*H .. dr*H+H-1 (host memory) */
long perfCountWrong(const perfKv_t* kv, const void* outHost, const void* ref, int T, int H, int Hq, int dr);
/* -c: step(arg, 0) run once more into out [T][H][Dv] (run's memory) poisoned first, and its
 * elements off ref (perfCountWrong) summed over the ranks of world */
long perfCheckStep(const perfKv_t* kv, int (*step)(void*, int), void* arg, void* out, const void* ref, int T, int H,
                   int Hq, int dr, MPI_Comm world);
/* the status column of a checked row: "-" unchecked, "FAILED" with wrong elements, else "ok" */
const char* perfCheckStatus(int check, long wrong);

#endif /* CPCL_PERF_DATA_H_ */
