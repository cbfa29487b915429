#include "serve/openai_protocol.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace afd::openai {

using nlohmann::json;

namespace {

json null_or(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// dump() that never throws on invalid UTF-8 (a prompt may carry anything; text we produce is
// whole UTF-8 by the decoder's contract, so replacement only guards against bugs).
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

ApiError bad(std::string message, std::string param, std::string code = "") {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(param),
                  std::move(code)};
}

// A field that is absent or JSON null counts as "not given", as OpenAI's servers treat it.
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<ApiError> parse_number(const json& body, const char* name, double lo, double hi,
                                     bool lo_open, float* out) {
  const json* f = field(body, name);
  if (!f) return std::nullopt;
  if (!f->is_number())
    return bad(fmt::format("'{}' must be a number, got {}", name, dump(*f)), name);
  double v = f->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
    return bad(
        fmt::format("'{}' must be in {}{}, {}], got {}", name, lo_open ? "(" : "[", lo, hi, v),
        name);
  *out = static_cast<float>(v);
  return std::nullopt;
}

std::optional<ApiError> parse_ids(const json& arr, const char* param, std::vector<int32_t>* out) {
  for (const auto& t : arr) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
      return bad(
          fmt::format("'{}' token ids must be non-negative integers, got {}", param, dump(t)),
          param);
    out->push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  if (out->empty()) return bad(fmt::format("'{}' must not be empty", param), param);
  return std::nullopt;
}

// prompt: "text" | [ids] | ["text"] | [[ids]]; lists of several prompts are batches, which
// would need n > 1 choices: refused.
std::optional<ApiError> parse_prompt(const json& body, ParsedRequest* r) {
  const json* p = field(body, "prompt");
  if (!p) return bad("'prompt' is required", "prompt");
  if (p->is_string()) {
    r->prompt_text = p->get<std::string>();
    return std::nullopt;
  }
  if (!p->is_array()) return bad("'prompt' must be a string or an array of token ids", "prompt");
  if (p->empty()) return bad("'prompt' must not be empty", "prompt");
  const json& first = (*p)[0];
  if (first.is_string() || first.is_array()) {
    if (p->size() != 1)
      return bad("one prompt per request: batches of prompts are not supported", "prompt");
    if (first.is_string()) {
      r->prompt_text = first.get<std::string>();
      return std::nullopt;
    }
    return parse_ids(first, "prompt", &r->prompt_ids);
  }
  return parse_ids(*p, "prompt", &r->prompt_ids);
}

std::optional<ApiError> parse_messages(const json& body, ParsedRequest* r) {
  const json* m = field(body, "messages");
  if (!m) return bad("'messages' is required", "messages");
  if (!m->is_array() || m->empty())
    return bad("'messages' must be a non-empty array of {\"role\", \"content\"}", "messages");
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    std::string param = fmt::format("messages[{}]", i);
    if (!msg.is_object()) return bad(param + " must be an object", param);
    const json* role = field(msg, "role");
    if (!role || !role->is_string()) return bad(param + ".role must be a string", param + ".role");
    ChatMessage cm;
    cm.role = role->get<std::string>();
    const json* content = field(msg, "content");
    if (!content) {
      // An assistant turn may carry only tool calls; without tools its text is empty.
    } else if (content->is_string()) {
      cm.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (const auto& part : *content) {
        const json* type = part.is_object() ? field(part, "type") : nullptr;
        const json* text = part.is_object() ? field(part, "text") : nullptr;
        if (!type || *type != "text" || !text || !text->is_string())
          return bad(param +
                         ".content: only parts {\"type\": \"text\", \"text\": ...} are "
                         "supported (this is a text model)",
                     param + ".content");
        cm.content += text->get<std::string>();
      }
    } else {
      return bad(param + ".content must be a string or an array of text parts", param + ".content");
    }
    r->messages.push_back(std::move(cm));
  }
  return std::nullopt;
}

// Known features afd does not implement: a non-default value is refused so that a client
// never gets an answer that silently ignored what it asked for.
std::optional<ApiError> refuse_unsupported(const json& body, Kind kind) {
  auto nonzero = [](const json& v) {
    return (v.is_number() && v.get<double>() != 0) || (v.is_boolean() && v.get<bool>());
  };
  for (const char* name : {"presence_penalty", "frequency_penalty"})
    if (const json* f = field(body, name); f && nonzero(*f))
      return bad(fmt::format("'{}' is not supported", name), name);
  if (const json* f = field(body, "logprobs"); f && nonzero(*f))
    return bad("'logprobs' is not supported", "logprobs");
  if (const json* f = field(body, "top_logprobs"); f && nonzero(*f))
    return bad("'top_logprobs' is not supported", "top_logprobs");
  if (const json* f = field(body, "logit_bias"); f && !f->empty())
    return bad("'logit_bias' is not supported", "logit_bias");
  if (kind == Kind::kCompletion) {
    if (const json* f = field(body, "echo"); f && nonzero(*f))
      return bad("'echo' is not supported", "echo");
    if (const json* f = field(body, "best_of"); f && (!f->is_number_integer() || *f != 1))
      return bad("'best_of' must be 1", "best_of");
    if (const json* f = field(body, "suffix"); f && (!f->is_string() || !f->empty()))
      return bad("'suffix' is not supported", "suffix");
  } else {
    if (const json* f = field(body, "tools"); f && !f->empty())
      return bad("'tools' are not supported", "tools");
    if (const json* f = field(body, "response_format")) {
      const json* t = f->is_object() ? field(*f, "type") : nullptr;
      if (!t || *t != "text")
        return bad("only 'response_format' {\"type\": \"text\"} is supported", "response_format");
    }
  }
  return std::nullopt;
}

}  // namespace

std::string error_body(const ApiError& e) {
  return dump(json{{"error",
                    {{"message", e.message},
                     {"type", e.type},
                     {"param", null_or(e.param)},
                     {"code", null_or(e.code)}}}});
}

http::Response error_response(const ApiError& e) {
  return {e.status, "application/json", error_body(e), {}};
}

http::Response error_for_status(int status, const std::string& message) {
  ApiError e{status, message, "invalid_request_error", "", ""};
  switch (status) {
    case 404: e.code = "not_found"; break;
    case 405: e.code = "method_not_allowed"; break;
    case 413: e.code = "request_too_large"; break;
    case 431: e.code = "header_too_large"; break;
    default: break;
  }
  if (status >= 500) {
    e.type = "server_error";
    if (status == 503) e.code = "service_unavailable";
  }
  return error_response(e);
}

std::variant<ParsedRequest, ApiError> parse_request(Kind kind, const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const std::exception& e) {
    return bad(std::string("the body is not valid JSON: ") + e.what(), "", "invalid_json");
  }
  if (!j.is_object()) return bad("the body must be a JSON object", "", "invalid_json");
  ParsedRequest r;
  r.kind = kind;
  if (const json* f = field(j, "model")) {
    if (!f->is_string()) return bad("'model' must be a string", "model");
    r.model = f->get<std::string>();
  }
  if (auto e = kind == Kind::kCompletion ? parse_prompt(j, &r) : parse_messages(j, &r)) return *e;
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    const json* f = field(j, name);
    if (!f) continue;
    if (!f->is_number_integer() || f->get<int64_t>() < 1)
      return bad(fmt::format("'{}' must be a positive integer, got {}", name, dump(*f)), name);
    // max_completion_tokens is the newer name; it wins when both are given.
    if (!r.max_tokens || std::string(name) == "max_completion_tokens")
      r.max_tokens = f->get<int64_t>();
  }
  if (auto e = parse_number(j, "temperature", 0, 2, false, &r.temperature)) return *e;
  if (auto e = parse_number(j, "top_p", 0, 1, true, &r.top_p)) return *e;
  if (const json* f = field(j, "top_k")) {
    if (!f->is_number_integer() || f->get<int64_t>() < -1)
      return bad(fmt::format("'top_k' must be an integer >= -1, got {}", dump(*f)), "top_k");
    r.top_k = std::max<int64_t>(0, f->get<int64_t>());
  }
  if (const json* f = field(j, "seed")) {
    if (!f->is_number_integer()) return bad("'seed' must be an integer", "seed");
    r.seed =
        f->is_number_unsigned() ? f->get<uint64_t>() : static_cast<uint64_t>(f->get<int64_t>());
  }
  if (const json* f = field(j, "stop")) {
    std::vector<std::string> stops;
    if (f->is_string()) {
      stops.push_back(f->get<std::string>());
    } else if (f->is_array()) {
      for (const auto& s : *f) {
        if (!s.is_string()) return bad("'stop' must be a string or an array of strings", "stop");
        stops.push_back(s.get<std::string>());
      }
    } else {
      return bad("'stop' must be a string or an array of strings", "stop");
    }
    if (stops.size() > kMaxStopStrings)
      return bad(fmt::format("at most {} stop strings", kMaxStopStrings), "stop");
    for (auto& s : stops)
      if (!s.empty()) r.stop.push_back(std::move(s));
  }
  if (const json* f = field(j, "n")) {
    if (!f->is_number_integer() || f->get<int64_t>() != 1)
      return bad(fmt::format("'n' must be 1 (one choice per request), got {}", dump(*f)), "n");
  }
  if (const json* f = field(j, "stream")) {
    if (!f->is_boolean()) return bad("'stream' must be a boolean", "stream");
    r.stream = f->get<bool>();
  }
  if (const json* f = field(j, "stream_options")) {
    if (!r.stream)
      return bad("'stream_options' is only allowed with \"stream\": true", "stream_options");
    if (!f->is_object()) return bad("'stream_options' must be an object", "stream_options");
    if (const json* u = field(*f, "include_usage")) {
      if (!u->is_boolean())
        return bad("'stream_options.include_usage' must be a boolean",
                   "stream_options.include_usage");
      r.include_usage = u->get<bool>();
    }
  }
  if (auto e = refuse_unsupported(j, kind)) return *e;
  return r;
}

// ---- StopMatcher -----------------------------------------------------------------------------

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string StopMatcher::push(const std::string& piece) {
  if (matched_) return "";
  pending_ += piece;
  if (stops_.empty()) return std::exchange(pending_, std::string());
  // The earliest occurrence of any stop string wins.
  size_t at = std::string::npos;
  for (const auto& s : stops_) at = std::min(at, pending_.find(s));
  if (at != std::string::npos) {
    matched_ = true;
    std::string out = pending_.substr(0, at);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    size_t most = std::min(s.size() - 1, pending_.size());
    for (size_t k = most; k > hold; --k)
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::flush() {
  if (matched_) return "";
  return std::exchange(pending_, std::string());
}

// ---- response bodies -----------------------------------------------------------------------

namespace {

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json envelope(const ResponseMeta& m, bool chunk) {
  const char* object = m.kind == Kind::kChat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                             : "text_completion";
  return {{"id", m.id}, {"object", object}, {"created", m.created}, {"model", m.model}};
}

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace

std::string completion_body(const ResponseMeta& m, const std::string& text,
                            const std::string& finish_reason, const Usage& u) {
  json j = envelope(m, false);
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  if (m.kind == Kind::kChat)
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  else
    choice["text"] = text;
  j["choices"] = json::array({choice});
  j["usage"] = usage_json(u);
  return dump(j);
}

std::string sse_delta(const ResponseMeta& m, const std::string& text,
                      const std::optional<std::string>& finish_reason, bool role,
                      bool include_usage) {
  json j = envelope(m, true);
  json choice = {{"index", 0}, {"logprobs", nullptr}};
  if (m.kind == Kind::kChat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (!text.empty() || role) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  choice["finish_reason"] = finish_reason ? json(*finish_reason) : json(nullptr);
  j["choices"] = json::array({choice});
  if (include_usage) j["usage"] = nullptr;
  return sse(j);
}

std::string sse_usage(const ResponseMeta& m, const Usage& u) {
  json j = envelope(m, true);
  j["choices"] = json::array();
  j["usage"] = usage_json(u);
  return sse(j);
}

std::string sse_error(const ApiError& e) { return "data: " + error_body(e) + "\n\n"; }

}  // namespace afd::openai
