// Chat templates: Step-3's and DeepSeek-V3's formats render exactly the expected prompts
// (DeepSeek-V3's against its Jinja template rendered by jinja2: tests/data/chat_golden.json),
// template files, and the choice of template from a model directory.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "serve/chat_template.h"
#include "test_util.h"

namespace afd {
namespace {

using nlohmann::json;
using Msgs = std::vector<ChatMessage>;

const std::string kBos = "<｜begin▁of▁sentence｜>";
const std::string kEos = "<｜end▁of▁sentence｜>";

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string render_or_die(const ChatTemplate& t, const Msgs& m, bool gen = true) {
  auto r = t.render(m, gen);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : "";
}

TEST(ChatTemplate, Step3Format) {
  auto t = ChatTemplate::builtin("step3");
  ASSERT_TRUE(t.ok());
  Msgs m = {
      {"system", "You are helpful."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};
  EXPECT_EQ(render_or_die(*t, m),
            kBos +
                "You are helpful.<|BOT|>user\nHi<|EOT|><|BOT|>assistant\nHello!<|EOT|>"
                "<|BOT|>user\n2+2?<|EOT|><|BOT|>assistant\n<think>\n");
  EXPECT_EQ(render_or_die(*t, m, false),
            kBos +
                "You are helpful.<|BOT|>user\nHi<|EOT|><|BOT|>assistant\nHello!<|EOT|>"
                "<|BOT|>user\n2+2?<|EOT|>");
  EXPECT_EQ(render_or_die(*t, {{"user", "中文\n"}}), kBos +
                                                         "<|BOT|>user\n中文\n<|EOT|>"
                                                         "<|BOT|>assistant\n<think>\n");
  EXPECT_EQ(render_or_die(*t, {{"system", "a"}, {"user", "u"}, {"system", "b"}}),
            kBos + "a\n\nb<|BOT|>user\nu<|EOT|><|BOT|>assistant\n<think>\n");
  EXPECT_EQ(render_or_die(*t, {}), kBos + "<|BOT|>assistant\n<think>\n");
  auto bad = t->render(Msgs{{"tool", "x"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"tool\""), std::string::npos);
  EXPECT_EQ(t->stop_strings(), (std::vector<std::string>{"<|EOT|>", kEos}));
  EXPECT_EQ(t->name(), "step3");
}

TEST(ChatTemplate, DeepSeekV3MatchesJinjaGolden) {
  std::ifstream in(std::string(AFD_SOURCE_DIR) + "/tests/data/chat_golden.json");
  ASSERT_TRUE(in) << "missing tests/data/chat_golden.json (scripts/gen_tokenizer_testdata.py)";
  json golden = json::parse(in);
  auto t = ChatTemplate::builtin("deepseek-v3");
  ASSERT_TRUE(t.ok());
  int n = 0;
  for (const json& c : golden["cases"]) {
    Msgs m;
    for (const json& x : c["messages"]) m.push_back({x["role"], x["content"]});
    EXPECT_EQ(render_or_die(*t, m, c["add_generation_prompt"].get<bool>()),
              c["text"].get<std::string>())
        << c.dump();
    ++n;
  }
  EXPECT_GE(n, 10);
  EXPECT_EQ(t->stop_strings(), std::vector<std::string>{kEos});
  EXPECT_FALSE(t->render(Msgs{{"robot", "x"}}).ok());
}

TEST(ChatTemplate, FileFormat) {
  testing::TempDir dir;
  const std::string path = dir / "chatml.json";
  write(path, R"({
    "name": "chatml",
    "prefix": "{bos}",
    "system": "<|im_start|>system\n{content}<|im_end|>\n",
    "message": "<|im_start|>{role}\n{content}<|im_end|>\n",
    "generation_prompt": "<|im_start|>assistant\n",
    "stop": ["<|im_end|>", "{eos}"]
  })");
  auto t = ChatTemplate::from_file(path, "<s>", "</s>");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->name(), "chatml");
  EXPECT_EQ(render_or_die(*t, {{"system", "S"}, {"user", "{content} {role}"}, {"tool", "T"}}),
            "<s><|im_start|>system\nS<|im_end|>\n<|im_start|>user\n{content} {role}<|im_end|>\n"
            "<|im_start|>tool\nT<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t->stop_strings(), (std::vector<std::string>{"<|im_end|>", "</s>"}));

  write(path, R"({"user": "U:{content}\n"})");
  auto only_user = ChatTemplate::from_file(path);
  ASSERT_TRUE(only_user.ok());
  auto no_role = only_user->render(Msgs{{"assistant", "x"}});
  ASSERT_FALSE(no_role.ok());
  EXPECT_NE(no_role.status().message().find("\"assistant\""), std::string::npos);

  write(path, R"({"usr": "{content}"})");
  auto typo = ChatTemplate::from_file(path);
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("\"usr\""), std::string::npos);
  write(path, R"({"prefix": "x"})");
  EXPECT_FALSE(ChatTemplate::from_file(path).ok());
  write(path, "{");
  EXPECT_FALSE(ChatTemplate::from_file(path).ok());
}

TEST(ChatTemplate, ChosenFromModelDirectory) {
  // The real DeepSeek-V3 tokenizer_config.json: its Jinja template is recognized.
  const std::string ds = std::string(AFD_SOURCE_DIR) + "/../shared/data/tokenizers/deepseek-v3";
  auto from_ds = ChatTemplate::for_model(ds);
  ASSERT_TRUE(from_ds.ok()) << "needs the shared data at " << ds << ": "
                            << from_ds.status().message();
  EXPECT_EQ(from_ds->name(), "deepseek-v3");
  EXPECT_EQ(ChatTemplate::for_model(ds + "/tokenizer.json")->name(), "deepseek-v3");
  EXPECT_EQ(ChatTemplate::for_model(ds, "step3")->name(), "step3");

  // tests/data/tokenizer-small names its template and has its own BOS.
  auto small = ChatTemplate::for_model(std::string(AFD_SOURCE_DIR) + "/tests/data/tokenizer-small");
  ASSERT_TRUE(small.ok()) << small.status().message();
  EXPECT_EQ(small->name(), "step3");
  EXPECT_EQ(render_or_die(*small, {{"user", "x"}}, false), "<|bos|><|BOT|>user\nx<|EOT|>");

  testing::TempDir dir;
  write(
      dir / "tokenizer_config.json",
      R"({"chat_template": "{{ bos_token }}{% for m in messages %}<|BOT|>{{ m.role }}{% endfor %}"})");
  EXPECT_EQ(ChatTemplate::for_model(dir.str())->name(), "step3");
  write(dir / "tokenizer_config.json", R"({"chat_template": "{{ messages }}"})");
  auto unknown = ChatTemplate::for_model(dir.str());
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("does not recognize"), std::string::npos);
  write(dir / "my.json", R"({"message": "[{role}] {content}\n"})");
  auto file = ChatTemplate::for_model(dir.str(), dir / "my.json");
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(render_or_die(*file, {{"user", "q"}}, false), "[user] q\n");
  EXPECT_FALSE(ChatTemplate::for_model(dir.str(), "llama9").ok());

  write(dir / "tokenizer_config.json", R"({"bos_token": "<b>"})");
  EXPECT_FALSE(ChatTemplate::for_model(dir.str()).ok());  // no template, not a Step-3 model
  write(dir / "config.json", R"({"model_type": "step3_vl"})");
  auto step3 = ChatTemplate::for_model(dir.str());
  ASSERT_TRUE(step3.ok()) << step3.status().message();
  EXPECT_EQ(render_or_die(*step3, {{"user", "x"}}, false), "<b><|BOT|>user\nx<|EOT|>");
}

TEST(ChatTemplate, Identify) {
  EXPECT_EQ(ChatTemplate::identify("{{'<｜User｜>' + m}}{{'<｜Assistant｜>'}}"), "deepseek-v3");
  EXPECT_EQ(ChatTemplate::identify("<|BOT|>user\n"), "step3");
  EXPECT_EQ(ChatTemplate::identify("<|im_start|>"), "");
}

}  // namespace
}  // namespace afd
