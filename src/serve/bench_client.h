// afd bench, the load generator's network side: many concurrent streaming HTTP/1.1 requests on
// one thread (Boost.Beast/Asio), released on an arrival schedule and capped by a concurrency
// limit, each timed by a StreamAccumulator and bounded by a deadline. Plain http only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "serve/bench_client_sse.h"

namespace afd::serve::bench {

// http://host[:port][/base]: the server the benchmark talks to; endpoints are appended to base.
struct Url {
  std::string host;         // without IPv6 brackets
  std::string port;         // "80" when absent
  std::string base;         // path prefix without a trailing '/', often empty
  std::string host_header;  // host[:port] as the URL spelled it, for the Host header
};

Result<Url> parse_url(std::string_view url);

struct HttpResponse {
  int status = 0;
  std::string body;
};

// One GET (e.g. /v1/models) with a deadline covering connect, send and the whole response.
// Network failures are errors (Code::kUnavailable); any HTTP status is a response.
Result<HttpResponse> http_get(const Url& url, const std::string& path, double timeout_s);

// A snapshot for the progress display.
struct Progress {
  size_t total = 0;
  size_t done = 0;  // finished, successful or not
  size_t failed = 0;
  size_t in_flight = 0;
  double elapsed_s = 0;
};

struct LoadOptions {
  std::string path;            // endpoint path (joined to the URL's base)
  std::string api_key;         // sent as "Authorization: Bearer" when not empty
  double timeout_s = 600;      // per request, from its start to the end of its body
  size_t max_concurrency = 0;  // 0: no limit
  // Offsets (s) from the start at which each request may begin; empty: all at once.
  std::vector<double> arrivals_s;
  // Prompt lengths known to the client (-1 unknown), reported when the server sends no usage.
  std::vector<int64_t> known_prompt_lens;
  // Called on the benchmark's thread every progress_interval_s and once at the end.
  std::function<void(const Progress&)> on_progress;
  double progress_interval_s = 0.1;
  // Called on the benchmark's thread for each failure as it happens (request index, message).
  std::function<void(size_t, const std::string&)> on_failure;
};

struct LoadResult {
  std::vector<RequestResult> results;  // one per body, in the bodies' order
  double duration_s = 0;               // first request released -> last one finished
  int64_t max_in_flight = 0;
};

// Sends every body as a POST to url.base + opts.path and waits for all of them. Failing requests
// are results with ok == false; only a setup failure (the host does not resolve) is an error.
Result<LoadResult> run_load(const Url& url, const std::vector<std::string>& bodies,
                            const LoadOptions& opts);

}  // namespace afd::serve::bench
