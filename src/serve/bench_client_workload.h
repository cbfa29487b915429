// afd bench, what to send: random token-id prompts or prompts from a JSON-lines file, Poisson
// arrival times, and the OpenAI request bodies. Seeded and independent of the standard library's
// distributions (whose algorithms differ between implementations), so one seed gives the same
// workload everywhere.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace afd::serve::bench {

// A 64-bit generator with explicit, portable integer and real draws (splitmix64).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next();
  double uniform01();                           // [0, 1) with 53 random bits
  int64_t uniform_int(int64_t lo, int64_t hi);  // [lo, hi], inclusive
  double exponential(double rate);              // mean 1/rate

 private:
  uint64_t s_;
};

struct Prompt {
  std::string text;          // a text prompt, or
  std::vector<int64_t> ids;  // token ids (sent as the completions API's array-of-ints prompt)
  bool is_ids = false;
  int64_t max_tokens = 0;
  // Prompt length in tokens when the client knows it (ids); -1 for text, whose length only the
  // server's usage chunk tells.
  int64_t known_len() const { return is_ids ? int64_t(ids.size()) : -1; }
};

struct RandomSpec {
  int64_t input_len = 1024;
  int64_t output_len = 128;
  double range_ratio = 0;  // lengths uniform in [int(L(1-X)), int(L(1+X))], at least 1
  int64_t vocab = 1000;    // ids uniform in [0, vocab)
  uint64_t seed = 0;
};

std::vector<Prompt> random_prompts(const RandomSpec& spec, size_t n);

// Reads `path`: one JSON object per line with "prompt" (string or array of ints) or
// "prompt_ids" (array of ints), and optionally "max_tokens" (else `default_max_tokens`); blank
// lines are skipped. Returns `n` prompts, the file's in order, repeated when it has fewer.
// Errors name the file and line.
Result<std::vector<Prompt>> load_dataset(const std::string& path, int64_t default_max_tokens,
                                         size_t n);

// Arrival offsets in seconds for n requests: the first at 0, then exponential gaps of mean
// 1/rate (a Poisson process); all 0 when rate is infinite.
std::vector<double> poisson_arrivals(size_t n, double rate, uint64_t seed);

enum class Api { kCompletions, kChat };

// The streaming request body: {"model"?, "prompt" | "messages", "max_tokens", "stream": true,
// "stream_options": {"include_usage": true}} with `extra` merged over it. A chat request needs a
// text prompt.
Result<std::string> request_body(const Prompt& p, Api api, const std::string& model,
                                 const nlohmann::json& extra);

}  // namespace afd::serve::bench
