/* exec.c -- which executor runs a memory type: the one place that knows whether CUDA was built. */
#include "exec.h"

const cpclExecOps_t* cpclExecOf(cpclMemType_t memType) {
  if (memType == cpclMemHost) return &cpclExecHost;
#ifdef CPCL_HAVE_CUDA
  if (memType == cpclMemCuda) return &cpclExecCuda;
#endif
  return NULL;
}
