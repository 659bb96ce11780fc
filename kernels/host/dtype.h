/* dtype.h -- bf16 / fp16 / fp32 conversions for the host kernels (round to nearest even, NaN
 * and infinities kept), so the reference needs no compiler extension. */
#ifndef CPCL_HOST_DTYPE_H_
#define CPCL_HOST_DTYPE_H_

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "params_common.h"

static inline float cpclBf16ToF32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t cpclF32ToBf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float cpclF16ToF32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        man <<= 1;
        e++;
      } while (!(man & 0x400u));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t cpclF32ToF16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;  /* NaN */
  if (a >= 0x477ff000u) return sign | 0x7c00u; /* overflow (rounds to inf) */
  if (a < 0x33000001u) return sign;            /* underflow to zero */
  int e = (int)(a >> 23);
  uint32_t man = (a & 0x7fffffu) | 0x800000u;
  if (e < 113) {         /* subnormal half */
    int shift = 126 - e; /* 14 .. 24 */
    uint32_t half = man >> shift, rest = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u))) half++;
    return sign | (uint16_t)half;
  }
  uint32_t half = ((uint32_t)(e - 112) << 10) | ((man >> 13) & 0x3ffu);
  uint32_t rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;
  return sign | (uint16_t)half;
}

static inline float cpclLoad(const void* base, int64_t i, int dtype) {
  switch (dtype) {
    case CPCL_K_BF16:
      return cpclBf16ToF32(((const uint16_t*)base)[i]);
    case CPCL_K_FP16:
      return cpclF16ToF32(((const uint16_t*)base)[i]);
    default:
      return ((const float*)base)[i];
  }
}

static inline void cpclStore(void* base, int64_t i, float v, int dtype) {
  switch (dtype) {
    case CPCL_K_BF16:
      ((uint16_t*)base)[i] = cpclF32ToBf16(v);
      break;
    case CPCL_K_FP16:
      ((uint16_t*)base)[i] = cpclF32ToF16(v);
      break;
    default:
      ((float*)base)[i] = v;
  }
}

/* n consecutive elements to fp32 */
static inline void cpclLoadRow(float* dst, const void* src, int64_t offset, int n, int dtype) {
  if (dtype == CPCL_K_FP32) {
    memcpy(dst, (const float*)src + offset, (size_t)n * 4);
  } else if (dtype == CPCL_K_BF16) {
    const uint16_t* s = (const uint16_t*)src + offset;
    for (int i = 0; i < n; i++) {
      uint32_t u = (uint32_t)s[i] << 16;
      memcpy(&dst[i], &u, 4);
    }
  } else {
    const uint16_t* s = (const uint16_t*)src + offset;
    for (int i = 0; i < n; i++) dst[i] = cpclF16ToF32(s[i]);
  }
}

static inline void cpclStoreRow(void* dst, int64_t offset, const float* src, int n, int dtype) {
  if (dtype == CPCL_K_FP32) {
    memcpy((float*)dst + offset, src, (size_t)n * 4);
  } else {
    for (int i = 0; i < n; i++) cpclStore(dst, offset + i, src[i], dtype);
  }
}

#endif /* CPCL_HOST_DTYPE_H_ */
