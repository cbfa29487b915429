// The AFD cluster engine: one worker process per rank over UCX, driven over the control
// plane. Requests go to the least-loaded attention rank as {"type":"request"}; its
// {"type":"tokens"} messages come back every step and turn into TokenEvents. A rank whose
// connection closes is reported down: every request in flight fails with kUnavailable naming
// it, the other ranks are aborted, and later submits are refused (the cluster does not
// restart itself).
#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/log.h"
#include "runtime/launch.h"
#include "runtime/serving_common.h"

namespace afd {

using nlohmann::json;
using std::chrono::milliseconds;

namespace {

RankStats stats_of(const json& j) {
  RankStats s;
  s.name = j.value("name", "");
  s.compute_s = j.value("compute_s", 0.0);
  s.wait_s = j.value("wait_s", 0.0);
  s.comm_s = j.value("comm_s", 0.0);
  return s;
}

class ClusterEngine : public Engine {
 public:
  ClusterEngine(ModelConfig cfg, JobOptions opt, std::unique_ptr<ProcessCluster> pc)
      : cfg_(std::move(cfg)), opt_(std::move(opt)), pc_(std::move(pc)), book_(cfg_, opt_) {
    book_.set_ranks(pc_->names, pc_->A);
    reader_ = std::thread([this] { read_loop(); });
  }
  ~ClusterEngine() override { shutdown(); }

  const ModelConfig& config() const override { return cfg_; }

  Result<int64_t> submit(GenerationRequest req,
                         std::function<void(const TokenEvent&)> on_event) override {
    AFD_ASSIGN_OR_RETURN(Routed r, book_.admit(std::move(req), std::move(on_event)));
    const Request& q = r.request;
    json j = {{"type", "request"},     {"index", q.index},
              {"prompt", q.prompt},    {"max_new_tokens", q.max_new_tokens},
              {"temperature", q.sampling.temperature}, {"top_p", q.sampling.top_p},
              {"top_k", q.sampling.top_k}, {"rng_seed", q.rng_seed},
              {"stop_token_ids", q.stop_token_ids}};
    Status s;
    {
      std::lock_guard<std::mutex> g(pc_->send_mu);
      s = pc_->ch[static_cast<size_t>(r.rank)]->send(j.dump());
    }
    if (!s.ok()) return Status(Code::kUnavailable, fmt::format("{} is unreachable: {}", pc_->names[r.rank], s.message()));
    return r.request_id;
  }

  void cancel(int64_t id) override {
    int rank = book_.owner(id);
    if (rank < 0) return;
    std::lock_guard<std::mutex> g(pc_->send_mu);
    (void)pc_->ch[static_cast<size_t>(rank)]->send(json{{"type", "cancel"}, {"index", id}}.dump());
  }

  std::vector<RankHealth> health() const override { return book_.health(); }
  EngineMetrics metrics() const override { return book_.metrics(); }

  void shutdown() override {
    if (stopping_.exchange(true)) return;
    {
      std::lock_guard<std::mutex> g(pc_->send_mu);
      for (int r = 0; r < pc_->A; ++r) (void)pc_->ch[r]->send(json{{"type", "shutdown"}}.dump());
    }
    // Ranks finish what is queued, then report and exit; the reader sees them go.
    for (int i = 0; i < 300 && !reader_done_; ++i) std::this_thread::sleep_for(milliseconds(20));
    reader_stop_ = true;
    if (reader_.joinable()) reader_.join();
    book_.fail_all(Status(Code::kUnavailable, "the engine was shut down"));
    pc_.reset();  // stops whatever is left of the workers
  }

 private:
  void read_loop() {
    const int W = pc_->A + pc_->M;
    std::vector<bool> gone(static_cast<size_t>(W), false);
    int left = W;
    while (!reader_stop_ && left > 0) {
      std::vector<ControlChannel*> live;
      for (int r = 0; r < W; ++r) live.push_back(gone[r] ? nullptr : pc_->ch[r].get());
      int r = wait_any(live, milliseconds(100));
      if (r < 0) continue;
      std::string msg;
      Status s = pc_->ch[r]->recv(&msg, milliseconds(1000));
      json j = s.ok() ? json::parse(msg, nullptr, false) : json();
      const std::string type = j.is_object() ? j.value("type", "") : "";
      if (type == "tokens") {
        std::vector<TokenUpdate> ups;
        for (const auto& u : j["updates"])
          ups.push_back({u["index"], u["tokens"].get<std::vector<int32_t>>(), u["finished"], u["reason"]});
        RankStats st = stats_of(j["stats"]);
        st.transfer_latency = j["latency"].get<std::vector<double>>();
        book_.attention_stats(r, j["running"], j["waiting"], j["kv"], st);
        book_.deliver(ups);
      } else if (type == "gauges") {
        book_.ffn_stats(r - pc_->A, stats_of(j["stats"]));
      } else if (type == "result") {
        gone[r] = true;  // an orderly exit after shutdown
        --left;
      } else {
        // Closed connection, an error report, or garbage: the rank is lost.
        std::string why = type == "error" ? fmt::format("{} failed: {}", pc_->names[r], j.value("reason", std::string("?")))
                                          : fmt::format("{} died (its control connection closed)", pc_->names[r]);
        if (stopping_ && type != "error") {  // exiting during shutdown is expected
          gone[r] = true;
          --left;
          continue;
        }
        std::this_thread::sleep_for(milliseconds(50));
        why += pc_->fate(r);
        log_warn("{}", why);
        book_.rank_failed(r, Status(Code::kUnavailable, why));
        pc_->abort_all(why, r);
        break;
      }
    }
    reader_done_ = true;
  }

  ModelConfig cfg_;
  JobOptions opt_;
  std::unique_ptr<ProcessCluster> pc_;
  RequestBook book_;
  std::thread reader_;
  std::atomic<bool> stopping_{false}, reader_stop_{false}, reader_done_{false};
};

}  // namespace

Result<std::unique_ptr<Engine>> start_cluster_engine(const ServeOptions& opt) {
  AFD_ASSIGN_OR_RETURN(ModelConfig cfg, model_config_of(opt.model));
  LaunchSpec spec{opt.model, opt.weights_seed, opt.job, "", opt.worker_binary};
  AFD_ASSIGN_OR_RETURN(auto pc, ProcessCluster::start(spec, /*serving=*/true, nullptr));
  return std::unique_ptr<Engine>(new ClusterEngine(std::move(cfg), opt.job, std::move(pc)));
}

}  // namespace afd
