/*
 * params_common.h -- what every kernel parameter header of cpcl shares: element types, the most
 * partials one kernel combines, the record of bad batch data, and the kernel-parameter limits the
 * structs are checked against. Plain C (the host kernels and src/ include it), no communication,
 * nothing from src/ or transport/.
 *
 * One params header per kernel kind, as FlashMLA's csrc/params.h:
 *   attn_params.h      paged prefix attention with LSE (host and CUDA)
 *   merge_params.h     LSE merge of partials, correction of one partial
 *   kvstore_params.h   store of new tokens into the paged cache
 *   peer_sync.h        the flag block ranks of one node synchronise through
 *   exchange_params.h  one stream-ordered exchange step between ranks of one node
 *   fused_params.h     the fused decode kernel
 */
#ifndef CPCL_PARAMS_COMMON_H_
#define CPCL_PARAMS_COMMON_H_

#include <stddef.h>
#include <stdint.h>

#include "rank_limit.h"

/* functions of the layout headers, for the host and the CUDA kernels alike */
#if defined(__CUDACC__)
#define CPCL_HD __host__ __device__ __forceinline__
#else
#define CPCL_HD static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* element types: the values of cpclDataType_t */
enum { CPCL_K_BF16 = 0, CPCL_K_FP16 = 1, CPCL_K_FP32 = 2 };

#if defined(__CUDACC__)
__host__ __device__
#endif
    static inline size_t
    cpclKDtypeSize(int t) {
  return t == CPCL_K_FP32 ? 4 : 2;
}

/* Device-side validation (batch data in device memory cannot be checked by the host). A kernel
 * that meets a bad datum treats that row as empty (no key read, out = 0, lse = -inf; nothing
 * stored) and records the first such datum in errorFlag[CPCL_KERR_WORDS] (the words below): the
 * claim word is taken with atomicCAS, the details written, then the code, with a system fence, so
 * a host that sees the code sees the details. */
typedef enum {
  CPCL_KERR_NONE = 0,
  CPCL_KERR_QUERY_START = 1, /* row not inside queryStart[seq] .. queryStart[seq + 1]: value, limit */
  CPCL_KERR_SEQ_LEN = 2,     /* seqLens[seq] = value is fewer than its limit query rows */
  CPCL_KERR_CAPACITY = 3,    /* local length value exceeds maxPagesPerSeq x pageSize = limit */
  CPCL_KERR_TIMEOUT = 4,     /* a wait on rank seq for epoch value saw only limit (peer_sync.h) */
  CPCL_KERR_PAGE = 5         /* blockTable[seq][limit] = value is negative, among the pages a row walks */
} cpclKError_t;
enum { CPCL_KERR_W_CODE = 0, CPCL_KERR_W_SEQ = 1, CPCL_KERR_W_VALUE = 2, CPCL_KERR_W_LIMIT = 3, CPCL_KERR_W_CLAIM = 4 };
#define CPCL_KERR_WORDS 5

/* Kernel parameters are passed in the constant bank: 4096 bytes on every CUDA version, 32764
 * from CUDA 12.1 on Volta and later (kernels/cuda/meson.build requires both). Each params header
 * checks its struct against the limit its kernel needs. */
#define CPCL_KPARAM_BYTES 4096
#define CPCL_KPARAM_BYTES_LARGE 32764
#ifdef __cplusplus
#define CPCL_KPARAM_CHECK(T, limit) static_assert(sizeof(T) <= (limit), #T " exceeds the kernel parameter limit")
#else
#define CPCL_KPARAM_CHECK(T, limit) _Static_assert(sizeof(T) <= (limit), #T " exceeds the kernel parameter limit")
#endif

/* CUDA launchers return 0 or a cudaError_t; on cudaErrorInvalidValue from a check of the
 * launcher itself (an unsupported dtype or size), this names the argument and its value. The text
 * is per thread and is cleared by the next launcher call on the thread. */
const char* cpclCudaKernelErrorDetail(void);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_PARAMS_COMMON_H_ */
