// The OpenAI wire format without a server: parsing, validation, stop strings, bodies.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serve/openai_protocol.h"

namespace afd::openai {
namespace {

using nlohmann::json;

ParsedRequest ok(Kind k, const std::string& body) {
  auto r = parse_request(k, body);
  if (auto* e = std::get_if<ApiError>(&r)) ADD_FAILURE() << e->message;
  return std::get<ParsedRequest>(r);
}

ApiError err(Kind k, const std::string& body) {
  auto r = parse_request(k, body);
  EXPECT_TRUE(std::holds_alternative<ApiError>(r)) << body;
  return std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r) : ApiError{};
}

TEST(OpenAiProtocol, ParsesEveryPromptForm) {
  EXPECT_EQ(*ok(Kind::kCompletion, R"({"prompt": "hi"})").prompt_text, "hi");
  EXPECT_EQ(*ok(Kind::kCompletion, R"({"prompt": ["hi"]})").prompt_text, "hi");
  EXPECT_EQ(ok(Kind::kCompletion, R"({"prompt": [1, 2]})").prompt_ids,
            (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(ok(Kind::kCompletion, R"({"prompt": [[3]]})").prompt_ids, std::vector<int32_t>{3});
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": [[3], [4]]})").param, "prompt");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": []})").param, "prompt");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": [1.5]})").param, "prompt");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": null})").param, "prompt");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": 7})").param, "prompt");
}

TEST(OpenAiProtocol, ParsesSamplingFieldsAndDefaults) {
  auto d = ok(Kind::kCompletion, R"({"prompt": "a"})");
  EXPECT_FALSE(d.max_tokens);
  EXPECT_FLOAT_EQ(d.temperature, 1.0f);
  EXPECT_FLOAT_EQ(d.top_p, 1.0f);
  EXPECT_EQ(d.top_k, 0);
  EXPECT_FALSE(d.seed);
  EXPECT_FALSE(d.stream);
  auto r = ok(Kind::kCompletion,
              R"({"prompt": "a", "max_tokens": 9, "temperature": 0, "top_p": 0.5, "top_k": 3,
                  "seed": -1, "stop": "x", "n": 1, "stream": true,
                  "stream_options": {"include_usage": true}, "user": "ignored",
                  "presence_penalty": 0, "logprobs": null, "echo": false})");
  EXPECT_EQ(*r.max_tokens, 9);
  EXPECT_FLOAT_EQ(r.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.top_p, 0.5f);
  EXPECT_EQ(r.top_k, 3);
  EXPECT_EQ(*r.seed, ~uint64_t{0});
  EXPECT_EQ(r.stop, std::vector<std::string>{"x"});
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  // max_completion_tokens wins over max_tokens, in either order.
  EXPECT_EQ(*ok(Kind::kChat, R"({"messages": [{"role": "user", "content": "x"}],
                                 "max_completion_tokens": 4, "max_tokens": 8})")
                 .max_tokens,
            4);
  EXPECT_EQ(ok(Kind::kCompletion, R"({"prompt": "a", "stop": ["", "y", "z"]})").stop,
            (std::vector<std::string>{"y", "z"}));
}

TEST(OpenAiProtocol, RefusesInvalidAndUnsupportedFields) {
  auto e = err(Kind::kCompletion, "{bad");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.code, "invalid_json");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "n": 2})").param, "n");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "max_tokens": 1.5})").param, "max_tokens");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "temperature": 2.5})").param, "temperature");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "top_k": -2})").param, "top_k");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "seed": "x"})").param, "seed");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "stream": "yes"})").param, "stream");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "model": 3})").param, "model");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "echo": true})").param, "echo");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "best_of": 2})").param, "best_of");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "frequency_penalty": 0.5})").param,
            "frequency_penalty");
  EXPECT_EQ(err(Kind::kCompletion, R"({"prompt": "a", "logit_bias": {"1": 2}})").param,
            "logit_bias");
  std::string many = R"({"prompt": "a", "stop": [)";
  for (int i = 0; i < 17; ++i) many += std::string(i ? "," : "") + "\"s\"";
  EXPECT_EQ(err(Kind::kCompletion, many + "]}").param, "stop");
  EXPECT_EQ(
      err(Kind::kChat, R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})")
          .param,
      "logprobs");
  EXPECT_EQ(err(Kind::kChat, R"({"messages": [{"role": "user", "content": "x"}],
                                 "tools": [{"type": "function"}]})")
                .param,
            "tools");
  EXPECT_EQ(err(Kind::kChat, R"({"messages": "hi"})").param, "messages");
  EXPECT_EQ(err(Kind::kChat, R"({"messages": [{"role": "user", "content": 5}]})").param,
            "messages[0].content");
}

TEST(OpenAiProtocol, ChatMessagesJoinTextParts) {
  auto r = ok(Kind::kChat, R"({"messages": [
      {"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null}]})");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
}

TEST(OpenAiProtocol, ErrorBodyHasTheOpenAiShape) {
  json j = json::parse(
      error_body({413, "too long", "invalid_request_error", "prompt", "context_length_exceeded"}));
  EXPECT_EQ(j["error"]["message"], "too long");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "prompt");
  EXPECT_EQ(j["error"]["code"], "context_length_exceeded");
  json n = json::parse(error_for_status(404, "nope").body);
  EXPECT_TRUE(n["error"]["param"].is_null());
  EXPECT_EQ(error_for_status(503, "down").status, 503);
  EXPECT_EQ(json::parse(error_for_status(503, "down").body)["error"]["type"], "server_error");
}

// Feeds pieces; returns the released text and whether a stop string matched.
std::pair<std::string, bool> run_stops(std::vector<std::string> stops,
                                       std::vector<std::string> pieces) {
  StopMatcher m(std::move(stops));
  std::string out;
  for (auto& p : pieces) out += m.push(p);
  out += m.flush();
  return {out, m.matched()};
}

TEST(OpenAiProtocol, StopMatcherFindsStringsAcrossPieces) {
  EXPECT_EQ(run_stops({}, {"a", "b"}), (std::pair<std::string, bool>{"ab", false}));
  EXPECT_EQ(run_stops({"lo w"}, {"hel", "lo", " ", "world"}),
            (std::pair<std::string, bool>{"hel", true}));
  EXPECT_EQ(run_stops({"xyz"}, {"abxy", "q"}), (std::pair<std::string, bool>{"abxyq", false}));
  EXPECT_EQ(run_stops({"xyz"}, {"abxy"}), (std::pair<std::string, bool>{"abxy", false}));
  // The earliest occurrence wins, whichever stop string it is.
  EXPECT_EQ(run_stops({"c", "abc"}, {"xa", "bc"}), (std::pair<std::string, bool>{"x", true}));
  EXPECT_EQ(run_stops({"abcd", "bc"}, {"abc"}), (std::pair<std::string, bool>{"a", true}));
  EXPECT_EQ(run_stops({"END"}, {"END", "more"}), (std::pair<std::string, bool>{"", true}));
  EXPECT_EQ(run_stops({"\xe4\xb8\x96"}, {"\xe4\xbd\xa0", "\xe5\xa5\xbd\xe4\xb8\x96", "x"}),
            (std::pair<std::string, bool>{"\xe4\xbd\xa0\xe5\xa5\xbd", true}));
}

TEST(OpenAiProtocol, StopMatcherHoldsBackOnlyWhatCouldStillMatch) {
  StopMatcher m({"abc"});
  EXPECT_EQ(m.push("xxa"), "xx");
  EXPECT_EQ(m.push("b"), "");
  EXPECT_EQ(m.push("x"), "abx");  // "abx" can no longer become "abc"
  EXPECT_EQ(m.push("ab"), "");
  EXPECT_EQ(m.push("c tail"), "");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.push("more"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(OpenAiProtocol, SseChunks) {
  ResponseMeta meta{Kind::kChat, "chatcmpl-1", 5, "m"};
  std::string first = sse_delta(meta, "", std::nullopt, true, true);
  ASSERT_EQ(first.rfind("data: ", 0), 0u);
  ASSERT_EQ(first.substr(first.size() - 2), "\n\n");
  json j = json::parse(first.substr(6));
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["delta"]["content"], "");
  EXPECT_TRUE(j["usage"].is_null());
  json last = json::parse(sse_delta(meta, "", std::string("length"), false, false).substr(6));
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(last.contains("usage"));
  json u = json::parse(sse_usage(meta, {3, 4}).substr(6));
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 7);
  ResponseMeta cm{Kind::kCompletion, "cmpl-1", 5, "m"};
  json c = json::parse(sse_delta(cm, "hi", std::nullopt, false, false).substr(6));
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "hi");
  json full = json::parse(completion_body(cm, "hi", "stop", {1, 2}));
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(full["usage"]["completion_tokens"], 2);
}

}  // namespace
}  // namespace afd::openai
