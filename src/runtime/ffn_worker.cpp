#include "runtime/ffn_worker.h"

#include <cstring>

#include "kernels/cpu/ops.h"

namespace afd {

namespace {

// Rows [b, e) of a [rows, cols] f32 matrix, as a new tensor.
Tensor row_slice(const float* m, int64_t cols, int64_t b, int64_t e) {
  Tensor t = Tensor::empty(DType::kF32, {e - b, cols});
  std::memcpy(t.raw(), m + b * cols, static_cast<size_t>((e - b) * cols) * sizeof(float));
  return t;
}

// Columns [b, e) of a [rows, cols] f32 matrix, as a new contiguous tensor.
Tensor col_slice(const float* m, int64_t rows, int64_t cols, int64_t b, int64_t e) {
  Tensor t = Tensor::empty(DType::kF32, {rows, e - b});
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(t.data<float>() + r * (e - b), m + r * cols + b,
                static_cast<size_t>(e - b) * sizeof(float));
  return t;
}

}  // namespace

FfnExecutor::FfnExecutor(const ModelConfig& cfg, const Step3Weights& w, const Placement& p,
                         int rank)
    : cfg_(cfg) {
  const int64_t H = cfg.hidden_size;
  layers_.resize(static_cast<size_t>(cfg.num_hidden_layers));
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const Step3LayerWeights& L = w.layers[static_cast<size_t>(l)];
    for (const ExpertSlice& s : p.slices(l, rank)) {
      Slice out{s.expert, s.end - s.begin, {}, {}, {}};
      if (s.expert < 0) {
        const Tensor& g = L.moe ? L.share_gate : L.mlp_gate;
        const Tensor& u = L.moe ? L.share_up : L.mlp_up;
        const Tensor& d = L.moe ? L.share_down : L.mlp_down;
        const int64_t I = g.dim(0);
        out.gate = row_slice(g.data<float>(), H, s.begin, s.end);
        out.up = row_slice(u.data<float>(), H, s.begin, s.end);
        out.down = col_slice(d.data<float>(), H, I, s.begin, s.end);
      } else {
        const int64_t I = cfg.moe_intermediate_size;
        const float* g = L.moe_gate.data<float>() + s.expert * I * H;
        const float* u = L.moe_up.data<float>() + s.expert * I * H;
        const float* d = L.moe_down.data<float>() + s.expert * H * I;
        out.gate = row_slice(g, H, s.begin, s.end);
        out.up = row_slice(u, H, s.begin, s.end);
        out.down = col_slice(d, H, I, s.begin, s.end);
      }
      layers_[static_cast<size_t>(l)].push_back(std::move(out));
    }
  }
}

void FfnExecutor::compute(int64_t layer, const float* x, int64_t T, const int32_t* ids,
                          const float* weights, float* y) const {
  const int64_t H = cfg_.hidden_size, k = cfg_.moe_top_k;
  std::fill_n(y, T * H, 0.0f);
  if (T == 0) return;
  std::vector<float> xs, ys;
  for (const Slice& s : layers_[static_cast<size_t>(layer)]) {
    if (s.expert < 0) {
      cpu::swiglu_mlp(x, T, H, s.inter, s.gate.data<float>(), s.up.data<float>(),
                      s.down.data<float>(), y, /*accumulate=*/true);
      continue;
    }
    // Gather the tokens that chose this expert, run it once over them, scatter weighted.
    std::vector<int64_t> rows;
    std::vector<float> wts;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j)
        if (ids[t * k + j] == s.expert) rows.push_back(t), wts.push_back(weights[t * k + j]);
    if (rows.empty()) continue;
    const int64_t n = static_cast<int64_t>(rows.size());
    xs.resize(static_cast<size_t>(n * H));
    ys.resize(static_cast<size_t>(n * H));
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(&xs[i * H], x + rows[i] * H, static_cast<size_t>(H) * sizeof(float));
    cpu::swiglu_mlp(xs.data(), n, H, s.inter, s.gate.data<float>(), s.up.data<float>(),
                    s.down.data<float>(), ys.data());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < H; ++c) y[rows[i] * H + c] += wts[i] * ys[i * H + c];
  }
}

Status run_ffn_rank(Fabric& fabric, const FfnExecutor& ex, const ModelConfig& cfg,
                    const FfnRankOptions& opt, RankStats* st, Trace* trace) {
  const int A = opt.attention_ranks, K = opt.micro_batches, me = fabric.rank();
  const int64_t H = cfg.hidden_size;
  const double t0 = Trace::now_us();
  std::vector<std::vector<uint8_t>> in(static_cast<size_t>(A));
  std::vector<DispatchMsg> msgs(static_cast<size_t>(A));
  std::vector<float> x, w, y;
  std::vector<int32_t> ids;
  for (int64_t step = 0;; ++step) {
    if (opt.on_step) {
      st->wall_s = (Trace::now_us() - t0) * 1e-6;
      opt.on_step(*st);
    }
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
      for (int m = 0; m < K; ++m) {
        const uint64_t tag = afd_tag(step, l, m, 0);
        {
          ScopedSpan sp(trace, me, fmt::format("wait L{} mb{}", l, m), "wait", &st->wait_s);
          for (int a = 0; a < A; ++a) AFD_RETURN_IF_ERROR(fabric.recv(a, tag, &in[a], opt.peer_timeout));
        }
        bool all_done = true;
        int64_t T = 0, k = 0;
        {
          ScopedSpan sp(trace, me, fmt::format("decode L{} mb{}", l, m), "comm", &st->comm_s);
          for (int a = 0; a < A; ++a) {
            AFD_RETURN_IF_ERROR(decode_dispatch(in[a], &msgs[a]));
            if (msgs[a].hidden != H)
              return Corrupt("{} sent hidden size {}, this FFN rank has {}", fabric.name(a),
                             msgs[a].hidden, H);
            all_done = all_done && (msgs[a].flags & kFlagRankDone);
            T += msgs[a].tokens;
            k = std::max(k, msgs[a].topk);
          }
          x.resize(static_cast<size_t>(T * H));
          ids.assign(static_cast<size_t>(T * k), 0);
          w.assign(static_cast<size_t>(T * k), 0.0f);
          int64_t at = 0;
          for (int a = 0; a < A; ++a) {
            const DispatchMsg& d = msgs[a];
            std::copy(d.x.begin(), d.x.end(), x.begin() + at * H);
            if (d.topk == k) {
              std::copy(d.ids.begin(), d.ids.end(), ids.begin() + at * k);
              std::copy(d.weights.begin(), d.weights.end(), w.begin() + at * k);
            }
            at += d.tokens;
          }
        }
        y.resize(static_cast<size_t>(T * H));
        {
          ScopedSpan sp(trace, me, fmt::format("ffn L{} mb{}", l, m), "ffn", &st->compute_s);
          ex.compute(l, x.data(), T, ids.data(), w.data(), y.data());
        }
        // Stop only where every attention rank looks: the first message of a step.
        const bool stop = all_done && l == 0 && m == 0;
        {
          ScopedSpan sp(trace, me, fmt::format("send L{} mb{}", l, m), "comm", &st->comm_s);
          int64_t at = 0;
          for (int a = 0; a < A; ++a) {
            std::vector<uint8_t> out = fabric.acquire_buffer();  // registered once, reused
            encode_partial(stop ? kFlagAllDone : 0, opt.dispatch, y.data() + at * H,
                           msgs[a].tokens, H, &out);
            AFD_RETURN_IF_ERROR(fabric.send_owned(a, afd_tag(step, l, m, 1), std::move(out)));
            at += msgs[a].tokens;
          }
        }
        st->messages += A;
        if (stop) {
          st->steps = step;
          st->wall_s = (Trace::now_us() - t0) * 1e-6;
          st->bytes_sent = fabric.bytes_sent();
          st->bytes_received = fabric.bytes_received();
          return fabric.flush(opt.peer_timeout);
        }
      }
    }
  }
}

}  // namespace afd
