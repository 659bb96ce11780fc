/*
 * pdl_launch.cuh -- a kernel launched as a programmatic dependent of the stream's previous kernel
 * (CUDA's programmatic dependent launch): it may start under that kernel's last wave, and orders
 * itself with griddepcontrol.wait where it reads what that kernel wrote. Host code only.
 */
#ifndef CPCL_CUDA_PDL_LAUNCH_CUH_
#define CPCL_CUDA_PDL_LAUNCH_CUH_

#include <cuda_runtime.h>

#include <utility>

namespace cpcl {

/* kernel<<<grid, block, smem, stream>>>(args...), a programmatic dependent when pdl (a plain
 * stream-ordered launch otherwise); the launch's error, as cudaLaunchKernelEx returns it */
template <typename... KernelArgs, typename... Args>
cudaError_t launchPdl(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                      Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace cpcl

#endif /* CPCL_CUDA_PDL_LAUNCH_CUH_ */
