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

/* The calling thread's last error ("" when none). */
const char* cpclThreadLastError(void);

#endif /* CPCL_BASE_ERROR_H_ */
