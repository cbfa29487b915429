// afd launch with one process per rank over UCX (loopback): exact tokens, failures named,
// bad set-ups refused at start, no process left behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <set>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "test_util.h"

namespace afd {
namespace {

using afd::testing::run_command;
using afd::testing::TempDir;
using nlohmann::json;

const std::string kAfd = AFD_BINARY;

std::vector<json> tokens_of_generate(const std::string& prompts_file) {
  std::vector<json> out;
  std::ifstream in(prompts_file);
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line);
    std::string ids;
    for (auto& t : j["prompt_ids"]) ids += (ids.empty() ? "" : ",") + std::to_string(t.get<int>());
    auto r = run_command(kAfd + " generate --model step3-tiny --greedy --json --prompt-ids " + ids +
                         " --max-new-tokens " + std::to_string(j["max_new_tokens"].get<int>()));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    out.push_back(json::parse(r.out)["tokens"]);
  }
  return out;
}

std::string write_prompts(const TempDir& d) {
  std::string p = d / "prompts.jsonl";
  std::ofstream f(p);
  f << R"({"prompt_ids": [5], "max_new_tokens": 4})" << "\n"
    << R"({"prompt_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19], "max_new_tokens": 6})" << "\n"
    << R"({"prompt_ids": [900, 800, 700], "max_new_tokens": 2})" << "\n"
    << R"({"prompt_ids": [42, 43], "max_new_tokens": 7})" << "\n"
    << R"({"prompt_ids": [3, 1, 4, 1, 5, 9, 2, 6], "max_new_tokens": 5})" << "\n";
  return p;
}

TEST(Launch, UcxProcessesGiveTheTokensOfGenerate) {
  TempDir d;
  std::string prompts = write_prompts(d);
  auto ref = tokens_of_generate(prompts);
  for (const char* layout : {"--attention-ranks 1 --ffn-ranks 1 --micro-batches 1",
                             "--attention-ranks 2 --ffn-ranks 3 --micro-batches 3",
                             "--attention-ranks 2 --ffn-ranks 1 --micro-batches 2"}) {
    std::string trace = d / "trace.json";
    auto r = run_command(kAfd + " launch --model step3-tiny --transport ucx --greedy --json "
                                "--dispatch-dtype f32 --prefill-chunk 7 --prompts-file " +
                         prompts + " --trace " + trace + " " + layout);
    ASSERT_EQ(r.exit_code, 0) << layout << ": " << r.err;
    auto j = json::parse(r.out);
    ASSERT_EQ(j["results"].size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_EQ(j["results"][i]["tokens"], ref[i]) << layout << " " << i;
    EXPECT_GT(j["stats"]["bytes_attention_to_ffn"].get<double>(), 0);
    // The trace is Chrome JSON with spans of several ranks.
    std::ifstream t(trace);
    auto tj = json::parse(t);
    std::set<int> tids;
    for (auto& e : tj["traceEvents"]) tids.insert(e["tid"].get<int>());
    EXPECT_GE(tids.size(), 2u);
  }
}

TEST(Launch, Fp8DispatchRunsAndMostlyAgrees) {
  TempDir d;
  std::string prompts = write_prompts(d);
  auto ref = tokens_of_generate(prompts);
  auto r = run_command(kAfd + " launch --model step3-tiny --greedy --json --prompts-file " + prompts);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = json::parse(r.out);
  // fp8 activations perturb the logits by a few percent (Wire.DispatchDtypesKeepLogits...):
  // every request still gets all its tokens, and the first token, where a near tie is rare,
  // agrees with full precision for all but at most one request. Token-level exactness is the
  // f32 test's job.
  ASSERT_EQ(j["results"].size(), ref.size());
  size_t same_first = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(j["results"][i]["tokens"].size(), ref[i].size());
    same_first += j["results"][i]["tokens"][0] == ref[i][0];
  }
  EXPECT_GE(same_first + 1, ref.size());
}

// Worker processes of this test (the [w] keeps pgrep's own shell from matching).
int count_workers() {
  auto r = run_command("pgrep -f -c -- '[w]orker --coordinator .* --weights-seed 777'");
  return r.out.empty() ? 0 : std::stoi(r.out);
}

TEST(Launch, KillingARankFailsEveryRankWithItsNameAndLeavesNoProcess) {
  TempDir d;
  for (const char* victim : {"--role ffn --index 1", "--role attention --index 0"}) {
    // A long run on the tiny model; the weights seed marks this test's workers.
    std::string cmd = kAfd + " launch --model step3-tiny --weights-seed 777 --attention-ranks 2 "
                             "--ffn-ranks 2 --requests 6 --max-new-tokens 4000 --greedy";
    std::string err = d / "err.txt";
    pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      execl("/bin/sh", "sh", "-c", ("exec " + cmd + " >/dev/null 2>" + err).c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    // Whatever happens, nothing of this run survives the test.
    struct Reaper {
      pid_t pid;
      ~Reaper() {
        kill(-pid, SIGKILL);
        run_command("pkill -9 -f -- '[w]eights-seed 777'");
      }
    } reaper{pid};
    // Wait until all four workers run, then a little more so the job is mid-run.
    for (int i = 0; i < 200 && count_workers() < 4; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_EQ(count_workers(), 4);
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    auto t0 = std::chrono::steady_clock::now();
    run_command(std::string("pkill -9 -f -- '") + victim + " --model step3-tiny --weights-seed 777'");
    int st = 0;
    waitpid(pid, &st, 0);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(secs, 10.0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    std::ifstream in(err);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string name = std::string(victim).find("ffn") != std::string::npos ? "ffn 1" : "attention 0";
    EXPECT_NE(all.find(name + " died"), std::string::npos) << all;
    EXPECT_NE(all.find("requests in flight failed"), std::string::npos) << all;
    EXPECT_EQ(count_workers(), 0);
  }
}

TEST(Launch, BadSetupsFailAtStart) {
  // Workers that loaded different weights.
  auto server = run_command(
      "((" + kAfd + " launch --listen 127.0.0.1:47311 --attention-ranks 1 --ffn-ranks 1 "
                   "--model step3-tiny --requests 1 >/dev/null 2>&1; echo $? > /dev/null) & sleep 0.3; " +
      kAfd + " worker --coordinator 127.0.0.1:47311 --role attention --index 0 --model step3-tiny & " +
      kAfd + " worker --coordinator 127.0.0.1:47311 --role ffn --index 0 --model step3-tiny "
             "--weights-seed 9; wait)");
  EXPECT_NE(server.err.find("ranks disagree on the model"), std::string::npos) << server.err;
  // A coordinator that cannot be reached.
  auto r = run_command(kAfd + " worker --coordinator 127.0.0.1:1 --role ffn --index 0 "
                              "--connect-timeout-ms 300");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("cannot reach the coordinator"), std::string::npos) << r.err;
  // A prompts file with a bad line names the line.
  TempDir d;
  std::ofstream(d / "p.jsonl") << "{\"prompt_ids\": [1, 2]}\n{\"prompt_ids\": [5000]}\n";
  auto b = run_command(kAfd + " launch --model step3-tiny --prompts-file " + (d / "p.jsonl"));
  EXPECT_NE(b.exit_code, 0);
  EXPECT_NE(b.err.find("p.jsonl:2"), std::string::npos) << b.err;
}

}  // namespace
}  // namespace afd
