// afd bench: a load generator for OpenAI-compatible streaming servers in the style of
// `vllm bench serve` (docs/bench.md): random or file prompts, Poisson arrivals or a fixed
// concurrency, and a report of throughput, TTFT/TPOT/ITL/E2EL percentiles and goodput.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "serve/bench_client.h"
#include "serve/bench_client_stats.h"
#include "serve/bench_client_workload.h"
#include "tools/afd/commands.h"

namespace afd::cli {

namespace {

using namespace afd::serve::bench;

struct BenchArgs {
  std::string url;
  std::string endpoint = "/v1/completions";
  std::string model;
  std::string request_rate = "inf";
  int64_t max_concurrency = 0;
  int64_t num_prompts = 1000;
  int64_t warmup = 0;
  int64_t input_len = 1024;
  int64_t output_len = 128;
  double range_ratio = 0;
  std::string dataset;
  int64_t vocab = 0;
  uint64_t seed = 0;
  std::optional<double> tpot_slo_ms;
  bool json = false;
  double timeout_s = 600;
  bool no_progress = false;
  std::string extra_body;
  std::string api_key;
};

double parse_rate(const std::string& s) {
  if (s == "inf" || s == "Inf" || s == "INF") return INFINITY;
  size_t used = 0;
  double r = 0;
  try {
    r = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || !(r > 0) || std::isnan(r))
    throw Error(InvalidArgument("--request-rate {}: expected a positive number or inf", s));
  return r;
}

// What GET /v1/models says that the benchmark can use. vLLM reports max_model_len per model;
// vocab_size is looked for in the model entry and at the top level, for servers that add it.
struct ServerInfo {
  std::string model;
  int64_t vocab = 0;          // 0: not reported
  int64_t max_model_len = 0;  // 0: not reported
};

ServerInfo query_models(const Url& url, double timeout_s) {
  auto res = http_get(url, "/v1/models", timeout_s);
  if (!res.ok())
    throw Error(Status(res.status().code(), "cannot reach the server: " + res.status().message()));
  ServerInfo info;
  if (res->status != 200) return info;  // servers without /v1/models still get benchmarked
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return info;
  auto int_field = [](const nlohmann::json& o, const char* key) -> int64_t {
    auto it = o.find(key);
    return it != o.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  info.vocab = int_field(j, "vocab_size");
  if (auto d = j.find("data");
      d != j.end() && d->is_array() && !d->empty() && (*d)[0].is_object()) {
    const nlohmann::json& m = (*d)[0];
    if (auto id = m.find("id"); id != m.end() && id->is_string()) info.model = *id;
    if (int64_t v = int_field(m, "vocab_size")) info.vocab = v;
    info.max_model_len = int_field(m, "max_model_len");
  }
  return info;
}

// The progress display on stderr: a bar redrawn in place on a terminal, otherwise a line at
// every tenth of the run and at least every 10 s (logs of long runs stay short but alive).
class ProgressPrinter {
 public:
  ProgressPrinter(bool enabled, std::string label)
      : enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1), label_(std::move(label)) {}

  bool tty() const { return tty_; }

  void update(const Progress& p, bool final) {
    if (!enabled_) return;
    const double rate = p.elapsed_s > 0 ? double(p.done) / p.elapsed_s : 0.0;
    const size_t pct = p.total ? p.done * 100 / p.total : 100;
    if (tty_) {
      constexpr size_t kWidth = 30;
      const size_t filled = p.total ? p.done * kWidth / p.total : kWidth;
      std::fprintf(stderr,
                   "\r\033[K%s [%s%s] %zu/%zu %3zu%% | %zu failed | %zu in flight | "
                   "%.1f req/s | %.1f s%s",
                   label_.c_str(), std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, '.').c_str(), p.done, p.total, pct, p.failed,
                   p.in_flight, rate, p.elapsed_s, final ? "\n" : "");
      bar_drawn_ = !final;
    } else {
      const size_t tenth = p.total ? p.done * 10 / p.total : 10;
      if (!final && tenth == last_tenth_ && p.elapsed_s - last_line_s_ < 10) return;
      if (final && printed_final_) return;
      std::fprintf(stderr,
                   "%s: %zu/%zu done (%zu%%), %zu failed, %zu in flight, %.1f req/s, %.1f s\n",
                   label_.c_str(), p.done, p.total, pct, p.failed, p.in_flight, rate, p.elapsed_s);
      last_tenth_ = tenth;
      last_line_s_ = p.elapsed_s;
      printed_final_ = final;
    }
    std::fflush(stderr);
  }

  // A message line that must not be drawn over by the bar.
  void message(const std::string& line) {
    if (bar_drawn_) std::fputs("\r\033[K", stderr);
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }

 private:
  bool enabled_, tty_;
  std::string label_;
  bool bar_drawn_ = false;
  size_t last_tenth_ = 0;
  double last_line_s_ = 0;
  bool printed_final_ = false;
};

// Failures are printed as they happen up to this many; the report keeps the first kKeptErrors.
constexpr size_t kPrintedErrors = 3;

LoadResult run_phase(const Url& url, const std::vector<std::string>& bodies,
                     const std::vector<int64_t>& known_lens, std::vector<double> arrivals,
                     const BenchArgs& a, const std::string& label) {
  ProgressPrinter progress(!a.no_progress, label);
  size_t printed = 0;
  LoadOptions o;
  o.path = a.endpoint;
  o.api_key = a.api_key;
  o.timeout_s = a.timeout_s;
  o.max_concurrency = size_t(a.max_concurrency);
  o.arrivals_s = std::move(arrivals);
  o.known_prompt_lens = known_lens;
  o.progress_interval_s = progress.tty() ? 0.1 : 1.0;
  o.on_progress = [&](const Progress& p) { progress.update(p, p.done == p.total); };
  o.on_failure = [&](size_t index, const std::string& error) {
    if (printed < kPrintedErrors)
      progress.message(fmt::format("afd bench: {} request {} failed: {}", label, index, error));
    else if (printed == kPrintedErrors)
      progress.message("afd bench: further failures are counted, not printed");
    ++printed;
  };
  auto r = run_load(url, bodies, o);
  check(r.status());
  return std::move(r).value();
}

int run(const BenchArgs& a) {
  const double rate = parse_rate(a.request_rate);
  Url url = parse_url(a.url).value();
  if (a.endpoint.empty() || a.endpoint[0] != '/')
    throw Error(InvalidArgument("--endpoint {}: expected a path starting with '/'", a.endpoint));
  const Api api =
      a.endpoint.find("chat/completions") != std::string::npos ? Api::kChat : Api::kCompletions;
  nlohmann::json extra = nlohmann::json::object();
  if (!a.extra_body.empty()) {
    extra = nlohmann::json::parse(a.extra_body, nullptr, /*allow_exceptions=*/false);
    if (!extra.is_object())
      throw Error(InvalidArgument("--extra-body: expected a JSON object, got {}", a.extra_body));
  }
  if (api == Api::kChat && a.dataset.empty())
    throw Error(InvalidArgument(
        "--endpoint {}: random prompts are token ids, which only /v1/completions accepts; give "
        "--dataset with text prompts",
        a.endpoint));

  // Asking /v1/models first also fails fast, with one line, when nothing listens at --url.
  const ServerInfo server = query_models(url, std::min(a.timeout_s, 30.0));
  const std::string model = a.model.empty() ? server.model : a.model;

  const size_t total = size_t(a.warmup + a.num_prompts);
  std::vector<Prompt> prompts;
  int64_t vocab = 0;
  if (!a.dataset.empty()) {
    prompts = load_dataset(a.dataset, a.output_len, total).value();
  } else {
    vocab = a.vocab > 0 ? a.vocab : server.vocab > 0 ? server.vocab : 1000;
    if (a.vocab == 0 && server.vocab == 0)
      std::fprintf(stderr,
                   "afd bench: the server reports no vocab_size; random token ids are drawn "
                   "from [0, 1000) (set --vocab)\n");
    prompts =
        random_prompts(RandomSpec{a.input_len, a.output_len, a.range_ratio, vocab, a.seed}, total);
    const double longest = double(a.input_len + a.output_len) * (1 + a.range_ratio);
    if (server.max_model_len > 0 && longest > double(server.max_model_len))
      std::fprintf(stderr,
                   "afd bench: prompts plus outputs reach %.0f tokens, above the server's "
                   "max_model_len %lld: expect failures\n",
                   longest, (long long)server.max_model_len);
  }
  std::vector<std::string> bodies;
  std::vector<int64_t> known_lens;
  bodies.reserve(total);
  known_lens.reserve(total);
  for (const Prompt& p : prompts) {
    bodies.push_back(request_body(p, api, model, extra).value());
    known_lens.push_back(p.known_len());
  }
  if (!a.no_progress)
    std::fprintf(stderr,
                 "afd bench: %lld requests (+%lld warm-up) to %s%s%s, model %s, rate %s req/s, "
                 "max concurrency %s%s\n",
                 (long long)a.num_prompts, (long long)a.warmup, url.host_header.c_str(),
                 url.base.c_str(), a.endpoint.c_str(), model.empty() ? "(none)" : model.c_str(),
                 a.request_rate.c_str(),
                 a.max_concurrency > 0 ? std::to_string(a.max_concurrency).c_str() : "unlimited",
                 vocab > 0 ? fmt::format(", vocab {}", vocab).c_str() : "");

  if (a.warmup > 0) {
    // Warm-up requests go out like the measured ones (same concurrency cap, all released at
    // once) and are left out of the report; if none succeeds the measurement would be noise.
    std::vector<std::string> wb(bodies.begin(), bodies.begin() + a.warmup);
    std::vector<int64_t> wl(known_lens.begin(), known_lens.begin() + a.warmup);
    LoadResult w = run_phase(url, wb, wl, {}, a, "warm-up");
    size_t ok = 0;
    for (const auto& r : w.results) ok += r.ok;
    if (ok == 0)
      throw Error(
          Status(Code::kUnavailable, fmt::format("all {} warm-up requests failed; the first: {}",
                                                 a.warmup, w.results[0].error)));
    bodies.erase(bodies.begin(), bodies.begin() + a.warmup);
    known_lens.erase(known_lens.begin(), known_lens.begin() + a.warmup);
  }

  LoadResult m =
      run_phase(url, bodies, known_lens, poisson_arrivals(bodies.size(), rate, a.seed), a, "bench");
  BenchConfig c;
  c.url = a.url;
  c.endpoint = a.endpoint;
  c.model = model;
  c.num_prompts = a.num_prompts;
  c.request_rate = rate;
  c.max_concurrency = a.max_concurrency;
  c.warmup = a.warmup;
  c.seed = a.seed;
  c.tpot_slo_ms = a.tpot_slo_ms;
  BenchReport report = make_report(c, m.results, m.duration_s, m.max_in_flight);
  if (a.json)
    std::printf("%s\n", report_json(report).dump(2).c_str());
  else
    std::printf("%s", report_text(report).c_str());
  std::fflush(stdout);
  if (report.completed == 0)
    throw Error(Status(Code::kUnavailable,
                       fmt::format("all {} requests failed; the first: {}", report.failed,
                                   report.errors.empty() ? "?" : report.errors[0])));
  return 0;
}

}  // namespace

Command register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* b = app.add_subcommand(
      "bench",
      "Benchmark an OpenAI-compatible streaming server (like `vllm bench serve`): throughput, "
      "TTFT/TPOT/ITL/E2EL mean and p50/p90/p99, goodput. See docs/bench.md.");
  b->add_option("--url", a->url, "Server base URL, http://host:port[/prefix]")->required();
  b->add_option("--endpoint", a->endpoint, "/v1/completions or /v1/chat/completions")
      ->capture_default_str();
  b->add_option("--model", a->model,
                "The request's model field (default: the first model of GET /v1/models)");
  b->add_option("--request-rate", a->request_rate,
                "Requests per second, Poisson arrivals; inf sends all at once")
      ->capture_default_str();
  b->add_option("--max-concurrency", a->max_concurrency,
                "Most requests in flight at once (default: no limit)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  b->add_option("--num-prompts", a->num_prompts, "Measured requests")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  b->add_option("--warmup", a->warmup, "Requests sent first and left out of the report")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
      ->capture_default_str();
  b->add_option("--input-len", a->input_len, "Random prompts: mean prompt length in tokens")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  b->add_option("--output-len", a->output_len,
                "Mean max_tokens (random prompts; dataset lines without max_tokens)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  b->add_option("--range-ratio", a->range_ratio,
                "Random lengths uniform in [L(1-X), L(1+X)] for input and output")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  b->add_option("--dataset", a->dataset,
                "JSON-lines prompts: {\"prompt\": str | [ids]} or {\"prompt_ids\": [ids]}, "
                "optional \"max_tokens\"; used in order, repeated when short")
      ->check(CLI::ExistingFile);
  b->add_option("--vocab", a->vocab,
                "Random token ids in [0, V) (default: vocab_size from /v1/models, else 1000)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 31));
  b->add_option("--seed", a->seed, "Seed of the prompts and arrival times")->capture_default_str();
  b->add_option("--tpot-slo-ms", a->tpot_slo_ms,
                "Goodput: successful requests/s whose TPOT is at most this")
      ->check(CLI::PositiveNumber);
  b->add_flag("--json", a->json, "Print the report as one JSON object (keys in docs/bench.md)");
  b->add_option("--timeout-s", a->timeout_s, "Per request, from its start to the end of its stream")
      ->check(CLI::Range(1e-3, 1e6))
      ->capture_default_str();
  b->add_flag("--no-progress", a->no_progress, "No progress display on stderr");
  b->add_option("--extra-body", a->extra_body,
                "JSON object merged into every request, e.g. '{\"ignore_eos\": true}'");
  b->add_option("--api-key", a->api_key, "Sent as Authorization: Bearer KEY");
  return {b, [a] { return run(*a); }};
}

}  // namespace afd::cli
