// afd bench, client side of one streamed request: the server-sent-event framing that
// OpenAI-compatible servers use (`data: {json}\n\n` ... `data: [DONE]\n\n`), what each chunk says,
// and the timings (TTFT, inter-token gaps, end-to-end) taken from it as bytes arrive.
// No sockets here, so all of it is tested on byte strings (tests/unit/test_bench_sse.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace afd::serve::bench {

// Splits a text/event-stream body into events (WHATWG HTML, "event stream interpretation") fed
// in whatever pieces the network delivers: a line or a CRLF may be cut anywhere. Only the data
// field matters to OpenAI streams, so event/id/retry fields and ':' comments are dropped; the
// data lines of one event are joined with '\n' as the standard says.
class SseParser {
 public:
  // Appends the data of every event that `bytes` completes to `out`.
  void feed(std::string_view bytes, std::vector<std::string>& out);
  // Bytes held for an unfinished line or event.
  size_t pending_bytes() const { return line_.size() + data_.size(); }

 private:
  void on_line(std::string_view line, std::vector<std::string>& out);

  std::string line_;        // the current line, not yet terminated
  std::string data_;        // data of the event being built
  bool have_data_ = false;  // a data field was seen (an empty "data:" still makes an event)
  bool skip_lf_ = false;    // the last piece ended in CR: an LF starting the next belongs to it
};

// What the data of one event says, for the fields the benchmark needs.
struct Chunk {
  enum class Kind { kData, kDone, kMalformed };
  Kind kind = Kind::kData;
  // choices[0] carries generated text: `text` (completions) or `delta.content` /
  // `delta.reasoning_content` (chat). The chat role chunk ({"delta":{"role":..,"content":""}})
  // carries none, so it does not count as the first token.
  bool has_text = false;
  int64_t prompt_tokens = -1;  // usage.prompt_tokens, -1 when absent
  int64_t completion_tokens = -1;
  std::string error;  // the message of an {"error": ...} chunk (vLLM streams errors this way)
};

Chunk parse_chunk(std::string_view data);

// The outcome of one request. Times are seconds since the request was started (before connect).
struct RequestResult {
  bool ok = false;
  std::string error;            // why it failed; empty when ok
  double ttft_s = -1;           // first chunk with text; -1 when none arrived
  double e2e_s = 0;             // until the response body ended
  std::vector<double> itl_s;    // gaps between consecutive chunks with text
  int64_t prompt_tokens = -1;   // from usage, else the prompt's known length, else -1
  int64_t output_tokens = 0;    // from usage, else the number of chunks with text
  bool usage_reported = false;  // output_tokens came from the server's usage chunk
};

// Time per output token after the first: (e2e - ttft) / (output_tokens - 1). Negative (undefined)
// for a failed request, one without text, or one with fewer than two output tokens.
double tpot_s(const RequestResult& r);

// Turns one response body, as it arrives, into a RequestResult.
class StreamAccumulator {
 public:
  // `bytes` arrived at time t (seconds since the request started).
  void on_bytes(std::string_view bytes, double t);
  // The body ended at time t. A stream is good when it ended with [DONE] and carried no error
  // chunk and no malformed JSON; `known_prompt_len` (or -1) stands in for missing usage.
  RequestResult finish(double t, int64_t known_prompt_len) const;
  bool saw_done() const { return done_; }

 private:
  void on_event(const std::string& data, double t);

  SseParser parser_;
  std::vector<std::string> events_;  // scratch, reused across on_bytes calls
  double first_ = -1, last_ = -1;    // arrival of the first and latest chunk with text
  std::vector<double> itl_s_;
  int64_t text_chunks_ = 0;
  int64_t prompt_tokens_ = -1, completion_tokens_ = -1;
  bool done_ = false;
  std::string error_;  // first error or malformed chunk
};

}  // namespace afd::serve::bench
