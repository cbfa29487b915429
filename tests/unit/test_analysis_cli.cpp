// `afd cost` and `afd plan` as a user (and tests/oracle) meets them: the JSON shapes, the table
// formats, the SVG, one-line errors and exit codes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "analysis/cost.h"
#include "analysis/hardware.h"
#include "analysis/report.h"
#include "test_util.h"

namespace afd::analysis {
namespace {

using afd::testing::run_command;
using afd::testing::TempDir;
using nlohmann::json;

const std::string kAfd = AFD_BINARY;

json run_json(const std::string& args) {
  auto r = run_command(kAfd + " " + args);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
  try {
    return json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << args << ": not JSON: " << r.out;
    return json();
  }
}

std::set<std::string> keys(const json& j) {
  std::set<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it) k.insert(it.key());
  return k;
}

void expect_error(const std::string& args, const std::string& needle) {
  auto r = run_command(kAfd + " " + args);
  EXPECT_NE(r.exit_code, 0) << args;
  EXPECT_EQ(r.out, "") << args;
  const size_t at = r.err.find("afd: error:");
  ASSERT_NE(at, std::string::npos) << args << ": " << r.err;
  EXPECT_EQ(r.err.find('\n', at), r.err.size() - 1) << "not one line: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << args << ": " << r.err;
}

// Start and end tags balance and nest (a tiny XML well-formedness check: the SVG is written by
// hand, so a missing "/" is the likely bug).
bool tags_balance(const std::string& s, std::string* why) {
  std::vector<std::string> stack;
  size_t i = 0;
  while ((i = s.find('<', i)) != std::string::npos) {
    const size_t j = s.find('>', i);
    if (j == std::string::npos) return *why = "unterminated tag", false;
    const std::string tag = s.substr(i + 1, j - i - 1);
    i = j + 1;
    if (tag.empty()) return *why = "empty tag", false;
    if (tag[0] == '?' || tag[0] == '!') continue;
    if (tag.back() == '/') continue;
    const std::string name =
        tag.substr(tag[0] == '/' ? 1 : 0, tag.find_first_of(" \n/", 1) - (tag[0] == '/' ? 1 : 0));
    if (tag[0] == '/') {
      if (stack.empty() || stack.back() != name) return *why = "unbalanced </" + name + ">", false;
      stack.pop_back();
    } else {
      stack.push_back(name);
    }
  }
  if (!stack.empty()) return *why = "unclosed <" + stack.back() + ">", false;
  return true;
}

TEST(AnalysisCli, CostJsonShapeAndValues) {
  const json j = run_json("cost --model step3 --hardware h800 --context 8192 --json");
  EXPECT_EQ(keys(j), (std::set<std::string>{"model", "hardware", "context", "per_token",
                                            "arithmetic_intensity", "usd_per_million_tokens"}));
  EXPECT_EQ(keys(j["per_token"]),
            (std::set<std::string>{"kv_bytes", "attention_flops", "linear_flops", "ffn_flops"}));
  EXPECT_EQ(keys(j["usd_per_million_tokens"]),
            (std::set<std::string>{"attention", "ffn", "total"}));
  EXPECT_EQ(j["model"], "step3");
  EXPECT_EQ(j["hardware"], "h800");
  EXPECT_EQ(j["context"], 8192);
  EXPECT_EQ(j["per_token"]["kv_bytes"].get<double>(), 61.0 * 8192 * 512);
  EXPECT_EQ(j["arithmetic_intensity"].get<double>(), 128.0);
  const UsdCost u = usd_per_million_tokens(token_cost(model_preset("step3").value(), 8192),
                                           hardware_preset("h800").value());
  EXPECT_DOUBLE_EQ(j["usd_per_million_tokens"]["total"].get<double>(), u.total);
  // "8K" is 8192.
  EXPECT_EQ(run_json("cost --model step3 --hardware h800 --context 8K --json"), j);
}

TEST(AnalysisCli, CustomHardwareJsonEqualsPreset) {
  TempDir d;
  for (const auto& name : hardware_preset_names()) {
    const Hardware h = hardware_preset(name).value();
    json spec = {{"name", h.name},
                 {"price_per_hour", h.price_per_hour},
                 {"bf16_flops", h.bf16_flops},
                 {"fp8_flops", h.fp8_flops ? json(*h.fp8_flops) : json(nullptr)},
                 {"memory_bandwidth", h.memory_bandwidth},
                 {"network_bandwidth", h.network_bandwidth}};
    const std::string path = d / (name + ".json");
    std::ofstream(path) << spec.dump();
    for (const char* m : {"step3", "llama4-maverick", "minimax-m1"}) {
      const std::string tail = std::string(" --model ") + m + " --context 32768 --json";
      EXPECT_EQ(run_json("cost --hardware " + path + tail),
                run_json("cost --hardware " + name + tail))
          << name;
    }
    EXPECT_EQ(run_json("cost --min-sparsity --model step3 --json --hardware " + path),
              run_json("cost --min-sparsity --model step3 --json --hardware " + name));
    EXPECT_EQ(run_json("plan --model step3 --context 4K --json --attention-hw " + path +
                       " --ffn-hw " + path),
              run_json("plan --model step3 --context 4K --json --attention-hw " + name +
                       " --ffn-hw " + name));
  }
}

TEST(AnalysisCli, MinSparsityJson) {
  const json j = run_json("cost --min-sparsity --hardware h800 --json");
  EXPECT_EQ(keys(j), std::set<std::string>{"min_sparsity"});
  EXPECT_DOUBLE_EQ(j["min_sparsity"].get<double>(),
                   min_sparsity(hardware_preset("h800").value(), 7168, 61));
  const json k = run_json(
      "cost --min-sparsity --hardware a800 --hidden 4096 --layers 94 "
      "--model qwen3-235b-a22b --json");
  EXPECT_EQ(keys(k), (std::set<std::string>{"min_sparsity", "sparsity", "b_dense", "b_moe"}));
  EXPECT_DOUBLE_EQ(k["min_sparsity"].get<double>(),
                   min_sparsity(hardware_preset("a800").value(), 4096, 94));
  EXPECT_DOUBLE_EQ(k["sparsity"].get<double>(), 8.0 / 128);
  EXPECT_DOUBLE_EQ(k["b_dense"].get<double>(), 3.12e14 / 2e12 / 2);
  EXPECT_DOUBLE_EQ(k["b_moe"].get<double>(), 3.12e14 / 2e12 / 2 * 16);
}

TEST(AnalysisCli, PlanJsonShape) {
  const json j = run_json(
      "plan --model step3 --attention-hw h800 --ffn-hw h800 --context 4096 "
      "--json");
  for (const char* k : {"model",
                        "attention_hardware",
                        "ffn_hardware",
                        "context",
                        "tpot_ms",
                        "stages",
                        "layers",
                        "attention_efficiency",
                        "ffn_efficiency",
                        "per_layer_budget_us",
                        "attention_batch_per_gpu",
                        "ffn_batch_for_full_mfu",
                        "ffn_tokens_per_micro_batch",
                        "network_ok",
                        "attention_gpus",
                        "ffn_gpus",
                        "tokens_per_s_per_gpu",
                        "binding_constraint",
                        "attention",
                        "ffn",
                        "network"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["attention_batch_per_gpu"], 355);
  EXPECT_EQ(j["attention_gpus"], 11);
  EXPECT_EQ(j["ffn_gpus"], 7);
  EXPECT_EQ(j["binding_constraint"], "attention_memory_bandwidth");
  EXPECT_EQ(j["attention"]["capacity_batch"], nullptr);
  // --attention-efficiency and --ffn-efficiency override --efficiency.
  const json e = run_json(
      "plan --model step3 --attention-hw h800 --ffn-hw h800 --context 4096 "
      "--efficiency 0.5 --ffn-efficiency 0.7 --json");
  EXPECT_EQ(e["attention_efficiency"], 0.5);
  EXPECT_EQ(e["ffn_efficiency"], 0.7);
  EXPECT_LT(e["attention_batch_per_gpu"].get<int>(), 355);
}

TEST(AnalysisCli, TableFormats) {
  const json j = run_json("cost --table --context 32K --format json");
  EXPECT_EQ(j["context"], 32768);
  EXPECT_EQ(j["hardware"].size(), 6u);
  EXPECT_EQ(j["rows"].size(), 9u * 6);
  ASSERT_EQ(j["best_afd"].size(), 9u);
  for (const auto& b : j["best_afd"]) {
    // The AFD mix is at most the cheapest single hardware.
    EXPECT_LE(b["usd_per_million_tokens"]["total"].get<double>(),
              b["best_single_usd_per_million_tokens"].get<double>() * (1 + 1e-12));
  }
  EXPECT_EQ(run_json("cost --table --context 32K --json"), j);
  auto csv = run_command(kAfd + " cost --table --context 32K --format csv");
  ASSERT_EQ(csv.exit_code, 0);
  std::istringstream lines(csv.out);
  std::string line;
  int n = 0, afd_rows = 0;
  while (std::getline(lines, line)) {
    ++n;
    afd_rows += line.find(",afd:") != std::string::npos;
  }
  EXPECT_EQ(n, 1 + 9 * 7);
  EXPECT_EQ(afd_rows, 9);
  auto md = run_command(kAfd +
                        " cost --table --format markdown --model step3 --model qwen3-32b "
                        "--hardware h800 --hardware h20");
  ASSERT_EQ(md.exit_code, 0) << md.err;
  EXPECT_NE(md.out.find("| step3"), std::string::npos);
  EXPECT_NE(md.out.find("Best AFD mix"), std::string::npos);
  EXPECT_EQ(md.out.find("a800"), std::string::npos);  // only the chosen hardware
  auto text = run_command(kAfd + " cost --table");
  ASSERT_EQ(text.exit_code, 0);
  for (const auto& m : model_preset_names()) EXPECT_NE(text.out.find(m), std::string::npos) << m;
}

TEST(AnalysisCli, SvgIsWellFormedAndComplete) {
  TempDir d;
  const std::string svg = d / "cost.svg";
  auto r = run_command(kAfd + " cost --table --context 8K --svg " + svg + " --svg-hardware h20");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(svg);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string s = ss.str();
  std::string why;
  EXPECT_TRUE(tags_balance(s, &why)) << why;
  EXPECT_NE(s.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  for (const auto& m : model_preset_names()) EXPECT_NE(s.find(">" + m), std::string::npos) << m;
  for (const auto& h : hardware_preset_names()) EXPECT_NE(s.find(">" + h + " "), std::string::npos);
  EXPECT_NE(s.find("arithmetic intensity"), std::string::npos);
  EXPECT_NE(s.find("context length"), std::string::npos);
  EXPECT_NE(s.find("128K"), std::string::npos);
  EXPECT_NE(s.find("on h20"), std::string::npos);
  EXPECT_EQ(s.find("nan"), std::string::npos);
  EXPECT_EQ(s.find("inf"), std::string::npos);
  // A real XML parser agrees, where Python is installed (it is for tests/oracle).
  auto py = run_command("python3 -c \"import xml.dom.minidom as m; m.parse('" + svg + "')\"");
  if (py.exit_code != 127) EXPECT_EQ(py.exit_code, 0) << py.err;
}

TEST(AnalysisCli, ErrorsAreOneLineAndNameTheInput) {
  TempDir d;
  expect_error("cost --model gpt-17 --hardware h800", "gpt-17");
  expect_error("cost --model step3 --hardware b200", "b200");
  expect_error("plan --model step3 --attention-hw h800 --ffn-hw b200", "b200");
  const std::string bad = d / "bad.json";
  std::ofstream(bad) << "{\"name\": \"l20\", \"price_per_hour\": 1";
  expect_error("cost --model step3 --hardware " + bad, "not valid JSON");
  const std::string missing = d / "missing.json";
  std::ofstream(missing) << R"({"name": "l20", "price_per_hour": 1, "bf16_flops": 1.19e14,
                               "memory_bandwidth": 8.64e11, "network_bandwidth": 1e11})";
  expect_error("cost --model step3 --hardware " + missing, "fp8_flops");
  const std::string cfg = d / "config.json";
  std::ofstream(cfg) << R"({"model_type": "gemma3"})";
  expect_error("cost --hardware h800 --model " + cfg, "gemma3");
  expect_error("cost --model step3 --hardware h800 --context 12Q", "12Q");
  expect_error("cost --model step3 --model qwen3-32b --hardware h800", "--table");
  expect_error("cost --min-sparsity", "--hardware");
  expect_error("plan --model step3 --attention-hw h800 --ffn-hw h800 --tpot-ms 1", "infeasible");
  // A failed SVG write leaves no file and prints no table.
  const std::string no_dir = d / "no/such/dir/x.svg";
  expect_error("cost --table --svg " + no_dir, no_dir);
  EXPECT_FALSE(std::filesystem::exists(no_dir));
  // CLI11 rejects flags outside their range or mode with a non-zero exit.
  EXPECT_NE(run_command(kAfd + " plan --model step3 --attention-hw h800 --ffn-hw h800 "
                               "--efficiency 1.5")
                .exit_code,
            0);
  EXPECT_NE(run_command(kAfd + " cost --model step3 --hardware h800 --format csv").exit_code, 0);
  EXPECT_NE(run_command(kAfd + " cost --table --min-sparsity --hardware h800").exit_code, 0);
}

TEST(AnalysisCli, HelpExplainsEveryFlag) {
  auto c = run_command(kAfd + " cost --help");
  EXPECT_EQ(c.exit_code, 0);
  for (const char* f : {"--model", "--hardware", "--context", "--json", "--table", "--format",
                        "--svg", "--svg-hardware", "--min-sparsity", "--hidden", "--layers",
                        "price_per_hour", "fp8_flops", "network_bandwidth"})
    EXPECT_NE(c.out.find(f), std::string::npos) << f;
  auto p = run_command(kAfd + " plan --help");
  EXPECT_EQ(p.exit_code, 0);
  for (const char* f :
       {"--model", "--attention-hw", "--ffn-hw", "--context", "--tpot-ms", "--stages",
        "--efficiency", "--attention-efficiency", "--ffn-efficiency", "--attention-memory-gb",
        "--ffn-memory-gb", "--json", "B_MoE", "tokens/s/GPU"})
    EXPECT_NE(p.out.find(f), std::string::npos) << f;
  auto top = run_command(kAfd + " --help");
  EXPECT_NE(top.out.find("cost"), std::string::npos);
  EXPECT_NE(top.out.find("plan"), std::string::npos);
}

}  // namespace
}  // namespace afd::analysis
