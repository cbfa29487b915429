// afd launch: run an AFD job (attention ranks + FFN ranks) on this host and report.
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/mmap_file.h"
#include "model/model_source.h"
#include "runtime/job.h"
#include "runtime/launch.h"
#include "tools/afd/commands.h"

namespace afd::cli {

namespace {

struct LaunchArgs {
  std::string model = "step3-tiny";
  uint64_t weights_seed = 0;
  int attention_ranks = 2, ffn_ranks = 2, micro_batches = 3;
  std::string transport = "ucx";
  bool colocated = false;
  std::string prompts_file;
  int64_t requests = 8, prompt_len = 16, max_new_tokens = 16;
  int64_t max_batch = 64, max_batch_tokens = 512, prefill_chunk = 256, kv_tokens = 32768;
  bool greedy = false;
  float temperature = 1.0f, top_p = 1.0f;
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::string dispatch = "fp8";
  bool json = false;
  std::string trace;
  int64_t peer_timeout_ms = 10000;
  std::string listen;
};

std::vector<Request> load_requests(const LaunchArgs& a, int64_t vocab) {
  std::vector<Request> reqs;
  if (!a.prompts_file.empty()) {
    std::ifstream in(a.prompts_file);
    if (!in) throw Error(NotFound("{}: cannot open", a.prompts_file));
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const std::exception& e) {
        throw Error(InvalidArgument("{}:{}: not valid JSON: {}", a.prompts_file, lineno, e.what()));
      }
      Request r;
      r.index = static_cast<int64_t>(reqs.size());
      if (!j.is_object() || !j.contains("prompt_ids") || !j["prompt_ids"].is_array() ||
          j["prompt_ids"].empty())
        throw Error(InvalidArgument("{}:{}: needs a non-empty \"prompt_ids\" array",
                                    a.prompts_file, lineno));
      for (const auto& t : j["prompt_ids"]) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab)
          throw Error(InvalidArgument("{}:{}: prompt id {} is not in [0, {})", a.prompts_file,
                                      lineno, t.dump(), vocab));
        r.prompt.push_back(t.get<int32_t>());
      }
      r.max_new_tokens = a.max_new_tokens;
      if (j.contains("max_new_tokens")) {
        if (!j["max_new_tokens"].is_number_integer() || j["max_new_tokens"].get<int64_t>() < 1)
          throw Error(InvalidArgument("{}:{}: max_new_tokens must be a positive integer",
                                      a.prompts_file, lineno));
        r.max_new_tokens = j["max_new_tokens"].get<int64_t>();
      }
      reqs.push_back(std::move(r));
    }
    if (reqs.empty()) throw Error(InvalidArgument("{}: no prompts", a.prompts_file));
    return reqs;
  }
  cpu::Rng rng(a.seed ^ 0x5eedull);
  for (int64_t i = 0; i < a.requests; ++i) {
    Request r;
    r.index = i;
    for (int64_t t = 0; t < a.prompt_len; ++t)
      r.prompt.push_back(static_cast<int32_t>(rng.next() % static_cast<uint64_t>(vocab)));
    r.max_new_tokens = a.max_new_tokens;
    reqs.push_back(std::move(r));
  }
  return reqs;
}

JobOptions job_options(const LaunchArgs& a) {
  JobOptions o;
  o.attention_ranks = a.attention_ranks;
  o.ffn_ranks = a.ffn_ranks;
  o.micro_batches = a.micro_batches;
  o.colocated = a.colocated;
  auto dt = parse_wire_dtype(a.dispatch);
  check(dt.status());
  o.dispatch = *dt;
  o.sched.max_running = a.max_batch;
  o.sched.max_step_tokens = a.max_batch_tokens;
  o.sched.prefill_chunk = a.prefill_chunk;
  o.sched.seed = a.seed;
  if (!a.greedy) {
    o.sched.sampling.temperature = a.temperature;
    o.sched.sampling.top_p = a.top_p;
    o.sched.sampling.top_k = a.top_k;
  }
  o.kv_tokens = a.kv_tokens;
  o.peer_timeout = std::chrono::milliseconds(a.peer_timeout_ms);
  o.trace = !a.trace.empty();
  return o;
}

void print_report(const LaunchArgs& a, const JobOptions& o, const JobReport& rep) {
  const std::string stats = job_stats_json(rep, o);
  if (!a.trace.empty()) {
    std::string t = "{\"traceEvents\": [\n" + rep.trace_events + "\n], \"displayTimeUnit\": \"ms\"}\n";
    check(write_file_atomic(a.trace, t.data(), t.size()));
  }
  if (a.json) {
    nlohmann::json j;
    j["results"] = nlohmann::json::array();
    for (const auto& r : rep.results) {
      nlohmann::json e = {{"index", r.index}, {"tokens", r.tokens}, {"ok", r.ok}};
      if (!r.ok) e["error"] = r.error;
      j["results"].push_back(e);
    }
    j["stats"] = nlohmann::json::parse(stats);
    if (!a.trace.empty()) j["trace"] = a.trace;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  for (const auto& r : rep.results) {
    std::string g;
    for (int32_t x : r.tokens) g += (g.empty() ? "" : ",") + std::to_string(x);
    std::printf("[%lld] %s\n", static_cast<long long>(r.index), r.ok ? g.c_str() : r.error.c_str());
  }
  auto s = nlohmann::json::parse(stats);
  std::printf("\n%s: %lld tokens in %.2f s = %.1f tokens/s; TPOT p50 %.1f ms, p99 %.1f ms\n",
              o.colocated ? "colocated" : fmt::format("{}A{}F, {} micro-batches, {} dispatch",
                                                      o.attention_ranks, o.ffn_ranks,
                                                      o.micro_batches, a.dispatch).c_str(),
              static_cast<long long>(rep.generated_tokens), rep.wall_s,
              s["tokens_per_s"].get<double>(), s["tpot_ms_p50"].get<double>(),
              s["tpot_ms_p99"].get<double>());
  std::printf("A->F %.1f MB, F->A %.1f MB\n", s["bytes_attention_to_ffn"].get<double>() / 1e6,
              s["bytes_ffn_to_attention"].get<double>() / 1e6);
  std::printf("%-14s %8s %10s %8s %8s %6s\n", "rank", "wall s", "compute s", "wait s", "comm s", "idle");
  for (const auto& r : s["ranks"])
    std::printf("%-14s %8.2f %10.2f %8.2f %8.2f %5.0f%%\n", r["name"].get<std::string>().c_str(),
                r["wall_s"].get<double>(), r["compute_s"].get<double>(), r["wait_s"].get<double>(),
                r["comm_s"].get<double>(), 100 * r["idle_fraction"].get<double>());
  if (!a.trace.empty()) std::printf("trace: %s (open in https://ui.perfetto.dev)\n", a.trace.c_str());
}

int run(const LaunchArgs& a) {
  const JobOptions o = job_options(a);
  if (a.transport != "local" && a.transport != "ucx")
    throw Error(InvalidArgument("--transport must be local or ucx, got \"{}\"", a.transport));
  if (a.transport == "local" || a.colocated) {
    auto model = load_model(a.model, a.weights_seed);
    check(model.status());
    std::vector<Request> reqs = load_requests(a, (*model)->config().vocab_size);
    auto rep = run_local_job(**model, reqs, o);
    check(rep.status());
    print_report(a, o, *rep);
    return 0;
  }
  // Processes over UCX: the coordinator spawns (or waits for) one worker per rank.
  auto cfg = model_config_of(a.model);
  check(cfg.status());
  std::vector<Request> reqs = load_requests(a, cfg->vocab_size);
  LaunchSpec spec{a.model, a.weights_seed, o, a.listen};
  auto rep = launch_processes(spec, reqs);
  if (!rep.ok()) throw Error(rep.status());
  print_report(a, o, *rep);
  return 0;
}

}  // namespace

Command register_launch(CLI::App& app) {
  auto a = std::make_shared<LaunchArgs>();
  CLI::App* c = app.add_subcommand(
      "launch",
      "Run an AFD job on this host: attention ranks (KV cache, norms, router, lm_head) and FFN "
      "ranks (expert slices) exchange every layer's activations (fp8 out, bf16 back) with K "
      "micro-batches in flight. Prints results and statistics.");
  c->add_option("--model", a->model, "Checkpoint folder or preset")->capture_default_str();
  c->add_option("--weights-seed", a->weights_seed, "Seed of a preset's random weights")
      ->capture_default_str();
  c->add_option("--attention-ranks", a->attention_ranks, "Attention ranks (data parallel)")
      ->check(CLI::Range(1, 64))->capture_default_str();
  c->add_option("--ffn-ranks", a->ffn_ranks, "FFN ranks (expert slices)")
      ->check(CLI::Range(1, 64))->capture_default_str();
  c->add_option("--micro-batches", a->micro_batches, "Micro-batches in flight (1..4)")
      ->check(CLI::Range(1, 4))->capture_default_str();
  c->add_option("--transport", a->transport,
                "ucx: one process per rank over UCX; local: ranks as threads of this process")
      ->capture_default_str();
  c->add_flag("--colocated", a->colocated, "Baseline: attention and FFN in one rank, no transfers");
  c->add_option("--prompts-file", a->prompts_file,
                "JSON lines {\"prompt_ids\": [...], \"max_new_tokens\": n}");
  c->add_option("--requests", a->requests, "Random prompts (without --prompts-file)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))->capture_default_str();
  c->add_option("--prompt-len", a->prompt_len, "Length of each random prompt")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))->capture_default_str();
  c->add_option("--max-new-tokens", a->max_new_tokens, "Tokens to generate per request")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))->capture_default_str();
  c->add_option("--max-batch", a->max_batch, "Running requests per attention rank")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))->capture_default_str();
  c->add_option("--max-batch-tokens", a->max_batch_tokens, "Tokens per step per attention rank")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))->capture_default_str();
  c->add_option("--prefill-chunk", a->prefill_chunk, "Prompt tokens per request per step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))->capture_default_str();
  c->add_option("--kv-tokens", a->kv_tokens, "KV cache capacity per attention rank (tokens)")
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 30))->capture_default_str();
  c->add_flag("--greedy", a->greedy, "Argmax decoding");
  c->add_option("--temperature", a->temperature, "Sampling temperature")->capture_default_str();
  c->add_option("--top-p", a->top_p, "Nucleus mass")->capture_default_str();
  c->add_option("--top-k", a->top_k, "Top-k (0 = all)")->capture_default_str();
  c->add_option("--seed", a->seed, "Seed of sampling and random prompts")->capture_default_str();
  c->add_option("--dispatch-dtype", a->dispatch,
                "A->F activations: fp8 (e4m3 + a scale per 128 channels), bf16, or f32 (exact)")
      ->capture_default_str();
  c->add_flag("--json", a->json, "Print {\"results\": [...], \"stats\": {...}}");
  c->add_option("--trace", a->trace, "Write a Chrome trace (Perfetto) with a track per rank");
  c->add_option("--peer-timeout-ms", a->peer_timeout_ms,
                "Longest wait for a peer before it is declared dead")
      ->capture_default_str();
  c->add_option("--listen", a->listen,
                "HOST:PORT: do not start workers; wait for `afd worker` processes (several hosts)");
  return {c, [a] { return run(*a); }};
}

}  // namespace afd::cli
