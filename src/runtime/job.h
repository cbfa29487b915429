// An AFD job: requests spread over attention ranks, FFN ranks holding the expert slices,
// run to completion. In-process (threads over the local fabric, or colocated) here; across
// processes and hosts in runtime/launch.h over the same worker loops.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "model/step3.h"
#include "runtime/scheduler.h"
#include "runtime/stats.h"
#include "runtime/wire.h"

namespace afd {

struct JobOptions {
  int attention_ranks = 1;
  int ffn_ranks = 1;
  int micro_batches = 3;
  bool colocated = false;              // FFN in-process (the baseline); ignores the rank counts
  WireDType dispatch = WireDType::kFp8;
  SchedulerConfig sched;
  int64_t kv_tokens = 32768;           // KV cache capacity per attention rank (positions)
  int64_t block_size = 16;
  std::chrono::milliseconds peer_timeout{10000};
  bool trace = false;
};

struct RequestOutcome {
  int64_t index = 0;
  bool ok = false;
  std::string error;              // when !ok
  int attention_rank = -1;
  std::vector<int32_t> tokens;    // generated ids
  double ttft_s = 0;              // first token, from the job start
  double tpot_ms = 0;             // mean time per output token after the first
};

struct JobReport {
  std::vector<RequestOutcome> results;  // sorted by index
  std::vector<RankStats> ranks;         // attention ranks, then FFN ranks
  double wall_s = 0;
  int64_t generated_tokens = 0;
  std::string trace_events;             // Chrome trace events (comma-separated)
};

// Which attention rank serves each request: least total tokens (prompt + new) so far.
std::vector<int> balance_requests(const std::vector<Request>& reqs, int attention_ranks);

// Runs every rank as a thread of this process over the local fabric (or colocated).
Result<JobReport> run_local_job(const Step3Model& model, const std::vector<Request>& reqs,
                                const JobOptions& opt);

// Fills outcome timing from a finished request.
RequestOutcome outcome_from(const Finished& f, int rank);

// Summary statistics as JSON text: tokens/s, TPOT p50/p99, per-rank busy/idle, bytes.
std::string job_stats_json(const JobReport& r, const JobOptions& opt);

}  // namespace afd
