// The OpenAI-compatible API over an Engine: routes, the life of one generation (tokenize,
// submit, stream tokens back as text, stop strings, usage, cancellation when the client goes
// away), /v1/models, /health and /metrics. docs/serving.md describes it for users.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "serve/engine.h"
#include "serve/http_server.h"
#include "serve/metrics.h"
#include "serve/openai_codec.h"

namespace afd::openai {

struct ApiOptions {
  std::string served_model_name = "step3";
  // Longest prompt + completion of one request, in tokens (the model's context, or less when
  // the KV cache of a rank is smaller). A prompt that leaves no room for one token gets 413.
  int64_t max_context = 4096;
  // max_tokens when a request gives none: completions use OpenAI's legacy default (16); chat
  // uses the room left in the context, capped here so a random-weight model without EOS does
  // not decode for hours.
  int64_t default_completion_tokens = 16;
  int64_t default_chat_tokens = 1024;
};

class OpenAiApi {
 public:
  // `engine` and `codec` must outlive every request this API answers (shut the server down
  // before the engine).
  OpenAiApi(Engine& engine, std::shared_ptr<const TextCodec> codec, ApiOptions opt);
  ~OpenAiApi();
  OpenAiApi(const OpenAiApi&) = delete;
  OpenAiApi& operator=(const OpenAiApi&) = delete;

  // The handler to give the HTTP server: every route, with responses counted in metrics().
  http::Handler handler();
  metrics::ServingMetrics& metrics();

  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace afd::openai
