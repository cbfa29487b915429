#include "serve/bench_client_workload.h"

#include <cmath>
#include <fstream>
#include <limits>

namespace afd::serve::bench {

uint64_t Rng::next() {
  uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double Rng::uniform01() { return double(next() >> 11) * 0x1.0p-53; }

int64_t Rng::uniform_int(int64_t lo, int64_t hi) {
  const uint64_t span = uint64_t(hi - lo) + 1;
  if (span == 0) return int64_t(next());  // the full 64-bit range
  // Rejection keeps every value equally likely (plain modulo favours small ones).
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % span;
  uint64_t x;
  do x = next();
  while (x >= limit);
  return lo + int64_t(x % span);
}

double Rng::exponential(double rate) { return -std::log1p(-uniform01()) / rate; }

namespace {

std::pair<int64_t, int64_t> length_range(int64_t len, double ratio) {
  // int() truncation as vLLM's random dataset does, and never below one token.
  const int64_t lo = std::max<int64_t>(1, int64_t(double(len) * (1 - ratio)));
  const int64_t hi = std::max<int64_t>(lo, int64_t(double(len) * (1 + ratio)));
  return {lo, hi};
}

}  // namespace

std::vector<Prompt> random_prompts(const RandomSpec& spec, size_t n) {
  Rng rng(spec.seed);
  auto [in_lo, in_hi] = length_range(spec.input_len, spec.range_ratio);
  auto [out_lo, out_hi] = length_range(spec.output_len, spec.range_ratio);
  std::vector<Prompt> out(n);
  for (Prompt& p : out) {
    p.is_ids = true;
    p.ids.resize(size_t(rng.uniform_int(in_lo, in_hi)));
    p.max_tokens = rng.uniform_int(out_lo, out_hi);
    for (int64_t& id : p.ids) id = rng.uniform_int(0, spec.vocab - 1);
  }
  return out;
}

namespace {

Result<std::vector<int64_t>> int_array(const nlohmann::json& j, const std::string& where) {
  if (!j.is_array() || j.empty())
    return InvalidArgument("{}: expected a non-empty array of token ids", where);
  std::vector<int64_t> ids;
  ids.reserve(j.size());
  for (const auto& v : j) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      return InvalidArgument("{}: token ids must be non-negative integers, got {}", where,
                             v.dump());
    ids.push_back(v.get<int64_t>());
  }
  return ids;
}

Result<Prompt> parse_line(const std::string& line, const std::string& where,
                          int64_t default_max_tokens) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Corrupt("{}: not a JSON object", where);
  Prompt p;
  p.max_tokens = default_max_tokens;
  auto prompt = j.find("prompt");
  auto prompt_ids = j.find("prompt_ids");
  if (prompt != j.end() && prompt_ids != j.end())
    return InvalidArgument("{}: give \"prompt\" or \"prompt_ids\", not both", where);
  if (prompt_ids != j.end()) {
    AFD_ASSIGN_OR_RETURN(p.ids, int_array(*prompt_ids, where + ": prompt_ids"));
    p.is_ids = true;
  } else if (prompt != j.end() && prompt->is_string()) {
    p.text = prompt->get<std::string>();
    if (p.text.empty()) return InvalidArgument("{}: empty \"prompt\"", where);
  } else if (prompt != j.end() && prompt->is_array()) {
    AFD_ASSIGN_OR_RETURN(p.ids, int_array(*prompt, where + ": prompt"));
    p.is_ids = true;
  } else {
    return InvalidArgument("{}: needs \"prompt\" (string or token ids) or \"prompt_ids\"", where);
  }
  if (auto m = j.find("max_tokens"); m != j.end()) {
    if (!m->is_number_integer() || m->get<int64_t>() < 1)
      return InvalidArgument("{}: \"max_tokens\" must be a positive integer, got {}", where,
                             m->dump());
    p.max_tokens = m->get<int64_t>();
  }
  return p;
}

}  // namespace

Result<std::vector<Prompt>> load_dataset(const std::string& path, int64_t default_max_tokens,
                                         size_t n) {
  std::ifstream in(path);
  if (!in) return NotFound("{}: cannot open the dataset", path);
  std::vector<Prompt> lines;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    AFD_ASSIGN_OR_RETURN(Prompt p,
                         parse_line(line, fmt::format("{}:{}", path, number), default_max_tokens));
    lines.push_back(std::move(p));
  }
  if (in.bad()) return IOError("{}: read failed", path);
  if (lines.empty()) return InvalidArgument("{}: no prompts in the dataset", path);
  std::vector<Prompt> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(lines[i % lines.size()]);
  return out;
}

std::vector<double> poisson_arrivals(size_t n, double rate, uint64_t seed) {
  std::vector<double> t(n, 0.0);
  if (std::isinf(rate)) return t;
  // A stream separate from the prompts' so changing the rate leaves the prompts as they were.
  Rng rng(seed ^ 0xa5a5a5a5deadbeefULL);
  for (size_t i = 1; i < n; ++i) t[i] = t[i - 1] + rng.exponential(rate);
  return t;
}

Result<std::string> request_body(const Prompt& p, Api api, const std::string& model,
                                 const nlohmann::json& extra) {
  nlohmann::json j;
  if (!model.empty()) j["model"] = model;
  if (api == Api::kChat) {
    if (p.is_ids)
      return InvalidArgument(
          "/v1/chat/completions needs text prompts: token-id prompts (random, or prompt_ids in "
          "the dataset) work with /v1/completions only");
    j["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", p.text}}});
  } else if (p.is_ids) {
    j["prompt"] = p.ids;
  } else {
    j["prompt"] = p.text;
  }
  j["max_tokens"] = p.max_tokens;
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  if (extra.is_object()) j.update(extra, /*merge_objects=*/true);
  return j.dump();
}

}  // namespace afd::serve::bench
