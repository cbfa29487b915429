// The OpenAI API over a FakeEngine: deterministic token streams, a switch to fail with
// kUnavailable, failures mid-stream, and cancellations the test can observe.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "serve/http_server.h"
#include "serve/openai_api.h"
#include "serve/openai_protocol.h"
#include "test_http_client.h"

namespace afd::openai {
namespace {

using afd::testing::Client;
using afd::testing::sse_events;
using nlohmann::json;

constexpr int32_t kEos = 256;

template <typename P>
bool eventually(P pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// Text is bytes: id = byte value; 256 is EOS. Chat renders "role: content\n" per message,
// then "assistant: ".
class ByteCodec : public TextCodec {
 public:
  Result<std::vector<int32_t>> encode(const std::string& text) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  Result<std::vector<int32_t>> encode_chat(const std::vector<ChatMessage>& msgs) const override {
    std::string t;
    for (const auto& m : msgs) t += m.role + ": " + m.content + "\n";
    return encode(t + "assistant: ");
  }
  std::unique_ptr<IncrementalDecoder> decoder() const override {
    struct D : IncrementalDecoder {
      std::string push(int32_t id) override { return std::string(1, static_cast<char>(id)); }
      std::string flush() override { return ""; }
    };
    return std::make_unique<D>();
  }
  std::vector<int32_t> stop_token_ids() const override { return {kEos}; }
  int64_t vocab_size() const override { return 257; }
  std::string describe() const override { return "bytes"; }
};

// Echoes the prompt cyclically, one token per step for every live request, until max_tokens,
// or until it emits a stop token id (finish "stop"). Steps run on the engine's own thread.
class FakeEngine : public Engine {
 public:
  FakeEngine() {
    cfg_.name = "fake";
    cfg_.vocab_size = 300;
    cfg_.max_position_embedding = 64;
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeEngine() override { shutdown(); }

  const ModelConfig& config() const override { return cfg_; }

  Result<int64_t> submit(GenerationRequest req,
                         std::function<void(const TokenEvent&)> cb) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (unavailable) return Status(Code::kUnavailable, "attention 1 is down");
    if (req.prompt.empty()) return InvalidArgument("empty prompt");
    int64_t id = next_id_++;
    submitted.push_back(req);
    live_[id] = {std::move(req), std::move(cb), 0};
    cv_.notify_all();
    return id;
  }
  void cancel(int64_t id) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (!live_.count(id)) return;
    cancel_queue_.push_back(id);
    cv_.notify_all();
  }
  std::vector<RankHealth> health() const override {
    std::lock_guard<std::mutex> lk(mu_);
    if (unavailable) return {{"attention 0", true, ""}, {"attention 1", false, "killed"}};
    return {{"attention 0", true, ""}, {"attention 1", true, ""}};
  }
  EngineMetrics metrics() const override {
    std::lock_guard<std::mutex> lk(mu_);
    EngineMetrics m;
    m.attention.push_back({"attention 0", static_cast<int64_t>(live_.size()), 0, 0.25});
    m.stages.push_back({"ffn 0", 1.5, 0.25, 0.125});
    m.transfer_latency_samples = {0.001, 0.002, 0.003};
    return m;
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

  // Test controls (under mu_ where they are read by the engine thread).
  void set_unavailable(bool v) {
    std::lock_guard<std::mutex> lk(mu_);
    unavailable = v;
  }
  void set_paused(bool v) {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = v;
    cv_.notify_all();
  }
  void fail_after(int tokens) {
    std::lock_guard<std::mutex> lk(mu_);
    fail_after_ = tokens;
  }
  std::set<int64_t> cancelled() const {
    std::lock_guard<std::mutex> lk(mu_);
    return cancelled_;
  }
  size_t live() const {
    std::lock_guard<std::mutex> lk(mu_);
    return live_.size();
  }
  std::vector<GenerationRequest> submitted_requests() const {
    std::lock_guard<std::mutex> lk(mu_);
    return submitted;
  }

 private:
  struct Live {
    GenerationRequest req;
    std::function<void(const TokenEvent&)> cb;
    int64_t produced;
  };

  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait_for(lk, std::chrono::milliseconds(1));
      if (stop_) break;
      std::vector<std::pair<std::function<void(const TokenEvent&)>, TokenEvent>> out;
      for (int64_t id : cancel_queue_) {
        auto it = live_.find(id);
        if (it == live_.end()) continue;
        cancelled_.insert(id);
        TokenEvent ev;
        ev.finished = true;
        ev.finish_reason = "cancelled";
        out.emplace_back(std::move(it->second.cb), ev);
        live_.erase(it);
      }
      cancel_queue_.clear();
      if (!paused_) {
        for (auto it = live_.begin(); it != live_.end();) {
          Live& l = it->second;
          TokenEvent ev;
          if (fail_after_ >= 0 && l.produced >= fail_after_) {
            ev.error = Status(Code::kUnavailable, "ffn 1 is down");
            out.emplace_back(std::move(l.cb), ev);
            it = live_.erase(it);
            continue;
          }
          int32_t tok = l.req.prompt[l.produced % l.req.prompt.size()];
          ++l.produced;
          ev.tokens = {tok};
          bool stop = std::count(l.req.stop_token_ids.begin(), l.req.stop_token_ids.end(), tok);
          if (stop || l.produced == l.req.max_tokens) {
            ev.finished = true;
            ev.finish_reason = stop ? "stop" : "length";
            out.emplace_back(std::move(l.cb), ev);
            it = live_.erase(it);
            continue;
          }
          out.emplace_back(l.cb, ev);
          ++it;
        }
      }
      // Callbacks run without the lock: they may call cancel().
      lk.unlock();
      for (auto& [cb, ev] : out) cb(ev);
      lk.lock();
    }
    for (auto& [id, l] : live_) {  // shutdown fails what is left
      TokenEvent ev;
      ev.error = Status(Code::kUnavailable, "engine shut down");
      l.cb(ev);
    }
    live_.clear();
  }

  ModelConfig cfg_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, Live> live_;
  std::deque<int64_t> cancel_queue_;
  std::set<int64_t> cancelled_;
  std::vector<GenerationRequest> submitted;
  int64_t next_id_ = 0;
  bool unavailable = false, paused_ = false, stop_ = false;
  int fail_after_ = -1;
  std::thread thread_;
};

struct Api {
  FakeEngine engine;
  std::unique_ptr<OpenAiApi> api;
  std::unique_ptr<http::Server> server;
  explicit Api(int64_t ctx = 64) {
    ApiOptions o;
    o.served_model_name = "step3-fake";
    o.max_context = ctx;
    o.default_chat_tokens = 8;
    api = std::make_unique<OpenAiApi>(engine, std::make_shared<ByteCodec>(), o);
    http::ServerOptions so;
    so.port = 0;
    so.error_formatter = error_for_status;
    auto s = http::Server::start(so, api->handler());
    EXPECT_TRUE(s.ok());
    server = std::move(s.value());
  }
  ~Api() {
    server->shutdown(std::chrono::milliseconds(0));
    engine.shutdown();
  }
  uint16_t port() const { return server->port(); }
  afd::testing::Reply post(const std::string& path, const json& body) {
    Client c(port());
    return c.call("POST", path, body.dump());
  }
  std::string metrics_text() {
    Client c(port());
    return c.call("GET", "/metrics").body;
  }
};

void expect_error(const afd::testing::Reply& r, int status, const std::string& param = "") {
  EXPECT_EQ(r.status, status) << r.body;
  json j = json::parse(r.body);
  ASSERT_TRUE(j.contains("error")) << r.body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"]["type"].is_string());
  EXPECT_TRUE(j["error"].contains("code"));
  if (!param.empty()) {
    EXPECT_EQ(j["error"]["param"], param) << r.body;
  }
}

TEST(OpenAiApi, CompletionNonStreaming) {
  Api a;
  auto r =
      a.post("/v1/completions", {{"model", "step3-fake"}, {"prompt", "abc"}, {"max_tokens", 5}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(j["model"], "step3-fake");
  EXPECT_EQ(j["choices"][0]["text"], "abcab");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  EXPECT_EQ(j["usage"]["total_tokens"], 8);
  // Sampling fields reach the engine; the tokenizer's EOS is the stop token.
  auto sub = a.engine.submitted_requests();
  ASSERT_EQ(sub.size(), 1u);
  EXPECT_EQ(sub[0].stop_token_ids, std::vector<int32_t>{kEos});
  EXPECT_EQ(sub[0].max_tokens, 5);
}

TEST(OpenAiApi, SamplingFieldsAndSeedsReachTheEngine) {
  Api a;
  a.post("/v1/completions", {{"prompt", "x"},
                             {"max_tokens", 1},
                             {"temperature", 0.5},
                             {"top_p", 0.9},
                             {"top_k", 7},
                             {"seed", 1234}});
  a.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}, {"top_k", -1}});
  a.post("/v1/completions", {{"prompt", "x"}, {"max_tokens", 1}});
  auto sub = a.engine.submitted_requests();
  ASSERT_EQ(sub.size(), 3u);
  EXPECT_FLOAT_EQ(sub[0].temperature, 0.5f);
  EXPECT_FLOAT_EQ(sub[0].top_p, 0.9f);
  EXPECT_EQ(sub[0].top_k, 7);
  EXPECT_EQ(sub[0].seed, 1234u);
  EXPECT_EQ(sub[1].top_k, 0);
  EXPECT_FLOAT_EQ(sub[1].temperature, 1.0f);
  EXPECT_NE(sub[1].seed, sub[2].seed);  // unseeded requests get their own streams
}

TEST(OpenAiApi, PromptAsTokenIdsAndDefaultMaxTokens) {
  Api a;
  auto r = a.post("/v1/completions", {{"prompt", {104, 105}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["text"], "hihihihihihihihi");  // 16 tokens: OpenAI's default
  auto r2 = a.post("/v1/completions", {{"prompt", {{104}}}, {"max_tokens", 2}});
  EXPECT_EQ(json::parse(r2.body)["choices"][0]["text"], "hh");
}

TEST(OpenAiApi, CompletionStreamingWithUsage) {
  Api a;
  auto r = a.post("/v1/completions", {{"prompt", "hey"},
                                      {"max_tokens", 4},
                                      {"stream", true},
                                      {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  auto ev = sse_events(r.body);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.back(), "[DONE]");
  std::string text;
  int finishes = 0;
  for (size_t i = 0; i + 2 < ev.size(); ++i) {
    json j = json::parse(ev[i]);
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_TRUE(j["usage"].is_null());
    text += j["choices"][0]["text"].get<std::string>();
    if (!j["choices"][0]["finish_reason"].is_null()) {
      ++finishes;
      EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
      EXPECT_EQ(i + 3, ev.size());  // the finish chunk is last before usage
    }
  }
  EXPECT_EQ(text, "heyh");
  EXPECT_EQ(finishes, 1);
  json usage = json::parse(ev[ev.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 4);
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 3);
}

TEST(OpenAiApi, ChatNonStreamingAndStreaming) {
  Api a;
  json msgs = {{{"role", "system"}, {"content", "s"}},
               {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "u"}}}}}};
  auto r = a.post("/v1/chat/completions", {{"messages", msgs}, {"max_completion_tokens", 6}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "system");  // the echo of "system: s\n..."
  EXPECT_EQ(j["usage"]["prompt_tokens"], std::string("system: s\nuser: u\nassistant: ").size());

  auto s =
      a.post("/v1/chat/completions", {{"messages", msgs}, {"max_tokens", 6}, {"stream", true}});
  auto ev = sse_events(s.body);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.back(), "[DONE]");
  json first = json::parse(ev[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  std::string finish;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    json c = json::parse(ev[i]);
    EXPECT_FALSE(c.contains("usage"));  // include_usage not asked
    auto& d = c["choices"][0]["delta"];
    if (d.contains("content")) text += d["content"].get<std::string>();
    if (!c["choices"][0]["finish_reason"].is_null()) finish = c["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, "system");
  EXPECT_EQ(finish, "length");
  // Without max_tokens, chat uses the server's default (8 here).
  auto d = a.post("/v1/chat/completions", {{"messages", msgs}});
  EXPECT_EQ(json::parse(d.body)["usage"]["completion_tokens"], 8);
}

TEST(OpenAiApi, StopStringEndsTheRequestAndCancelsItInTheEngine) {
  Api a;
  for (bool stream : {false, true}) {
    auto r = a.post("/v1/completions", {{"prompt", "hello world"},
                                        {"max_tokens", 30},
                                        {"stop", {"xyz", "wor"}},
                                        {"stream", stream}});
    ASSERT_EQ(r.status, 200) << r.body;
    std::string text, finish;
    if (stream) {
      for (auto& e : sse_events(r.body)) {
        if (e == "[DONE]") continue;
        json c = json::parse(e);
        text += c["choices"][0]["text"].get<std::string>();
        if (!c["choices"][0]["finish_reason"].is_null()) finish = c["choices"][0]["finish_reason"];
      }
    } else {
      json j = json::parse(r.body);
      text = j["choices"][0]["text"];
      finish = j["choices"][0]["finish_reason"];
      EXPECT_EQ(j["usage"]["completion_tokens"], 9);  // up to the "r" that completed "wor"
    }
    EXPECT_EQ(text, "hello ");
    EXPECT_EQ(finish, "stop");
  }
  EXPECT_TRUE(eventually([&] { return a.engine.cancelled().size() == 2; }));
  EXPECT_TRUE(eventually([&] { return a.engine.live() == 0; }));
}

TEST(OpenAiApi, StopStringThatNeverCompletesIsReleasedAtTheEnd) {
  Api a;
  auto r = a.post("/v1/completions",
                  {{"prompt", "abcab"}, {"max_tokens", 5}, {"stop", "abx"}, {"stream", true}});
  std::string text;
  for (auto& e : sse_events(r.body))
    if (e != "[DONE]") text += json::parse(e)["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, "abcab");  // the trailing "ab" was held back, then released
}

TEST(OpenAiApi, EosTokenFinishesWithStopAndIsNotInTheText) {
  Api a;
  auto r = a.post("/v1/completions", {{"prompt", {65, 66, kEos, 67}}, {"max_tokens", 10}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["text"], "AB");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
}

TEST(OpenAiApi, BadRequestsAre400InTheOpenAiShape) {
  Api a;
  Client c(a.port());
  expect_error(c.call("POST", "/v1/completions", "{not json"), 400);
  expect_error(c.call("POST", "/v1/completions", "[1, 2]"), 400);
  expect_error(c.call("POST", "/v1/completions", R"({"max_tokens": 3})"), 400, "prompt");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": "a", "n": 2})"), 400, "n");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": "a", "max_tokens": 0})"), 400,
               "max_tokens");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": "a", "temperature": "hot"})"), 400,
               "temperature");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": "a", "top_p": 0})"), 400, "top_p");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": "a", "stop": [1]})"), 400, "stop");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": [1, 300]})"), 400, "prompt");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": [-1]})"), 400, "prompt");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": ""})"), 400, "prompt");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": ["a", "b"]})"), 400, "prompt");
  expect_error(c.call("POST", "/v1/completions", R"({"prompt": "a", "logprobs": 2})"), 400,
               "logprobs");
  expect_error(c.call("POST", "/v1/completions",
                      R"({"prompt": "a", "stream_options": {"include_usage": true}})"),
               400, "stream_options");
  expect_error(c.call("POST", "/v1/chat/completions", R"({"messages": []})"), 400, "messages");
  expect_error(c.call("POST", "/v1/chat/completions", R"({"messages": [{"content": "x"}]})"), 400,
               "messages[0].role");
  expect_error(c.call("POST", "/v1/chat/completions",
                      R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"),
               400, "messages[0].content");
  // The connection survives every error.
  EXPECT_EQ(c.call("GET", "/v1/models").status, 200);
  EXPECT_TRUE(a.engine.submitted_requests().empty());
}

TEST(OpenAiApi, RoutesMethodsAndModels) {
  Api a;
  Client c(a.port());
  expect_error(c.call("GET", "/v1/nothing"), 404);
  expect_error(c.call("GET", "/v1/completions"), 405);
  auto r = c.call("POST", "/v1/models", "{}");
  expect_error(r, 405);
  EXPECT_EQ(r.headers["allow"], "GET");
  expect_error(c.call("POST", "/v1/completions", R"({"model": "gpt-4", "prompt": "a"})"), 404,
               "model");
  json m = json::parse(c.call("GET", "/v1/models").body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "step3-fake");
  EXPECT_EQ(m["data"][0]["object"], "model");
  EXPECT_EQ(json::parse(c.call("GET", "/v1/models/step3-fake").body)["id"], "step3-fake");
  expect_error(c.call("GET", "/v1/models/other"), 404);
}

TEST(OpenAiApi, PromptTooLongIs413AndTooMuchOutputIs400) {
  Api a(/*ctx=*/16);
  Client c(a.port());
  expect_error(c.call("POST", "/v1/completions", json{{"prompt", std::string(16, 'a')}}.dump()),
               413, "prompt");
  expect_error(c.call("POST", "/v1/completions",
                      json{{"prompt", std::string(10, 'a')}, {"max_tokens", 7}}.dump()),
               400, "max_tokens");
  // Without max_tokens the room left is used: 15 prompt tokens leave exactly one.
  auto r = c.call("POST", "/v1/completions", json{{"prompt", std::string(15, 'a')}}.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 1);
}

TEST(OpenAiApi, EngineUnavailableIs503AndHealthNamesTheRank) {
  Api a;
  a.engine.set_unavailable(true);
  expect_error(a.post("/v1/completions", {{"prompt", "a"}}), 503);
  expect_error(a.post("/v1/chat/completions",
                      {{"messages", {{{"role", "user"}, {"content", "a"}}}}, {"stream", true}}),
               503);
  Client c(a.port());
  auto h = c.call("GET", "/health");
  EXPECT_EQ(h.status, 503);
  json j = json::parse(h.body);
  ASSERT_EQ(j["down"].size(), 1u);
  EXPECT_EQ(j["down"][0]["name"], "attention 1");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("attention 1"), std::string::npos);
  EXPECT_NE(a.metrics_text().find("afd_rank_up{rank=\"attention 1\"} 0"), std::string::npos);
  a.engine.set_unavailable(false);
  EXPECT_EQ(c.call("GET", "/health").status, 200);
}

TEST(OpenAiApi, EngineErrorMidStreamEndsTheStreamWithAnErrorEvent) {
  Api a;
  a.engine.fail_after(3);
  auto r = a.post("/v1/completions", {{"prompt", "abcdef"}, {"max_tokens", 10}, {"stream", true}});
  EXPECT_EQ(r.status, 200);  // the stream had begun
  auto ev = sse_events(r.body);
  ASSERT_FALSE(ev.empty());
  json last = json::parse(ev.back());
  ASSERT_TRUE(last.contains("error")) << r.body;
  EXPECT_EQ(last["error"]["code"], "service_unavailable");
  // Before any token: a plain 503.
  a.engine.fail_after(0);
  expect_error(a.post("/v1/completions", {{"prompt", "abc"}, {"stream", true}}), 503);
  expect_error(a.post("/v1/completions", {{"prompt", "abc"}}), 503);
  EXPECT_NE(a.metrics_text().find("afd_requests_finished_total{reason=\"error\"} 3"),
            std::string::npos);
}

TEST(OpenAiApi, ClientDisconnectMidStreamCancelsInTheEngine) {
  Api a(/*ctx=*/100000);  // a long stream: it must still be running when the client leaves
  Client c(a.port());
  std::string body = R"({"prompt": "abc", "max_tokens": 50000, "stream": true})";
  c.send_raw(
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body);
  c.read_until("data: ");
  EXPECT_EQ(a.engine.live(), 1u);
  c.close();
  EXPECT_TRUE(eventually([&] { return a.engine.cancelled().size() == 1; }));
  EXPECT_TRUE(eventually([&] { return a.engine.live() == 0; }));
  std::string m = a.metrics_text();
  EXPECT_NE(m.find("afd_frontend_requests_in_flight 0"), std::string::npos) << m;
  EXPECT_NE(m.find("afd_requests_finished_total{reason=\"abort\"} 1"), std::string::npos);
}

TEST(OpenAiApi, ClientDisconnectWhileQueuedCancelsInTheEngine) {
  Api a;
  a.engine.set_paused(true);  // no token ever comes: only the read-side watch can notice
  Client c(a.port());
  std::string body = R"({"prompt": "abc", "max_tokens": 5})";
  c.send_raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n\r\n" + body);
  ASSERT_TRUE(eventually([&] { return a.engine.live() == 1; }));
  c.close();
  EXPECT_TRUE(eventually([&] { return a.engine.cancelled().size() == 1; }));
  a.engine.set_paused(false);
  EXPECT_TRUE(eventually([&] { return a.engine.live() == 0; }));
}

TEST(OpenAiApi, MetricsExposition) {
  Api a;
  a.post("/v1/completions", {{"prompt", "abc"}, {"max_tokens", 3}});
  a.post("/v1/completions", {{"prompt", "abc"}, {"n", 3}});
  Client c(a.port());
  auto r = c.call("GET", "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"].rfind("text/plain; version=0.0.4", 0), 0u);
  const std::string& m = r.body;
  for (const char* s :
       {"# TYPE afd_time_to_first_token_seconds histogram",
        "afd_time_to_first_token_seconds_count 1", "afd_time_per_output_token_seconds_count 1",
        "afd_e2e_request_latency_seconds_count 1",
        "afd_e2e_request_latency_seconds_bucket{le=\"+Inf\"} 1",
        "afd_requests_running{rank=\"attention 0\"} 0",
        "afd_requests_waiting{rank=\"attention 0\"} 0",
        "afd_kv_cache_usage_ratio{rank=\"attention 0\"} 0.25",
        "afd_rank_busy_seconds_total{rank=\"ffn 0\",stage=\"compute\"} 1.5",
        "afd_transfer_latency_seconds{quantile=\"0.5\"} 0.002",
        "afd_transfer_latency_seconds_count 3", "afd_prompt_tokens_total 3",
        "afd_generation_tokens_total 3",
        "afd_http_responses_total{route=\"/v1/completions\",status=\"200\"} 1",
        "afd_http_responses_total{route=\"/v1/completions\",status=\"400\"} 1",
        "afd_requests_finished_total{reason=\"length\"} 1"})
    EXPECT_NE(m.find(s), std::string::npos) << "missing: " << s << "\n" << m;
}

TEST(OpenAiApi, ManyConcurrentStreamsAllComplete) {
  Api a;
  constexpr int kClients = 64;
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < kClients; ++i)
    ts.emplace_back([&, i] {
      std::string prompt = "p" + std::to_string(i) + ";";
      auto r =
          a.post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 12}, {"stream", true}});
      std::string text;
      auto ev = sse_events(r.body);
      if (ev.empty() || ev.back() != "[DONE]") return;
      for (size_t k = 0; k + 1 < ev.size(); ++k)
        text += json::parse(ev[k])["choices"][0]["text"].get<std::string>();
      std::string want;
      for (int t = 0; t < 12; ++t) want += prompt[t % prompt.size()];
      if (text == want) ok++;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), kClients);
}

}  // namespace
}  // namespace afd::openai
