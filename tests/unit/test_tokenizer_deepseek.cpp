// The DeepSeek-V3 tokenizer (Step-3's) from the shared data beside the repo
// (${AFD_SOURCE_DIR}/../shared/data/tokenizers/deepseek-v3): known ids from HF tokenizers,
// streaming over a mixed corpus, and the encode/decode rate on one core (printed, not asserted).
// The full comparison with HF is tests/oracle/test_tokenizer_oracle.py.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "serve/tok_unicode.h"
#include "serve/tokenizer.h"

namespace afd {
namespace {

using Ids = std::vector<int32_t>;

const std::string& deepseek_dir() {
  static const std::string dir =
      std::string(AFD_SOURCE_DIR) + "/../shared/data/tokenizers/deepseek-v3";
  return dir;
}

// Loaded once for the suite; a missing data folder fails every test with the path.
std::shared_ptr<const Tokenizer> deepseek() {
  static std::shared_ptr<const Tokenizer> tok;
  static std::string error;
  if (!tok && error.empty()) {
    auto t = Tokenizer::load(deepseek_dir());
    if (t.ok()) {
      tok = *t;
    } else {
      error = t.status().message();
    }
  }
  if (!tok)
    ADD_FAILURE() << "the DeepSeek-V3 tokenizer is required at " << deepseek_dir()
                  << " (shared data beside the repo): " << error;
  return tok;
}

// Texts of every kind the oracle test covers, for streaming and speed.
const std::vector<std::string>& corpus() {
  static const std::vector<std::string> texts = {
      "The quick brown fox jumps over the lazy dog. It's 10:45pm; we'll see.",
      "你好，世界！我们今天去北京天安门广场看升旗仪式。",
      "こんにちは、世界！カタカナとひらがなと漢字。",
      "안녕하세요, 세계! 한국어 문장입니다.",
      "def f(x):\n    return x**2 + 1  # square\n",
      "int main() {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\r\n",
      "3.14159265358979323846264338327950288419716939937510 and 1,000,000",
      "👨\u200d👩\u200d👧\u200d👦 family 🇺🇸 👍🏽 1️⃣ I ❤️ NY",
      "  spaces   and\ttabs\t\tand\n\nnewlines\r\n\r\n",
      "<｜User｜>question<｜Assistant｜>answer<｜end▁of▁sentence｜>",
      "Привет, мир! Ελληνικά. हिन्दी में। ภาษาไทย café naïve e\u0301",
  };
  return texts;
}

TEST(TokenizerDeepSeek, KnownIds) {
  auto t = deepseek();
  ASSERT_TRUE(t);
  // Ids from HF tokenizers 0.23 (encode(add_special_tokens=False)) on the same file; BOS = 0
  // because tokenizer_config.json has add_bos_token.
  EXPECT_EQ(t->encode("Hello world!"), (Ids{0, 19923, 2058, 3}));
  EXPECT_EQ(t->encode("Hello world!", false), (Ids{19923, 2058, 3}));
  EXPECT_EQ(t->encode("你好，世界！", false), (Ids{30594, 303, 3427, 1175}));
  EXPECT_EQ(t->encode("1234567", false), (Ids{6895, 18009, 25}));
  EXPECT_EQ(t->encode("<｜User｜>hi<｜Assistant｜>", false), (Ids{128803, 6366, 128804}));
  EXPECT_EQ(t->encode("👨\u200d👩\u200d👧 ok", false),
            (Ids{25730, 104, 46088, 25730, 105, 46088, 25730, 103, 9109}));
  EXPECT_EQ(t->encode("  x\n\n\ty", false), (Ids{223, 1527, 271, 102039}));
  EXPECT_EQ(t->encode("def f(x):\n    return x", false),
            (Ids{3465, 285, 4042, 3395, 361, 1354, 1527}));
  EXPECT_EQ(t->encode(""), (Ids{0}));
  EXPECT_EQ(t->vocab_size(), 128815);
  EXPECT_EQ(t->bos_id(), 0);
  EXPECT_EQ(t->eos_id(), 1);
  EXPECT_TRUE(t->adds_bos());
  EXPECT_FALSE(t->adds_eos());
  EXPECT_TRUE(t->is_special(128805));   // <|EOT|>
  EXPECT_FALSE(t->is_special(128803));  // <｜User｜>
  EXPECT_EQ(t->decode(Ids{0, 19923, 2058, 3, 1}), "Hello world!");
  EXPECT_EQ(t->decode(Ids{0, 19923, 2058, 3, 1}, false),
            "<｜begin▁of▁sentence｜>Hello world!<｜end▁of▁sentence｜>");
}

TEST(TokenizerDeepSeek, RoundTripAndStreaming) {
  auto t = deepseek();
  ASSERT_TRUE(t);
  for (const std::string& text : corpus()) {
    Ids ids = t->encode(text, false);
    EXPECT_EQ(t->decode(ids, false), text);
    StreamDecoder sd(*t, false);
    std::string all;
    for (int32_t id : ids) {
      std::string piece = sd.push(id);
      EXPECT_EQ(tok::utf8_lossy(piece), piece) << "broken UTF-8 piece in: " << text;
      all += piece;
    }
    EXPECT_EQ(all + sd.finish(), text);
  }
  // Random ids: pieces stay whole characters and add up to decode().
  std::mt19937 rng(9);
  for (int trial = 0; trial < 1000; ++trial) {
    Ids ids(1 + rng() % 16);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng() % t->vocab_size());
    StreamDecoder sd(*t);
    std::string all;
    for (int32_t id : ids) {
      std::string piece = sd.push(id);
      EXPECT_EQ(tok::utf8_lossy(piece), piece);
      all += piece;
    }
    EXPECT_EQ(all + sd.finish(), t->decode(ids));
  }
}

TEST(TokenizerDeepSeek, SpeedOnOneCore) {
  // Prompts of about 1,000 characters mixed from the corpus, encoded on this thread only.
  auto t = deepseek();
  ASSERT_TRUE(t);
  std::mt19937 rng(1);
  std::vector<std::string> prompts(2000);
  size_t bytes = 0;
  for (std::string& p : prompts) {
    while (p.size() < 1000) p += corpus()[rng() % corpus().size()] + " ";
    bytes += p.size();
  }
  std::vector<Ids> ids(prompts.size());
  auto t0 = std::chrono::steady_clock::now();
  size_t tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    t->encode(prompts[i], true, &ids[i]);
    tokens += ids[i].size();
  }
  auto t1 = std::chrono::steady_clock::now();
  size_t out_bytes = 0;
  for (const Ids& x : ids) {
    StreamDecoder sd(*t, /*skip_special_tokens=*/false);
    for (int32_t id : x) out_bytes += sd.push(id).size();
    out_bytes += sd.finish().size();
  }
  auto t2 = std::chrono::steady_clock::now();
  const double enc = std::chrono::duration<double>(t1 - t0).count();
  const double dec = std::chrono::duration<double>(t2 - t1).count();
  std::printf(
      "[ rate     ] encode: %zu prompts (%.0f bytes avg), %zu tokens in %.3f s: "
      "%.0f prompts/s, %.2f M tokens/s, %.1f MB/s on one core\n",
      prompts.size(), double(bytes) / prompts.size(), tokens, enc, prompts.size() / enc,
      tokens / enc / 1e6, bytes / enc / 1e6);
  std::printf("[ rate     ] streaming decode: %zu tokens in %.3f s: %.2f M tokens/s\n", tokens, dec,
              tokens / dec / 1e6);
  EXPECT_GT(tokens, prompts.size() * 100);
  // The stream gave back every prompt, plus the BOS text of each.
  EXPECT_EQ(out_bytes, bytes + prompts.size() * t->bos_token().size());
}

}  // namespace
}  // namespace afd
