// The OpenAI wire format, apart from any engine: request parsing and validation for
// /v1/completions and /v1/chat/completions, the error shape, response and SSE chunk bodies, and
// the incremental stop-string matcher. Pure functions and small value types, unit-tested alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "serve/http_server.h"
#include "serve/openai_codec.h"

namespace afd::openai {

// {"error": {"message", "type", "param", "code"}} with its HTTP status.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" -> null
  std::string code;   // "" -> null
};
std::string error_body(const ApiError& e);
http::Response error_response(const ApiError& e);
// The error of a status the server or router produces itself (404, 405, 413, 431, 503...).
http::Response error_for_status(int status, const std::string& message);

enum class Kind { kCompletion, kChat };

struct ParsedRequest {
  Kind kind = Kind::kCompletion;
  std::string model;                       // "" when absent
  std::optional<std::string> prompt_text;  // completions: the prompt as text...
  std::vector<int32_t> prompt_ids;         // ...or as token ids (when prompt_text is empty)
  std::vector<ChatMessage> messages;       // chat
  std::optional<int64_t> max_tokens;       // max_completion_tokens, else max_tokens
  float temperature = 1.0f;
  float top_p = 1.0f;
  int64_t top_k = 0;  // 0: no limit (-1 is accepted and means the same)
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;  // non-empty strings
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

inline constexpr size_t kMaxStopStrings = 16;

// Parses and validates a request body. Unknown fields are ignored (clients send many); known
// fields of features afd does not implement (logprobs, echo, penalties, tools, n > 1, ...) are
// refused with 400 rather than silently ignored.
std::variant<ParsedRequest, ApiError> parse_request(Kind kind, const std::string& body);

// Finds stop strings in text that arrives in pieces. Text that could still become the start of
// a stop string is held back until the next piece decides; once a stop string appears,
// everything from it on is dropped. Stop strings and pieces are whole UTF-8 (the decoder never
// splits a character), so what is released never splits a character either.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Appends a piece; returns the text that is now safe to send (possibly empty).
  std::string push(const std::string& piece);
  // End of generation: the held-back text (empty once matched()).
  std::string flush();
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool matched_ = false;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// Identity of a response: "cmpl-..." / "chatcmpl-...", creation time, the served model name.
struct ResponseMeta {
  Kind kind = Kind::kCompletion;
  std::string id;
  int64_t created = 0;  // unix seconds
  std::string model;
};

// Non-streaming bodies.
std::string completion_body(const ResponseMeta& m, const std::string& text,
                            const std::string& finish_reason, const Usage& u);

// Streaming: one SSE event "data: {...}\n\n" each.
// A text delta (and, when finish_reason is set, the last choice chunk). For chat, `role` adds
// {"role": "assistant"} to the delta (the first chunk). include_usage adds "usage": null.
std::string sse_delta(const ResponseMeta& m, const std::string& text,
                      const std::optional<std::string>& finish_reason, bool role,
                      bool include_usage);
std::string sse_usage(const ResponseMeta& m, const Usage& u);  // "choices": [] and the usage
std::string sse_error(const ApiError& e);
inline const char* kSseDone = "data: [DONE]\n\n";

}  // namespace afd::openai
