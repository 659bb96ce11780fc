/* base/error.c -- the last-error records (per thread, per sink) and the result strings. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/debug.h"
#include "base/error.h"

/* shorter than a communicator's record, so that the rank prefix fits in front of it */
static _Thread_local char threadLastError[960];

/* The record, the sink and the log from a finished message. The message is never one of the
 * buffers written here (callers format into their own first). */
static cpclResult_t record(cpclErrorSink_t* sink, cpclResult_t res, const char* file, int line, const char* text) {
  snprintf(threadLastError, sizeof(threadLastError), "%s", text);
  if (sink && sink->buf && sink->len) {
    if (sink->rank >= 0)
      snprintf(sink->buf, sink->len, "rank %d: %s", sink->rank, threadLastError);
    else
      snprintf(sink->buf, sink->len, "%s", threadLastError);
  }
  cpclLog(CPCL_LOG_WARN, CPCL_ALL, file, line, "%s (%s)", threadLastError, cpclGetErrorString(res));
  return res;
}

cpclResult_t cpclSetError(cpclErrorSink_t* sink, cpclResult_t res, const char* file, int line, const char* fmt, ...) {
  /* Formatted aside first: an argument may still be this thread's record (a caller that quotes
   * cpclGetLastError(NULL)), and vsnprintf into the buffer it reads is undefined. */
  char text[sizeof(threadLastError)];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  return record(sink, res, file, line, text);
}

/* n bytes of s, cut back to the last space when that keeps at least half of them (a word is not
 * split when a boundary is near), then "...". dst holds n + 4 bytes. */
static size_t cutWithEllipsis(char* dst, const char* s, size_t n) {
  size_t k = n;
  while (k > n / 2 && s[k] != ' ' && s[k - 1] != ' ') k--;
  if (k <= n / 2) k = n;
  while (k > 0 && s[k - 1] == ' ') k--;
  memcpy(dst, s, k);
  memcpy(dst + k, "...", 4);
  return k + 3;
}

size_t cpclErrorCompose(char* dst, size_t len, const char* outer, const char* cause) {
  char in[sizeof(threadLastError)];
  snprintf(in, sizeof(in), "%s", cause ? cause : ""); /* cause may be dst itself */
  const size_t lo = strlen(outer), li = strlen(in), sep = 2;
  if (li == 0) {
    if (lo < len) {
      memmove(dst, outer, lo + 1);
      return lo;
    }
    return cutWithEllipsis(dst, outer, len - 4);
  }
  if (lo + sep + li < len) {
    memmove(dst, outer, lo);
    memcpy(dst + lo, ": ", sep);
    memcpy(dst + lo + sep, in, li + 1);
    return lo + sep + li;
  }
  /* too long: outer keeps what it needs up to half the record, the cause the rest */
  size_t o;
  char head[sizeof(threadLastError) + 4];
  if (lo + sep <= len / 2) {
    memcpy(head, outer, lo + 1);
    o = lo;
  } else {
    o = cutWithEllipsis(head, outer, len / 2 - sep - 4);
  }
  memcpy(dst, head, o);
  memcpy(dst + o, ": ", sep);
  const size_t room = len - 1 - o - sep; /* for the cause, its ellipsis included */
  if (li <= room) {
    memcpy(dst + o + sep, in, li + 1);
    return o + sep + li;
  }
  return o + sep + cutWithEllipsis(dst + o + sep, in, room - 3);
}

cpclResult_t cpclWrapError(cpclErrorSink_t* sink, cpclResult_t res, const char* file, int line, const char* cause,
                           const char* fmt, ...) {
  char in[sizeof(threadLastError)], outer[sizeof(threadLastError)], text[sizeof(threadLastError)];
  snprintf(in, sizeof(in), "%s", cause ? cause : ""); /* before anything is written */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(outer, sizeof(outer), fmt, ap);
  va_end(ap);
  cpclErrorCompose(text, sizeof(text), outer, in);
  return record(sink, res, file, line, text);
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
