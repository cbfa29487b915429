// afd checkpoint init | inspect
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "model/checkpoint_init.h"
#include "model/safetensors.h"
#include "model/step3_weights.h"
#include "tools/afd/commands.h"

namespace afd::cli {

namespace {

struct InitArgs {
  std::string preset = "step3-small";
  std::string dtype = "bf16";
  uint64_t seed = 0;
  int shards = 1;
  bool force = false;
  std::string out;
};

int run_init(const InitArgs& a) {
  auto cfg = ModelConfig::preset(a.preset);
  check(cfg.status());
  CheckpointInitOptions opt;
  opt.dtype = a.dtype;
  opt.seed = a.seed;
  opt.shards = a.shards;
  opt.overwrite = a.force;
  size_t last_pct = 0;
  opt.progress = [&](size_t done, size_t total) {
    size_t pct = done * 100 / total;
    if (pct >= last_pct + 10 || done == total) {
      log_info("checkpoint init: {}/{} tensors ({}%)", done, total, pct);
      last_pct = pct;
    }
  };
  Timer t;
  check(write_random_checkpoint(*cfg, opt, a.out));
  std::printf("wrote %s: preset %s, %s, seed %llu, %d shard(s), %.1f M parameters in %.1f s\n",
              a.out.c_str(), a.preset.c_str(), a.dtype.c_str(),
              static_cast<unsigned long long>(a.seed), a.shards, cfg->num_params() / 1e6,
              t.seconds());
  return 0;
}

struct InspectArgs {
  std::string dir;
  bool json = false;
};

int run_inspect(const InspectArgs& a) {
  namespace fs = std::filesystem;
  auto ckpt = Checkpoint::open(a.dir);
  check(ckpt.status());
  std::vector<std::string> problems;
  auto cfg = ModelConfig::from_file((fs::path(a.dir) / "config.json").string());
  if (!cfg.ok()) problems.push_back(cfg.status().message());
  else for (auto& p : check_step3_checkpoint(*cfg, *ckpt)) problems.push_back(p);

  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;  // dtype -> (tensors, elements)
  int64_t total_elems = 0, total_bytes = 0;
  nlohmann::json jt = nlohmann::json::array();
  for (const std::string& n : ckpt->names()) {
    const TensorInfo* t = ckpt->find(n);
    int64_t numel = shape_numel(t->shape);
    auto& d = by_dtype[dtype_safetensors_name(t->dtype)];
    d.first++, d.second += numel;
    total_elems += numel;
    total_bytes += static_cast<int64_t>(t->nbytes);
    jt.push_back({{"name", n}, {"dtype", dtype_safetensors_name(t->dtype)}, {"shape", t->shape},
                  {"file", fs::path(t->file).filename().string()}});
  }
  if (a.json) {
    nlohmann::json j = {{"dir", a.dir},
                        {"files", ckpt->files().size()},
                        {"tensors", jt},
                        {"total_elements", total_elems},
                        {"total_bytes", total_bytes},
                        {"problems", problems}};
    if (cfg.ok()) {
      j["config"] = nlohmann::json::parse(cfg->to_json());
      j["params"] = cfg->num_params();
      j["active_params"] = cfg->num_active_params();
    }
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("checkpoint %s: %zu file(s), %zu tensors, %.3f GB\n", a.dir.c_str(),
                ckpt->files().size(), ckpt->num_tensors(), total_bytes / 1e9);
    if (cfg.ok()) {
      std::string moe;
      for (int64_t l : cfg->moe_layers) moe += (moe.empty() ? "" : ",") + std::to_string(l);
      std::printf("config: hidden %lld, %lld layers (MoE: %s), %lld heads x %lld, q rank %lld, "
                  "%lld experts top-%lld (inter %lld) + shared %lld, dense inter %lld, vocab %lld, "
                  "%s\n",
                  (long long)cfg->hidden_size, (long long)cfg->num_hidden_layers, moe.c_str(),
                  (long long)cfg->num_attention_heads, (long long)cfg->head_dim,
                  (long long)cfg->share_q_dim, (long long)cfg->moe_num_experts,
                  (long long)cfg->moe_top_k, (long long)cfg->moe_intermediate_size,
                  (long long)cfg->share_expert_dim, (long long)cfg->intermediate_size,
                  (long long)cfg->vocab_size, cfg->quant ? "fp8 128x128 block scales" : "unquantized");
      std::printf("parameters: %.2f M total, %.2f M active per token (config)\n",
                  cfg->num_params() / 1e6, cfg->num_active_params() / 1e6);
    }
    for (auto& [dt, v] : by_dtype)
      std::printf("  %-8s %6lld tensors %14lld elements\n", dt.c_str(), (long long)v.first,
                  (long long)v.second);
    std::printf("tensors:\n");
    for (const auto& t : jt)
      std::printf("  %-60s %-8s %-22s %s\n", t["name"].get<std::string>().c_str(),
                  t["dtype"].get<std::string>().c_str(), shape_str(t["shape"].get<Shape>()).c_str(),
                  t["file"].get<std::string>().c_str());
    if (problems.empty()) std::printf("problems: none\n");
    else {
      std::printf("problems (%zu):\n", problems.size());
      for (auto& p : problems) std::printf("  %s\n", p.c_str());
    }
  }
  if (!problems.empty()) {
    std::fprintf(stderr, "afd: error: %s: %zu problem(s) found, first: %s\n", a.dir.c_str(),
                 problems.size(), problems.front().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

Command register_checkpoint(CLI::App& app) {
  CLI::App* ck = app.add_subcommand("checkpoint", "Create or examine Step-3 checkpoints");
  ck->require_subcommand(1);

  auto ia = std::make_shared<InitArgs>();
  CLI::App* init = ck->add_subcommand(
      "init",
      "Write random weights in the exact Hugging Face Step-3 format: config.json, safetensors "
      "shards and model.safetensors.index.json. Deterministic per seed; the fp8 checkpoint of a "
      "seed is the 128x128 block quantization of the bf16 one.");
  init->add_option("--preset", ia->preset, "Model dimensions: step3-small, step3-tiny, step3")
      ->capture_default_str();
  init->add_option("--dtype", ia->dtype, "bf16, or fp8 (e4m3 weights + f32 block scales)")
      ->check(CLI::IsMember({"bf16", "fp8"}))
      ->capture_default_str();
  init->add_option("--seed", ia->seed, "Random seed")->capture_default_str();
  init->add_option("--shards", ia->shards, "Number of safetensors files")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  init->add_flag("--force", ia->force, "Replace OUT_DIR if it exists and is not empty");
  init->add_option("OUT_DIR", ia->out, "Folder to create")->required();

  auto sa = std::make_shared<InspectArgs>();
  CLI::App* insp = ck->add_subcommand(
      "inspect",
      "List a checkpoint's tensors (dtype, shape, file), its parameter counts, and every "
      "problem that would stop it loading. Exits 1 when there are problems.");
  insp->add_option("DIR", sa->dir, "Checkpoint folder")->required();
  insp->add_flag("--json", sa->json, "Print one JSON object");

  return {ck, [=] { return init->parsed() ? run_init(*ia) : run_inspect(*sa); }};
}

}  // namespace afd::cli
