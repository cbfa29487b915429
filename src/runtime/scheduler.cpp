#include "runtime/scheduler.h"

#include <algorithm>

namespace afd {

Scheduler::Scheduler(SchedulerConfig cfg, KVCache* cache) : cfg_(cfg), cache_(cache) {
  AFD_CHECK(cfg_.max_running > 0 && cfg_.max_step_tokens > 0 && cfg_.prefill_chunk > 0,
            "scheduler limits must be positive");
}

int64_t Scheduler::blocks_for(int64_t tokens) const {
  return (tokens + cache_->block_size() - 1) / cache_->block_size();
}

Status Scheduler::add(Request r) {
  if (r.prompt.empty()) return InvalidArgument("request {}: empty prompt", r.index);
  if (r.max_new_tokens < 1) return InvalidArgument("request {}: max_new_tokens < 1", r.index);
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens;
  if (blocks_for(total) > cache_->num_blocks())
    return InvalidArgument("request {}: {} tokens can never fit the KV cache of {} tokens",
                           r.index, total, cache_->num_blocks() * cache_->block_size());
  waiting_.push_back(std::move(r));
  return Status::OK();
}

void Scheduler::admit() {
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < cfg_.max_running) {
    const Request& r = waiting_.front();
    const int64_t need = blocks_for(static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens);
    if (need > cache_->free_blocks() - reserved_) break;  // cache full: wait (FIFO, no skipping)
    const uint64_t seed = r.own_sampling
                              ? r.rng_seed
                              : cfg_.seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(r.index + 1));
    Running run{r, cache_->create_sequence(), 0, {}, {}, cpu::Rng(seed), need};
    reserved_ += need;
    running_.push_back(std::move(run));
    waiting_.pop_front();
  }
}

std::vector<std::vector<PlannedChunk>> Scheduler::plan(int K) {
  admit();
  std::vector<PlannedChunk> chunks;
  int64_t budget = cfg_.max_step_tokens;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Running& r = running_[i];
    PlannedChunk pc;
    pc.running = i;
    pc.chunk.seq = r.seq;
    if (r.prefilled < r.req.prompt.size()) {
      size_t n = std::min<size_t>({static_cast<size_t>(cfg_.prefill_chunk),
                                   r.req.prompt.size() - r.prefilled, static_cast<size_t>(budget)});
      pc.chunk.tokens.assign(r.req.prompt.begin() + static_cast<long>(r.prefilled),
                             r.req.prompt.begin() + static_cast<long>(r.prefilled + n));
      pc.samples = r.prefilled + n == r.req.prompt.size();
    } else {
      pc.chunk.tokens = {r.generated.back()};
      pc.samples = true;
    }
    budget -= static_cast<int64_t>(pc.chunk.tokens.size());
    chunks.push_back(std::move(pc));
  }
  // Largest first into the micro-batch with the fewest tokens.
  std::vector<size_t> order(chunks.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return chunks[a].chunk.tokens.size() > chunks[b].chunk.tokens.size();
  });
  std::vector<std::vector<PlannedChunk>> mbs(static_cast<size_t>(K));
  std::vector<int64_t> load(static_cast<size_t>(K), 0);
  for (size_t i : order) {
    size_t m = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    load[m] += static_cast<int64_t>(chunks[i].chunk.tokens.size());
    mbs[m].push_back(std::move(chunks[i]));
  }
  return mbs;
}

void Scheduler::commit(const std::vector<std::vector<PlannedChunk>>& plan,
                       const std::vector<const float*>& logits, int64_t vocab, double now_s) {
  size_t li = 0;
  for (const auto& mb : plan) {
    for (const PlannedChunk& pc : mb) {
      Running& r = running_[pc.running];
      if (r.prefilled < r.req.prompt.size()) r.prefilled += pc.chunk.tokens.size();
      // The cache grew by this chunk: the reservation shrinks by the blocks it allocated.
      if (!pc.samples) continue;
      AFD_CHECK(li < logits.size(), "commit: {} logits rows for more sampling chunks", logits.size());
      const cpu::SamplingParams& sp = r.req.own_sampling ? r.req.sampling : cfg_.sampling;
      const int32_t tok = cpu::sample(logits[li++], vocab, sp, r.rng);
      r.generated.push_back(tok);
      r.times.push_back(now_s);
      updates_.push_back({r.req.index, {tok}, false, ""});
    }
  }
  AFD_CHECK(li == logits.size(), "commit: {} logits rows, {} used", logits.size(), li);
  // Retire finished requests; recompute the outstanding reservation from the cache itself.
  std::vector<Running> keep;
  reserved_ = 0;
  for (Running& r : running_) {
    const auto& stops = r.req.stop_token_ids;
    const bool stopped = !r.generated.empty() &&
                         std::find(stops.begin(), stops.end(), r.generated.back()) != stops.end();
    if (stopped || static_cast<int64_t>(r.generated.size()) >= r.req.max_new_tokens) {
      cache_->release(r.seq);
      updates_.push_back({r.req.index, {}, true, stopped ? "stop" : "length"});
      finished_.push_back({r.req.index, std::move(r.generated), std::move(r.times)});
      continue;
    }
    const int64_t total = static_cast<int64_t>(r.req.prompt.size()) + r.req.max_new_tokens;
    r.reserved_blocks = blocks_for(total) - static_cast<int64_t>(cache_->blocks(r.seq).size());
    reserved_ += r.reserved_blocks;
    keep.push_back(std::move(r));
  }
  running_ = std::move(keep);
}

void Scheduler::cancel(int64_t index) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it)
    if (it->index == index) {
      waiting_.erase(it);
      updates_.push_back({index, {}, true, "cancelled"});
      return;
    }
  for (size_t i = 0; i < running_.size(); ++i)
    if (running_[i].req.index == index) {
      cache_->release(running_[i].seq);
      reserved_ -= running_[i].reserved_blocks;
      running_.erase(running_.begin() + static_cast<long>(i));
      updates_.push_back({index, {}, true, "cancelled"});
      return;
    }
}

double Scheduler::kv_used_fraction() const {
  const double total = static_cast<double>(cache_->num_blocks());
  return total > 0 ? (total - static_cast<double>(cache_->free_blocks()) +
                      static_cast<double>(reserved_)) / total
                   : 0;
}

std::vector<TokenUpdate> Scheduler::take_updates() {
  std::vector<TokenUpdate> out;
  out.swap(updates_);
  return out;
}

std::vector<Finished> Scheduler::take_finished() {
  std::vector<Finished> out;
  out.swap(finished_);
  return out;
}

}  // namespace afd
