/*
 * prefill_layout.h -- which new tokens of a prompt each PCP rank holds (DESIGN.md §4.2). The one
 * place this arithmetic is written; used by src/, the host kernels and the CUDA kernels.
 *
 * The newLen new tokens of a sequence are cut into 2*P chunks of c = ceil(newLen / (2*P)):
 *
 *   chunk i        = [min(i*c, newLen), min((i+1)*c, newLen))       (late chunks short or empty)
 *   PCP rank r     holds chunk r, then chunk 2*P-1-r                 (head-tail)
 *
 * Pairing an early chunk with a late one gives every rank the same causal work: chunk i sees
 * i*c earlier new tokens, so chunks r and 2*P-1-r together see (2*P-1)*c on every rank.
 */
#ifndef CPCL_PREFILL_LAYOUT_H_
#define CPCL_PREFILL_LAYOUT_H_

#include <stdint.h>

#include "kv_layout.h" /* CPCL_HD */

/* [start, start + len) of chunk i of newLen tokens cut into 2*pcpSize chunks */
CPCL_HD void cpclPcpChunkOf(int64_t newLen, int pcpSize, int i, int64_t* start, int64_t* len) {
  const int64_t c = (newLen + 2 * (int64_t)pcpSize - 1) / (2 * (int64_t)pcpSize);
  const int64_t b = (int64_t)i * c < newLen ? (int64_t)i * c : newLen;
  const int64_t e = ((int64_t)i + 1) * c < newLen ? ((int64_t)i + 1) * c : newLen;
  *start = b;
  *len = e - b;
}

/* the two chunks of PCP rank pcpRank (arguments already checked); returns len[0] + len[1] */
CPCL_HD int64_t cpclPcpChunksOf(int64_t newLen, int pcpSize, int pcpRank, int64_t start[2], int64_t len[2]) {
  cpclPcpChunkOf(newLen, pcpSize, pcpRank, &start[0], &len[0]);
  cpclPcpChunkOf(newLen, pcpSize, 2 * pcpSize - 1 - pcpRank, &start[1], &len[1]);
  return len[0] + len[1];
}

#endif /* CPCL_PREFILL_LAYOUT_H_ */
