#include "runtime/job.h"

#include <algorithm>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "kernels/cpu/ops.h"
#include "runtime/attention_worker.h"
#include "runtime/ffn_worker.h"
#include "runtime/placement.h"
#include "transport/fabric.h"

namespace afd {

std::vector<int> balance_requests(const std::vector<Request>& reqs, int A) {
  std::vector<int64_t> load(static_cast<size_t>(A), 0);
  std::vector<int> rank(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    size_t a = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    load[a] += static_cast<int64_t>(reqs[i].prompt.size()) + reqs[i].max_new_tokens;
    rank[i] = static_cast<int>(a);
  }
  return rank;
}

RequestOutcome outcome_from(const Finished& f, int rank) {
  RequestOutcome o;
  o.index = f.index;
  o.ok = true;
  o.attention_rank = rank;
  o.tokens = f.tokens;
  if (!f.token_times.empty()) o.ttft_s = f.token_times.front();
  if (f.token_times.size() > 1)
    o.tpot_ms = 1e3 * (f.token_times.back() - f.token_times.front()) /
                static_cast<double>(f.token_times.size() - 1);
  return o;
}

Result<JobReport> run_local_job(const Step3Model& model, const std::vector<Request>& reqs,
                                const JobOptions& opt) {
  const ModelConfig& cfg = model.config();
  const int A = opt.colocated ? 1 : opt.attention_ranks;
  const int M = opt.colocated ? 1 : opt.ffn_ranks;
  if (A < 1) return InvalidArgument("--attention-ranks must be at least 1");
  if (opt.micro_batches < 1 || opt.micro_batches > 4)
    return InvalidArgument("--micro-batches must be 1..4, got {}", opt.micro_batches);
  AFD_ASSIGN_OR_RETURN(Placement placement, Placement::build(cfg, M));
  std::vector<int> owner = balance_requests(reqs, A);

  JobReport rep;
  Trace trace(opt.trace);
  rep.ranks.resize(static_cast<size_t>(opt.colocated ? A : A + M));
  for (int a = 0; a < A; ++a) rep.ranks[a].name = fmt::format("attention {}", a);
  if (!opt.colocated)
    for (int f = 0; f < M; ++f) rep.ranks[A + f].name = fmt::format("ffn {}", f);
  for (size_t r = 0; r < rep.ranks.size(); ++r) trace.name_track(static_cast<int>(r), rep.ranks[r].name);

  std::vector<std::string> names;
  for (int r = 0; r < A + M; ++r) names.push_back(r < A ? rep.ranks[r].name : fmt::format("ffn {}", r - A));
  auto hub = make_local_hub(A + M, names);
  std::vector<std::unique_ptr<Fabric>> fabrics;
  for (int r = 0; r < A + M; ++r) fabrics.push_back(make_local_fabric(hub, r));

  std::mutex mu;
  std::vector<Status> status(static_cast<size_t>(A + M));
  std::vector<AttentionResult> results(static_cast<size_t>(A));
  std::vector<std::vector<int64_t>> failed_reqs(static_cast<size_t>(A));
  // A failing rank is declared dead to every other rank, so none of them waits forever.
  auto fail = [&](int r, const Status& s) {
    std::lock_guard<std::mutex> g(mu);
    status[r] = s;
    for (int o = 0; o < A + M; ++o)
      if (o != r) fabrics[o]->mark_dead(r, s.message());
  };
  // The ranks' threads share this process's cores: one BLAS thread each unless colocated.
  if (!opt.colocated) cpu::set_num_threads(1);
  const double t0 = Trace::now_us();
  std::vector<std::thread> threads;
  for (int a = 0; a < A; ++a) {
    threads.emplace_back([&, a] {
      try {
        KVCache cache = model.make_cache(opt.kv_tokens, opt.block_size);
        Scheduler sched(opt.sched, &cache);
        for (size_t i = 0; i < reqs.size(); ++i) {
          if (owner[i] != a) continue;
          Status s = sched.add(reqs[i]);
          if (!s.ok()) return fail(a, s);
        }
        std::unique_ptr<FfnClient> ffn;
        AttentionRankOptions ao;
        ao.micro_batches = opt.micro_batches;
        if (opt.colocated) {
          ffn = make_local_ffn(std::make_shared<FfnExecutor>(cfg, model.weights(), placement, 0), cfg);
          ao.lockstep = false;
          ao.micro_batches = 1;  // nothing runs beside the FFN here, so nothing to overlap
        } else {
          ffn = make_remote_ffn(fabrics[a].get(), cfg, &placement, A, opt.dispatch,
                                opt.peer_timeout, &rep.ranks[a], &trace);
        }
        Status s = run_attention_rank(model, cache, sched, *ffn, ao, a, &rep.ranks[a], &trace,
                                      &results[a]);
        rep.ranks[a].bytes_sent = fabrics[a]->bytes_sent();
        rep.ranks[a].bytes_received = fabrics[a]->bytes_received();
        if (!s.ok()) fail(a, Status(s.code(), fmt::format("attention {}: {}", a, s.message())));
      } catch (const std::exception& e) {
        fail(a, Status(Code::kInternal, fmt::format("attention {}: {}", a, e.what())));
      }
    });
  }
  if (!opt.colocated) {
    for (int f = 0; f < M; ++f) {
      threads.emplace_back([&, f] {
        try {
          FfnExecutor ex(cfg, model.weights(), placement, f);
          FfnRankOptions fo{A, opt.micro_batches, opt.dispatch, opt.peer_timeout};
          Status s = run_ffn_rank(*fabrics[A + f], ex, cfg, fo, &rep.ranks[A + f], &trace);
          if (!s.ok()) fail(A + f, Status(s.code(), fmt::format("ffn {}: {}", f, s.message())));
        } catch (const std::exception& e) {
          fail(A + f, Status(Code::kInternal, fmt::format("ffn {}: {}", f, e.what())));
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  if (!opt.colocated) cpu::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
  rep.wall_s = (Trace::now_us() - t0) * 1e-6;
  for (const Status& s : status)
    if (!s.ok()) return s;
  for (int a = 0; a < A; ++a)
    for (const Finished& f : results[a].finished) rep.results.push_back(outcome_from(f, a));
  std::sort(rep.results.begin(), rep.results.end(),
            [](const RequestOutcome& x, const RequestOutcome& y) { return x.index < y.index; });
  for (auto& r : rep.results) rep.generated_tokens += static_cast<int64_t>(r.tokens.size());
  if (opt.trace) rep.trace_events = trace.events_json(-t0);
  return rep;
}

namespace {
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}
}  // namespace

std::string job_stats_json(const JobReport& r, const JobOptions& opt) {
  std::vector<double> tpot, ttft;
  for (const auto& o : r.results) {
    if (!o.ok) continue;
    if (o.tokens.size() > 1) tpot.push_back(o.tpot_ms);
    ttft.push_back(o.ttft_s * 1e3);
  }
  nlohmann::json ranks = nlohmann::json::array();
  uint64_t a2f = 0, f2a = 0;
  const int A = opt.colocated ? 1 : opt.attention_ranks;
  for (size_t i = 0; i < r.ranks.size(); ++i) {
    const RankStats& s = r.ranks[i];
    if (static_cast<int>(i) < A) a2f += s.bytes_sent, f2a += s.bytes_received;
    ranks.push_back({{"name", s.name},
                     {"wall_s", s.wall_s},
                     {"compute_s", s.compute_s},
                     {"wait_s", s.wait_s},
                     {"comm_s", s.comm_s},
                     {"idle_fraction", s.idle_fraction()},
                     {"steps", s.steps},
                     {"bytes_sent", s.bytes_sent},
                     {"bytes_received", s.bytes_received}});
  }
  nlohmann::json j = {
      {"wall_s", r.wall_s},
      {"generated_tokens", r.generated_tokens},
      {"tokens_per_s", r.wall_s > 0 ? r.generated_tokens / r.wall_s : 0},
      {"tpot_ms_p50", percentile(tpot, 0.5)},
      {"tpot_ms_p99", percentile(tpot, 0.99)},
      {"ttft_ms_p50", percentile(ttft, 0.5)},
      {"bytes_attention_to_ffn", a2f},
      {"bytes_ffn_to_attention", f2a},
      {"ranks", ranks},
  };
  return j.dump();
}

}  // namespace afd
