// JSON and text output of `afd cost` and `afd plan`.
#include "analysis/report.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace afd::analysis {

using nlohmann::json;

namespace {

std::string peak_name(const Hardware& hw) { return hw.fp8_flops ? "FP8" : "BF16 (8-bit data)"; }

// 1.234e+08 style for counts that span many decades.
std::string sci(double x) { return fmt::format("{:.3e}", x); }

std::string bytes_str(double b) {
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.2f} MB", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.2f} kB", b / 1e3);
  return fmt::format("{:.0f} B", b);
}

std::string usd(double x) { return fmt::format("{:.4g}", x); }

json usd_json(const UsdCost& u) {
  return {{"attention", u.attention}, {"ffn", u.ffn}, {"total", u.total}};
}

// A table of strings, printed with padded columns (text) or pipes (markdown).
struct Grid {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  std::string render(bool markdown) const {
    std::vector<size_t> w(header.size(), 0);
    auto widen = [&](const std::vector<std::string>& r) {
      for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
    };
    widen(header);
    for (const auto& r : rows) widen(r);
    auto line = [&](const std::vector<std::string>& r) {
      std::string s = markdown ? "|" : "";
      for (size_t i = 0; i < r.size(); ++i) {
        // Names left-aligned, numbers right-aligned.
        std::string cell =
            i == 0 ? fmt::format("{:<{}}", r[i], w[i]) : fmt::format("{:>{}}", r[i], w[i]);
        if (markdown) {
          s.append(" ").append(cell).append(" |");
        } else {
          s.append(i ? "  " : "").append(cell);
        }
      }
      return s + "\n";
    };
    std::string out = line(header);
    if (markdown) {
      std::string sep = "|";
      for (size_t i = 0; i < w.size(); ++i) {
        // Left-align the name column, right-align the numbers.
        if (i == 0) sep.push_back(':');
        sep.append(w[i] + 1, '-');
        sep.append(i == 0 ? "|" : ":|");
      }
      out += sep + "\n";
    } else {
      size_t total = 0;
      for (size_t x : w) total += x + 2;
      out += std::string(total - 2, '-') + "\n";
    }
    for (const auto& r : rows) out += line(r);
    return out;
  }
};

}  // namespace

json hardware_json(const Hardware& hw) {
  return {{"name", hw.name},
          {"price_per_hour", hw.price_per_hour},
          {"bf16_flops", hw.bf16_flops},
          {"fp8_flops", hw.fp8_flops ? json(*hw.fp8_flops) : json(nullptr)},
          {"memory_bandwidth", hw.memory_bandwidth},
          {"network_bandwidth", hw.network_bandwidth},
          {"pricing_peak", hw.pricing_peak()},
          {"ridge_point", hw.ridge_point()}};
}

Result<int64_t> parse_token_count(const std::string& text, const std::string& flag) {
  std::string digits = text;
  int64_t scale = 1;
  if (!digits.empty()) {
    const char last = digits.back();
    if (last == 'k' || last == 'K') scale = 1024;
    if (last == 'm' || last == 'M') scale = 1024 * 1024;
    if (scale != 1) digits.pop_back();
  }
  char* end = nullptr;
  errno = 0;
  const long long v = digits.empty() ? 0 : std::strtoll(digits.c_str(), &end, 10);
  if (digits.empty() || *end != '\0' || errno || v < 1 || v > (int64_t{1} << 40) / scale)
    return InvalidArgument("{} \"{}\": expected a positive token count such as 8192 or 8K", flag,
                           text);
  return static_cast<int64_t>(v) * scale;
}

json cost_json(const std::string& model, const Hardware& hw, int64_t context, const TokenCost& c,
               const UsdCost& u) {
  return {{"model", model},
          {"hardware", hw.name},
          {"context", context},
          {"per_token",
           {{"kv_bytes", c.kv_bytes},
            {"attention_flops", c.attention_flops},
            {"linear_flops", c.linear_flops},
            {"ffn_flops", c.ffn_flops}}},
          {"arithmetic_intensity", c.arithmetic_intensity()},
          {"usd_per_million_tokens", usd_json(u)}};
}

std::string cost_text(const ModelShape& m, const Hardware& hw, int64_t context, const TokenCost& c,
                      const UsdCost& u) {
  std::string s;
  s += fmt::format("model {} ({})\n", m.name, m.summary());
  s += fmt::format("per decoding token at context {}, summed over {} layers:\n", context,
                   m.num_layers());
  s += fmt::format("  KV/state bytes         {}  ({})\n", sci(c.kv_bytes), bytes_str(c.kv_bytes));
  s += fmt::format("  attention core FLOPs   {}\n", sci(c.attention_flops));
  s += fmt::format("  linear FLOPs           {}\n", sci(c.linear_flops));
  s += fmt::format("  FFN FLOPs              {}\n", sci(c.ffn_flops));
  const double ai = c.arithmetic_intensity();
  s += fmt::format(
      "  arithmetic intensity   {:.4g} FLOP/B; {} ridge point {:.4g} FLOP/B: the "
      "attention core is {}-bound\n",
      ai, hw.name, hw.ridge_point(), ai < hw.ridge_point() ? "memory" : "compute");
  s += fmt::format("USD per 1M tokens on {} ({} USD/h, {} peak {:.4g} FLOP/s, HBM {:.4g} B/s):\n",
                   hw.name, hw.price_per_hour, peak_name(hw), hw.pricing_peak(),
                   hw.memory_bandwidth);
  s +=
      fmt::format("  attention  {}   max(core FLOPs, KV bytes) + linear FLOPs\n", usd(u.attention));
  s += fmt::format("  FFN        {}   FFN FLOPs at full MFU\n", usd(u.ffn));
  s += fmt::format("  total      {}\n", usd(u.total));
  return s;
}

UsdCost CostTableRow::afd() const {
  UsdCost u;
  u.attention = usd[best_attention].attention;
  u.ffn = usd[best_ffn].ffn;
  u.total = u.attention + u.ffn;
  return u;
}

CostTable build_cost_table(const std::vector<ModelShape>& models,
                           const std::vector<Hardware>& hardware, int64_t context) {
  CostTable t;
  t.context = context;
  t.hardware = hardware;
  for (const auto& m : models) {
    CostTableRow r;
    r.model = m.name;
    r.cost = token_cost(m, context);
    for (const auto& hw : hardware) r.usd.push_back(usd_per_million_tokens(r.cost, hw));
    for (size_t i = 1; i < r.usd.size(); ++i) {  // strict <: the first listed wins a tie
      if (r.usd[i].attention < r.usd[r.best_attention].attention) r.best_attention = i;
      if (r.usd[i].ffn < r.usd[r.best_ffn].ffn) r.best_ffn = i;
      if (r.usd[i].total < r.usd[r.best_single].total) r.best_single = i;
    }
    t.rows.push_back(std::move(r));
  }
  return t;
}

json cost_table_json(const CostTable& t) {
  json hw = json::array(), rows = json::array(), best = json::array();
  for (const auto& h : t.hardware) hw.push_back(hardware_json(h));
  for (const auto& r : t.rows) {
    for (size_t i = 0; i < t.hardware.size(); ++i)
      rows.push_back(cost_json(r.model, t.hardware[i], t.context, r.cost, r.usd[i]));
    best.push_back({{"model", r.model},
                    {"attention_hardware", t.hardware[r.best_attention].name},
                    {"ffn_hardware", t.hardware[r.best_ffn].name},
                    {"usd_per_million_tokens", usd_json(r.afd())},
                    {"best_single_hardware", t.hardware[r.best_single].name},
                    {"best_single_usd_per_million_tokens", r.usd[r.best_single].total}});
  }
  return {{"context", t.context}, {"hardware", hw}, {"rows", rows}, {"best_afd", best}};
}

std::string format_cost_table(const CostTable& t, TableFormat format) {
  if (format == TableFormat::kJson) return cost_table_json(t).dump(2) + "\n";
  if (format == TableFormat::kCsv) {
    std::string s =
        "model,hardware,context,kv_bytes,attention_flops,linear_flops,ffn_flops,"
        "arithmetic_intensity,usd_attention,usd_ffn,usd_total\n";
    auto row = [&](const CostTableRow& r, const std::string& hw, const UsdCost& u) {
      // Full precision: a spreadsheet can round, it cannot un-round.
      s +=
          fmt::format("{},{},{},{},{},{},{},{},{},{},{}\n", r.model, hw, t.context, r.cost.kv_bytes,
                      r.cost.attention_flops, r.cost.linear_flops, r.cost.ffn_flops,
                      r.cost.arithmetic_intensity(), u.attention, u.ffn, u.total);
    };
    for (const auto& r : t.rows) {
      for (size_t i = 0; i < t.hardware.size(); ++i) row(r, t.hardware[i].name, r.usd[i]);
      row(r, "afd:" + t.hardware[r.best_attention].name + "+" + t.hardware[r.best_ffn].name,
          r.afd());
    }
    return s;
  }
  const bool md = format == TableFormat::kMarkdown;
  const std::string h = md ? "### " : "";
  std::string s;
  s += fmt::format("{}Per decoding token at context {} (summed over layers)\n\n", h, t.context);
  Grid g{{"model", "KV bytes", "attention FLOPs", "linear FLOPs", "FFN FLOPs", "FLOP/B"}, {}};
  for (const auto& r : t.rows)
    g.rows.push_back({r.model, sci(r.cost.kv_bytes), sci(r.cost.attention_flops),
                      sci(r.cost.linear_flops), sci(r.cost.ffn_flops),
                      fmt::format("{:.4g}", r.cost.arithmetic_intensity())});
  s += g.render(md);

  struct Part {
    const char* title;
    double UsdCost::*field;
  };
  const Part parts[] = {
      {"USD per 1M tokens, attention (max(core FLOPs, KV bytes) + linear FLOPs)",
       &UsdCost::attention},
      {"USD per 1M tokens, FFN (at full MFU)", &UsdCost::ffn},
      {"USD per 1M tokens, total (attention + FFN on one hardware type)", &UsdCost::total}};
  for (const auto& p : parts) {
    s += fmt::format("\n{}{}\n\n", h, p.title);
    Grid u{{"model"}, {}};
    for (const auto& hw : t.hardware) u.header.push_back(hw.name);
    for (const auto& r : t.rows) {
      std::vector<std::string> cells{r.model};
      for (const auto& x : r.usd) cells.push_back(usd(x.*p.field));
      u.rows.push_back(cells);
    }
    s += u.render(md);
  }
  s += fmt::format(
      "\n{}Best AFD mix: cheapest attention hardware + cheapest FFN hardware "
      "(USD per 1M tokens)\n\n",
      h);
  Grid b{{"model", "attention on", "FFN on", "attention", "FFN", "AFD total", "best single",
          "single total"},
         {}};
  for (const auto& r : t.rows) {
    UsdCost a = r.afd();
    b.rows.push_back({r.model, t.hardware[r.best_attention].name, t.hardware[r.best_ffn].name,
                      usd(a.attention), usd(a.ffn), usd(a.total), t.hardware[r.best_single].name,
                      usd(r.usd[r.best_single].total)});
  }
  s += b.render(md);
  return s;
}

json min_sparsity_json(const Hardware& hw, int64_t hidden, int64_t layers,
                       const ModelShape* model) {
  json j = {{"min_sparsity", min_sparsity(hw, hidden, layers)}};
  if (model) {
    const double s = model->sparsity(), bd = b_dense(hw);
    j["sparsity"] = s;
    j["b_dense"] = bd;
    j["b_moe"] = bd / s;
  }
  return j;
}

std::string min_sparsity_text(const Hardware& hw, int64_t hidden, int64_t layers,
                              const ModelShape* model) {
  const double ms = min_sparsity(hw, hidden, layers);
  std::string s = fmt::format(
      "{}: minimum MoE sparsity {:.4f} (H {}, L {}, {} peak {:.4g} FLOP/s, HBM {:.4g} B/s, "
      "network {:.4g} B/s per server, budget {} ms)\n",
      hw.name, ms, hidden, layers, peak_name(hw), hw.pricing_peak(), hw.memory_bandwidth,
      hw.network_bandwidth, kMinSparsityBudgetSeconds * 1e3);
  s += "  below it, the network (3 x H bytes per token and layer) cannot feed an FFN batch of\n"
       "  B_dense / S tokens within 16.6 ms / L\n";
  const double bd = b_dense(hw);
  s += fmt::format("  B_dense {:.1f} tokens (2 x B_dense = ridge point {:.1f} FLOP/B)\n", bd,
                   hw.ridge_point());
  if (model) {
    const double sp = model->sparsity();
    s += fmt::format("model {}: sparsity {:.4f}, B_MoE = B_dense / S = {:.1f} tokens; {}\n",
                     model->name, sp, bd / sp,
                     sp >= ms ? "at or above the minimum: the network keeps up"
                              : "below the minimum: the network bottlenecks the FFN");
  }
  return s;
}

json plan_json(const std::string& model, const Hardware& ahw, const Hardware& fhw, const Plan& p) {
  const AttentionPlan& a = p.attention;
  const FfnPlan& f = p.ffn;
  const NetworkPlan& n = p.network;
  json attention = {{"kv_bytes_per_token_per_layer", a.kv_bytes_per_token},
                    {"weight_bytes_per_layer", a.weight_bytes},
                    {"flops_per_token_per_layer", a.flops_per_token},
                    {"bandwidth_batch", a.bandwidth_batch},
                    {"compute_batch", a.compute_batch},
                    {"capacity_batch", a.capacity_batch ? json(*a.capacity_batch) : json(nullptr)},
                    {"batch", a.batch},
                    {"bound", a.bound},
                    {"time_us", a.time_us},
                    {"resident_bytes", a.resident_bytes}};
  json ffn = {{"sparsity", f.sparsity},
              {"b_dense", f.b_dense},
              {"b_moe", f.b_moe},
              {"tokens_per_micro_batch", f.tokens},
              {"flops_per_token_per_layer", f.flops_per_token},
              {"weight_bytes_per_layer", f.weight_bytes},
              {"total_weight_bytes", f.total_weight_bytes},
              {"gpus_for_time", f.gpus_for_time},
              {"gpus_for_memory", f.gpus_for_memory ? json(*f.gpus_for_memory) : json(nullptr)},
              {"time_us", f.time_us},
              {"bound", f.bound},
              {"mfu", f.mfu}};
  json network = {{"bytes_per_layer", n.bytes_per_layer},
                  {"time_us", n.time_us},
                  {"max_tokens", n.max_tokens},
                  {"ok", n.ok}};
  return {{"model", model},
          {"attention_hardware", ahw.name},
          {"ffn_hardware", fhw.name},
          {"context", p.options.context},
          {"tpot_ms", p.options.tpot_ms},
          {"stages", p.options.stages},
          {"layers", p.layers},
          {"attention_efficiency", p.options.attention_efficiency},
          {"ffn_efficiency", p.options.ffn_efficiency},
          {"per_layer_budget_us", p.budget_us},
          {"attention_batch_per_gpu", a.batch},
          {"ffn_batch_for_full_mfu", f.b_moe},
          {"ffn_tokens_per_micro_batch", f.tokens},
          {"network_ok", n.ok},
          {"attention_gpus", p.attention_gpus},
          {"ffn_gpus", p.ffn_gpus},
          {"tokens_per_s_per_gpu", p.tokens_per_s_per_gpu},
          {"binding_constraint", p.binding_constraint},
          {"attention", attention},
          {"ffn", ffn},
          {"network", network}};
}

std::string plan_text(const std::string& model, const Hardware& ahw, const Hardware& fhw,
                      const Plan& p) {
  const AttentionPlan& a = p.attention;
  const FfnPlan& f = p.ffn;
  const NetworkPlan& n = p.network;
  const PlanOptions& o = p.options;
  std::string s;
  s += fmt::format("AFD plan: {} at context {}, attention on {}, FFN on {}\n", model, o.context,
                   ahw.name, fhw.name);
  s += fmt::format("  budget: TPOT {} ms / {} micro-batches / {} layers = {:.1f} us per layer\n",
                   o.tpot_ms, o.stages, p.layers, p.budget_us);
  s += fmt::format(
      "  efficiency (fraction of peak FLOP/s and HBM bandwidth): attention {}, FFN "
      "{}; weights 8-bit\n",
      o.attention_efficiency, o.ffn_efficiency);
  s += fmt::format(
      "attention, per GPU and layer: {} KV per sequence, {} weights, {:.3e} FLOPs "
      "per token\n",
      bytes_str(a.kv_bytes_per_token), bytes_str(a.weight_bytes), a.flops_per_token);
  std::string cap = a.capacity_batch ? fmt::format(", by memory size {}", *a.capacity_batch) : "";
  s += fmt::format("  batch by bandwidth {}, by compute {}{} -> B_attn {} ({} bound), {:.1f} us\n",
                   a.bandwidth_batch, a.compute_batch, cap, a.batch, a.bound, a.time_us);
  s += fmt::format("  resident per GPU: {} micro-batches x {} sequences' caches + weights = {}\n",
                   o.stages, a.batch, bytes_str(a.resident_bytes));
  s += fmt::format(
      "FFN: sparsity {:.4f}, B_dense {:.1f} -> batch for full MFU B_MoE {:.1f} "
      "tokens per micro-batch\n",
      f.sparsity, f.b_dense, f.b_moe);
  s += fmt::format(
      "network: 3 x H x {} tokens = {} per layer, {:.1f} us on {} ({:.4g} B/s); "
      "at most {} tokens; B_MoE {}\n",
      f.tokens, bytes_str(n.bytes_per_layer), n.time_us, fhw.name, fhw.network_bandwidth,
      n.max_tokens, n.ok ? "fits" : "does NOT fit");
  std::string mem = f.gpus_for_memory
                        ? fmt::format(", {} to hold {} of weights", *f.gpus_for_memory,
                                      bytes_str(f.total_weight_bytes))
                        : "";
  s += fmt::format(
      "AFD unit: {} attention GPUs x {} tokens = {} tokens per micro-batch; {} FFN "
      "GPUs ({} for time{}), {} bound, {:.1f} us, MFU {:.2f}\n",
      p.attention_gpus, a.batch, f.tokens, p.ffn_gpus, f.gpus_for_time, mem, f.bound, f.time_us,
      f.mfu);
  s += fmt::format("predicted: {:.0f} tokens/s/GPU = {} x {} x {} / {} ms / {} GPUs\n",
                   p.tokens_per_s_per_gpu, p.attention_gpus, a.batch, o.stages, o.tpot_ms,
                   p.attention_gpus + p.ffn_gpus);
  s += fmt::format("binding constraint: {}\n", p.binding_constraint);
  return s;
}

}  // namespace afd::analysis
