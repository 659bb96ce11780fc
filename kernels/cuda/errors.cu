/* errors.cu -- the per-thread reason of a launcher's cudaErrorInvalidValue (dispatch.cuh). Host
 * code only. */
#include <stdarg.h>
#include <stdio.h>

#include "dispatch.cuh"

namespace cpcl {

static thread_local char detail[256];

int invalidValue(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  return (int)cudaErrorInvalidValue;
}

void clearErrorDetail() { detail[0] = '\0'; }

}  // namespace cpcl

extern "C" const char* cpclCudaKernelErrorDetail(void) { return cpcl::detail; }
