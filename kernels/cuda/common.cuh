/* common.cuh -- element types and loads shared by the CUDA kernels. */
#ifndef CPCL_CUDA_COMMON_CUH_
#define CPCL_CUDA_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "kv_layout.h"
#include "params_common.h"

namespace cpcl {

constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

template <typename T>
__device__ __forceinline__ float toF(T v);
template <>
__device__ __forceinline__ float toF<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float toF<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float toF<__half>(__half v) {
  return __half2float(v);
}

template <typename T>
__device__ __forceinline__ T fromF(float v);
template <>
__device__ __forceinline__ float fromF<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 fromF<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half fromF<__half>(float v) {
  return __float2half_rn(v);
}

/* two consecutive elements as float2 */
template <typename T>
__device__ __forceinline__ float2 load2(const T* p);
template <>
__device__ __forceinline__ float2 load2<float>(const float* p) {
  return *reinterpret_cast<const float2*>(p);
}
template <>
__device__ __forceinline__ float2 load2<__nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}
template <>
__device__ __forceinline__ float2 load2<__half>(const __half* p) {
  return __half22float2(*reinterpret_cast<const __half2*>(p));
}

/* eight consecutive elements (16 bytes of 2-byte types, 32 of fp32) as floats */
template <typename T>
__device__ __forceinline__ void load8(const T* p, float* f) {
#pragma unroll
  for (int i = 0; i < 8; i += 2) {
    float2 v = load2<T>(p + i);
    f[i] = v.x;
    f[i + 1] = v.y;
  }
}
template <>
__device__ __forceinline__ void load8<__nv_bfloat16>(const __nv_bfloat16* p, float* f) {
  uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
template <>
__device__ __forceinline__ void load8<__half>(const __half* p, float* f) {
  uint4 u = *reinterpret_cast<const uint4*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 v = __half22float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* 16-byte asynchronous copy global -> shared (sm_80+) */
__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem) {
  unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Records the first bad batch datum (params_common.h, cpclKError_t). */
__device__ __forceinline__ void reportError(int* flag, int code, int seq, int value, int limit) {
  if (flag == nullptr || atomicCAS(flag + CPCL_KERR_W_CLAIM, 0, 1) != 0) return;
  flag[CPCL_KERR_W_SEQ] = seq;
  flag[CPCL_KERR_W_VALUE] = value;
  flag[CPCL_KERR_W_LIMIT] = limit;
  __threadfence_system();
  atomicExch(flag + CPCL_KERR_W_CODE, code);
}

/* Row t of the batch: its sequence, first row and row count, checked against the data. Returns
 * false (and records why) when queryStart or seqLens are inconsistent for this row. numTokens > 0
 * (the batch's rows) lets it guess the sequence first (below); seqLen receives seqLens[seq]. */
__device__ __forceinline__ bool rowOf(const int32_t* queryStart, const int32_t* seqLens, int numSeqs, int t, int* flag,
                                      int* seq, int* r0, int* n, int numTokens, int* seqLen);

/* the sequence of row t: queryStart is sorted; one row per sequence when NULL */
__device__ __forceinline__ int seqOfRow(const int32_t* queryStart, int numSeqs, int t) {
  if (queryStart == nullptr) return t;
  int lo = 0, hi = numSeqs - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (queryStart[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/* rowOf with numTokens > 0 guesses the sequence of row t as if every sequence had numTokens /
 * numSeqs rows (decode, multi-token decode): g = t numSeqs / numTokens, loading queryStart[g],
 * queryStart[g + 1] and seqLens[g] together, and takes it if queryStart[g] <= t < queryStart[g + 1],
 * which holds for exactly one g of a sorted queryStart: the one seqOfRow finds. A uniform batch so
 * costs one round trip instead of seqOfRow's log2(numSeqs) + 1 dependent ones; any other batch
 * falls back to seqOfRow. */
__device__ __forceinline__ bool rowOf(const int32_t* queryStart, const int32_t* seqLens, int numSeqs, int t, int* flag,
                                      int* seq, int* r0, int* n, int numTokens, int* seqLen) {
  int s = -1, q0 = 0, q1 = 0, len = 0;
  if (queryStart && numTokens > 0 && t >= 0 && t < numTokens) {
    const int g = (int)((int64_t)t * numSeqs / numTokens);
    q0 = queryStart[g];
    q1 = queryStart[g + 1];
    len = seqLens[g];
    if (q0 <= t && t < q1) s = g;
  }
  if (s < 0) {
    s = seqOfRow(queryStart, numSeqs, t);
    q0 = queryStart ? queryStart[s] : s;
    q1 = queryStart ? queryStart[s + 1] : s + 1;
    len = seqLens[s];
  }
  *seq = s;
  *r0 = q0;
  *n = q1 - q0;
  *seqLen = len;
  if (t < q0 || t >= q1) {
    reportError(flag, CPCL_KERR_QUERY_START, s, q0, q1);
    return false;
  }
  if (len < *n) {
    if (len != 0) reportError(flag, CPCL_KERR_SEQ_LEN, s, len, *n); /* 0: padding, rows empty */
    return false;
  }
  return true;
}

/* 2^x by the SFU alone (ex2.approx.ftz: 2 ulp, results below 2^-126 flushed to 0), for the
 * softmax terms 2^(x - max) with x - max <= 0: a flushed term is one a normalised fp32 sum never
 * sees, and exp2(-inf) = 0 (the prefill bodies) */
__device__ __forceinline__ float fastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace cpcl

#endif /* CPCL_CUDA_COMMON_CUH_ */
