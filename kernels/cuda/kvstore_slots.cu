/*
 * kvstore_slots.cu -- the CUDA twin of kernels/host/kvstore_slots_host.c.
 * Grid (numTokens), one row per block, threads over the row in copy units of U bytes (the largest
 * of 16/8/4/2 dividing every address, stride and row size, chosen by the host).
 */
#include <cuda_runtime.h>

#include "kvstore_slots_params.h"

namespace cpcl {

template <typename U>
__global__ void kvStoreSlotsKernel(const cpclKvSlotsParams_t p) {
  const int64_t t = blockIdx.x;
  const int64_t slot = p.slotMapping[t];
  if (slot < 0 || slot >= p.numSlots) return;
  const U* ks = reinterpret_cast<const U*>(static_cast<const char*>(p.kNew) + t * p.kNewStride * p.elemBytes);
  U* kd = reinterpret_cast<U*>(static_cast<char*>(p.kCache) + slot * p.kRowBytes);
  for (size_t i = threadIdx.x; i < p.kRowBytes / sizeof(U); i += blockDim.x) kd[i] = ks[i];
  if (p.vNew) {
    const U* vs = reinterpret_cast<const U*>(static_cast<const char*>(p.vNew) + t * p.vNewStride * p.elemBytes);
    U* vd = reinterpret_cast<U*>(static_cast<char*>(p.vCache) + slot * p.vRowBytes);
    for (size_t i = threadIdx.x; i < p.vRowBytes / sizeof(U); i += blockDim.x) vd[i] = vs[i];
  }
}

}  // namespace cpcl

extern "C" int cpclCudaKvStoreSlots(const cpclKvSlotsParams_t* p, void* stream) {
  using namespace cpcl;
  if (p->numTokens == 0) return 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const unsigned grid = (unsigned)p->numTokens;
  switch (p->copyUnit) {
    case 16:
      kvStoreSlotsKernel<uint4><<<grid, 128, 0, s>>>(*p);
      break;
    case 8:
      kvStoreSlotsKernel<uint2><<<grid, 128, 0, s>>>(*p);
      break;
    case 4:
      kvStoreSlotsKernel<unsigned><<<grid, 128, 0, s>>>(*p);
      break;
    default:
      kvStoreSlotsKernel<unsigned short><<<grid, 128, 0, s>>>(*p);
      break;
  }
  return (int)cudaGetLastError();
}
