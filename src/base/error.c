/* base/error.c -- the last-error records (per thread, per sink) and the result strings. */
#include <stdarg.h>
#include <stdio.h>

#include "base/debug.h"
#include "base/error.h"

/* shorter than a communicator's record, so that the rank prefix fits in front of it */
static _Thread_local char threadLastError[960];

cpclResult_t cpclSetError(cpclErrorSink_t* sink, cpclResult_t res, const char* file, int line, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(threadLastError, sizeof(threadLastError), fmt, ap);
  va_end(ap);
  if (sink && sink->buf && sink->len) {
    if (sink->rank >= 0)
      snprintf(sink->buf, sink->len, "rank %d: %s", sink->rank, threadLastError);
    else
      snprintf(sink->buf, sink->len, "%s", threadLastError);
  }
  cpclLog(CPCL_LOG_WARN, CPCL_ALL, file, line, "%s (%s)", threadLastError, cpclGetErrorString(res));
  return res;
}

const char* cpclThreadLastError(void) { return threadLastError; }

CPCL_API const char* cpclGetErrorString(cpclResult_t result) {
  switch (result) {
    case cpclSuccess:
      return "no error";
    case cpclUnhandledCudaError:
      return "unhandled cuda error";
    case cpclSystemError:
      return "unhandled system error (network, OS or out of memory)";
    case cpclInternalError:
      return "internal error - please report this issue to the cpcl developers";
    case cpclInvalidArgument:
      return "invalid argument";
    case cpclInvalidUsage:
      return "invalid usage (ranks disagree, or the communicator is broken)";
    case cpclRemoteError:
      return "remote process exited or there was a network error";
    case cpclInProgress:
      return "operation in progress";
    case cpclTimeout:
      return "timed out waiting for a peer";
    case cpclUnsupported:
      return "unsupported (not built in or not available here)";
    default:
      return "unknown result code";
  }
}
