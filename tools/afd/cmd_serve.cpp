// afd serve: the OpenAI-compatible HTTP API (docs/serving.md) in front of the AFD ranks.
#include <fmt/ranges.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "core/log.h"
#include "model/config.h"
#include "runtime/serving.h"
#include "serve/http_server.h"
#include "serve/openai_api.h"
#include "serve/openai_codec.h"
#include "serve/openai_protocol.h"
#include "tools/afd/commands.h"

namespace afd::cli {

namespace {

namespace fs = std::filesystem;

struct ServeArgs {
  std::string model = "step3-small";
  uint64_t weights_seed = 0;
  std::string host = "127.0.0.1";
  int port = 8000;
  int threads = 0;  // 0: min(4, cores)
  std::string tokenizer;
  std::string chat_template;
  std::string served_model_name;
  int attention_ranks = 2, ffn_ranks = 2, micro_batches = 3;
  std::string transport = "ucx";
  bool colocated = false;
  int64_t max_batch = 64, max_batch_tokens = 512, prefill_chunk = 256, kv_tokens = 32768;
  std::string dispatch = "fp8";
  int64_t peer_timeout_ms = 10000;
  int64_t default_chat_tokens = 1024;
  int64_t max_body_bytes = 8 << 20;
  int64_t shutdown_grace_ms = 5000;
};

// The DeepSeek-V3 tokenizer of the shared test data, for presets (random weights with the
// real Step-3 vocabulary): ../shared/data/tokenizers/deepseek-v3 beside the repository. The
// repository is found above the binary (build*/afd) or the working directory.
std::string find_default_tokenizer() {
  const fs::path rel = fs::path("shared") / "data" / "tokenizers" / "deepseek-v3";
  std::vector<fs::path> starts;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) starts.push_back(exe.parent_path());
  starts.push_back(fs::current_path(ec));
  for (fs::path p : starts) {
    for (int up = 0; up < 6 && !p.empty(); ++up, p = p.parent_path()) {
      if (fs::exists(p / rel / "tokenizer.json")) return (p / rel).lexically_normal().string();
      if (p == p.parent_path()) break;
    }
  }
  return "";
}

std::string resolve_tokenizer(const ServeArgs& a) {
  if (!a.tokenizer.empty()) return a.tokenizer;
  if (fs::is_directory(a.model)) {
    if (fs::exists(fs::path(a.model) / "tokenizer.json")) return a.model;
    // Checkpoints written by `afd checkpoint init` carry no tokenizer; Step-3's vocabulary is
    // the DeepSeek-V3 tokenizer's family, so use the shared copy when it is there.
    std::string found = find_default_tokenizer();
    if (found.empty())
      throw Error(
          NotFound("{}: no tokenizer.json in the model folder; pass --tokenizer PATH", a.model));
    log_info("{}: no tokenizer.json in the folder; using the DeepSeek-V3 tokenizer at {} (pass "
             "--tokenizer to change)",
             a.model, found);
    return found;
  }
  const auto presets = ModelConfig::preset_names();
  if (std::find(presets.begin(), presets.end(), a.model) == presets.end())
    throw Error(NotFound("--model {}: neither a checkpoint folder nor a preset ({})", a.model,
                         fmt::format("{}", fmt::join(presets, ", "))));
  std::string found = find_default_tokenizer();
  if (found.empty())
    throw Error(
        NotFound("preset \"{}\" has no tokenizer and the DeepSeek-V3 tokenizer "
                 "(../shared/data/tokenizers/deepseek-v3) was not found; pass "
                 "--tokenizer PATH",
                 a.model));
  log_info("preset {}: using the DeepSeek-V3 tokenizer at {} (pass --tokenizer to change)", a.model,
           found);
  return found;
}

// Thousands of streaming connections need thousands of descriptors; the soft limit is often
// 1024 while the hard limit allows far more.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

ServeOptions engine_options(const ServeArgs& a) {
  ServeOptions o;
  o.model = a.model;
  o.weights_seed = a.weights_seed;
  o.transport = a.transport;
  o.job.attention_ranks = a.attention_ranks;
  o.job.ffn_ranks = a.ffn_ranks;
  o.job.micro_batches = a.micro_batches;
  o.job.colocated = a.colocated;
  auto dt = parse_wire_dtype(a.dispatch);
  check(dt.status());
  o.job.dispatch = *dt;
  o.job.sched.max_running = a.max_batch;
  o.job.sched.max_step_tokens = a.max_batch_tokens;
  o.job.sched.prefill_chunk = a.prefill_chunk;
  o.job.kv_tokens = a.kv_tokens;
  o.job.peer_timeout = std::chrono::milliseconds(a.peer_timeout_ms);
  return o;
}

int run(const ServeArgs& a) {
  if (a.transport != "local" && a.transport != "ucx")
    throw Error(InvalidArgument("--transport must be local or ucx, got \"{}\"", a.transport));
  signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error code, not a process kill
  raise_fd_limit();

  // The tokenizer first: it fails fast, before ranks are started.
  std::string tok_path = resolve_tokenizer(a);
  auto codec = load_text_codec(tok_path, a.chat_template);
  check(codec.status());
  log_info("tokenizer: {}", (*codec)->describe());

  auto engine = start_engine(engine_options(a));
  check(engine.status());
  const ModelConfig& cfg = (*engine)->config();
  if ((*codec)->vocab_size() > cfg.vocab_size)
    log_warn(
        "the tokenizer has {} ids but the model only {}: prompts with ids >= {} get 400 "
        "(step3-tiny: --tokenizer tests/data/tokenizer-small)",
        (*codec)->vocab_size(), cfg.vocab_size, cfg.vocab_size);
  else if ((*codec)->vocab_size() < cfg.vocab_size)
    log_warn(
        "the model has {} ids but the tokenizer only {}: generated ids beyond it decode to "
        "no text",
        cfg.vocab_size, (*codec)->vocab_size());

  openai::ApiOptions api_opt;
  api_opt.served_model_name = a.served_model_name;
  if (api_opt.served_model_name.empty())
    api_opt.served_model_name = fs::is_directory(a.model)
                                    ? fs::path(a.model).lexically_normal().filename().string()
                                    : a.model;
  if (api_opt.served_model_name.empty()) api_opt.served_model_name = a.model;
  api_opt.max_context = std::min<int64_t>(cfg.max_position_embedding, a.kv_tokens);
  api_opt.default_chat_tokens = a.default_chat_tokens;
  openai::OpenAiApi api(**engine, *codec, api_opt);

  http::ServerOptions so;
  so.host = a.host;
  so.port = static_cast<uint16_t>(a.port);
  so.threads = a.threads > 0
                   ? a.threads
                   : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  so.max_body_bytes = static_cast<size_t>(a.max_body_bytes);
  so.error_formatter = openai::error_for_status;
  auto server = http::Server::start(so, api.handler());
  if (!server.ok()) {
    (*engine)->shutdown();
    check(server.status());
  }
  std::string layout = a.colocated
                           ? "colocated"
                           : fmt::format("{}A{}F over {}, {} micro-batches", a.attention_ranks,
                                         a.ffn_ranks, a.transport, a.micro_batches);
  // stdout carries one line that scripts wait for; everything else is on stderr.
  std::printf("afd serve: http://%s:%u (model \"%s\", %s, context %lld)\n", a.host.c_str(),
              (*server)->port(), api_opt.served_model_name.c_str(), layout.c_str(),
              static_cast<long long>(api_opt.max_context));
  std::fflush(stdout);

  int sig = http::wait_for_termination_signal();
  log_info("signal {}: stopping (grace {} ms)", sig, a.shutdown_grace_ms);
  // The server first: its requests cancel themselves in the engine as they are cut off.
  (*server)->shutdown(std::chrono::milliseconds(a.shutdown_grace_ms));
  (*engine)->shutdown();
  log_info("stopped");
  return 0;
}

}  // namespace

Command register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* c = app.add_subcommand(
      "serve",
      "OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health, "
      "/metrics) in front of AFD ranks. Prints the URL on stdout when ready; SIGINT/SIGTERM "
      "stop it. See docs/serving.md.");
  c->add_option("--model", a->model, "Checkpoint folder or preset")->capture_default_str();
  c->add_option("--weights-seed", a->weights_seed, "Seed of a preset's random weights")
      ->capture_default_str();
  c->add_option("--host", a->host, "Address to listen on")->capture_default_str();
  c->add_option("--port", a->port, "Port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  c->add_option("--threads", a->threads, "HTTP threads (0: min(4, cores))")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  c->add_option("--tokenizer", a->tokenizer,
                "tokenizer.json or its folder (default: the model folder's; otherwise the "
                "DeepSeek-V3 tokenizer in ../shared/data/tokenizers)");
  c->add_option("--chat-template", a->chat_template,
                "step3, deepseek-v3 or a template file (default: from the tokenizer folder)");
  c->add_option("--served-model-name", a->served_model_name,
                "Model id in the API (default: the preset or folder name)");
  c->add_option("--attention-ranks", a->attention_ranks, "Attention ranks (data parallel)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  c->add_option("--ffn-ranks", a->ffn_ranks, "FFN ranks (expert slices)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  c->add_option("--micro-batches", a->micro_batches, "Micro-batches in flight (1..4)")
      ->check(CLI::Range(1, 4))
      ->capture_default_str();
  c->add_option("--transport", a->transport,
                "ucx: one process per rank over UCX; local: ranks as threads of this process")
      ->capture_default_str();
  c->add_flag("--colocated", a->colocated, "Baseline: attention and FFN in one in-process rank");
  c->add_option("--max-batch", a->max_batch, "Running requests per attention rank")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  c->add_option("--max-batch-tokens", a->max_batch_tokens, "Tokens per step per attention rank")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  c->add_option("--prefill-chunk", a->prefill_chunk, "Prompt tokens per request per step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  c->add_option("--kv-tokens", a->kv_tokens,
                "KV cache capacity per attention rank (tokens); also caps the context")
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 30))
      ->capture_default_str();
  c->add_option("--dispatch-dtype", a->dispatch, "A->F activations: fp8, bf16 or f32")
      ->capture_default_str();
  c->add_option("--peer-timeout-ms", a->peer_timeout_ms,
                "Longest wait for a peer before it is declared dead")
      ->capture_default_str();
  c->add_option("--default-max-tokens", a->default_chat_tokens,
                "Chat max_tokens when a request gives none (completions: 16, as OpenAI)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  c->add_option("--max-body-bytes", a->max_body_bytes, "Largest request body (413 beyond)")
      ->check(CLI::Range(int64_t{1024}, int64_t{1} << 30))
      ->capture_default_str();
  c->add_option("--shutdown-grace-ms", a->shutdown_grace_ms,
                "On SIGINT/SIGTERM, how long requests in flight may finish")
      ->check(CLI::Range(int64_t{0}, int64_t{3600000}))
      ->capture_default_str();
  return {c, [a] { return run(*a); }};
}

}  // namespace afd::cli
