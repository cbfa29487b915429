#include "runtime/serving_common.h"

namespace afd {

void RequestBook::set_ranks(const std::vector<std::string>& names, int A) {
  std::lock_guard<std::mutex> g(mu_);
  A_ = A;
  in_flight_.assign(static_cast<size_t>(A), 0);
  health_.clear();
  metrics_ = EngineMetrics{};
  for (size_t r = 0; r < names.size(); ++r) {
    health_.push_back({names[r], true, ""});
    metrics_.stages.push_back({names[r], 0, 0, 0});
    if (static_cast<int>(r) < A) metrics_.attention.push_back({names[r], 0, 0, 0});
  }
}

Result<Routed> RequestBook::admit(GenerationRequest req, std::function<void(const TokenEvent&)> cb) {
  if (req.prompt.empty()) return InvalidArgument("the prompt is empty");
  for (int32_t t : req.prompt)
    if (t < 0 || t >= cfg_.vocab_size)
      return InvalidArgument("token id {} is outside the vocabulary [0, {})", t, cfg_.vocab_size);
  if (req.max_tokens < 1) return InvalidArgument("max_tokens must be at least 1");
  const int64_t total = static_cast<int64_t>(req.prompt.size()) + req.max_tokens;
  const int64_t limit = std::min(cfg_.max_position_embedding, opt_.kv_tokens);
  if (total > limit)
    return Status(Code::kInvalidArgument,
                  fmt::format("prompt ({} tokens) + max_tokens ({}) exceeds the context of {} "
                              "tokens",
                              req.prompt.size(), req.max_tokens, limit));
  std::lock_guard<std::mutex> g(mu_);
  if (!down_.ok()) return down_;
  Routed r;
  r.rank = static_cast<int>(std::min_element(in_flight_.begin(), in_flight_.end()) - in_flight_.begin());
  r.request_id = next_id_++;
  r.request.index = r.request_id;
  r.request.prompt = std::move(req.prompt);
  r.request.max_new_tokens = req.max_tokens;
  r.request.own_sampling = true;
  r.request.sampling.temperature = req.temperature;
  r.request.sampling.top_p = req.top_p;
  r.request.sampling.top_k = req.top_k;
  r.request.rng_seed = req.seed ^ 0x9e3779b97f4a7c15ull;
  r.request.stop_token_ids = std::move(req.stop_token_ids);
  ++in_flight_[static_cast<size_t>(r.rank)];
  live_[r.request_id] = {r.rank, std::move(cb)};
  return r;
}

int RequestBook::owner(int64_t id) const {
  std::lock_guard<std::mutex> g(mu_);
  auto it = live_.find(id);
  return it == live_.end() ? -1 : it->second.rank;
}

void RequestBook::deliver(const std::vector<TokenUpdate>& ups) {
  for (const TokenUpdate& u : ups) {
    std::function<void(const TokenEvent&)> cb;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = live_.find(u.index);
      if (it == live_.end()) continue;
      cb = it->second.cb;
      if (u.finished) {
        --in_flight_[static_cast<size_t>(it->second.rank)];
        live_.erase(it);
      }
    }
    TokenEvent ev;
    ev.tokens = u.tokens;
    ev.finished = u.finished;
    ev.finish_reason = u.reason;
    if (u.reason.rfind("error:", 0) == 0) {
      ev.error = InvalidArgument("{}", u.reason.substr(7));
      ev.finish_reason.clear();
    }
    if (cb) cb(ev);
  }
}

void RequestBook::rank_failed(int rank, const Status& why) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (rank >= 0 && rank < static_cast<int>(health_.size())) {
      health_[rank].up = false;
      health_[rank].detail = why.message();
    }
    if (down_.ok()) down_ = Status(Code::kUnavailable, why.message());
  }
  fail_all(Status(Code::kUnavailable, why.message()));
}

void RequestBook::fail_all(const Status& why) {
  std::map<int64_t, Entry> dead;
  {
    std::lock_guard<std::mutex> g(mu_);
    dead.swap(live_);
    std::fill(in_flight_.begin(), in_flight_.end(), 0);
    if (down_.ok()) down_ = why;
  }
  for (auto& [id, e] : dead) {
    TokenEvent ev;
    ev.error = why;
    if (e.cb) e.cb(ev);
  }
}

void RequestBook::attention_stats(int rank, int64_t running, int64_t waiting, double kv,
                                  const RankStats& st) {
  std::lock_guard<std::mutex> g(mu_);
  auto& a = metrics_.attention[static_cast<size_t>(rank)];
  a.running = running, a.waiting = waiting, a.kv_used_fraction = kv;
  auto& s = metrics_.stages[static_cast<size_t>(rank)];
  s.compute_s = st.compute_s, s.wait_s = st.wait_s, s.comm_s = st.comm_s;
  if (latency_.size() <= static_cast<size_t>(rank)) latency_.resize(static_cast<size_t>(rank) + 1);
  latency_[static_cast<size_t>(rank)] = st.transfer_latency;
}

void RequestBook::ffn_stats(int f, const RankStats& st) {
  std::lock_guard<std::mutex> g(mu_);
  auto& s = metrics_.stages[static_cast<size_t>(A_ + f)];
  s.compute_s = st.compute_s, s.wait_s = st.wait_s, s.comm_s = st.comm_s;
}

std::vector<RankHealth> RequestBook::health() const {
  std::lock_guard<std::mutex> g(mu_);
  return health_;
}

EngineMetrics RequestBook::metrics() const {
  std::lock_guard<std::mutex> g(mu_);
  EngineMetrics m = metrics_;
  for (const auto& v : latency_) m.transfer_latency_samples.insert(m.transfer_latency_samples.end(), v.begin(), v.end());
  return m;
}

}  // namespace afd
