#include "serve/openai_api.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_set>

#include "core/log.h"
#include "serve/openai_protocol.h"

namespace afd::openai {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Counts every response's status by route, whoever sends it (handler or engine thread).
class CountingChannel : public http::ResponseChannel {
 public:
  CountingChannel(std::shared_ptr<http::ResponseChannel> inner, metrics::ServingMetrics* m,
                  std::string route)
      : inner_(std::move(inner)), m_(m), route_(std::move(route)) {}
  void respond(http::Response r) override {
    count(r.status);
    inner_->respond(std::move(r));
  }
  void begin_stream(int status, std::string ct, http::Headers h) override {
    count(status);
    inner_->begin_stream(status, std::move(ct), std::move(h));
  }
  void write(std::string data) override { inner_->write(std::move(data)); }
  void end_stream(bool close) override { inner_->end_stream(close); }
  void on_disconnect(std::function<void()> f) override { inner_->on_disconnect(std::move(f)); }
  bool disconnected() const override { return inner_->disconnected(); }

 private:
  void count(int status) {
    if (!counted_.exchange(true)) m_->count_response(route_, status);
  }
  std::shared_ptr<http::ResponseChannel> inner_;
  metrics::ServingMetrics* m_;
  std::string route_;
  std::atomic<bool> counted_{false};
};

ApiError engine_error(const Status& s) {
  if (s.code() == Code::kUnavailable)
    return ApiError{503, "the engine is unavailable: " + s.message(), "server_error", "",
                    "service_unavailable"};
  if (s.code() == Code::kInvalidArgument)
    return ApiError{400, s.message(), "invalid_request_error", "", ""};
  return ApiError{500, "engine error: " + s.to_string(), "server_error", "", ""};
}

}  // namespace

struct OpenAiApi::State : std::enable_shared_from_this<OpenAiApi::State> {
  Engine& engine;
  std::shared_ptr<const TextCodec> codec;
  ApiOptions opt;
  metrics::ServingMetrics metrics;
  std::unordered_set<int32_t> eos;
  std::vector<int32_t> eos_list;
  int64_t created = unix_now();
  uint64_t seed_base;
  std::atomic<uint64_t> counter{0};
  http::Router router{error_for_status};

  State(Engine& e, std::shared_ptr<const TextCodec> c, ApiOptions o)
      : engine(e), codec(std::move(c)), opt(std::move(o)) {
    eos_list = codec->stop_token_ids();
    eos.insert(eos_list.begin(), eos_list.end());
    seed_base = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}() ^
                static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
  uint64_t next() { return splitmix64(seed_base + counter.fetch_add(1)); }
};

namespace {

// One generation from submit to the last byte. Engine events arrive on an engine thread; a
// disconnect arrives on a server thread; `mu` orders them, and `done` makes the first ending
// (finish, error, stop string, disconnect) the only one.
struct Generation : std::enable_shared_from_this<Generation> {
  // Shared: the engine may hold this generation (in its callback) after the API is gone.
  std::shared_ptr<OpenAiApi::State> st;
  std::shared_ptr<http::ResponseChannel> ch;
  ResponseMeta meta;
  bool stream = false, include_usage = false;
  int64_t prompt_tokens = 0;
  Clock::time_point t0;

  std::mutex mu;
  int64_t engine_id = -1;
  bool cancel_wanted = false;  // cancel as soon as the id is known
  bool done = false;
  bool began = false;  // stream headers sent
  std::unique_ptr<IncrementalDecoder> dec;
  std::unique_ptr<StopMatcher> stops;
  std::string text;  // non-streaming: the whole completion
  int64_t completion_tokens = 0;
  double t_first = -1;

  // Marks the generation ended (under mu) and records its latencies. Returns false when it
  // had already ended.
  bool end_locked(const char* reason) {
    if (done) return false;
    done = true;
    double e2e = seconds_since(t0);
    auto& m = st->metrics;
    m.e2e_s.observe(e2e);
    if (t_first >= 0 && completion_tokens > 1)
      m.tpot_s.observe((e2e - t_first) / static_cast<double>(completion_tokens - 1));
    m.count_finished(reason);
    m.in_flight.fetch_sub(1);
    return true;
  }

  // Under mu. Sends the error as a status when nothing was sent yet, else as an SSE event.
  void fail_locked(const ApiError& e) {
    if (!end_locked("error")) return;
    if (stream && began) {
      ch->write(sse_error(e));
      ch->end_stream(/*close=*/true);
    } else {
      ch->respond(error_response(e));
    }
  }

  // Under mu: sends text (and the ending, when finish_reason is set).
  void emit_locked(const std::string& piece, const std::optional<std::string>& finish_reason) {
    if (!stream) {
      text += piece;
      if (finish_reason)
        ch->respond(
            {200,
             "application/json",
             completion_body(meta, text, *finish_reason, {prompt_tokens, completion_tokens}),
             {}});
      return;
    }
    std::string out;
    if (!began) {
      began = true;
      ch->begin_stream(200, "text/event-stream");
      if (meta.kind == Kind::kChat) out += sse_delta(meta, "", std::nullopt, true, include_usage);
    }
    if (!piece.empty()) out += sse_delta(meta, piece, std::nullopt, false, include_usage);
    if (finish_reason) {
      out += sse_delta(meta, "", finish_reason, false, include_usage);
      if (include_usage) out += sse_usage(meta, {prompt_tokens, completion_tokens});
      out += kSseDone;
    }
    ch->write(std::move(out));
    if (finish_reason) ch->end_stream();
  }

  void on_event(const TokenEvent& ev) {
    int64_t cancel_id = -1;
    {
      std::lock_guard<std::mutex> lk(mu);
      if (done) return;
      if (!ev.error.ok()) return fail_locked(engine_error(ev.error));
      std::string piece;
      bool hit = false;
      for (int32_t tok : ev.tokens) {
        ++completion_tokens;
        st->metrics.generation_tokens.fetch_add(1);
        if (t_first < 0) {
          t_first = seconds_since(t0);
          st->metrics.ttft_s.observe(t_first);
        }
        if (st->eos.count(tok)) continue;  // ends the generation; not part of the text
        piece += stops->push(dec->push(tok));
        if (stops->matched()) {
          hit = true;
          break;
        }
      }
      std::optional<std::string> finish;
      if (hit) {
        finish = "stop";
      } else if (ev.finished) {
        if (ev.finish_reason == "cancelled")  // not by us (we end first): the engine gave up
          return fail_locked(
              {503, "the engine cancelled the request", "server_error", "", "service_unavailable"});
        piece += stops->push(dec->flush());
        piece += stops->flush();
        finish = stops->matched() ? "stop" : ev.finish_reason;
      }
      if (finish) {
        end_locked(finish->c_str());
        if (hit) {
          if (engine_id >= 0)
            cancel_id = engine_id;
          else
            cancel_wanted = true;
        }
      }
      emit_locked(piece, finish);
    }
    // Outside mu: cancel() may deliver the "cancelled" event synchronously.
    if (cancel_id >= 0) st->engine.cancel(cancel_id);
  }

  void on_disconnect() {
    int64_t cancel_id = -1;
    {
      std::lock_guard<std::mutex> lk(mu);
      if (!end_locked("abort")) return;
      if (engine_id >= 0)
        cancel_id = engine_id;
      else
        cancel_wanted = true;
    }
    if (cancel_id >= 0) st->engine.cancel(cancel_id);
  }
};

std::string random_id(OpenAiApi::State& st, const char* prefix) {
  return fmt::format("{}{:016x}", prefix, st.next());
}

void generate(OpenAiApi::State& st, Kind kind, const http::Request& req,
              std::shared_ptr<http::ResponseChannel> ch) {
  auto t0 = Clock::now();
  auto parsed = parse_request(kind, req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return ch->respond(error_response(*e));
  auto& r = std::get<ParsedRequest>(parsed);
  if (!r.model.empty() && r.model != st.opt.served_model_name)
    return ch->respond(
        error_response({404,
                        fmt::format("the model '{}' does not exist; this server serves '{}'",
                                    r.model, st.opt.served_model_name),
                        "invalid_request_error", "model", "model_not_found"}));

  // Prompt -> ids.
  std::vector<int32_t> ids;
  if (kind == Kind::kChat) {
    auto enc = st.codec->encode_chat(r.messages);
    if (!enc.ok())
      return ch->respond(
          error_response({400, enc.status().message(), "invalid_request_error", "messages", ""}));
    ids = std::move(enc.value());
  } else if (r.prompt_text) {
    auto enc = st.codec->encode(*r.prompt_text);
    if (!enc.ok())
      return ch->respond(
          error_response({400, enc.status().message(), "invalid_request_error", "prompt", ""}));
    ids = std::move(enc.value());
  } else {
    ids = std::move(r.prompt_ids);
  }
  const char* prompt_param = kind == Kind::kChat ? "messages" : "prompt";
  if (ids.empty())
    return ch->respond(error_response(
        {400, "the prompt is empty (no tokens)", "invalid_request_error", prompt_param, ""}));
  const int64_t vocab = st.engine.config().vocab_size;
  for (int32_t id : ids)
    if (id < 0 || id >= vocab)
      return ch->respond(error_response(
          {400,
           fmt::format(
               "the prompt has token id {}, outside the model's vocabulary [0, {}){}", id, vocab,
               r.prompt_ids.empty() && !ids.empty() ? " (the tokenizer does not match the model)"
                                                    : ""),
           "invalid_request_error", prompt_param, "invalid_token_id"}));

  // Length: the prompt must leave room for at least one token.
  const int64_t n_prompt = static_cast<int64_t>(ids.size());
  const int64_t ctx = st.opt.max_context;
  if (n_prompt >= ctx)
    return ch->respond(error_response(
        {413,
         fmt::format("the prompt has {} tokens; this model's context is {} tokens, so a prompt "
                     "may have at most {}",
                     n_prompt, ctx, ctx - 1),
         "invalid_request_error", prompt_param, "context_length_exceeded"}));
  int64_t max_tokens;
  if (r.max_tokens) {
    max_tokens = *r.max_tokens;
    if (n_prompt + max_tokens > ctx)
      return ch->respond(error_response(
          {400,
           fmt::format("this model's context is {} tokens; the prompt has {} and max_tokens asks "
                       "for {} more (at most {})",
                       ctx, n_prompt, max_tokens, ctx - n_prompt),
           "invalid_request_error", "max_tokens", "context_length_exceeded"}));
  } else {
    int64_t def =
        kind == Kind::kChat ? st.opt.default_chat_tokens : st.opt.default_completion_tokens;
    max_tokens = std::min(def, ctx - n_prompt);
  }

  auto g = std::make_shared<Generation>();
  g->st = st.shared_from_this();
  g->ch = ch;
  g->meta = {kind, random_id(st, kind == Kind::kChat ? "chatcmpl-" : "cmpl-"), unix_now(),
             st.opt.served_model_name};
  g->stream = r.stream;
  g->include_usage = r.include_usage;
  g->prompt_tokens = n_prompt;
  g->t0 = t0;
  g->dec = st.codec->decoder();
  if (kind == Kind::kChat)
    for (auto& s : st.codec->chat_stop_strings()) r.stop.push_back(s);
  g->stops = std::make_unique<StopMatcher>(r.stop);

  GenerationRequest gr;
  gr.prompt = std::move(ids);
  gr.max_tokens = max_tokens;
  gr.temperature = r.temperature;
  gr.top_p = r.top_p;
  gr.top_k = r.top_k;
  gr.seed = r.seed ? *r.seed : st.next();  // unseeded requests must not share one stream
  gr.stop_token_ids = st.eos_list;

  st.metrics.in_flight.fetch_add(1);
  st.metrics.prompt_tokens.fetch_add(static_cast<uint64_t>(n_prompt));
  std::weak_ptr<Generation> weak = g;
  ch->on_disconnect([weak] {
    if (auto s = weak.lock()) s->on_disconnect();
  });
  auto id = st.engine.submit(std::move(gr), [g](const TokenEvent& ev) { g->on_event(ev); });
  int64_t cancel_id = -1;
  {
    std::lock_guard<std::mutex> lk(g->mu);
    if (!id.ok()) {
      // Nothing was queued, so nothing was generated: a plain error response.
      ApiError e = engine_error(id.status());
      if (g->end_locked("error")) ch->respond(error_response(e));
      return;
    }
    g->engine_id = *id;
    if (g->cancel_wanted) cancel_id = *id;
  }
  if (cancel_id >= 0) st.engine.cancel(cancel_id);
}

void models(OpenAiApi::State& st, const http::Request& req, http::ResponseChannel& ch) {
  json card = {{"id", st.opt.served_model_name},
               {"object", "model"},
               {"created", st.created},
               {"owned_by", "afd"},
               {"max_model_len", st.opt.max_context}};
  if (req.path == "/v1/models") {
    ch.respond({200, "application/json", json{{"object", "list"}, {"data", {card}}}.dump(), {}});
    return;
  }
  std::string want = req.path.substr(std::string("/v1/models/").size());
  if (want != st.opt.served_model_name)
    return ch.respond(error_response({404, fmt::format("the model '{}' does not exist", want),
                                      "invalid_request_error", "model", "model_not_found"}));
  ch.respond({200, "application/json", card.dump(), {}});
}

void health(OpenAiApi::State& st, http::ResponseChannel& ch) {
  auto ranks = st.engine.health();
  json all = json::array(), down = json::array();
  for (const auto& h : ranks) {
    all.push_back({{"name", h.name}, {"up", h.up}, {"detail", h.detail}});
    if (!h.up) down.push_back({{"name", h.name}, {"detail", h.detail}});
  }
  bool ok = down.empty() && !ranks.empty();
  json body = {{"status", ok ? "ok" : "unavailable"}, {"ranks", all}, {"down", down}};
  if (!ok) {
    std::string names;
    for (const auto& d : down) names += (names.empty() ? "" : ", ") + d["name"].get<std::string>();
    body["error"] = {
        {"message", ranks.empty() ? "the engine has no ranks" : "ranks down: " + names},
        {"type", "server_error"},
        {"param", nullptr},
        {"code", "service_unavailable"}};
  }
  ch.respond({ok ? 200 : 503, "application/json", body.dump(), {}});
}

}  // namespace

OpenAiApi::OpenAiApi(Engine& engine, std::shared_ptr<const TextCodec> codec, ApiOptions opt)
    : s_(std::make_shared<State>(engine, std::move(codec), std::move(opt))) {
  State* st = s_.get();
  auto& r = st->router;
  r.add("POST", "/v1/completions", [st](http::Request q, std::shared_ptr<http::ResponseChannel> c) {
    generate(*st, Kind::kCompletion, q, std::move(c));
  });
  r.add("POST", "/v1/chat/completions",
        [st](http::Request q, std::shared_ptr<http::ResponseChannel> c) {
          generate(*st, Kind::kChat, q, std::move(c));
        });
  auto m = [st](http::Request q, std::shared_ptr<http::ResponseChannel> c) { models(*st, q, *c); };
  r.add("GET", "/v1/models", m);
  r.add_prefix("GET", "/v1/models/", m);
  r.add("GET", "/health",
        [st](http::Request, std::shared_ptr<http::ResponseChannel> c) { health(*st, *c); });
  r.add("GET", "/metrics", [st](http::Request, std::shared_ptr<http::ResponseChannel> c) {
    c->respond({200,
                "text/plain; version=0.0.4; charset=utf-8",
                st->metrics.render(st->engine.metrics(), st->engine.health()),
                {}});
  });
}

OpenAiApi::~OpenAiApi() = default;

http::Handler OpenAiApi::handler() {
  std::shared_ptr<State> st = s_;
  return [st](http::Request req, std::shared_ptr<http::ResponseChannel> ch) {
    auto counted = std::make_shared<CountingChannel>(std::move(ch), &st->metrics,
                                                     st->router.route_of(req.path));
    st->router(std::move(req), std::move(counted));
  };
}

metrics::ServingMetrics& OpenAiApi::metrics() { return s_->metrics; }

}  // namespace afd::openai
