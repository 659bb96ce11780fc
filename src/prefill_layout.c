/* prefill_layout.c -- the public face of kernels/prefill_layout.h */
#include "cpcl.h"
#include "prefill_layout.h"

CPCL_API int64_t cpclPcpChunks(int64_t newLen, int pcpSize, int pcpRank, int64_t start[2], int64_t len[2]) {
  if (newLen < 0 || pcpSize < 1 || pcpRank < 0 || pcpRank >= pcpSize || start == NULL || len == NULL) return -1;
  return cpclPcpChunksOf(newLen, pcpSize, pcpRank, start, len);
}
