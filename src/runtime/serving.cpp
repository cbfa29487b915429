// Engine implementations over the AFD runtime: ranks as threads of this process (local
// fabric, or colocated), or one process per rank over UCX (serving_cluster.cpp).
#include "runtime/serving.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "core/log.h"
#include "kernels/cpu/ops.h"
#include "model/model_source.h"
#include "runtime/attention_worker.h"
#include "runtime/ffn_worker.h"
#include "runtime/placement.h"
#include "runtime/serving_common.h"
#include "transport/fabric.h"

namespace afd {

namespace {

// Requests for one attention rank, handed over at its next step.
struct Inbox {
  std::mutex mu;
  std::vector<Request> add;
  std::vector<int64_t> cancel;
  bool shutdown = false;
};

class InProcessEngine;

class RankHooks : public ServingHooks {
 public:
  RankHooks(InProcessEngine* e, int rank) : e_(e), rank_(rank) {}
  void poll(std::vector<Request>* add, std::vector<int64_t>* cancel, bool* shutdown) override;
  void emit(std::vector<TokenUpdate> ups, const Scheduler& s, const RankStats& st) override;

 private:
  InProcessEngine* e_;
  int rank_;
};

class InProcessEngine : public Engine {
 public:
  InProcessEngine(std::unique_ptr<Step3Model> model, JobOptions opt, Placement placement)
      : model_(std::move(model)), opt_(std::move(opt)), placement_(std::move(placement)),
        book_(model_->config(), opt_) {}

  ~InProcessEngine() override { shutdown(); }

  Status start() {
    const ModelConfig& cfg = model_->config();
    A_ = opt_.colocated ? 1 : opt_.attention_ranks;
    M_ = opt_.colocated ? 0 : opt_.ffn_ranks;
    std::vector<std::string> names;
    for (int a = 0; a < A_; ++a) names.push_back(fmt::format("attention {}", a));
    for (int f = 0; f < M_; ++f) names.push_back(fmt::format("ffn {}", f));
    book_.set_ranks(names, A_);
    inbox_ = std::vector<Inbox>(static_cast<size_t>(A_));
    hooks_.clear();
    for (int a = 0; a < A_; ++a) hooks_.push_back(std::make_unique<RankHooks>(this, a));
    auto hub = make_local_hub(std::max(1, A_ + M_), names);
    for (int r = 0; r < A_ + M_; ++r) fabrics_.push_back(make_local_fabric(hub, r));
    if (!opt_.colocated) cpu::set_num_threads(1);
    auto fail = [this](int r, const Status& s) {
      for (int o = 0; o < A_ + M_; ++o)
        if (o != r) fabrics_[o]->mark_dead(r, s.message());
      book_.rank_failed(r, s);
    };
    for (int a = 0; a < A_; ++a) {
      threads_.emplace_back([this, a, &cfg, fail] {
        RankStats st;
        st.name = fmt::format("attention {}", a);
        Trace trace(false);
        try {
          KVCache cache = model_->make_cache(opt_.kv_tokens, opt_.block_size);
          Scheduler sched(opt_.sched, &cache);
          std::unique_ptr<FfnClient> ffn;
          AttentionRankOptions ao;
          ao.micro_batches = opt_.micro_batches;
          ao.hooks = hooks_[a].get();
          if (opt_.colocated) {
            ffn = make_local_ffn(std::make_shared<FfnExecutor>(cfg, model_->weights(), placement_, 0), cfg);
            ao.lockstep = false;
            ao.micro_batches = 1;
          } else {
            ffn = make_remote_ffn(fabrics_[a].get(), cfg, &placement_, A_, opt_.dispatch,
                                  opt_.peer_timeout, &st, &trace);
          }
          AttentionResult res;
          Status s = run_attention_rank(*model_, cache, sched, *ffn, ao, a, &st, &trace, &res);
          if (!s.ok()) fail(a, Status(s.code(), fmt::format("attention {}: {}", a, s.message())));
        } catch (const std::exception& e) {
          fail(a, Status(Code::kInternal, fmt::format("attention {}: {}", a, e.what())));
        }
      });
    }
    for (int f = 0; f < M_; ++f) {
      threads_.emplace_back([this, f, &cfg, fail] {
        RankStats st;
        st.name = fmt::format("ffn {}", f);
        Trace trace(false);
        try {
          FfnExecutor ex(cfg, model_->weights(), placement_, f);
          FfnRankOptions fo{A_, opt_.micro_batches, opt_.dispatch, opt_.peer_timeout, {}};
          fo.on_step = [this, f](const RankStats& s) { book_.ffn_stats(f, s); };
          Status s = run_ffn_rank(*fabrics_[A_ + f], ex, cfg, fo, &st, &trace);
          if (!s.ok()) fail(A_ + f, Status(s.code(), fmt::format("ffn {}: {}", f, s.message())));
        } catch (const std::exception& e) {
          fail(A_ + f, Status(Code::kInternal, fmt::format("ffn {}: {}", f, e.what())));
        }
      });
    }
    return Status::OK();
  }

  const ModelConfig& config() const override { return model_->config(); }

  Result<int64_t> submit(GenerationRequest req,
                         std::function<void(const TokenEvent&)> on_event) override {
    AFD_ASSIGN_OR_RETURN(Routed r, book_.admit(std::move(req), std::move(on_event)));
    std::lock_guard<std::mutex> g(inbox_[r.rank].mu);
    inbox_[r.rank].add.push_back(std::move(r.request));
    return r.request_id;
  }

  void cancel(int64_t id) override {
    int rank = book_.owner(id);
    if (rank < 0) return;
    std::lock_guard<std::mutex> g(inbox_[rank].mu);
    inbox_[rank].cancel.push_back(id);
  }

  std::vector<RankHealth> health() const override { return book_.health(); }
  EngineMetrics metrics() const override { return book_.metrics(); }

  void shutdown() override {
    if (stopped_.exchange(true)) return;
    for (auto& in : inbox_) {
      std::lock_guard<std::mutex> g(in.mu);
      in.shutdown = true;
    }
    // Queued requests still finish; a rank that died stops the rest through mark_dead.
    for (auto& t : threads_) t.join();
    book_.fail_all(Status(Code::kUnavailable, "the engine was shut down"));
  }

  Inbox& inbox(int a) { return inbox_[a]; }
  RequestBook& book() { return book_; }

 private:
  std::unique_ptr<Step3Model> model_;
  JobOptions opt_;
  Placement placement_;
  RequestBook book_;
  int A_ = 0, M_ = 0;
  std::vector<Inbox> inbox_;
  std::vector<std::unique_ptr<RankHooks>> hooks_;
  std::vector<std::unique_ptr<Fabric>> fabrics_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};
};

void RankHooks::poll(std::vector<Request>* add, std::vector<int64_t>* cancel, bool* shutdown) {
  Inbox& in = e_->inbox(rank_);
  std::lock_guard<std::mutex> g(in.mu);
  add->swap(in.add);
  cancel->swap(in.cancel);
  *shutdown = in.shutdown;
}

void RankHooks::emit(std::vector<TokenUpdate> ups, const Scheduler& s, const RankStats& st) {
  e_->book().attention_stats(rank_, s.running(), s.waiting(), s.kv_used_fraction(), st);
  e_->book().deliver(ups);
}

}  // namespace

Result<std::unique_ptr<Engine>> start_engine(const ServeOptions& opt) {
  if (opt.transport != "local" && opt.transport != "ucx")
    return InvalidArgument("--transport must be local or ucx, got \"{}\"", opt.transport);
  if (opt.transport == "ucx" && !opt.job.colocated) return start_cluster_engine(opt);
  AFD_ASSIGN_OR_RETURN(auto model, load_model(opt.model, opt.weights_seed));
  AFD_ASSIGN_OR_RETURN(Placement p, Placement::build(model->config(), opt.job.colocated ? 1 : opt.job.ffn_ranks));
  auto e = std::make_unique<InProcessEngine>(std::move(model), opt.job, std::move(p));
  AFD_RETURN_IF_ERROR(e->start());
  return std::unique_ptr<Engine>(std::move(e));
}

}  // namespace afd
