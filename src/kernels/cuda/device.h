// CUDA device discovery and error checking shared by every CUDA op (built when AFD_CUDA).
#pragma once

#include <string>



namespace afd::cuda {

// Number of visible CUDA devices; 0 when there is no driver or no GPU (never an error).
int device_count();
// "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)" for device `dev`, or the CUDA error text.
std::string device_description(int dev);

}  // namespace afd::cuda
