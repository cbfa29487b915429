#include "runtime/generate.h"

#include "core/log.h"

namespace afd {

Result<GenerateOutput> generate(const Step3Model& model,
                                const std::vector<std::vector<int32_t>>& prompts,
                                const GenerateOptions& opt) {
  if (prompts.empty()) return InvalidArgument("no prompts given");
  if (opt.max_new_tokens < 1) return InvalidArgument("max_new_tokens must be at least 1");
  const ModelConfig& cfg = model.config();
  const int64_t S = static_cast<int64_t>(prompts.size()), V = cfg.vocab_size;
  int64_t total = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) return InvalidArgument("prompt {} is empty", i);
    for (int32_t t : prompts[i])
      if (t < 0 || t >= V)
        return InvalidArgument("prompt {}: token id {} is outside the vocabulary [0, {})", i, t, V);
    // Each sequence needs its own partly filled last block.
    total += static_cast<int64_t>(prompts[i].size()) + opt.max_new_tokens + opt.block_size;
  }
  KVCache cache = model.make_cache(total, opt.block_size);

  GenerateOutput out;
  out.tokens.resize(static_cast<size_t>(S));
  if (opt.record_logits) out.logits.resize(static_cast<size_t>(S));
  std::vector<int64_t> seqs;
  std::vector<cpu::Rng> rngs;
  std::vector<SeqChunk> chunks;
  for (int64_t i = 0; i < S; ++i) {
    seqs.push_back(cache.create_sequence());
    rngs.emplace_back(opt.seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1)));
    chunks.push_back({seqs.back(), prompts[static_cast<size_t>(i)]});
    out.timings.prefill_tokens += static_cast<int64_t>(prompts[static_cast<size_t>(i)].size());
  }
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    Timer t;
    AFD_ASSIGN_OR_RETURN(BatchLayout b, model.prepare(chunks, cache));
    Tensor logits = model.forward(b, cache);  // f32 [S, V]
    for (int64_t i = 0; i < S; ++i) {
      const float* row = logits.data<float>() + i * V;
      int32_t tok = cpu::sample(row, V, opt.sampling, rngs[static_cast<size_t>(i)]);
      out.tokens[static_cast<size_t>(i)].push_back(tok);
      if (opt.record_logits)
        out.logits[static_cast<size_t>(i)].insert(out.logits[static_cast<size_t>(i)].end(), row,
                                                  row + V);
      chunks[static_cast<size_t>(i)].tokens.assign(1, tok);
    }
    (step == 0 ? out.timings.prefill_s : out.timings.decode_s) += t.seconds();
    if (step > 0) ++out.timings.decode_steps;
    out.timings.generated_tokens += S;
    log_debug("step {}: {} tokens in {:.2f} ms", step, b.T, t.ms());
  }
  for (int64_t s : seqs) cache.release(s);
  return out;
}

}  // namespace afd
