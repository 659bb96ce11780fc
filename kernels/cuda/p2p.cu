/*
 * p2p.cu -- one stream-ordered step of an exchange between ranks of one node
 * (exchange_params.h, cpclXchgParams_t): the device transports' all-to-all without the host.
 *
 * Grid: each put gets ceil(bytes / kChunk) CTAs (firstBlock); a put's CTAs wait until its peer
 * is ready, copy their chunk with the widest access the alignment allows, and the last of them
 * raises the peer's data flag after a system fence. The CTA that finishes last overall then
 * waits for the data of every rank in waitMask, so the kernels after this one on the stream
 * read complete data. CTAs never wait on each other, only on peers, so any residency works.
 */
#include <cuda_runtime.h>

#include "dispatch.cuh"
#include "exchange_params.h"
#include "peer_sync.cuh"

namespace cpcl {

constexpr size_t kChunk = 64 << 10;
constexpr int kXchgThreads = 256;

template <typename V>
__device__ __forceinline__ void copyRange(void* dst, const void* src, size_t b, size_t e) {
  const V* s = static_cast<const V*>(src);
  V* d = static_cast<V*>(dst);
  for (size_t i = b + threadIdx.x; i < e; i += blockDim.x) d[i] = s[i];
}

__global__ void __launch_bounds__(kXchgThreads) exchangeKernel(const __grid_constant__ cpclXchgParams_t x) {
  __shared__ int sEpoch, sLast;
  const cpclPeerSync_t& s = x.sync;
  const int tid = threadIdx.x;
  /* A wait of this plan timed out (the error is sticky until the host reads it): release nothing
   * more, so the ranks that wait on this one time out too and a stall reaches every rank of a
   * ring, not only the stalled rank's neighbours (the communicator is broken either way). */
  if (x.errorFlag && ldAcquireSys(x.errorFlag + CPCL_KERR_W_CODE) == CPCL_KERR_TIMEOUT) return;
  if (tid == 0) sEpoch = *(volatile int*)s.epoch + (x.advance ? 1 : 0);
  __syncthreads();
  const int E = sEpoch;
  if (x.advance && blockIdx.x == 0)
    for (int p = tid; p < s.nranks; p += blockDim.x)
      if (p != s.rank) stReleaseSys(s.readyOut[p], E - 1);
  if (x.numPuts > 0) {
    int i = 0;
    while (i + 1 < x.numPuts && (int)blockIdx.x >= x.firstBlock[i + 1]) i++;
    const int nb = x.firstBlock[i + 1] - x.firstBlock[i], b = (int)blockIdx.x - x.firstBlock[i];
    if (tid == 0) waitFlag(s.readyIn + x.peer[i], E - 1, s.timeoutNs, x.peer[i], x.errorFlag);
    __syncthreads();
    const size_t per = (x.bytes[i] + nb - 1) / nb, lo = min(x.bytes[i], (size_t)b * per),
                 hi = min(x.bytes[i], lo + per);
    const uintptr_t align = (uintptr_t)x.src[i] | (uintptr_t)x.dst[i] | lo | hi;
    if ((align & 15) == 0)
      copyRange<int4>(x.dst[i], x.src[i], lo / 16, hi / 16);
    else if ((align & 3) == 0)
      copyRange<int>(x.dst[i], x.src[i], lo / 4, hi / 4);
    else
      copyRange<unsigned char>(x.dst[i], x.src[i], lo, hi);
    __threadfence_system();
    __syncthreads();
    unsigned* putCtas = syncCounter(s, CPCL_CTR_PUT_CTAS, i);
    if (tid == 0 && atomicAdd(putCtas, 1u) == (unsigned)nb - 1) {
      *putCtas = 0;
      stReleaseSys(s.dataOut[CPCL_SYNC_XCHG][x.peer[i]], E);
    }
  }
  if (tid == 0) sLast = atomicAdd(syncCounter(s, CPCL_CTR_XCHG_DONE), 1u) == gridDim.x - 1;
  __syncthreads();
  if (!sLast) return;
  for (int p = tid; p < s.nranks; p += blockDim.x)
    if ((x.waitMask >> p) & 1ull) waitFlag(s.dataIn[CPCL_SYNC_XCHG] + p, E, s.timeoutNs, p, x.errorFlag);
  __syncthreads();
  if (tid == 0) {
    *syncCounter(s, CPCL_CTR_XCHG_DONE) = 0;
    if (x.advance) *s.epoch = E;
    __threadfence();
  }
}

}  // namespace cpcl

extern "C" int cpclCudaExchange(const cpclXchgParams_t* x, void* stream) {
  using namespace cpcl;
  clearErrorDetail();
  if (x->numPuts < 0 || x->numPuts > CPCL_MAX_PARTS)
    return invalidValue("numPuts = %d is outside 0 .. %d", x->numPuts, CPCL_MAX_PARTS);
  if (x->sync.nranks > 64) /* waitMask has one bit per rank */
    return invalidValue("sync.nranks = %d exceeds the 64 ranks of waitMask", x->sync.nranks);
  cpclXchgParams_t p = *x;
  int blocks = 0;
  for (int i = 0; i < p.numPuts; i++) {
    p.firstBlock[i] = blocks;
    const size_t nb = (p.bytes[i] + kChunk - 1) / kChunk;
    blocks += nb < 1 ? 1 : (int)nb;
  }
  p.firstBlock[p.numPuts] = blocks;
  if (blocks == 0) blocks = 1; /* waits only */
  exchangeKernel<<<blocks, kXchgThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  return (int)cudaGetLastError();
}
