// The afd CLI as a user meets it: outputs, exit codes, one-line errors, no partial files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace afd {
namespace {

using afd::testing::run_command;
using afd::testing::TempDir;
namespace fs = std::filesystem;

const std::string kAfd = AFD_BINARY;

// The error is one line, the last on stderr (progress lines may come before it), and names
// `needle`.
void expect_one_line_error(const afd::testing::CommandResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0);
  size_t at = r.err.find("afd: error:");
  ASSERT_NE(at, std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("afd: error:", at + 1), std::string::npos) << r.err;
  size_t eol = r.err.find('\n', at);
  EXPECT_EQ(eol, r.err.size() - 1) << "the error line is not the last: " << r.err;
  EXPECT_NE(r.err.substr(at, eol - at).find(needle), std::string::npos) << r.err;
}

TEST(Cli, HelpExitsZeroAndListsSubcommands) {
  auto r = run_command(kAfd + " --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* s : {"checkpoint", "generate", "info"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  EXPECT_EQ(run_command(kAfd + " generate --help").exit_code, 0);
  EXPECT_NE(run_command(kAfd).exit_code, 0);  // a subcommand is required
  EXPECT_NE(run_command(kAfd + " generate --prompt-ids 1 --no-such-flag").exit_code, 0);
}

TEST(Cli, GenerateJsonSingleAndBatch) {
  auto r = run_command(kAfd + " generate --model step3-tiny --prompt-ids 1,2,3 --max-new-tokens 5 "
                              "--greedy --json 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_ids"], nlohmann::json({1, 2, 3}));
  EXPECT_EQ(j["tokens"].size(), 5u);
  EXPECT_TRUE(j["timings"].contains("decode_tokens_per_s"));

  auto b = run_command(kAfd + " generate --model step3-tiny --prompt-ids 1,2,3 --prompt-ids 9 "
                              "--max-new-tokens 5 --greedy --json");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  auto jb = nlohmann::json::parse(b.out);
  ASSERT_EQ(jb["sequences"].size(), 2u);
  // Batching does not change a greedy sequence.
  EXPECT_EQ(jb["sequences"][0]["tokens"], j["tokens"]);
}

TEST(Cli, SamplingIsReproduciblePerSeed) {
  auto gen = [&](int seed) {
    auto r = run_command(kAfd + " generate --model step3-tiny --prompt-ids 4,5 --max-new-tokens 12 "
                                "--temperature 1.5 --top-p 0.95 --top-k 50 --json --seed " +
                         std::to_string(seed));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out)["tokens"];
  };
  EXPECT_EQ(gen(1), gen(1));
  EXPECT_NE(gen(1), gen(2));
}

TEST(Cli, BadInputsFailWithOneLineAndNoPartialFile) {
  TempDir d;
  std::string dump = d / "logits.bin";
  auto r = run_command(kAfd + " generate --model step3-tiny --prompt-ids 1,1000 --greedy "
                              "--dump-logits " + dump);
  expect_one_line_error(r, "1000");
  EXPECT_FALSE(fs::exists(dump));
  expect_one_line_error(run_command(kAfd + " generate --model step3-tiny --prompt-ids 1,x"), "x");
  expect_one_line_error(run_command(kAfd + " generate --model /no/such/dir --prompt-ids 1"),
                        "/no/such/dir");
  expect_one_line_error(
      run_command(kAfd + " generate --model step3-tiny --prompt-ids 1 --prompt-ids 2 "
                         "--dump-logits " + dump),
      "--dump-logits");
  EXPECT_FALSE(fs::exists(dump));
}

TEST(Cli, DumpLogitsHoldsOneRowPerTokenAndItsArgmax) {
  TempDir d;
  std::string dump = d / "l.bin";
  auto r = run_command(kAfd + " generate --model step3-tiny --prompt-ids 3,1,4,1,5 "
                              "--max-new-tokens 4 --greedy --json --dump-logits " + dump);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto tokens = nlohmann::json::parse(r.out)["tokens"];
  std::ifstream f(dump, std::ios::binary);
  std::vector<float> l(4 * 1000);
  f.read(reinterpret_cast<char*>(l.data()), static_cast<std::streamsize>(l.size() * 4));
  ASSERT_TRUE(f.good());
  EXPECT_EQ(fs::file_size(dump), l.size() * 4);
  for (int s = 0; s < 4; ++s) {
    int best = 0;
    for (int v = 1; v < 1000; ++v)
      if (l[s * 1000 + v] > l[s * 1000 + best]) best = v;
    EXPECT_EQ(tokens[s].get<int>(), best) << "step " << s;
  }
}

TEST(Cli, CheckpointInitInspectAndGenerateAgreeWithThePreset) {
  TempDir d;
  std::string ck = d / "tiny";
  auto init = run_command(kAfd + " checkpoint init --preset step3-tiny --dtype bf16 --seed 0 "
                                 "--shards 2 " + ck + " 2>/dev/null");
  ASSERT_EQ(init.exit_code, 0) << init.err;
  auto insp = run_command(kAfd + " checkpoint inspect " + ck);
  EXPECT_EQ(insp.exit_code, 0) << insp.err;
  EXPECT_NE(insp.out.find("problems: none"), std::string::npos) << insp.out;
  EXPECT_NE(insp.out.find("model.layers.1.moe.gate_proj.weight"), std::string::npos);

  std::string args = " --prompt-ids 7,8,9 --max-new-tokens 6 --greedy --json";
  auto a = run_command(kAfd + " generate --model " + ck + args);
  auto b = run_command(kAfd + " generate --model step3-tiny" + args);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["tokens"], nlohmann::json::parse(b.out)["tokens"]);

  // A non-empty target is refused and left alone.
  auto again = run_command(kAfd + " checkpoint init --preset step3-tiny " + ck);
  expect_one_line_error(again, "not empty");
  EXPECT_TRUE(fs::exists(ck + "/config.json"));
  EXPECT_EQ(run_command(kAfd + " checkpoint inspect " + ck).exit_code, 0);

  // Remove one shard: inspect and generate name it.
  fs::remove(ck + "/model-00002-of-00002.safetensors");
  expect_one_line_error(run_command(kAfd + " checkpoint inspect " + ck), "model-00002-of-00002");
  expect_one_line_error(run_command(kAfd + " generate --model " + ck + " --prompt-ids 1"),
                        "model-00002-of-00002");
}

TEST(Cli, InspectReportsEveryProblem) {
  TempDir d;
  std::string ck = d / "tiny";
  ASSERT_EQ(run_command(kAfd + " checkpoint init --preset step3-tiny --dtype fp8 " + ck +
                        " 2>/dev/null").exit_code,
            0);
  // Claim a different hidden size: every matrix is now misshaped.
  std::ifstream in(ck + "/config.json");
  auto cfg = nlohmann::json::parse(in);
  cfg["text_config"]["hidden_size"] = 161;
  std::ofstream(ck + "/config.json") << cfg.dump();
  auto r = run_command(kAfd + " checkpoint inspect " + ck);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("model.embed_tokens.weight"), std::string::npos);
  EXPECT_NE(r.out.find("problems ("), std::string::npos) << r.out;
  expect_one_line_error(r, "problem");
}

}  // namespace
}  // namespace afd
