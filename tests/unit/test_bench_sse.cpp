// afd bench's stream reading: SSE framing cut at every byte boundary, the OpenAI chunk shapes
// (completions, chat role/content, usage, [DONE], errors), and the timings taken from them.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "serve/bench_client_sse.h"

namespace afd::serve::bench {
namespace {

std::vector<std::string> parse_whole(const std::string& s) {
  SseParser p;
  std::vector<std::string> out;
  p.feed(s, out);
  return out;
}

// Feeds `s` in pieces cut at the given positions.
std::vector<std::string> parse_cut(const std::string& s, const std::vector<size_t>& cuts) {
  SseParser p;
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t c : cuts) {
    p.feed(std::string_view(s).substr(at, c - at), out);
    at = c;
  }
  p.feed(std::string_view(s).substr(at), out);
  return out;
}

const std::string kStream =
    ": keep-alive comment\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"Hel\"}]}\n\n"
    "event: message\nid: 7\nretry: 100\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"lo\"}]}\r\n\r\n"
    "data:{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\r\r"
    "data: [DONE]\n\n";

const std::vector<std::string> kEvents = {
    "{\"choices\":[{\"index\":0,\"text\":\"Hel\"}]}",
    "{\"choices\":[{\"index\":0,\"text\":\"lo\"}]}",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}",
    "[DONE]",
};

TEST(BenchSse, WholeStream) { EXPECT_EQ(parse_whole(kStream), kEvents); }

TEST(BenchSse, EverySplitIntoTwoPieces) {
  for (size_t c = 0; c <= kStream.size(); ++c)
    EXPECT_EQ(parse_cut(kStream, {c}), kEvents) << "cut at " << c;
}

TEST(BenchSse, EverySplitIntoThreePieces) {
  for (size_t a = 0; a <= kStream.size(); ++a)
    for (size_t b = a; b <= kStream.size(); ++b)
      ASSERT_EQ(parse_cut(kStream, {a, b}), kEvents) << "cuts at " << a << ", " << b;
}

TEST(BenchSse, ByteByByte) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < kStream.size(); ++i) cuts.push_back(i);
  EXPECT_EQ(parse_cut(kStream, cuts), kEvents);
}

TEST(BenchSse, MultiLineDataIsJoinedWithNewlines) {
  EXPECT_EQ(parse_whole("data: a\ndata: b\ndata\n\n"), std::vector<std::string>{"a\nb\n"});
}

TEST(BenchSse, EventWaitsForItsBlankLine) {
  SseParser p;
  std::vector<std::string> out;
  p.feed("data: x\n", out);
  EXPECT_TRUE(out.empty());
  EXPECT_GT(p.pending_bytes(), 0u);
  p.feed("\n", out);
  EXPECT_EQ(out, std::vector<std::string>{"x"});
  EXPECT_EQ(p.pending_bytes(), 0u);
}

TEST(BenchSse, BlankLinesWithoutDataMakeNoEvent) {
  EXPECT_TRUE(parse_whole("\n\n: ping\n\nevent: x\n\n").empty());
  EXPECT_EQ(parse_whole("data:\n\n"), std::vector<std::string>{""});
}

TEST(BenchSse, OnlyOneLeadingSpaceIsStripped) {
  EXPECT_EQ(parse_whole("data:  two\n\n"), std::vector<std::string>{" two"});
}

TEST(BenchChunk, Done) {
  EXPECT_EQ(parse_chunk("[DONE]").kind, Chunk::Kind::kDone);
  EXPECT_EQ(parse_chunk(" [DONE] ").kind, Chunk::Kind::kDone);
}

TEST(BenchChunk, CompletionText) {
  Chunk c = parse_chunk(R"({"id":"c","choices":[{"index":0,"text":"hi","finish_reason":null}]})");
  EXPECT_EQ(c.kind, Chunk::Kind::kData);
  EXPECT_TRUE(c.has_text);
  EXPECT_EQ(c.completion_tokens, -1);
  EXPECT_TRUE(c.error.empty());
  EXPECT_FALSE(parse_chunk(R"({"choices":[{"index":0,"text":""}]})").has_text);
  EXPECT_FALSE(parse_chunk(R"({"choices":[{"index":0,"text":null}]})").has_text);
}

TEST(BenchChunk, ChatRoleChunkCarriesNoText) {
  EXPECT_FALSE(parse_chunk(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})")
                   .has_text);
  EXPECT_TRUE(parse_chunk(R"({"choices":[{"index":0,"delta":{"content":"x"}}]})").has_text);
  EXPECT_TRUE(
      parse_chunk(R"({"choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]})").has_text);
}

TEST(BenchChunk, Usage) {
  Chunk c = parse_chunk(
      R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}})");
  EXPECT_FALSE(c.has_text);
  EXPECT_EQ(c.prompt_tokens, 12);
  EXPECT_EQ(c.completion_tokens, 34);
  EXPECT_EQ(parse_chunk(R"({"choices":[],"usage":null})").completion_tokens, -1);
}

TEST(BenchChunk, Errors) {
  EXPECT_EQ(parse_chunk(R"({"error":{"message":"boom","type":"x"}})").error, "boom");
  EXPECT_EQ(parse_chunk(R"({"object":"error","message":"old style"})").error, "old style");
  Chunk m = parse_chunk("{not json");
  EXPECT_EQ(m.kind, Chunk::Kind::kMalformed);
  EXPECT_NE(m.error.find("malformed"), std::string::npos);
  EXPECT_EQ(parse_chunk("[1,2]").kind, Chunk::Kind::kMalformed);
}

std::string event(const std::string& data) { return "data: " + data + "\n\n"; }
const std::string kText = R"({"choices":[{"index":0,"text":"t"}]})";

TEST(BenchAccumulator, TimingsAndUsage) {
  StreamAccumulator a;
  a.on_bytes(event(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})"),
             0.010);
  a.on_bytes(event(kText), 0.100);
  a.on_bytes(event(kText) + event(kText), 0.130);  // two chunks in one read share its time
  a.on_bytes(event(kText).substr(0, 9), 0.150);    // a chunk completed by the next read
  a.on_bytes(event(kText).substr(9), 0.170);
  a.on_bytes(event(R"({"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":6}})"), 0.2);
  a.on_bytes(event("[DONE]"), 0.21);
  EXPECT_TRUE(a.saw_done());
  RequestResult r = a.finish(0.25, /*known_prompt_len=*/99);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_DOUBLE_EQ(r.ttft_s, 0.100);
  ASSERT_EQ(r.itl_s.size(), 3u);
  EXPECT_NEAR(r.itl_s[0], 0.030, 1e-12);
  EXPECT_NEAR(r.itl_s[1], 0.0, 1e-12);
  EXPECT_NEAR(r.itl_s[2], 0.040, 1e-12);
  EXPECT_DOUBLE_EQ(r.e2e_s, 0.25);
  EXPECT_EQ(r.prompt_tokens, 7);  // usage wins over the client's count
  EXPECT_EQ(r.output_tokens, 6);  // usage, not the four text chunks
  EXPECT_TRUE(r.usage_reported);
  EXPECT_NEAR(tpot_s(r), (0.25 - 0.100) / 5, 1e-12);
}

TEST(BenchAccumulator, WithoutUsageCountsTextChunks) {
  StreamAccumulator a;
  for (int i = 0; i < 3; ++i) a.on_bytes(event(kText), 0.1 * (i + 1));
  a.on_bytes(event("[DONE]"), 0.4);
  RequestResult r = a.finish(0.4, 11);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.output_tokens, 3);
  EXPECT_FALSE(r.usage_reported);
  EXPECT_EQ(r.prompt_tokens, 11);
}

TEST(BenchAccumulator, MissingDoneFails) {
  StreamAccumulator a;
  a.on_bytes(event(kText), 0.1);
  RequestResult r = a.finish(0.2, -1);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("[DONE]"), std::string::npos);
  EXPECT_LT(tpot_s(r), 0);
}

TEST(BenchAccumulator, ErrorChunkFails) {
  StreamAccumulator a;
  a.on_bytes(event(kText), 0.1);
  a.on_bytes(event(R"({"error":{"message":"rank 2 is down"}})"), 0.2);
  a.on_bytes(event("[DONE]"), 0.3);
  RequestResult r = a.finish(0.3, -1);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "rank 2 is down");
}

TEST(BenchAccumulator, MalformedChunkFails) {
  StreamAccumulator a;
  a.on_bytes(event("{oops"), 0.1);
  a.on_bytes(event("[DONE]"), 0.3);
  EXPECT_FALSE(a.finish(0.3, -1).ok);
}

TEST(BenchAccumulator, NothingAfterDoneCounts) {
  StreamAccumulator a;
  a.on_bytes(event(kText) + event("[DONE]") + event(kText) + event("{bad"), 0.1);
  RequestResult r = a.finish(0.2, -1);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.output_tokens, 1);
  EXPECT_TRUE(r.itl_s.empty());
  EXPECT_LT(tpot_s(r), 0);  // one token has no time per output token
}

TEST(BenchAccumulator, NoTextMeansNoTtft) {
  StreamAccumulator a;
  a.on_bytes(event(R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0}})") +
                 event("[DONE]"),
             0.1);
  RequestResult r = a.finish(0.1, -1);
  EXPECT_TRUE(r.ok);
  EXPECT_LT(r.ttft_s, 0);
  EXPECT_EQ(r.output_tokens, 0);
}

}  // namespace
}  // namespace afd::serve::bench
