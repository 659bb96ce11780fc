/*
 * merge_state.h -- the LSE merge of partial attention states, written once for the host kernels
 * (the CUDA twin: kernels/cuda/merge_state.cuh, the same arithmetic in the same order).
 *
 * Parts (o_k, x_k), x_k the base-2 LSE of part k, merged in fp32 and in part order, so the
 * result does not depend on which part arrived first:
 *   m = max_k x_k;  lse = m + log2 sum_k 2^(x_k - m);  out = sum_k 2^(x_k - lse) o_k
 * NaN-safe: a part with x = -inf contributes nothing whatever its o holds (its weight is 0 and
 * callers never read its o); all parts -inf give lse = -inf, out = 0; a NaN x is not hidden
 * (lse and out NaN). Two passes over the parts: max of each, then, when live, add of each.
 */
#ifndef CPCL_HOST_MERGE_STATE_H_
#define CPCL_HOST_MERGE_STATE_H_

#include <math.h>

typedef struct {
  float m, sum;
  int nan;
} cpclLseMerge_t;

static inline cpclLseMerge_t cpclLseMergeInit(void) {
  cpclLseMerge_t s = {-INFINITY, 0.f, 0};
  return s;
}
static inline void cpclLseMergeMax(cpclLseMerge_t* s, float x) {
  s->nan |= isnan(x);
  s->m = x > s->m ? x : s->m;
}
/* whether any part contributes (and none is NaN): only then is the sum needed */
static inline int cpclLseMergeLive(const cpclLseMerge_t* s) { return !s->nan && s->m != -INFINITY; }
static inline void cpclLseMergeAdd(cpclLseMerge_t* s, float x) {
  if (x != -INFINITY) s->sum += exp2f(x - s->m);
}
static inline float cpclLseMergeLse(const cpclLseMerge_t* s) {
  return s->nan ? NAN : s->m == -INFINITY ? -INFINITY : s->m + log2f(s->sum);
}
/* the weight of part x in out, given the merged lse: 0 for a part that contributes nothing */
static inline float cpclLseWeight(float x, float lse) { return x == -INFINITY ? 0.f : exp2f(x - lse); }

#endif /* CPCL_HOST_MERGE_STATE_H_ */
