/*
 * dispatch.cuh -- runtime sizes and types turned into template constants, as FlashInfer's
 * DISPATCH macros: each names the unsupported value in the launcher's error detail
 * (cpclCudaKernelErrorDetail, errors.cu) and returns cudaErrorInvalidValue from the launcher.
 */
#ifndef CPCL_CUDA_DISPATCH_CUH_
#define CPCL_CUDA_DISPATCH_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "params_common.h"

namespace cpcl {

/* Records why a launcher refuses its arguments (printf format) and returns cudaErrorInvalidValue. */
int invalidValue(const char* fmt, ...);
/* Clears the record at the start of a launcher, so a detail never outlives its call. */
void clearErrorDetail();

}  // namespace cpcl

/* element type dt (a cpclDataType_t value) -> typedef T */
#define CPCL_DISPATCH_DTYPE(dt, T, ...)                                                                       \
  switch (dt) {                                                                                               \
    case CPCL_K_BF16: {                                                                                       \
      typedef __nv_bfloat16 T;                                                                                \
      __VA_ARGS__;                                                                                            \
    } break;                                                                                                  \
    case CPCL_K_FP16: {                                                                                       \
      typedef __half T;                                                                                       \
      __VA_ARGS__;                                                                                            \
    } break;                                                                                                  \
    case CPCL_K_FP32: {                                                                                       \
      typedef float T;                                                                                        \
      __VA_ARGS__;                                                                                            \
    } break;                                                                                                  \
    default:                                                                                                  \
      return cpcl::invalidValue("%s = %d is not an element type (bf16 %d, fp16 %d, fp32 %d)", #dt, (int)(dt), \
                                CPCL_K_BF16, CPCL_K_FP16, CPCL_K_FP32);                                       \
  }

/* value head dimension dv -> constexpr kDpl, the output dims a lane of the CUDA-core attention
 * owns (32 lanes cover dv) */
#define CPCL_DISPATCH_DPL(dv, kDpl, ...)                                                                          \
  if ((dv) <= 128) {                                                                                              \
    constexpr int kDpl = 4;                                                                                       \
    __VA_ARGS__;                                                                                                  \
  } else if ((dv) <= 256) {                                                                                       \
    constexpr int kDpl = 8;                                                                                       \
    __VA_ARGS__;                                                                                                  \
  } else if ((dv) <= 512) {                                                                                       \
    constexpr int kDpl = 16;                                                                                      \
    __VA_ARGS__;                                                                                                  \
  } else if ((dv) <= 1024) {                                                                                      \
    constexpr int kDpl = 32;                                                                                      \
    __VA_ARGS__;                                                                                                  \
  } else {                                                                                                        \
    return cpcl::invalidValue("%s = %d is not supported by the attention kernel (at most 1024)", #dv, (int)(dv)); \
  }

#endif /* CPCL_CUDA_DISPATCH_CUH_ */
