/*
 * core.h -- what every file of src/ and transport/ uses: error reporting, checks, logging and
 * environment parameters. Modelled on NCCL's checks.h, debug.h and param.h.
 */
#ifndef CPCL_CORE_H_
#define CPCL_CORE_H_

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "cpcl.h"

struct cpclComm;

/* ---- logging ---- */
typedef enum { CPCL_LOG_NONE = 0, CPCL_LOG_WARN = 1, CPCL_LOG_INFO = 2, CPCL_LOG_TRACE = 3 } cpclLogLevel_t;
typedef enum {
  CPCL_INIT = 1 << 0,
  CPCL_COMM = 1 << 1,
  CPCL_NET = 1 << 2,
  CPCL_PLAN = 1 << 3,
  CPCL_SCHED = 1 << 4,
  CPCL_TOPO = 1 << 5,
  CPCL_ALL = ~0
} cpclSubsys_t;

void cpclLog(cpclLogLevel_t level, unsigned subsys, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));
int cpclLogEnabled(cpclLogLevel_t level, unsigned subsys);

#define WARN(...) cpclLog(CPCL_LOG_WARN, CPCL_ALL, __FILE__, __LINE__, __VA_ARGS__)
#define INFO(sub, ...)                                                                                        \
  do {                                                                                                        \
    if (cpclLogEnabled(CPCL_LOG_INFO, (sub))) cpclLog(CPCL_LOG_INFO, (sub), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
#define TRACE(sub, ...)                                                                                         \
  do {                                                                                                          \
    if (cpclLogEnabled(CPCL_LOG_TRACE, (sub))) cpclLog(CPCL_LOG_TRACE, (sub), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

/* ---- errors ---- */
/* Records `fmt` as the last error of comm (when non-NULL) and of this thread, logs it at WARN,
 * returns res. Every failure of a public entry point goes through here exactly once. */
cpclResult_t cpclSetError(struct cpclComm* comm, cpclResult_t res, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define CPCL_ERR(comm, res, ...) cpclSetError((comm), (res), __FILE__, __LINE__, __VA_ARGS__)

/* Propagate a failure, leaving a "-> code" breadcrumb in the TRACE log as NCCL does. */
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

/* Allocation through here: failures become cpclSystemError with the size in the message. */
cpclResult_t cpclCalloc(struct cpclComm* comm, void* ptrOut, size_t count, size_t elemSize, const char* what);

/* ---- environment parameters (read once, cached) ---- */
typedef enum {
  CPCL_PARAM_DEBUG = 0,
  CPCL_PARAM_DEBUG_SUBSYS,
  CPCL_PARAM_DEBUG_FILE,
  CPCL_PARAM_ALGO,
  CPCL_PARAM_TRANSPORT,
  CPCL_PARAM_TIMEOUT_MS,
  CPCL_PARAM_NUM
} cpclParamId_t;

/* The value as a string (the environment's when set, else the default); never NULL. */
const char* cpclParamString(cpclParamId_t id);
/* The value as an integer; a malformed value is reported once at WARN and the default used. */
int64_t cpclParamInt(cpclParamId_t id);
/* Parses a whole decimal integer; 0 on success, -1 if s is not one. */
int cpclParseInt64(const char* s, int64_t* out);
/* Forget cached values so the next read sees the environment again (tests only). */
void cpclParamReset(void);

#define CPCL_DEFAULT_TIMEOUT_MS 60000

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

#define CPCL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CPCL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CPCL_ALIGN_UP(x, a) (((x) + (a)-1) / (a) * (a))

#endif /* CPCL_CORE_H_ */
