#include "serve/bench_client_sse.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace afd::serve::bench {

void SseParser::feed(std::string_view bytes, std::vector<std::string>& out) {
  size_t i = 0;
  if (skip_lf_ && !bytes.empty()) {
    if (bytes[0] == '\n') i = 1;
    skip_lf_ = false;
  }
  while (i < bytes.size()) {
    // Scan to the next line end; everything before it extends the pending line.
    size_t j = i;
    while (j < bytes.size() && bytes[j] != '\n' && bytes[j] != '\r') ++j;
    if (j == bytes.size()) {
      line_.append(bytes.substr(i));
      return;
    }
    if (line_.empty()) {
      on_line(bytes.substr(i, j - i), out);
    } else {
      line_.append(bytes.substr(i, j - i));
      on_line(line_, out);
      line_.clear();
    }
    if (bytes[j] == '\r') {
      if (j + 1 < bytes.size()) {
        if (bytes[j + 1] == '\n') ++j;
      } else {
        skip_lf_ = true;  // the LF of this CRLF may be the first byte of the next piece
      }
    }
    i = j + 1;
  }
}

void SseParser::on_line(std::string_view line, std::vector<std::string>& out) {
  if (line.empty()) {  // a blank line ends the event
    if (have_data_) out.push_back(std::move(data_));
    data_.clear();
    have_data_ = false;
    return;
  }
  if (line[0] == ':') return;  // comment (servers send these as keep-alives)
  const size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field != "data") return;
  if (have_data_) data_.push_back('\n');
  data_.append(value);
  have_data_ = true;
}

namespace {

bool non_empty_string(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Chunk parse_chunk(std::string_view data) {
  Chunk c;
  if (trim(data) == "[DONE]") {
    c.kind = Chunk::Kind::kDone;
    return c;
  }
  nlohmann::json j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    c.kind = Chunk::Kind::kMalformed;
    c.error = fmt::format("malformed stream chunk: {:.120}", data);
    return c;
  }
  // Errors mid-stream: OpenAI's {"error": {...}} and vLLM's older {"object": "error", ...}.
  if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
    if (e->is_object() && e->contains("message") && (*e)["message"].is_string())
      c.error = (*e)["message"].get<std::string>();
    else
      c.error = e->dump();
    if (c.error.empty()) c.error = "error chunk without a message";
  } else if (j.value("object", "") == "error") {
    c.error = j.value("message", "error chunk without a message");
  }
  if (auto ch = j.find("choices"); ch != j.end() && ch->is_array() && !ch->empty()) {
    const nlohmann::json& c0 = (*ch)[0];
    if (c0.is_object()) {
      c.has_text = non_empty_string(c0, "text");
      if (auto d = c0.find("delta"); d != c0.end() && d->is_object())
        c.has_text = c.has_text || non_empty_string(*d, "content") ||
                     non_empty_string(*d, "reasoning_content");
    }
  }
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    if (auto p = u->find("prompt_tokens"); p != u->end() && p->is_number_integer())
      c.prompt_tokens = p->get<int64_t>();
    if (auto p = u->find("completion_tokens"); p != u->end() && p->is_number_integer())
      c.completion_tokens = p->get<int64_t>();
  }
  return c;
}

double tpot_s(const RequestResult& r) {
  if (!r.ok || r.ttft_s < 0 || r.output_tokens < 2) return -1;
  return (r.e2e_s - r.ttft_s) / double(r.output_tokens - 1);
}

void StreamAccumulator::on_bytes(std::string_view bytes, double t) {
  events_.clear();
  parser_.feed(bytes, events_);
  for (const std::string& e : events_) on_event(e, t);
}

void StreamAccumulator::on_event(const std::string& data, double t) {
  if (done_) return;  // nothing after [DONE] is part of the answer
  Chunk c = parse_chunk(data);
  if (c.kind == Chunk::Kind::kDone) {
    done_ = true;
    return;
  }
  if (!c.error.empty() && error_.empty()) error_ = c.error;
  if (c.kind == Chunk::Kind::kMalformed) return;
  if (c.has_text) {
    if (first_ < 0)
      first_ = t;
    else
      itl_s_.push_back(t - last_);
    last_ = t;
    ++text_chunks_;
  }
  // Servers that report usage on every chunk (vLLM's continuous_usage_stats) end with the total.
  if (c.prompt_tokens >= 0) prompt_tokens_ = c.prompt_tokens;
  if (c.completion_tokens >= 0) completion_tokens_ = c.completion_tokens;
}

RequestResult StreamAccumulator::finish(double t, int64_t known_prompt_len) const {
  RequestResult r;
  r.e2e_s = t;
  r.ttft_s = first_;
  r.itl_s = itl_s_;
  r.prompt_tokens = prompt_tokens_ >= 0 ? prompt_tokens_ : known_prompt_len;
  r.usage_reported = completion_tokens_ >= 0;
  r.output_tokens = r.usage_reported ? completion_tokens_ : text_chunks_;
  if (!error_.empty())
    r.error = error_;
  else if (!done_)
    r.error = "stream ended without data: [DONE]";
  r.ok = r.error.empty();
  return r;
}

}  // namespace afd::serve::bench
