// Output of the analysis commands: the JSON shapes `afd cost` and `afd plan` print (documented
// in docs/analysis.md; tests/oracle reads them) and the human-readable text.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "analysis/cost.h"
#include "analysis/hardware.h"
#include "analysis/model_shape.h"
#include "analysis/planner.h"

namespace afd::analysis {

// {"model", "hardware", "context", "per_token": {"kv_bytes", "attention_flops", "linear_flops",
//  "ffn_flops"}, "arithmetic_intensity", "usd_per_million_tokens": {"attention", "ffn", "total"}}
nlohmann::json cost_json(const std::string& model, const Hardware& hw, int64_t context,
                         const TokenCost& cost, const UsdCost& usd);
std::string cost_text(const ModelShape& model, const Hardware& hw, int64_t context,
                      const TokenCost& cost, const UsdCost& usd);

// Every model on every hardware at one context, and per model the AFD mix of the hardware with
// the cheapest attention and the hardware with the cheapest FFN (first listed on a tie).
struct CostTableRow {
  std::string model;
  TokenCost cost;
  std::vector<UsdCost> usd;  // one per hardware, in the table's hardware order
  size_t best_attention = 0;
  size_t best_ffn = 0;
  size_t best_single = 0;  // the cheapest total on one hardware type (EP)
  UsdCost afd() const;     // {usd[best_attention].attention, usd[best_ffn].ffn, sum}
};
struct CostTable {
  int64_t context = 0;
  std::vector<Hardware> hardware;
  std::vector<CostTableRow> rows;
};
CostTable build_cost_table(const std::vector<ModelShape>& models,
                           const std::vector<Hardware>& hardware, int64_t context);

enum class TableFormat { kText, kMarkdown, kCsv, kJson };
// text and markdown: per-token quantities, then attention / FFN / total USD per 1M tokens with
// one column per hardware, then the best AFD mix. csv: one row per model x hardware and one per
// model's AFD mix (hardware "afd:<attention>+<ffn>"). json: see docs/analysis.md.
std::string format_cost_table(const CostTable& table, TableFormat format);
nlohmann::json cost_table_json(const CostTable& table);

nlohmann::json hardware_json(const Hardware& hw);

// A token count as users write it: "8192", "8K" or "8k" (x 1024), "1M" (x 1048576). `flag`
// names the option in errors.
Result<int64_t> parse_token_count(const std::string& text, const std::string& flag);

// The min-sparsity report of `afd cost --min-sparsity` ({"min_sparsity"}, plus {"sparsity",
// "b_dense", "b_moe"} with a model).
nlohmann::json min_sparsity_json(const Hardware& hw, int64_t hidden, int64_t layers,
                                 const ModelShape* model);
std::string min_sparsity_text(const Hardware& hw, int64_t hidden, int64_t layers,
                              const ModelShape* model);

nlohmann::json plan_json(const std::string& model, const Hardware& attention_hw,
                         const Hardware& ffn_hw, const Plan& plan);
std::string plan_text(const std::string& model, const Hardware& attention_hw,
                      const Hardware& ffn_hw, const Plan& plan);

}  // namespace afd::analysis
