// Attention side of AFD: one attention rank's step loop with K micro-batches in flight.
//
// Per step the scheduler plans K micro-batches. Per layer l and micro-batch m the rank
// combines m's FFN result of layer l-1, runs attention (norms, projections, MFA over its paged
// KV cache), the post-attention norm and the router, and dispatches m to the FFN side; while
// the FFN works on m, the rank computes m+1. After the last layer: combine, lm_head, sample.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "model/step3.h"
#include "runtime/ffn_worker.h"
#include "runtime/placement.h"
#include "runtime/scheduler.h"
#include "runtime/stats.h"
#include "transport/fabric.h"

namespace afd {

// How the attention rank reaches the FFN side.
class FfnClient {
 public:
  virtual ~FfnClient() = default;
  // Sends micro-batch `mb`'s FFN input: x f32 [T, H], ids i32 [T, k], weights f32 [T, k].
  virtual Status dispatch(int64_t step, int64_t layer, int mb, uint32_t flags, const float* x,
                          const int32_t* ids, const float* weights, int64_t T) = 0;
  // Waits for every FFN rank's partial of (step, layer, mb) and adds them into h f32 [T, H].
  virtual Status combine(int64_t step, int64_t layer, int mb, float* h, uint32_t* flags) = 0;
};

// FFN ranks are fabric ranks A .. A+M-1 (A = attention ranks).
std::unique_ptr<FfnClient> make_remote_ffn(Fabric* fabric, const ModelConfig& cfg,
                                           const Placement* placement, int attention_ranks,
                                           WireDType dispatch, std::chrono::milliseconds timeout,
                                           RankStats* stats, Trace* trace);
// Colocated baseline: the whole FFN in this process, computed at dispatch time, f32.
std::unique_ptr<FfnClient> make_local_ffn(std::shared_ptr<FfnExecutor> ex, const ModelConfig& cfg);

// Serving: requests arrive and tokens leave while the rank runs (runtime/serving.cpp).
class ServingHooks {
 public:
  virtual ~ServingHooks() = default;
  // At the start of every step: requests to add, ids to cancel, and whether to wind down
  // (finish what is queued, then stop).
  virtual void poll(std::vector<Request>* add, std::vector<int64_t>* cancel, bool* shutdown) = 0;
  // After every step: what it produced (and requests refused at admission, finished with a
  // reason starting "error:"), with the scheduler and stats to read gauges from.
  virtual void emit(std::vector<TokenUpdate> updates, const Scheduler& sched,
                    const RankStats& stats) = 0;
};

struct AttentionRankOptions {
  int micro_batches = 3;
  bool lockstep = true;  // remote FFN: keep stepping (empty) until every attention rank is done
  ServingHooks* hooks = nullptr;  // null: run the queued requests to completion
};

struct AttentionResult {
  std::vector<Finished> finished;
  std::vector<double> step_seconds;  // wall time of each step that sampled tokens
};

// Runs until the scheduler is empty (and, in lock-step, until the FFN side says all done).
Status run_attention_rank(const Step3Model& model, KVCache& cache, Scheduler& sched,
                          FfnClient& ffn, const AttentionRankOptions& opt, int track,
                          RankStats* stats, Trace* trace, AttentionResult* out);

}  // namespace afd
