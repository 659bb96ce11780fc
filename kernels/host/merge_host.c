/*
 * merge_host.c -- the exact merge of partial attention states (DESIGN.md §1), the correction of
 * one partial against the global LSE, and the plain sum of a reduce-scatter (merge_params.h).
 * fp32, parts summed in order 0..numParts-1 (merge_state.h) so results are bitwise reproducible
 * whatever order they arrived in. Internally base 2: x = lse * log2 e (natural) or lse (base 2).
 */
#include <math.h>
#include <string.h>

#include "dtype.h"
#include "merge_params.h"
#include "merge_state.h"

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f
#define MAX_DIM 4096

void cpclHostMerge(const cpclMergeParams_t* p) {
  const float toBase2 = p->lseBase2 ? 1.f : LOG2E, fromBase2 = p->lseBase2 ? 1.f : LN2;
  const int D = p->headDim;
  float acc[MAX_DIM], row[MAX_DIM];
  for (int t = 0; t < p->numTokens; t++) {
    for (int h = 0; h < p->numHeads; h++) {
      const int64_t oOff = t * p->oTokenStride + (int64_t)h * D;
      if (p->mode == CPCL_MERGE_SUM) {
        memset(acc, 0, (size_t)D * sizeof(float));
        for (int q = 0; q < p->numParts; q++) {
          cpclLoadRow(row, p->o[q], oOff, D, p->dtype);
          for (int d = 0; d < D; d++) acc[d] += row[d];
        }
        cpclStoreRow(p->out, t * p->outTokenStride + (int64_t)h * D, acc, D, p->dtype);
        continue;
      }
      const int64_t lOff = t * p->lseTokenStride + h;
      cpclLseMerge_t st = cpclLseMergeInit();
      for (int q = 0; q < p->numParts; q++) cpclLseMergeMax(&st, p->lse[q][lOff] * toBase2);
      if (cpclLseMergeLive(&st))
        for (int q = 0; q < p->numParts; q++) cpclLseMergeAdd(&st, p->lse[q][lOff] * toBase2);
      const float lse2 = cpclLseMergeLse(&st);
      if (p->out) {
        memset(acc, 0, (size_t)D * sizeof(float));
        if (st.nan) {
          for (int d = 0; d < D; d++) acc[d] = NAN;
        } else if (lse2 != -INFINITY) {
          for (int q = 0; q < p->numParts; q++) {
            const float x = p->lse[q][lOff] * toBase2;
            if (x == -INFINITY) continue; /* never read: its bytes may be NaN */
            const float w = cpclLseWeight(x, lse2);
            cpclLoadRow(row, p->o[q], oOff, D, p->dtype);
            for (int d = 0; d < D; d++) acc[d] += w * row[d];
          }
        }
        cpclStoreRow(p->out, t * p->outTokenStride + (int64_t)h * D, acc, D, p->dtype);
      }
      if (p->outLse) p->outLse[t * p->outLseTokenStride + h] = lse2 * fromBase2;
    }
  }
}

void cpclHostCorrect(const cpclCorrectParams_t* p) {
  const float toBase2 = p->lseBase2 ? 1.f : LOG2E;
  const int D = p->headDim;
  float row[MAX_DIM];
  for (int t = 0; t < p->numTokens; t++) {
    for (int h = 0; h < p->numHeads; h++) {
      const float x = p->lse[t * p->lseTokenStride + h] * toBase2;
      const float xg = p->lseGlobal[t * p->lseGlobalTokenStride + h] * toBase2;
      const int64_t off = t * p->oTokenStride + (int64_t)h * D;
      if (x == -INFINITY) {
        memset(row, 0, (size_t)D * sizeof(float));
      } else {
        const float w = exp2f(x - xg);
        cpclLoadRow(row, p->o, off, D, p->dtype);
        for (int d = 0; d < D; d++) row[d] *= w;
      }
      cpclStoreRow(p->o, off, row, D, p->dtype);
    }
  }
}
