/* testutil.h -- test data and the naive fp64 reference shared by the unit and mpi suites.
 * Data is a pure function of (seed, indices), so every rank can build any piece of the same
 * global problem without communication. */
#ifndef CPCL_TESTUTIL_H_
#define CPCL_TESTUTIL_H_

#include <stddef.h>
#include <stdint.h>

#include "cpcl.h"

/* uniform in [-1, 1), deterministic */
double tuRand(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t d);
size_t tuDtypeSize(cpclDataType_t t);
/* value rounded to dtype and stored at base[i]; returns the value as stored, in fp64 */
double tuPut(void* base, size_t i, double v, cpclDataType_t t);
double tuGet(const void* base, size_t i, cpclDataType_t t);

/* One global problem: numSeqs sequences, rows[s] query rows each, seqLens[s] keys each. */
typedef struct {
  int numSeqs, numTokens;
  int32_t* queryStart; /* [numSeqs + 1] */
  int32_t* seqLens;    /* [numSeqs] */
  int Hq;              /* gathered query heads (dcp * H) */
  int Hkv, Dqk, Dv, latent;
  cpclDataType_t qType, kvType;
  float smScale;
  uint64_t seed;
} tuProblem_t;

/* the element of K (or V: isV = 1) of token p of sequence s, KV head h, dim d, rounded to kvType */
double tuKv(const tuProblem_t* pb, int isV, int s, int64_t p, int h, int d);
double tuQ(const tuProblem_t* pb, int t, int g, int d);

/* q of gathered heads [h0, h0 + nh) for every row: [numTokens][nh][Dqk] in qType */
void* tuMakeQ(const tuProblem_t* pb, int h0, int nh);

/* A paged cache of one rank's shard (W ranks, interleave I): pages assigned in a scrambled
 * order so page ids are not the identity. kCache/vCache [pages][pageSize][Hkv][D]. */
typedef struct {
  int pageSize, maxPagesPerSeq, numPages;
  int32_t* blockTable; /* [numSeqs][maxPagesPerSeq] */
  void* k;
  void* v; /* NULL when latent */
} tuCache_t;
void tuCacheAlloc(const tuProblem_t* pb, int W, int r, int I, int pageSize, tuCache_t* c);
/* writes the owned tokens directly (brute force over positions, independent of cpclKvStore) */
void tuCacheFill(const tuProblem_t* pb, int W, int r, int I, tuCache_t* c);
void tuCacheFree(tuCache_t* c);

/* Naive fp64 attention on the unsharded sequence for row t, gathered head g, restricted to
 * positions p <= pos(t) with keep(p) (keep NULL: all). o [Dv]; returns lse (natural log), or
 * -inf when no key is kept (o = 0). */
double tuNaive(const tuProblem_t* pb, int t, int g, int W, int r, int I, int onlyRank, double* o);

/* Sparse attention (DESIGN.md §4.3): tuNaive over exactly the listed positions of row t
 * (list[0 .. K)), skipping entries < 0 or past the row's position, each entry counted as
 * listed (a duplicate twice); onlyRank: only the positions rank r of W owns. */
double tuNaiveSparse(const tuProblem_t* pb, int t, int g, const int32_t* list, int K, int W, int r, int I, int onlyRank,
                     double* o);
/* [numTokens][K] top-k lists, a pure function of (seed, K): per row up to K distinct positions
 * <= its own in random order, then -1 padding, with some entries replaced by positions past the
 * row, >= seqLens, INT32_MAX or negative values (all of which the filter skips). Rows of
 * sequences in emptyMask (bit s) list no valid position. */
int32_t* tuMakeTopk(const tuProblem_t* pb, int K, uint64_t seed, unsigned emptyMask);

/* position of row t: seqLens[s] - rows(s) + j; sets *seq */
int64_t tuPos(const tuProblem_t* pb, int t, int* seq);

/* The descriptor of pb's shape for ranks that hold numQoHeads heads each, pages of pageSize
 * tokens (everything else at its default). */
cpclAttnDesc_t tuDesc(const tuProblem_t* pb, int numQoHeads, int pageSize);

/* A batch built from CPCL_BATCH_INITIALIZER with these fields (topkIndices NULL). */
cpclBatch_t tuBatch(int numSeqs, int numTokens, const int32_t* queryStart, const int32_t* seqLens,
                    const int32_t* blockTable, int maxPagesPerSeq);

/* A one-rank communicator (self transport, an all-gather that is a copy). */
cpclResult_t tuSelfComm(cpclComm_t* comm, int interleave, cpclMemType_t memType);

/* Single-rank reference through the public API on a one-rank communicator (self transport):
 * out [numTokens][Hq][Dv] in qType, lse [numTokens][Hq]. */
cpclResult_t tuSingleRank(const tuProblem_t* pb, int pageSize, int lseBase2, void* out, float* lse);

#endif /* CPCL_TESTUTIL_H_ */
