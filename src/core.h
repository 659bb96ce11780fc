/*
 * core.h -- what every file of src/ uses: the services of base/ (errors, checks, logging,
 * environment parameters, allocation) and their communicator-aware forms. Layers below the
 * communicator (transport/) include base/ directly and never this header.
 */
#ifndef CPCL_CORE_H_
#define CPCL_CORE_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/alloc.h"
#include "base/checks.h"
#include "base/debug.h"
#include "base/error.h"
#include "base/param.h"
#include "cpcl.h"

struct cpclComm;

/* The communicator's error record (src/comm.c); NULL for a NULL comm. */
cpclErrorSink_t* cpclCommErrors(struct cpclComm* comm);

/* Records a failure as the last error of comm (when non-NULL) and of this thread, logs it at
 * WARN, evaluates to res. */
#define CPCL_ERR(comm, res, ...) cpclSetError(cpclCommErrors(comm), (res), __FILE__, __LINE__, __VA_ARGS__)
/* The same for a failure caused by another: "<formatted>: <cause>", cause copied first (it is
 * usually the thread's own record, cpclThreadLastError()). Never pass a last-error buffer as a
 * %s argument of CPCL_ERR: that is a write into the buffer it reads. */
#define CPCL_ERR_WRAP(comm, res, cause, ...) \
  cpclWrapError(cpclCommErrors(comm), (res), __FILE__, __LINE__, (cause), __VA_ARGS__)

/* Allocation through here: failures become cpclSystemError with the size in the message. */
static inline cpclResult_t cpclCalloc(struct cpclComm* comm, void* ptrOut, size_t count, size_t elemSize,
                                      const char* what) {
  return cpclCallocSink(cpclCommErrors(comm), ptrOut, count, elemSize, what);
}

/* NVTX ranges around each stage of each schedule (nsys, ncu --nvtx); nothing without CUDA */
#if defined(CPCL_HAVE_CUDA) && defined(__has_include)
#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define CPCL_NVTX_PUSH(name) nvtxRangePushA(name)
#define CPCL_NVTX_POP() nvtxRangePop()
#endif
#endif
#ifndef CPCL_NVTX_PUSH
#define CPCL_NVTX_PUSH(name) ((void)0)
#define CPCL_NVTX_POP() ((void)0)
#endif

#endif /* CPCL_CORE_H_ */
