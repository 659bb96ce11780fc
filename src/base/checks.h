/*
 * base/checks.h -- recording and propagating failures, as NCCL's checks.h: CPCL_SINK_ERR records
 * a new failure, CPCLCHECK / CPCLCHECKGOTO pass one up and leave a "-> code" breadcrumb in the
 * TRACE log. src/core.h adds CPCL_ERR, the same for a communicator.
 */
#ifndef CPCL_BASE_CHECKS_H_
#define CPCL_BASE_CHECKS_H_

#include "base/debug.h"
#include "base/error.h"

#define CPCL_SINK_ERR(sink, res, ...) cpclSetError((sink), (res), __FILE__, __LINE__, __VA_ARGS__)
/* A failure caused by another whose message is cause (often cpclThreadLastError()): records
 * "<formatted>: <cause>" (base/error.h, cpclWrapError). */
#define CPCL_SINK_WRAP(sink, res, cause, ...) cpclWrapError((sink), (res), __FILE__, __LINE__, (cause), __VA_ARGS__)

#define CPCLCHECK(call)                                              \
  do {                                                               \
    cpclResult_t res_ = (call);                                      \
    if (res_ != cpclSuccess) {                                       \
      TRACE(CPCL_ALL, "%s:%d -> %d", __FILE__, __LINE__, (int)res_); \
      return res_;                                                   \
    }                                                                \
  } while (0)
#define CPCLCHECKGOTO(call, res, label)                               \
  do {                                                                \
    (res) = (call);                                                   \
    if ((res) != cpclSuccess) {                                       \
      TRACE(CPCL_ALL, "%s:%d -> %d", __FILE__, __LINE__, (int)(res)); \
      goto label;                                                     \
    }                                                                 \
  } while (0)

#define CPCL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CPCL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CPCL_ALIGN_UP(x, a) (((x) + (a)-1) / (a) * (a))

#endif /* CPCL_BASE_CHECKS_H_ */
