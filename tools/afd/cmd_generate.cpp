// afd generate: offline generation for one or more prompts of token ids.
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/log.h"
#include "core/mmap_file.h"
#include "model/model_source.h"
#include "runtime/generate.h"
#include "tools/afd/commands.h"

namespace afd::cli {

namespace {

struct GenArgs {
  std::string model = "step3-tiny";
  std::vector<std::string> prompts;
  int64_t max_new_tokens = 16;
  bool greedy = false;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int64_t top_k = 0;
  uint64_t seed = 0;
  uint64_t weights_seed = 0;
  bool json = false;
  std::string dump_logits;
};

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno || v < 0 || v > INT32_MAX)
      throw Error(InvalidArgument("--prompt-ids \"{}\": \"{}\" is not a token id", s, item));
    ids.push_back(static_cast<int32_t>(v));
    i = j + 1;
  }
  return ids;
}

int run(const GenArgs& a) {
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : a.prompts) prompts.push_back(parse_ids(p));
  if (!a.dump_logits.empty() && prompts.size() != 1)
    throw Error(InvalidArgument("--dump-logits needs exactly one --prompt-ids, got {}", prompts.size()));

  ModelSourceInfo info;
  auto model = load_model(a.model, a.weights_seed, &info);
  check(model.status());
  const ModelConfig& cfg = (*model)->config();

  GenerateOptions opt;
  opt.max_new_tokens = a.max_new_tokens;
  opt.seed = a.seed;
  if (!a.greedy) {
    opt.sampling.temperature = a.temperature;
    opt.sampling.top_k = a.top_k;
    opt.sampling.top_p = a.top_p;
  }
  opt.record_logits = !a.dump_logits.empty();
  auto out = generate(**model, prompts, opt);
  check(out.status());
  const GenerateTimings& t = out->timings;

  if (!a.dump_logits.empty()) {
    const auto& l = out->logits[0];  // f32 [steps, vocab]
    check(write_file_atomic(a.dump_logits, l.data(), l.size() * sizeof(float)));
  }
  const double decode_tps = t.decode_s > 0 ? t.decode_steps * prompts.size() / t.decode_s : 0;
  const double total_s = t.prefill_s + t.decode_s;
  if (a.json) {
    nlohmann::json timings = {
        {"load_s", info.load_seconds},
        {"prefill_s", t.prefill_s},
        {"decode_s", t.decode_s},
        {"prefill_tokens", t.prefill_tokens},
        {"generated_tokens", t.generated_tokens},
        {"decode_tokens_per_s", decode_tps},
        {"tokens_per_s", total_s > 0 ? t.generated_tokens / total_s : 0},
        {"tpot_ms", t.decode_steps > 0 ? 1e3 * t.decode_s / t.decode_steps : 0},
    };
    nlohmann::json j;
    if (prompts.size() == 1) {
      j = {{"prompt_ids", prompts[0]}, {"tokens", out->tokens[0]}};
    } else {
      j["sequences"] = nlohmann::json::array();
      for (size_t i = 0; i < prompts.size(); ++i)
        j["sequences"].push_back({{"prompt_ids", prompts[i]}, {"tokens", out->tokens[i]}});
    }
    j["timings"] = timings;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("model %s (%s, %s weights, %.1f M params, loaded in %.2f s)\n", a.model.c_str(),
                info.kind.c_str(), info.weights.c_str(), cfg.num_params() / 1e6,
                info.load_seconds);
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::string p, g;
      for (int32_t x : prompts[i]) p += (p.empty() ? "" : ",") + std::to_string(x);
      for (int32_t x : out->tokens[i]) g += (g.empty() ? "" : ",") + std::to_string(x);
      std::printf("[%zu] prompt %s\n[%zu] tokens %s\n", i, p.c_str(), i, g.c_str());
    }
    std::printf("prefill: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)t.prefill_tokens,
                t.prefill_s, t.prefill_s > 0 ? t.prefill_tokens / t.prefill_s : 0.0);
    std::printf("decode: %lld steps x %zu sequences in %.3f s: %.1f tokens/s, %.1f ms per step\n",
                (long long)t.decode_steps, prompts.size(), t.decode_s, decode_tps,
                t.decode_steps > 0 ? 1e3 * t.decode_s / t.decode_steps : 0.0);
  }
  return 0;
}

}  // namespace

Command register_generate(CLI::App& app) {
  auto a = std::make_shared<GenArgs>();
  CLI::App* g = app.add_subcommand(
      "generate",
      "Generate tokens for one or more prompts of token ids on the CPU reference engine. "
      "Prompts are prefilled together, then decoded together.");
  g->add_option("--model", a->model,
                "Checkpoint folder (config.json + safetensors), or a preset name (step3-tiny, "
                "step3-small) for random weights")
      ->capture_default_str();
  g->add_option("--prompt-ids", a->prompts, "Comma-separated token ids; repeat for a batch")
      ->required()
      ->take_all();
  g->add_option("--max-new-tokens", a->max_new_tokens, "Tokens to generate per prompt")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  g->add_flag("--greedy", a->greedy, "Argmax decoding (ignores the sampling flags)");
  g->add_option("--temperature", a->temperature, "Sampling temperature (0 = greedy)")
      ->check(CLI::Range(0.0f, 100.0f))
      ->capture_default_str();
  g->add_option("--top-p", a->top_p, "Nucleus sampling mass in (0, 1]")
      ->check(CLI::Range(1e-6f, 1.0f))
      ->capture_default_str();
  g->add_option("--top-k", a->top_k, "Keep the k most likely tokens (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30))
      ->capture_default_str();
  g->add_option("--seed", a->seed, "Sampling seed")->capture_default_str();
  g->add_option("--weights-seed", a->weights_seed, "Seed of the random weights of a preset")
      ->capture_default_str();
  g->add_flag("--json", a->json,
              "Print one JSON object: {prompt_ids, tokens, timings}, or {sequences: [...], "
              "timings} for several prompts");
  g->add_option("--dump-logits", a->dump_logits,
                "Write f32 little-endian [steps, vocab]: the logits each token was chosen from "
                "(one prompt only)");
  return {g, [a] { return run(*a); }};
}

}  // namespace afd::cli
