/*
 * fused_params.h -- the fused decode (DESIGN.md §5), one kernel on each of the D ranks of a DCP
 * group (kernels/cuda/fused_kernel.cuh): CTAs take tickets in launch order, and the first
 * numPutCtas store this rank's queries into block dcpRank of every peer's gathered queries and
 * raise their flag; the next ones run the attention of cpclCudaAttn over the gathered queries
 * once their owner's flag is up, storing each head's partial straight into its owner's receive
 * slot (attn.outBlock) and raising the owner's flag once a block is complete; the last
 * numMergeCtas wait for the D partials of this rank's heads and merge them (merge). A CTA waits
 * only for work that CTAs with smaller tickets, here or at the peers, have already taken, so the
 * kernel cannot deadlock whatever the residency.
 */
#ifndef CPCL_FUSED_PARAMS_H_
#define CPCL_FUSED_PARAMS_H_

#include "attn_params.h"
#include "merge_params.h"
#include "peer_sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  cpclAttnParams_t attn; /* q = this rank's gathered queries; outBlock/lseBlock = owners' slots */
  cpclPeerSync_t sync;
  int dcpSize, dcpRank;
  const void* qSrc;
  size_t qBytes;                /* multiple of 16 */
  void* qDst[CPCL_MAX_PARTS];   /* block dcpRank of peer j's gathered queries (mapped) */
  cpclMergeParams_t merge;      /* this rank's D received partials -> out, lse */
  int numPutCtas, numMergeCtas; /* both 0 with one rank: the attention writes out/lse itself */
  int attnGrid[3];              /* set by the launcher */
} cpclFusedParams_t;
/* over 4096 bytes (attention, merge and peer tables): needs CUDA >= 12.1 (kernels/cuda/meson.build) */
CPCL_KPARAM_CHECK(cpclFusedParams_t, CPCL_KPARAM_BYTES_LARGE);

/* stream is a cudaStream_t; returns 0 or a cudaError_t */
int cpclCudaFused(const cpclFusedParams_t* f, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_FUSED_PARAMS_H_ */
