/*
 * kernelutil.h -- the unit tests' host-kernel parameters for testutil's problems: the attention
 * of one rank's shard and the merge of every rank's partial. Header-only, because only the unit
 * tests, which see the kernels' params headers, use it (testutil itself stays on cpcl.h).
 */
#ifndef CPCL_TESTS_KERNELUTIL_H_
#define CPCL_TESTS_KERNELUTIL_H_

#include <string.h>

#include "attn_params.h"
#include "merge_params.h"
#include "testutil.h"

/* cpclHostAttn of pb on rank r's shard c (W ranks, interleave I): every gathered head in one
 * block, q [T][Hq][Dqk], out [T][Hq][Dv], lse [T][Hq] in natural log, dense; a test changes the
 * heads, blocks, LSE base or key lists after. */
static inline void tuAttnParams(const tuProblem_t* pb, const tuCache_t* c, int W, int r, int I, const void* q,
                                void* out, float* lse, void* ws, cpclAttnParams_t* p) {
  memset(p, 0, sizeof(*p));
  p->numSeqs = pb->numSeqs;
  p->numTokens = pb->numTokens;
  p->queryStart = pb->queryStart;
  p->seqLens = pb->seqLens;
  p->blockTable = c->blockTable;
  p->maxPagesPerSeq = c->maxPagesPerSeq;
  p->cpSize = W;
  p->cpRank = r;
  p->interleave = I;
  p->pageSize = c->pageSize;
  p->numKvHeads = pb->Hkv;
  p->headDimQk = pb->Dqk;
  p->headDimVo = pb->Dv;
  p->latentKv = pb->latent;
  p->groupSize = pb->Hq / pb->Hkv;
  p->headBegin = 0;
  p->numHeads = pb->Hq;
  p->headsPerBlock = pb->Hq;
  p->smScale = pb->smScale;
  p->qType = pb->qType;
  p->kvType = pb->kvType;
  p->q = q;
  p->qTokenStride = (int64_t)pb->Hq * pb->Dqk;
  p->kCache = c->k;
  p->vCache = c->v;
  p->out = out;
  p->oTokenStride = (int64_t)pb->Hq * pb->Dv;
  p->lse = lse;
  p->lseTokenStride = pb->Hq;
  p->workspace = ws;
  p->workspaceBytes = cpclHostAttnWorkspaceBytes(pb->Dqk, pb->Dv);
}

/* cpclHostMerge (LSE mode) of n partials o[i] [T][Hq][Dv] (dtype) with lse[i] [T][Hq], in
 * order, into merged [T][Hq][Dv] and mlse [T][Hq]; base2: the LSEs are base 2 */
static inline void tuMerge(int n, void* const* o, float* const* lse, int T, int Hq, int Dv, int dtype, int base2,
                           void* merged, float* mlse) {
  cpclMergeParams_t m = {.mode = CPCL_MERGE_LSE,
                         .numParts = n,
                         .numTokens = T,
                         .numHeads = Hq,
                         .headDim = Dv,
                         .dtype = dtype,
                         .lseBase2 = base2,
                         .oTokenStride = (int64_t)Hq * Dv,
                         .lseTokenStride = Hq,
                         .out = merged,
                         .outTokenStride = (int64_t)Hq * Dv,
                         .outLse = mlse,
                         .outLseTokenStride = Hq};
  for (int i = 0; i < n; i++) {
    m.o[i] = o[i];
    m.lse[i] = lse[i];
  }
  cpclHostMerge(&m);
}

#endif /* CPCL_TESTS_KERNELUTIL_H_ */
