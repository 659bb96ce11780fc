/*
 * base/error.h -- the last-error records behind cpclGetLastError.
 *
 * Every failure is recorded in the calling thread's record and, when the caller names one, in
 * an error sink: the record of an object that outlives the call (a communicator keeps one, so
 * cpclGetLastError(comm) works from any thread). A sink is a plain buffer, so the layers below
 * the communicator (transports) can report into it without knowing struct cpclComm.
 */
#ifndef CPCL_BASE_ERROR_H_
#define CPCL_BASE_ERROR_H_

#include "cpcl.h"

typedef struct cpclErrorSink {
  int rank;  /* prefixed to every message ("rank 3: ..."), so messages collected from many ranks
                say where they came from; -1: no prefix */
  char* buf; /* the record, NUL-terminated, of len bytes */
  size_t len;
} cpclErrorSink_t;

/* Records `fmt` as the last error of this thread and of sink (when non-NULL), logs it at WARN,
 * returns res. Every failure of a public entry point goes through here exactly once. */
cpclResult_t cpclSetError(cpclErrorSink_t* sink, cpclResult_t res, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Records "outer: cause" the same way, outer formatted from fmt: the message of a failure that
 * another one caused (a collective over a transport's failed transfer). cause is copied before
 * anything is written, so it may be the thread's own last error (cpclThreadLastError()) or a
 * sink's record. When the two do not fit, the cause is cut at the end with "..."; outer keeps at
 * least half the record and is cut, if at all, at a word boundary with "...". */
cpclResult_t cpclWrapError(cpclErrorSink_t* sink, cpclResult_t res, const char* file, int line, const char* cause,
                           const char* fmt, ...) __attribute__((format(printf, 6, 7)));

/* The composition behind cpclWrapError, into dst of len bytes (len >= 16), NUL-terminated: the
 * text has no overlap requirement on cause (it is copied first). Returns strlen(dst). */
size_t cpclErrorCompose(char* dst, size_t len, const char* outer, const char* cause);

/* The calling thread's last error ("" when none). */
const char* cpclThreadLastError(void);

#endif /* CPCL_BASE_ERROR_H_ */
