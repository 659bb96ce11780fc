/*
 * mma_sync.cuh -- the warp-level tensor-core pieces of the mma.sync bodies (attn_mma.cuh, the
 * prefill body in prefill.cuh, the G <= 32 consumers of gqa_sm90.cuh): the m16n8k16 product and
 * the fp32 -> 16-bit packing per type, ldmatrix (plain and transposed), and the 16-byte cp.async
 * that zero-fills rows past the end, and the online softmax over a score fragment. One copy for
 * every body that uses them.
 */
#ifndef CPCL_CUDA_MMA_SYNC_CUH_
#define CPCL_CUDA_MMA_SYNC_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "common.cuh"

namespace cpcl {

template <typename T>
struct Mma;
template <>
struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  static __device__ __forceinline__ uint32_t pack(float x, float y) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
};
template <>
struct Mma<__half> {
  static __device__ __forceinline__ void run(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  static __device__ __forceinline__ uint32_t pack(float x, float y) {
    __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ __half from(float x) { return __float2half_rn(x); }
};

/* ldmatrix x4 at a shared-memory address (a: its 32-bit shared-window form) */
__device__ __forceinline__ void ldsm4(uint32_t* r, uint32_t a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldsm4T(uint32_t* r, uint32_t a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldsm4(uint32_t* r, const void* p) { ldsm4(r, (uint32_t)__cvta_generic_to_shared(p)); }
__device__ __forceinline__ void ldsm4T(uint32_t* r, const void* p) { ldsm4T(r, (uint32_t)__cvta_generic_to_shared(p)); }
/* 16-byte copy, or 16 zero bytes when !valid (nothing is read then) */
__device__ __forceinline__ void cpAsync16Zfill(void* smem, const void* gmem, bool valid) {
  unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}

/* The online softmax (base 2) of rows gr and gr + 8 of an m16n8k16 score fragment, N n-tiles of
 * 8 keys, after the caller's mask: mx holds this thread's row maxima of sc (masked keys -inf).
 * m, l and O (NT n-tiles) are rescaled and sc turned into P in place; kFast uses the SFU's
 * ex2.approx (fastExp2) instead of exp2f. */
template <int N, int NT, bool kFast = false>
__device__ __forceinline__ void softmaxRows(float (&sc)[N][4], float (&mx)[2], float (&m)[2], float (&l)[2],
                                            float (&o)[NT][4]) {
#pragma unroll
  for (int r = 0; r < 2; r++) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    const float mnew = fmaxf(m[r], mx[r]);
    const float alpha = m[r] == -INFINITY ? 0.f : (kFast ? fastExp2(m[r] - mnew) : exp2f(m[r] - mnew));
    float rowSum = 0.f;
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const float x = sc[n][r * 2 + e];
        sc[n][r * 2 + e] = x == -INFINITY ? 0.f : (kFast ? fastExp2(x - mnew) : exp2f(x - mnew));
        rowSum += sc[n][r * 2 + e];
      }
    l[r] = l[r] * alpha + rowSum;
    m[r] = mnew;
    /* the running max rarely moves after the first tiles: skip the rescale (a product by 1,
     * exact) when no row of the warp's moved */
    if (__any_sync(0xffffffffu, alpha != 1.f)) {
#pragma unroll
      for (int n = 0; n < NT; n++) {
        o[n][r * 2] *= alpha;
        o[n][r * 2 + 1] *= alpha;
      }
    }
  }
}

/* Scale and mask the scores of N n-tiles (keys tileKey + 8 n + cq (+1), past kEnd masked), then
 * softmaxRows: m, l and O rescaled, sc turned into P in place. */
template <int N, int NT>
__device__ __forceinline__ void onlineSoftmax(float (&sc)[N][4], int64_t tileKey, int64_t kEnd, float c, int cq,
                                              float (&m)[2], float (&l)[2], float (&o)[NT][4]) {
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int n = 0; n < N; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int64_t key = tileKey + n * 8 + cq + (e & 1);
      sc[n][e] = key < kEnd ? sc[n][e] * c : -INFINITY;
      mx[e >> 1] = fmaxf(mx[e >> 1], sc[n][e]);
    }
  softmaxRows<N, NT>(sc, mx, m, l, o);
}

}  // namespace cpcl

#endif /* CPCL_CUDA_MMA_SYNC_CUH_ */
