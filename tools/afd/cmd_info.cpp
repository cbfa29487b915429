// afd info: what this build has (CUDA, devices) and the model presets.
#include "model/config.h"
#include "tools/afd/commands.h"
#if defined(AFD_HAVE_CUDA)
#include "kernels/cuda/device.h"
#endif

namespace afd::cli {

Command register_info(CLI::App& app) {
  CLI::App* info = app.add_subcommand("info", "Show the build (CUDA or not, GPUs) and presets");
  return {info, [] {
            std::printf("afd 0.1.0\n");
#if defined(AFD_HAVE_CUDA)
            int n = cuda::device_count();
            std::printf("CUDA backend: built (sm_90a); %d device(s) visible\n", n);
            for (int i = 0; i < n; ++i)
              std::printf("  [%d] %s\n", i, cuda::device_description(i).c_str());
#else
            std::printf("CUDA backend: not built (configure with -DAFD_CUDA=ON)\n");
#endif
            for (const auto& name : ModelConfig::preset_names()) {
              auto c = ModelConfig::preset(name);
              std::printf("preset %-12s %10.1f M parameters, %8.1f M active per token\n",
                          name.c_str(), c->num_params() / 1e6, c->num_active_params() / 1e6);
            }
            return 0;
          }};
}

}  // namespace afd::cli
