// Continuous batching for one attention rank (nano-vllm style: readable in one screen).
//
// Requests wait in FIFO order and are admitted while (a) fewer than max_running are running
// and (b) the KV cache can hold the whole request (prompt + max_new_tokens): blocks are
// reserved at admission, so a running request never runs out of cache (no preemption).
// Each step gives every running request one chunk: the next <= prefill_chunk prompt tokens
// while its prompt is not done (chunked prefill), else its last sampled token (decode), within
// max_step_tokens. Chunks are spread over K micro-batches, largest first into the emptiest.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "model/kv_cache.h"
#include "model/step3.h"

namespace afd {

struct Request {
  int64_t index = 0;            // the caller's id (results are reported by it)
  std::vector<int32_t> prompt;  // i32 [n], n >= 1
  int64_t max_new_tokens = 16;
  // Per-request sampling (serving); when unset the scheduler's config applies and the random
  // stream is Rng(config.seed ^ golden * (index + 1)), as afd generate draws it.
  bool own_sampling = false;
  cpu::SamplingParams sampling;
  uint64_t rng_seed = 0;
  std::vector<int32_t> stop_token_ids;  // finish after emitting one of these
};

// Tokens a step produced for one request (serving streams these).
struct TokenUpdate {
  int64_t index = 0;
  std::vector<int32_t> tokens;
  bool finished = false;
  std::string reason;  // "length" | "stop" | "cancelled" when finished
};

struct SchedulerConfig {
  int64_t max_running = 64;      // sequences decoded together (--max-batch)
  int64_t max_step_tokens = 512; // tokens in one step over all micro-batches
  int64_t prefill_chunk = 256;   // prompt tokens per request per step
  cpu::SamplingParams sampling;
  uint64_t seed = 0;             // request i samples from Rng(seed ^ golden * (i + 1))
};

struct Finished {
  int64_t index = 0;
  std::vector<int32_t> tokens;  // generated ids
  std::vector<double> token_times;  // seconds since the scheduler started, per token
};

// One chunk of a planned step, and whether its last row's logits produce a token.
struct PlannedChunk {
  SeqChunk chunk;
  bool samples = false;
  size_t running = 0;  // index into the running list (internal)
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig cfg, KVCache* cache);
  // Rejects requests that can never fit (longer than the whole cache, empty prompts).
  Status add(Request r);
  // Admits what fits, then plans one step as K micro-batches (some may be empty).
  std::vector<std::vector<PlannedChunk>> plan(int K);
  // After the step ran: logits f32 [vocab] of every planned chunk with samples == true, in
  // plan order (micro-batch by micro-batch). Finishes requests that reached max_new_tokens.
  void commit(const std::vector<std::vector<PlannedChunk>>& plan,
              const std::vector<const float*>& logits, int64_t vocab, double now_s);
  // Drops a request (waiting or running), freeing its KV blocks; it finishes as "cancelled".
  void cancel(int64_t index);
  bool done() const { return waiting_.empty() && running_.empty(); }
  // KV blocks in use or promised to running requests, over all blocks.
  double kv_used_fraction() const;
  // What every commit()/cancel() since the last call produced, in order.
  std::vector<TokenUpdate> take_updates();
  int64_t running() const { return static_cast<int64_t>(running_.size()); }
  int64_t waiting() const { return static_cast<int64_t>(waiting_.size()); }
  std::vector<Finished> take_finished();

 private:
  struct Running {
    Request req;
    int64_t seq = 0;        // KV handle
    size_t prefilled = 0;   // prompt tokens already in the cache
    std::vector<int32_t> generated;
    std::vector<double> times;
    cpu::Rng rng;
    int64_t reserved_blocks = 0;  // blocks promised at admission, not yet allocated
  };
  void admit();
  int64_t blocks_for(int64_t tokens) const;

  SchedulerConfig cfg_;
  KVCache* cache_;
  std::deque<Request> waiting_;
  std::vector<Running> running_;
  std::vector<Finished> finished_;
  std::vector<TokenUpdate> updates_;
  int64_t reserved_ = 0;  // sum of reserved_blocks over running
};

}  // namespace afd
