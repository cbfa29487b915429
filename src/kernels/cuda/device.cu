#include <cuda_runtime.h>
#include <cstdio>

#include "kernels/cuda/device.h"

namespace afd::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

std::string device_description(int dev) {
  cudaDeviceProp p{};
  cudaError_t e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess) return cudaGetErrorString(e);
  // snprintf, not fmt: nvcc rejects fmt's consteval format-string checks (CONTRIBUTING.md).
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %d SMs, %.1f GiB)", p.name, p.major, p.minor,
                p.multiProcessorCount, p.totalGlobalMem / double(1ull << 30));
  return buf;
}

}  // namespace afd::cuda
