/* base/alloc.h -- host allocation whose failure is a recorded error, never a crash. */
#ifndef CPCL_BASE_ALLOC_H_
#define CPCL_BASE_ALLOC_H_

#include <stddef.h>

#include "base/error.h"

/* Zeroed count x elemSize bytes into *(void**)ptrOut; on failure cpclSystemError, recorded in
 * the thread's and sink's (may be NULL) last error with the size and `what`, *ptrOut untouched. */
cpclResult_t cpclCallocSink(cpclErrorSink_t* sink, void* ptrOut, size_t count, size_t elemSize, const char* what);

#endif /* CPCL_BASE_ALLOC_H_ */
