/* base/alloc.c -- host allocation with the failure recorded. */
#include <stdlib.h>

#include "base/alloc.h"
#include "base/checks.h"

cpclResult_t cpclCallocSink(cpclErrorSink_t* sink, void* ptrOut, size_t count, size_t elemSize, const char* what) {
  void* p = calloc(count ? count : 1, elemSize ? elemSize : 1);
  if (p == NULL)
    return CPCL_SINK_ERR(sink, cpclSystemError, "allocation of %zu bytes for %s failed", count * elemSize, what);
  *(void**)ptrOut = p;
  return cpclSuccess;
}
