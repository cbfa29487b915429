#include "model/model_source.h"

#include <unistd.h>

#include <filesystem>

#include "core/log.h"
#include "model/checkpoint_init.h"
#include "model/safetensors.h"

namespace afd {

namespace fs = std::filesystem;

namespace {

int64_t physical_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
}

// The CPU path holds every weight as f32: refuse what cannot fit instead of swapping to death.
Status check_fits(const std::string& what, const ModelConfig& cfg, const char* hint) {
  const int64_t need = cfg.num_params() * 4;
  const int64_t have = physical_memory_bytes();
  if (have > 0 && need > have * 9 / 10)
    return InvalidArgument("{}: {} parameters need {:.1f} GiB as f32 on the CPU; this machine has "
                           "{:.1f} GiB{}",
                           what, cfg.num_params(), need / double(1ull << 30),
                           have / double(1ull << 30), hint);
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<Step3Model>> load_model(const std::string& model, uint64_t weights_seed,
                                               ModelSourceInfo* info) {
  Timer timer;
  ModelSourceInfo local;
  ModelSourceInfo& inf = info ? *info : local;
  std::error_code ec;
  if (fs::is_directory(model, ec)) {
    AFD_ASSIGN_OR_RETURN(ModelConfig cfg, ModelConfig::from_file((fs::path(model) / "config.json").string()));
    AFD_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::open(model));
    AFD_RETURN_IF_ERROR(check_fits(model, cfg, ""));
    AFD_ASSIGN_OR_RETURN(Step3Weights w, load_step3_weights(cfg, ckpt));
    inf.kind = "checkpoint";
    inf.weights = cfg.quant ? "fp8" : "bf16";
    inf.load_seconds = timer.seconds();
    return std::make_unique<Step3Model>(std::move(cfg), std::move(w));
  }
  auto preset = ModelConfig::preset(model);
  if (!preset.ok()) {
    if (fs::exists(model, ec))
      return InvalidArgument("--model {}: not a folder (a checkpoint is a folder with config.json "
                             "and safetensors files)",
                             model);
    return InvalidArgument("--model {}: no such checkpoint folder, and not a preset ({})", model,
                           preset.status().message());
  }
  ModelConfig cfg = std::move(preset).value();
  AFD_RETURN_IF_ERROR(check_fits("preset " + model, cfg, " (the real step3 dimensions run on GPUs)"));
  log_debug("preset {}: random weights (seed {}), {:.1f} M parameters", model, weights_seed,
           cfg.num_params() / 1e6);
  Step3Weights w = random_step3_weights(cfg, weights_seed);
  inf.kind = "preset";
  inf.weights = fmt::format("random (seed {})", weights_seed);
  inf.load_seconds = timer.seconds();
  return std::make_unique<Step3Model>(std::move(cfg), std::move(w));
}

}  // namespace afd
