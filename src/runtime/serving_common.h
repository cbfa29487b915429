// Bookkeeping shared by the Engine implementations: request ids, routing to the least-loaded
// attention rank, callbacks, rank health and the metrics snapshot. Thread-safe; callbacks are
// invoked without any lock held (they may call Engine::cancel).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/job.h"
#include "runtime/scheduler.h"
#include "runtime/serving.h"
#include "runtime/stats.h"
#include "serve/engine.h"

namespace afd {

struct Routed {
  int rank = 0;            // attention rank that will serve it
  int64_t request_id = 0;
  Request request;         // ready for the rank's scheduler (index == request_id)
};

class RequestBook {
 public:
  RequestBook(const ModelConfig& cfg, const JobOptions& opt) : cfg_(cfg), opt_(opt) {}
  void set_ranks(const std::vector<std::string>& names, int attention_ranks);

  // Validates, assigns an id and a rank (fewest requests in flight), stores the callback.
  Result<Routed> admit(GenerationRequest req, std::function<void(const TokenEvent&)> cb);
  int owner(int64_t id) const;  // -1 when unknown or finished
  // Turns scheduler updates into TokenEvents and calls back; forgets finished requests.
  void deliver(const std::vector<TokenUpdate>& ups);
  // A rank is lost: it is reported down, every request in flight fails with kUnavailable
  // naming it, and later submits are refused.
  void rank_failed(int rank, const Status& why);
  void fail_all(const Status& why);

  void attention_stats(int rank, int64_t running, int64_t waiting, double kv, const RankStats& st);
  void ffn_stats(int ffn_index, const RankStats& st);
  std::vector<RankHealth> health() const;
  EngineMetrics metrics() const;

 private:
  struct Entry {
    int rank;
    std::function<void(const TokenEvent&)> cb;
  };
  const ModelConfig& cfg_;
  JobOptions opt_;
  mutable std::mutex mu_;
  int A_ = 0;
  int64_t next_id_ = 0;
  std::map<int64_t, Entry> live_;
  std::vector<int64_t> in_flight_;  // per attention rank
  std::vector<RankHealth> health_;
  std::vector<std::vector<double>> latency_;  // per attention rank: its recent round trips
  EngineMetrics metrics_;
  Status down_;  // non-OK once any rank failed
};

// One process per rank over UCX (serving_cluster.cpp).
Result<std::unique_ptr<Engine>> start_cluster_engine(const ServeOptions& opt);

}  // namespace afd
