// Tokenizer on data that needs nothing outside the repo: a hand-written byte-level BPE (merge
// ranks, added-token flags), the trained tokenizer in tests/data/tokenizer-small (HF's own ids
// in golden.jsonl), arbitrary bytes, streaming detokenization, UTF-8 repair and errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "serve/tok_bpe.h"
#include "serve/tok_unicode.h"
#include "serve/tokenizer.h"
#include "test_util.h"

namespace afd {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

std::string data_dir(const std::string& name) {
  return std::string(AFD_SOURCE_DIR) + "/tests/data/" + name;
}

std::shared_ptr<const Tokenizer> load_or_die(const std::string& path) {
  auto t = Tokenizer::load(path);
  if (!t.ok()) {
    ADD_FAILURE() << "cannot load tokenizer " << path << ": " << t.status().message();
    return nullptr;
  }
  return *t;
}

std::string sym(char c) {
  std::string s;
  tok::append_utf8(tok::byte_to_symbol(static_cast<uint8_t>(c)), &s);
  return s;
}

// A hand-written byte-level BPE: byte b has id b; then merged tokens in the order given.
// merges: "a b" pairs of plain ASCII tokens (spaces are not used in the tests' tokens).
json tiny_tokenizer(const std::vector<std::pair<std::string, std::string>>& merges,
                    const json& added = json::array(), bool pair_format = false) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[sym(static_cast<char>(b))] = b;
  json jm = json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    std::string ta, tb;
    for (char c : a) ta += sym(c);
    for (char c : b) tb += sym(c);
    if (!vocab.contains(ta + tb)) vocab[ta + tb] = next++;
    if (pair_format) {
      jm.push_back({ta, tb});
    } else {
      jm.push_back(ta + " " + tb);
    }
  }
  return {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", vocab}, {"merges", jm}}}};
}

std::shared_ptr<const Tokenizer> from(const json& j, const std::string& config = "") {
  auto t = Tokenizer::from_json(j.dump(), config, "test");
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? *t : nullptr;
}

json added_token(int id, const std::string& content, bool special, bool lstrip = false,
                 bool rstrip = false, bool single_word = false) {
  return {{"id", id},           {"content", content}, {"special", special},
          {"lstrip", lstrip},   {"rstrip", rstrip},   {"single_word", single_word},
          {"normalized", false}};
}

bool valid_utf8(const std::string& s) { return tok::utf8_lossy(s) == s; }

size_t count_replacements(const std::string& s) {
  size_t n = 0;
  for (size_t i = s.find("\xEF\xBF\xBD"); i != std::string::npos; i = s.find("\xEF\xBF\xBD", i + 1))
    ++n;
  return n;
}

// Streams ids one by one: no piece is broken UTF-8, and the pieces add up to decode().
void expect_stream_matches(const Tokenizer& t, const Ids& ids, bool skip_special = true) {
  StreamDecoder sd(t, skip_special);
  std::string all;
  for (int32_t id : ids) {
    std::string piece = sd.push(id);
    EXPECT_TRUE(valid_utf8(piece)) << "piece of id " << id << " is broken UTF-8";
    all += piece;
    EXPECT_LE(sd.pending_bytes(), 3u);
  }
  std::string last = sd.finish();
  EXPECT_TRUE(valid_utf8(last));
  all += last;
  const std::string want = t.decode(ids, skip_special);
  EXPECT_EQ(all, want);
  EXPECT_EQ(count_replacements(all), count_replacements(want));
}

TEST(TokenizerUnicode, CategoriesAndWhitespace) {
  using tok::UnicodeCategory;
  EXPECT_EQ(tok::category('A'), UnicodeCategory::kLu);
  EXPECT_EQ(tok::category(0x4E2D), UnicodeCategory::kLo);   // 中
  EXPECT_EQ(tok::category(0x0301), UnicodeCategory::kMn);   // combining acute
  EXPECT_EQ(tok::category(0x0663), UnicodeCategory::kNd);   // Arabic-Indic 3
  EXPECT_EQ(tok::category(0x216B), UnicodeCategory::kNl);   // Roman numeral twelve
  EXPECT_EQ(tok::category(0x1F600), UnicodeCategory::kSo);  // grinning face
  EXPECT_EQ(tok::category(0x200D), UnicodeCategory::kCf);   // zero width joiner
  EXPECT_EQ(tok::category(0xFF0C), UnicodeCategory::kPo);   // fullwidth comma
  EXPECT_EQ(tok::category(0x10FFFF), UnicodeCategory::kCn);
  EXPECT_TRUE(tok::is_whitespace(0x3000));
  EXPECT_TRUE(tok::is_whitespace(0x85));
  EXPECT_FALSE(tok::is_whitespace(0x1C));  // Python's isspace() says yes; Unicode does not
  EXPECT_FALSE(tok::is_whitespace(0x200B));
  EXPECT_EQ(tok::char_class('\n'), tok::kClassWhitespace | tok::kClassCrLf);
  // Unicode 16.0, the version of HF tokenizers' Oniguruma (scripts/gen_unicode_table.py).
  EXPECT_STREQ(tok::unicode_version(), "16.0.0");
  EXPECT_EQ(tok::category(0x105C0), UnicodeCategory::kLo);  // Todhri, new in 16.0
  EXPECT_EQ(tok::category(0x1FAE8), UnicodeCategory::kSo);  // shaking face, new in 15.0
}

TEST(TokenizerUnicode, LossyUtf8UsesMaximalSubparts) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(tok::utf8_lossy("abc"), "abc");
  EXPECT_EQ(tok::utf8_lossy("\xE2\x82"), r);  // truncated 3-byte sequence
  EXPECT_EQ(tok::utf8_lossy("\xE2\x82"
                            "A"),
            r + "A");                                             // one U+FFFD for both bytes
  EXPECT_EQ(tok::utf8_lossy("\xF0\x9F\x98"), r);                  // truncated emoji
  EXPECT_EQ(tok::utf8_lossy("\xC0\x80"), r + r);                  // overlong: two bad bytes
  EXPECT_EQ(tok::utf8_lossy("\xED\xA0\x80"), r + r + r);          // surrogate
  EXPECT_EQ(tok::utf8_lossy("\x80\xBF"), r + r);                  // lone continuations
  EXPECT_EQ(tok::utf8_lossy("\xF4\x90\x80\x80"), r + r + r + r);  // > U+10FFFF
  EXPECT_EQ(tok::utf8_lossy("\xE4\xB8\xAD"), "\xE4\xB8\xAD");
  EXPECT_EQ(tok::incomplete_utf8_suffix("a\xE4\xB8"), 2u);
  EXPECT_EQ(tok::incomplete_utf8_suffix("a\xE4"), 1u);
  EXPECT_EQ(tok::incomplete_utf8_suffix("a\xE4\xB8\xAD"), 0u);
  EXPECT_EQ(tok::incomplete_utf8_suffix("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(tok::incomplete_utf8_suffix("\xED\xA0"), 0u);  // can never complete: not held
  EXPECT_EQ(tok::incomplete_utf8_suffix("\xC0"), 0u);
}

TEST(TokenizerBpe, MergesApplyByRankNotByPosition) {
  // y z (rank 0) beats x y (rank 1) although x y comes first in "xyz".
  auto t = from(tiny_tokenizer({{"y", "z"}, {"x", "y"}}));
  ASSERT_TRUE(t);
  const int32_t yz = *t->token_to_id(sym('y') + sym('z'));
  EXPECT_EQ(t->encode("xyz", false), (Ids{'x', yz}));
  EXPECT_EQ(t->encode("xy", false), (Ids{*t->token_to_id(sym('x') + sym('y'))}));
  EXPECT_EQ(t->decode(t->encode("xyz", false)), "xyz");
}

TEST(TokenizerBpe, EqualRanksMergeLeftmostFirstAndChain) {
  auto t = from(tiny_tokenizer({{"a", "a"}, {"aa", "aa"}, {"a", "b"}, {"ab", "c"}}, json::array(),
                               /*pair_format=*/true));
  ASSERT_TRUE(t);
  const int32_t aa = *t->token_to_id(sym('a') + sym('a'));
  const int32_t aaaa = *t->token_to_id(sym('a') + sym('a') + sym('a') + sym('a'));
  const int32_t abc = *t->token_to_id(sym('a') + sym('b') + sym('c'));
  EXPECT_EQ(t->encode("aaa", false), (Ids{aa, 'a'}));
  EXPECT_EQ(t->encode("aaaa", false), (Ids{aaaa}));
  EXPECT_EQ(t->encode("aaaaa", false), (Ids{aaaa, 'a'}));
  EXPECT_EQ(t->encode("abc", false), (Ids{abc}));
  EXPECT_EQ(t->encode("xabcx", false), (Ids{'x', abc, 'x'}));
  EXPECT_EQ(t->encode("", false), Ids{});
}

TEST(TokenizerBpe, ArbitraryBytesRoundTrip) {
  // Byte-level BPE has a token for every byte, so any byte string, UTF-8 or not, encodes and
  // decodes back exactly; decode() repairs what is not UTF-8 the way HF does.
  auto t = load_or_die(data_dir("tokenizer-small"));
  ASSERT_TRUE(t);
  std::mt19937 rng(5);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 256);
    if (trial % 3 == 0)  // mostly-valid text with stray bytes
      s = "caf\xC3\xA9 \xE4\xB8\xAD" + s.substr(0, 3) + " ok";
    Ids ids = t->encode(s, false);
    EXPECT_EQ(t->decode_bytes(ids), s);
    EXPECT_EQ(t->decode(ids), tok::utf8_lossy(s));
    expect_stream_matches(*t, ids);
  }
}

TEST(TokenizerAdded, LongestMatchAndFlags) {
  json added = json::array({added_token(300, "<a>", false), added_token(301, "<ab>", true),
                            added_token(302, "<l>", false, /*lstrip=*/true),
                            added_token(303, "<r>", false, false, /*rstrip=*/true),
                            added_token(304, "<w>", false, false, false, /*single_word=*/true)});
  auto t = from(tiny_tokenizer({}, added));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("x<ab>y", false), (Ids{'x', 301, 'y'}));
  EXPECT_EQ(t->encode("<a><ab><a", false), (Ids{300, 301, '<', 'a'}));
  EXPECT_EQ(t->encode("x  <l>y", false), (Ids{'x', 302, 'y'}));    // spaces before absorbed
  EXPECT_EQ(t->encode("x<r> \t y", false), (Ids{'x', 303, 'y'}));  // spaces after absorbed
  EXPECT_EQ(t->encode("a <w> b", false), (Ids{'a', ' ', 304, ' ', 'b'}));
  EXPECT_EQ(t->encode("a<w>b", false), (Ids{'a', '<', 'w', '>', 'b'}));  // inside a word
  EXPECT_TRUE(t->is_special(301));
  EXPECT_FALSE(t->is_special(300));
  EXPECT_EQ(t->decode(Ids{'x', 301, 300}), "x<a>");
  EXPECT_EQ(t->decode(Ids{'x', 301, 300}, false), "x<ab><a>");
  EXPECT_EQ(t->vocab_size(), 305);
}

TEST(TokenizerAdded, BosEosFromConfigOrTemplate) {
  json added = json::array({added_token(256, "<s>", true), added_token(257, "</s>", true)});
  auto with_config = from(tiny_tokenizer({}, added),
                          R"({"add_bos_token": true, "add_eos_token": true,
                              "bos_token": {"content": "<s>"}, "eos_token": "</s>"})");
  ASSERT_TRUE(with_config);
  EXPECT_EQ(with_config->encode("hi"), (Ids{256, 'h', 'i', 257}));
  EXPECT_EQ(with_config->encode("hi", false), (Ids{'h', 'i'}));
  EXPECT_EQ(with_config->encode(""), (Ids{256, 257}));
  EXPECT_TRUE(with_config->adds_bos());
  EXPECT_EQ(with_config->bos_token(), "<s>");
  EXPECT_EQ(with_config->eos_id(), 257);

  json j = tiny_tokenizer({}, added);
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}}}}};
  auto with_template = from(j);
  ASSERT_TRUE(with_template);
  EXPECT_EQ(with_template->encode("hi"), (Ids{256, 'h', 'i'}));
  EXPECT_FALSE(from(tiny_tokenizer({}, added))->adds_bos());
}

TEST(TokenizerSmall, MatchesHuggingFaceGolden) {
  // golden.jsonl: HF tokenizers' ids (BOS + encode) and decodes, by gen_tokenizer_testdata.py.
  auto t = load_or_die(data_dir("tokenizer-small"));
  ASSERT_TRUE(t);
  std::ifstream in(data_dir("tokenizer-small/golden.jsonl"));
  ASSERT_TRUE(in) << "missing tests/data/tokenizer-small/golden.jsonl";
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    json g = json::parse(line);
    const std::string text = g["text"];
    const Ids want = g["ids"].get<Ids>();
    EXPECT_EQ(t->encode(text), want) << "text: " << text;
    EXPECT_EQ(t->decode(want), g["decoded"].get<std::string>());
    EXPECT_EQ(t->decode(want, false), g["decoded_all"].get<std::string>());
    expect_stream_matches(*t, want);
    expect_stream_matches(*t, want, false);
    ++n;
  }
  EXPECT_GE(n, 20);
}

TEST(TokenizerStream, HoldsBackSplitCharacters) {
  // The small vocabulary has no CJK or emoji tokens: each such character arrives byte by byte.
  auto t = load_or_die(data_dir("tokenizer-small"));
  ASSERT_TRUE(t);
  const std::string text = "龍🦀 ok";
  Ids ids = t->encode(text, false);
  ASSERT_GT(ids.size(), 8u);
  StreamDecoder sd(*t);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(sd.push(id));
  EXPECT_EQ(pieces[0], "");  // the first byte of 龍 alone is not a character yet
  EXPECT_EQ(pieces[1], "");
  EXPECT_EQ(pieces[2], "龍");
  EXPECT_EQ(pieces[3], "");  // 🦀 comes as 2 + 1 + 1 bytes
  EXPECT_EQ(pieces[4], "");
  EXPECT_EQ(pieces[5], "🦀");
  std::string all;
  for (const auto& p : pieces) all += p;
  EXPECT_EQ(all + sd.finish(), text);

  // A sequence that never completes comes out as U+FFFD at the end, as decode() gives it.
  StreamDecoder broken(*t);
  EXPECT_EQ(broken.push(ids[0]), "");
  EXPECT_EQ(broken.push(ids[1]), "");
  EXPECT_EQ(broken.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(t->decode(Ids{ids[0], ids[1]}), "\xEF\xBF\xBD");

  std::mt19937 rng(3);
  for (int trial = 0; trial < 500; ++trial) {
    Ids random(1 + rng() % 20);
    for (int32_t& id : random) id = static_cast<int32_t>(rng() % t->vocab_size());
    expect_stream_matches(*t, random);
    expect_stream_matches(*t, random, false);
  }
}

TEST(TokenizerErrors, NameTheProblem) {
  auto missing = Tokenizer::load("/nonexistent/model");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/model"), std::string::npos);

  auto bad_json = Tokenizer::from_json("{not json", "", "bad.json");
  ASSERT_FALSE(bad_json.ok());
  EXPECT_NE(bad_json.status().message().find("bad.json"), std::string::npos);

  json j = tiny_tokenizer({});
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "\\w+"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  auto bad_regex = Tokenizer::from_json(j.dump(), "", "x.json");
  ASSERT_FALSE(bad_regex.ok());
  EXPECT_NE(bad_regex.status().message().find("unsupported Split regex"), std::string::npos);

  j = tiny_tokenizer({{"a", "b"}});
  j["model"]["merges"].push_back("q zzz");
  auto bad_merge = Tokenizer::from_json(j.dump(), "", "m.json");
  ASSERT_FALSE(bad_merge.ok());
  EXPECT_NE(bad_merge.status().message().find("merge 1"), std::string::npos);

  j = tiny_tokenizer({});
  j["model"]["vocab"].erase(sym('A'));
  auto no_byte = Tokenizer::from_json(j.dump(), "", "v.json");
  ASSERT_FALSE(no_byte.ok());
  EXPECT_NE(no_byte.status().message().find("byte 65"), std::string::npos);

  auto bad_config =
      Tokenizer::from_json(tiny_tokenizer({}).dump(), R"({"bos_token": "<nope>"})", "c.json");
  ASSERT_FALSE(bad_config.ok());
  EXPECT_NE(bad_config.status().message().find("<nope>"), std::string::npos);
}

TEST(TokenizerCli, TokenizeDetokenizeAndErrors) {
  const std::string dir = data_dir("tokenizer-small");
  auto r = testing::run_command(std::string(AFD_BINARY) + " tokenize --tokenizer " + dir +
                                " --text 'The quick brown fox.'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "0,293,573,582,330,15\n");
  r = testing::run_command(std::string(AFD_BINARY) + " detokenize --tokenizer " + dir +
                           " --ids 0,293,573,582,330,15");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "The quick brown fox.\n");
  r = testing::run_command(std::string(AFD_BINARY) + " detokenize --tokenizer " + dir +
                           " --ids 0,99999");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err.rfind("afd: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("99999"), std::string::npos);
  testing::TempDir tmp;
  std::ofstream(tmp / "prompt.txt", std::ios::binary) << "The quick brown fox.";
  r = testing::run_command(std::string(AFD_BINARY) + " tokenize --no-bos --json --tokenizer " +
                           dir + " --file " + (tmp / "prompt.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"ids\":[293,573,582,330,15]}\n");
  r = testing::run_command(std::string(AFD_BINARY) + " tokenize --tokenizer /nonexistent --text x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err.rfind("afd: error: ", 0), 0u) << r.err;
}

}  // namespace
}  // namespace afd
