// afd cost: the decoding cost model of cost-model.md (per token, USD per 1M tokens, the table of
// every model on every hardware with its SVG chart, and the minimum MoE sparsity).
#include <fmt/ranges.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "analysis/cost.h"
#include "analysis/hardware.h"
#include "analysis/model_shape.h"
#include "analysis/report.h"
#include "analysis/svg.h"
#include "core/mmap_file.h"
#include "tools/afd/commands.h"

namespace afd::cli {

namespace {

using namespace afd::analysis;

struct CostArgs {
  std::vector<std::string> models;
  std::vector<std::string> hardware;
  std::string context = "8192";
  bool json = false;
  bool table = false;
  std::string format = "text";
  std::string svg;
  std::string svg_hardware = "h800";
  bool min_sparsity = false;
  int64_t hidden = 7168;
  int64_t layers = 61;
};

int run_min_sparsity(const CostArgs& a) {
  if (a.hardware.size() != 1)
    throw Error(
        InvalidArgument("--min-sparsity needs exactly one --hardware, got {}", a.hardware.size()));
  if (a.models.size() > 1)
    throw Error(
        InvalidArgument("--min-sparsity takes at most one --model, got {}", a.models.size()));
  Hardware hw = load_hardware(a.hardware[0]).value();
  std::unique_ptr<ModelShape> model;
  if (!a.models.empty())
    model = std::make_unique<ModelShape>(load_model_shape(a.models[0]).value());
  if (a.json)
    std::printf("%s\n", min_sparsity_json(hw, a.hidden, a.layers, model.get()).dump().c_str());
  else
    std::printf("%s", min_sparsity_text(hw, a.hidden, a.layers, model.get()).c_str());
  return 0;
}

int run_table(const CostArgs& a, int64_t context) {
  TableFormat format = TableFormat::kText;
  if (a.format == "markdown") format = TableFormat::kMarkdown;
  if (a.format == "csv") format = TableFormat::kCsv;
  if (a.format == "json" || a.json) format = TableFormat::kJson;
  if (a.json && a.format != "text" && a.format != "json")
    throw Error(InvalidArgument("--json and --format {} disagree; use one", a.format));
  std::vector<ModelShape> models;
  for (const auto& m : a.models.empty() ? model_preset_names() : a.models)
    models.push_back(load_model_shape(m).value());
  std::vector<Hardware> hardware;
  for (const auto& h : a.hardware.empty() ? hardware_preset_names() : a.hardware)
    hardware.push_back(load_hardware(h).value());
  const std::string out = format_cost_table(build_cost_table(models, hardware, context), format);
  if (!a.svg.empty()) {
    // Written before stdout so a failure leaves neither a partial file nor a half report.
    const Hardware curve_hw = load_hardware(a.svg_hardware).value();
    const std::string svg = cost_svg(models, hardware, context, curve_hw);
    check(write_file_atomic(a.svg, svg.data(), svg.size()));
  }
  std::printf("%s", out.c_str());
  return 0;
}

int run(const CostArgs& a) {
  if (a.min_sparsity) return run_min_sparsity(a);
  const int64_t context = parse_token_count(a.context, "--context").value();
  if (a.table) return run_table(a, context);
  if (a.models.size() != 1 || a.hardware.size() != 1)
    throw Error(InvalidArgument(
        "afd cost needs exactly one --model and one --hardware (got {} and {}); use --table for "
        "several",
        a.models.size(), a.hardware.size()));
  const ModelShape model = load_model_shape(a.models[0]).value();
  const Hardware hw = load_hardware(a.hardware[0]).value();
  const TokenCost c = token_cost(model, context);
  const UsdCost u = usd_per_million_tokens(c, hw);
  if (a.json)
    std::printf("%s\n", cost_json(model.name, hw, context, c, u).dump().c_str());
  else
    std::printf("%s", cost_text(model, hw, context, c, u).c_str());
  return 0;
}

}  // namespace

Command register_cost(CLI::App& app) {
  auto a = std::make_shared<CostArgs>();
  CLI::App* c = app.add_subcommand(
      "cost",
      "Decoding cost per token (reference/cost-model.md, docs/analysis.md): KV/state bytes, "
      "attention-core, linear and FFN FLOPs summed over layers, arithmetic intensity, and USD per "
      "1M tokens: attention = max(FLOP_attn x U_flop, KV_bytes x U_byte) + FLOP_linear x U_flop, "
      "FFN = FLOP_FFN x U_flop, U_flop = price/3600/pricing_peak, U_byte = price/3600/HBM "
      "bandwidth.\n"
      "  afd cost --model M --hardware HW [--context N] [--json]\n"
      "  afd cost --table [--context N] [--format text|markdown|csv|json] [--svg FILE]\n"
      "  afd cost --min-sparsity --hardware HW [--hidden H --layers L] [--model M] [--json]");
  const std::string models = fmt::format("{}", fmt::join(model_preset_names(), ", "));
  const std::string hws = fmt::format("{}", fmt::join(hardware_preset_names(), ", "));
  c->add_option("--model", a->models,
                "A preset (" + models +
                    ") or the path of a Hugging Face config.json (or its folder) of model_type " +
                    fmt::format("{}", fmt::join(supported_model_types(), ", ")) +
                    ". Repeat with --table to choose the rows (default: every preset)")
      ->take_all();
  c->add_option("--hardware", a->hardware,
                "A preset (" + hws +
                    ") or the path of a JSON file with exactly {\"name\", \"price_per_hour\" "
                    "(USD per card-hour), \"bf16_flops\", \"fp8_flops\" (FLOP/s; null if none), "
                    "\"memory_bandwidth\" (B/s), \"network_bandwidth\" (B/s, server total)}. "
                    "Repeat with --table to choose the columns (default: every preset)")
      ->take_all();
  c->add_option("--context", a->context,
                "Tokens the decoding token attends (T, the whole context); 8192, 8K, 128K ...")
      ->capture_default_str();
  c->add_flag("--json", a->json,
              "One JSON object: {model, hardware, context, per_token: {kv_bytes, "
              "attention_flops, linear_flops, ffn_flops}, arithmetic_intensity, "
              "usd_per_million_tokens: {attention, ffn, total}}; with --table the same as "
              "--format json; with --min-sparsity {min_sparsity[, sparsity, b_dense, b_moe]}");
  auto* table = c->add_flag("--table", a->table,
                            "Every model x every hardware side by side, and per model the best "
                            "AFD mix: the hardware with the cheapest attention plus the "
                            "hardware with the cheapest FFN");
  c->add_option("--format", a->format,
                "Table format: text, markdown, csv (one row per model x hardware, plus "
                "afd:<attention>+<ffn> rows) or json ({context, hardware, rows, best_afd})")
      ->check(CLI::IsMember({"text", "markdown", "csv", "json"}))
      ->needs(table)
      ->capture_default_str();
  c->add_option("--svg", a->svg,
                "Also write an SVG chart: (a) each model's arithmetic intensity against each "
                "hardware's ridge point (log axis), (b) USD per 1M tokens against context 4K..128K "
                "(log axes) on --svg-hardware")
      ->needs(table);
  c->add_option("--svg-hardware", a->svg_hardware, "Hardware of the SVG's cost-vs-context panel")
      ->needs(table)
      ->capture_default_str();
  auto* ms = c->add_flag(
      "--min-sparsity", a->min_sparsity,
      "The minimum MoE sparsity S >= H x pricing_peak x L / (Net x HBM bandwidth x 11.1 ms) "
      "below which the network bottlenecks the FFN (cost-model.md §3.3), and B_dense = ridge "
      "point / 2; with --model also the model's S and B_MoE = B_dense / S");
  ms->excludes(table);
  c->add_option("--hidden", a->hidden, "Hidden size H for --min-sparsity (the paper's 7168)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->needs(ms)
      ->capture_default_str();
  c->add_option("--layers", a->layers, "Layer count L for --min-sparsity (the paper's 61)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->needs(ms)
      ->capture_default_str();
  return {c, [a] { return run(*a); }};
}

}  // namespace afd::cli
