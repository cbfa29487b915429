// Engine: what the HTTP frontend needs from the inference side (DESIGN.md §1: frontend ->
// attention ranks). Token ids in, token ids out, streamed; text lives in the frontend.
//
// Implementations: the AFD cluster (attention and FFN ranks, runtime/serving.h) and a
// colocated in-process engine. Callbacks run on an engine thread: they must be quick and must
// not call back into the engine except cancel().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/config.h"

namespace afd {

struct GenerationRequest {
  std::vector<int32_t> prompt;          // i32 [n], 1 <= n, every id < vocab
  int64_t max_tokens = 16;              // >= 1
  float temperature = 1.0f;             // 0: greedy
  float top_p = 1.0f;
  int64_t top_k = 0;                    // 0: no limit
  uint64_t seed = 0;                    // sampling stream (the same seed, the same tokens)
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
};

// One callback per engine step that produced tokens for the request; exactly one event has
// finished == true (the last), or error is set (the request failed; no more events follow).
struct TokenEvent {
  std::vector<int32_t> tokens;  // new token ids, in order
  bool finished = false;
  std::string finish_reason;    // "length" | "stop" (stop token) | "cancelled"
  Status error;                 // non-OK: kUnavailable when a rank is down
};

struct RankHealth {
  std::string name;     // "attention 0", "ffn 1"
  bool up = true;
  std::string detail;   // why it is down
};

struct EngineMetrics {
  struct AttentionRank {
    std::string name;
    int64_t running = 0;
    int64_t waiting = 0;
    double kv_used_fraction = 0;  // KV blocks in use / total
  };
  std::vector<AttentionRank> attention;
  // Per rank: seconds busy in compute, waiting, communicating (cumulative).
  struct Stage {
    std::string rank;
    double compute_s = 0, wait_s = 0, comm_s = 0;
  };
  std::vector<Stage> stages;
  // A->F->A round trips (dispatch to combine) observed by attention ranks, seconds.
  std::vector<double> transfer_latency_samples;  // recent samples (the engine keeps a window)
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const ModelConfig& config() const = 0;
  // Queues a request; events arrive on `on_event`. Fails at once (InvalidArgument) for a bad
  // request (empty prompt, id outside the vocabulary, prompt + max_tokens past the context or
  // past the KV cache), or kUnavailable when the engine is down.
  virtual Result<int64_t> submit(GenerationRequest req,
                                 std::function<void(const TokenEvent&)> on_event) = 0;
  // Stops a request and frees its KV cache; its last event has finish_reason "cancelled".
  // Unknown or finished ids are ignored.
  virtual void cancel(int64_t id) = 0;
  virtual std::vector<RankHealth> health() const = 0;
  virtual EngineMetrics metrics() const = 0;
  // Stops every rank (idempotent).
  virtual void shutdown() = 0;
};

}  // namespace afd
