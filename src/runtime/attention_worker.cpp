#include "runtime/attention_worker.h"

#include <cstring>
#include <map>
#include <thread>

namespace afd {

namespace {

class RemoteFfn : public FfnClient {
 public:
  RemoteFfn(Fabric* f, const ModelConfig& cfg, const Placement* p, int A, WireDType dt,
            std::chrono::milliseconds timeout, RankStats* st, Trace* tr)
      : f_(f), cfg_(cfg), p_(p), A_(A), dt_(dt), timeout_(timeout), st_(st), tr_(tr) {}

  Status dispatch(int64_t step, int64_t layer, int mb, uint32_t flags, const float* x,
                  const int32_t* ids, const float* w, int64_t T) override {
    ScopedSpan sp(tr_, f_->rank(), fmt::format("send L{} mb{}", layer, mb), "comm", &st_->comm_s);
    sent_at_[mb] = Trace::now_us();
    const int M = p_->ffn_ranks();
    const int64_t k = cfg_.is_moe_layer(layer) ? cfg_.moe_top_k : 0;
    auto& rows = rows_[mb];
    rows.assign(static_cast<size_t>(M), {});
    for (int f = 0; f < M; ++f) {
      for (int64_t t = 0; t < T; ++t)
        if (k == 0 || p_->needs(layer, f, ids + t * k, k)) rows[f].push_back(t);
      // Encoded straight into a buffer the fabric then owns: no second copy on the way out.
      std::vector<uint8_t> msg = f_->acquire_buffer();  // registered once, reused
      encode_dispatch(flags, dt_, x, ids, w, rows[f], cfg_.hidden_size, k, &msg);
      AFD_RETURN_IF_ERROR(f_->send_owned(A_ + f, afd_tag(step, layer, mb, 0), std::move(msg)));
    }
    return Status::OK();
  }

  Status combine(int64_t step, int64_t layer, int mb, float* h, uint32_t* flags) override {
    *flags = 0;
    const int M = p_->ffn_ranks();
    struct Latency {  // records the round trip once every partial is in
      RankStats* st;
      double start;
      ~Latency() { st->add_transfer_latency((Trace::now_us() - start) * 1e-6); }
    } lat{st_, sent_at_[mb]};
    for (int f = 0; f < M; ++f) {
      {
        ScopedSpan sp(tr_, f_->rank(), fmt::format("wait L{} mb{}", layer, mb), "wait", &st_->wait_s);
        AFD_RETURN_IF_ERROR(f_->recv(A_ + f, afd_tag(step, layer, mb, 1), &buf_, timeout_));
      }
      ScopedSpan sp(tr_, f_->rank(), fmt::format("add L{} mb{}", layer, mb), "comm", &st_->comm_s);
      uint32_t fl = 0;
      AFD_RETURN_IF_ERROR(accumulate_partial(buf_, rows_[mb][static_cast<size_t>(f)],
                                             cfg_.hidden_size, h, &fl));
      *flags |= fl;
    }
    return Status::OK();
  }

 private:
  Fabric* f_;
  const ModelConfig& cfg_;
  const Placement* p_;
  int A_;
  WireDType dt_;
  std::chrono::milliseconds timeout_;
  RankStats* st_;
  Trace* tr_;
  std::map<int, std::vector<std::vector<int64_t>>> rows_;  // mb -> ffn rank -> token rows sent
  std::map<int, double> sent_at_;                           // mb -> dispatch time (us)
  std::vector<uint8_t> buf_;
};

class LocalFfn : public FfnClient {
 public:
  LocalFfn(std::shared_ptr<FfnExecutor> ex, const ModelConfig& cfg) : ex_(std::move(ex)), cfg_(cfg) {}
  Status dispatch(int64_t, int64_t layer, int mb, uint32_t, const float* x, const int32_t* ids,
                  const float* w, int64_t T) override {
    auto& y = out_[mb];
    y.resize(static_cast<size_t>(T * cfg_.hidden_size));
    ex_->compute(layer, x, T, ids, w, y.data());
    return Status::OK();
  }
  Status combine(int64_t, int64_t, int mb, float* h, uint32_t* flags) override {
    *flags = 0;
    const auto& y = out_[mb];
    for (size_t i = 0; i < y.size(); ++i) h[i] += y[i];
    return Status::OK();
  }

 private:
  std::shared_ptr<FfnExecutor> ex_;
  const ModelConfig& cfg_;
  std::map<int, std::vector<float>> out_;
};

// One micro-batch's state through the layers of a step.
struct MicroBatch {
  std::vector<PlannedChunk> chunks;
  BatchLayout layout;
  std::vector<float> h, x, w;  // f32 [T, H], [T, H], [T, k]
  std::vector<int32_t> ids;    // i32 [T, k]
};

}  // namespace

std::unique_ptr<FfnClient> make_remote_ffn(Fabric* fabric, const ModelConfig& cfg,
                                           const Placement* placement, int attention_ranks,
                                           WireDType dispatch, std::chrono::milliseconds timeout,
                                           RankStats* stats, Trace* trace) {
  return std::make_unique<RemoteFfn>(fabric, cfg, placement, attention_ranks, dispatch, timeout,
                                     stats, trace);
}

std::unique_ptr<FfnClient> make_local_ffn(std::shared_ptr<FfnExecutor> ex, const ModelConfig& cfg) {
  return std::make_unique<LocalFfn>(std::move(ex), cfg);
}

Status run_attention_rank(const Step3Model& model, KVCache& cache, Scheduler& sched,
                          FfnClient& ffn, const AttentionRankOptions& opt, int track,
                          RankStats* st, Trace* trace, AttentionResult* out) {
  const ModelConfig& cfg = model.config();
  const int K = opt.micro_batches;
  const int64_t H = cfg.hidden_size, L = cfg.num_hidden_layers, V = cfg.vocab_size;
  const double t0 = Trace::now_us();
  bool winding_down = opt.hooks == nullptr;
  for (int64_t step = 0;; ++step) {
    if (opt.hooks) {
      std::vector<Request> add;
      std::vector<int64_t> cancel;
      bool stop = false;
      opt.hooks->poll(&add, &cancel, &stop);
      winding_down = winding_down || stop;
      std::vector<TokenUpdate> refused;
      for (Request& r : add) {
        const int64_t index = r.index;
        Status s = sched.add(std::move(r));
        if (!s.ok()) refused.push_back({index, {}, true, "error: " + s.message()});
      }
      for (int64_t id : cancel) sched.cancel(id);  // between steps: no chunk refers to it
      std::vector<TokenUpdate> ups = sched.take_updates();
      ups.insert(ups.end(), refused.begin(), refused.end());
      if (!ups.empty()) opt.hooks->emit(std::move(ups), sched, *st);
      // Idle: pace the empty lock-step so waiting ranks do not spin.
      if (sched.done() && !winding_down) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const bool done = sched.done() && winding_down;
    if (done && !opt.lockstep) break;
    const double step_start = Trace::now_us();
    std::vector<std::vector<PlannedChunk>> plan =
        done ? std::vector<std::vector<PlannedChunk>>(static_cast<size_t>(K)) : sched.plan(K);
    std::vector<MicroBatch> mbs(static_cast<size_t>(K));
    for (int m = 0; m < K; ++m) {
      MicroBatch& mb = mbs[m];
      mb.chunks = plan[m];
      std::vector<SeqChunk> chunks;
      for (auto& pc : mb.chunks) chunks.push_back(pc.chunk);
      AFD_ASSIGN_OR_RETURN(mb.layout, model.prepare(chunks, cache));
      const int64_t T = mb.layout.T, k = cfg.moe_top_k;
      mb.h.resize(static_cast<size_t>(T * H));
      mb.x.resize(static_cast<size_t>(T * H));
      mb.ids.assign(static_cast<size_t>(T * k), 0);
      mb.w.assign(static_cast<size_t>(T * k), 0.0f);
      if (T) cpu::embedding(mb.layout.tokens.data(), T, model.weights().embed.data<float>(), V, H,
                            mb.h.data());
    }
    const uint32_t flags = done ? kFlagRankDone : 0;
    bool early_combined = false;
    for (int64_t l = 0; l < L; ++l) {
      for (int m = 0; m < K; ++m) {
        MicroBatch& mb = mbs[m];
        const int64_t T = mb.layout.T;
        uint32_t got = 0;
        if (l > 0 && !(l == 1 && m == 0 && early_combined))
          AFD_RETURN_IF_ERROR(ffn.combine(step, l - 1, m, mb.h.data(), &got));
        {
          ScopedSpan sp(trace, track, fmt::format("attn L{} mb{}", l, m), "attention", &st->compute_s);
          if (T) {
            model.attention(l, mb.layout, cache, mb.h.data());
            model.ffn_input(l, mb.h.data(), T, mb.x.data());
            if (cfg.is_moe_layer(l)) model.route(l, mb.x.data(), T, mb.ids.data(), mb.w.data());
          }
        }
        AFD_RETURN_IF_ERROR(
            ffn.dispatch(step, l, m, flags, mb.x.data(), mb.ids.data(), mb.w.data(), T));
        if (done && l == 0 && m == 0) {
          // A finished rank asks right away whether everyone is finished.
          AFD_RETURN_IF_ERROR(ffn.combine(step, 0, 0, mb.h.data(), &got));
          early_combined = true;
          if (got & kFlagAllDone) {
            st->wall_s = (Trace::now_us() - t0) * 1e-6;
            st->steps = step;
            return Status::OK();
          }
        }
      }
    }
    std::vector<const float*> rows;
    std::vector<Tensor> logits(static_cast<size_t>(K));
    for (int m = 0; m < K; ++m) {
      MicroBatch& mb = mbs[m];
      uint32_t got = 0;
      if (!(L == 1 && m == 0 && early_combined))
        AFD_RETURN_IF_ERROR(ffn.combine(step, L - 1, m, mb.h.data(), &got));
      ScopedSpan sp(trace, track, fmt::format("lm_head mb{}", m), "attention", &st->compute_s);
      std::vector<int64_t> r;
      for (size_t c = 0; c < mb.chunks.size(); ++c)
        if (mb.chunks[c].samples) r.push_back(mb.layout.q_offsets[c + 1] - 1);
      logits[m] = model.logits(mb.h.data(), r);
      for (size_t i = 0; i < r.size(); ++i) rows.push_back(logits[m].data<float>() + i * V);
    }
    {
      const double now = Trace::now_us();
      sched.commit(plan, rows, V, (now - t0) * 1e-6);
      if (!rows.empty()) out->step_seconds.push_back((now - step_start) * 1e-6);
      for (auto& f : sched.take_finished()) out->finished.push_back(std::move(f));
      std::vector<TokenUpdate> ups = sched.take_updates();
      if (opt.hooks && !ups.empty()) opt.hooks->emit(std::move(ups), sched, *st);
    }
    st->steps = step + 1;
  }
  st->wall_s = (Trace::now_us() - t0) * 1e-6;
  return Status::OK();
}

}  // namespace afd
