// afd tokenize / afd detokenize: the serving tokenizer (src/serve/tokenizer.h) from the command
// line, for debugging prompts and for the tokenizer oracle test (tests/oracle).
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "serve/chat_template.h"
#include "serve/tokenizer.h"
#include "tools/afd/commands.h"

namespace afd::cli {

namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(NotFound("cannot open {}", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::shared_ptr<const Tokenizer> load_tokenizer(const std::string& path) {
  auto t = Tokenizer::load(path);
  check(t.status());
  return *t;
}

// Calls f(line_number, parsed JSON) for each non-empty line of a JSON-lines file.
template <typename F>
void for_each_json_line(const std::string& path, F&& f) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(NotFound("cannot open {}", path));
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty())
      throw Error(InvalidArgument("{}:{}: empty line (one JSON value per line)", path, n));
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      throw Error(InvalidArgument("{}:{}: not JSON: {}", path, n, e.what()));
    }
    f(n, j);
  }
}

void print_rate(const char* what, size_t items, size_t tokens, double seconds) {
  std::fprintf(stderr, "%zu %s, %zu tokens in %.3f s: %.0f %s/s, %.0f tokens/s\n", items, what,
               tokens, seconds, seconds > 0 ? items / seconds : 0.0, what,
               seconds > 0 ? tokens / seconds : 0.0);
}

struct TokenizeArgs {
  std::string tokenizer, text, file, jsonl, chat, chat_template;
  bool has_text = false, json = false, no_bos = false, no_generation_prompt = false, time = false;
};

std::string ids_csv(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

std::vector<ChatMessage> parse_messages(const json& j, const std::string& path,
                                        bool* add_generation_prompt) {
  const json* list = &j;
  if (j.is_object()) {
    if (!j.contains("messages"))
      throw Error(
          InvalidArgument("{}: expected {{\"messages\": [...]}} or a list of messages", path));
    list = &j["messages"];
    if (j.contains("add_generation_prompt"))
      *add_generation_prompt = j["add_generation_prompt"].get<bool>();
  }
  if (!list->is_array())
    throw Error(InvalidArgument("{}: messages must be a list of {{role, content}}", path));
  std::vector<ChatMessage> msgs;
  for (const json& m : *list) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      throw Error(
          InvalidArgument("{}: message {} needs string \"role\" and \"content\"", path, dump(m)));
    msgs.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return msgs;
}

int run_tokenize(const TokenizeArgs& a) {
  int inputs =
      int(a.has_text) + int(!a.file.empty()) + int(!a.jsonl.empty()) + int(!a.chat.empty());
  if (inputs != 1)
    throw Error(InvalidArgument("give exactly one of --text, --file, --jsonl, --chat"));
  auto tok = load_tokenizer(a.tokenizer);
  const bool add_special = !a.no_bos;

  if (!a.jsonl.empty()) {
    // Batch mode: one JSON string (or {"text": ...}) per line in, one JSON array of ids out.
    std::vector<int32_t> ids;
    std::string out;
    size_t items = 0, tokens = 0;
    double seconds = 0;
    for_each_json_line(a.jsonl, [&](size_t n, const json& j) {
      const json& t = j.is_object() ? j.value("text", json()) : j;
      if (!t.is_string())
        throw Error(
            InvalidArgument("{}:{}: expected a JSON string or {{\"text\": ...}}", a.jsonl, n));
      const std::string& text = t.get_ref<const std::string&>();
      ids.clear();
      auto t0 = std::chrono::steady_clock::now();
      tok->encode(text, add_special, &ids);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++items;
      tokens += ids.size();
      out = "[" + ids_csv(ids) + "]\n";
      std::fwrite(out.data(), 1, out.size(), stdout);
    });
    if (a.time) print_rate("texts", items, tokens, seconds);
    return 0;
  }

  std::string text;
  json extra = json::object();
  bool add = add_special;
  if (a.has_text) {
    text = a.text;
  } else if (!a.file.empty()) {
    text = read_file(a.file);
  } else {
    bool gen = !a.no_generation_prompt;
    json j;
    try {
      j = json::parse(read_file(a.chat));
    } catch (const json::exception& e) {
      throw Error(InvalidArgument("{}: not JSON: {}", a.chat, e.what()));
    }
    std::vector<ChatMessage> msgs = parse_messages(j, a.chat, &gen);
    auto tmpl = ChatTemplate::for_model(a.tokenizer, a.chat_template);
    check(tmpl.status());
    auto prompt = tmpl->render(msgs, gen);
    check(prompt.status());
    text = *prompt;
    add = false;  // the template writes BOS itself, as HF's apply_chat_template
    extra["template"] = tmpl->name();
    extra["prompt"] = text;
  }
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = tok->encode(text, add);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    json j = extra;
    j["ids"] = ids;
    std::printf("%s\n", dump(j).c_str());
  } else {
    std::printf("%s\n", ids_csv(ids).c_str());
  }
  if (a.time) print_rate("texts", 1, ids.size(), seconds);
  return 0;
}

struct DetokenizeArgs {
  std::string tokenizer, ids, jsonl;
  bool has_ids = false, json = false, keep_special = false;
};

std::vector<int32_t> parse_id_list(const std::string& s, const Tokenizer& tok) {
  std::vector<int32_t> ids;
  if (s.empty()) return ids;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno)
      throw Error(InvalidArgument("--ids \"{}\": \"{}\" is not a token id", s, item));
    if (v < 0 || v >= tok.vocab_size())
      throw Error(InvalidArgument("--ids: {} is not a token id of this tokenizer (0..{})", v,
                                  tok.vocab_size() - 1));
    ids.push_back(static_cast<int32_t>(v));
    i = j + 1;
  }
  return ids;
}

// The decoded text and the pieces a StreamDecoder returns token by token.
json decode_both(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  StreamDecoder sd(tok, skip);
  json pieces = json::array();
  for (int32_t id : ids) {
    std::string p = sd.push(id);
    if (!p.empty()) pieces.push_back(p);
  }
  std::string last = sd.finish();
  if (!last.empty()) pieces.push_back(last);
  return {{"text", tok.decode(ids, skip)}, {"pieces", pieces}};
}

int run_detokenize(const DetokenizeArgs& a) {
  if (int(a.has_ids) + int(!a.jsonl.empty()) != 1)
    throw Error(InvalidArgument("give exactly one of --ids, --jsonl"));
  auto tok = load_tokenizer(a.tokenizer);
  const bool skip = !a.keep_special;
  if (!a.jsonl.empty()) {
    // Batch mode: one JSON array of ids per line in, {"text", "pieces"} per line out.
    for_each_json_line(a.jsonl, [&](size_t n, const json& j) {
      if (!j.is_array())
        throw Error(InvalidArgument("{}:{}: expected a JSON array of ids", a.jsonl, n));
      std::vector<int32_t> ids;
      for (const json& v : j) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tok->vocab_size())
          throw Error(InvalidArgument("{}:{}: {} is not a token id of this tokenizer (0..{})",
                                      a.jsonl, n, dump(v), tok->vocab_size() - 1));
        ids.push_back(v.get<int32_t>());
      }
      std::printf("%s\n", dump(decode_both(*tok, ids, skip)).c_str());
    });
    return 0;
  }
  std::vector<int32_t> ids = parse_id_list(a.ids, *tok);
  if (a.json) {
    std::printf("%s\n", dump(decode_both(*tok, ids, skip)).c_str());
  } else {
    std::string text = tok->decode(ids, skip);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
  }
  return 0;
}

}  // namespace

Command register_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* c = app.add_subcommand(
      "tokenize",
      "Print the token ids of a text (byte-level BPE of a tokenizer.json; BOS as "
      "tokenizer_config.json says). docs/tokenizer.md");
  c->add_option("--tokenizer", a->tokenizer,
                "Model directory holding tokenizer.json (+ tokenizer_config.json), or a "
                "tokenizer.json file")
      ->required();
  c->add_option("--text", a->text, "The text")->each([a](const std::string&) {
    a->has_text = true;
  });
  c->add_option("--file", a->file, "Tokenize the whole content of this file as one text");
  c->add_option("--jsonl", a->jsonl,
                "Batch: each line a JSON string (or {\"text\": ...}); prints one JSON array of ids "
                "per line");
  c->add_option("--chat", a->chat,
                "Render a chat first: a JSON file [{role, content}, ...] or {\"messages\": [...], "
                "\"add_generation_prompt\": bool}; --json also prints the prompt text");
  c->add_option("--chat-template", a->chat_template,
                "With --chat: step3, deepseek-v3 or a template file (default: from "
                "tokenizer_config.json)");
  c->add_flag("--no-generation-prompt", a->no_generation_prompt,
              "With --chat: do not open the assistant's turn at the end");
  c->add_flag("--json", a->json, "Print {\"ids\": [...]} (with --chat also template, prompt)");
  c->add_flag("--no-bos", a->no_bos, "Do not add BOS/EOS (add_special_tokens = false)");
  c->add_flag("--time", a->time, "Print the tokenization rate to stderr");
  return {c, [a] { return run_tokenize(*a); }};
}

Command register_detokenize(CLI::App& app) {
  auto a = std::make_shared<DetokenizeArgs>();
  CLI::App* c = app.add_subcommand(
      "detokenize",
      "Print the text of token ids (special tokens skipped unless --keep-special). "
      "docs/tokenizer.md");
  c->add_option("--tokenizer", a->tokenizer,
                "Model directory holding tokenizer.json, or a tokenizer.json file")
      ->required();
  c->add_option("--ids", a->ids, "Comma-separated token ids")->each([a](const std::string&) {
    a->has_ids = true;
  });
  c->add_option("--jsonl", a->jsonl,
                "Batch: each line a JSON array of ids; prints {\"text\", \"pieces\"} per line");
  c->add_flag("--json", a->json,
              "Print {\"text\": ..., \"pieces\": [...]}: pieces are what streaming "
              "detokenization returns token by token");
  c->add_flag("--keep-special", a->keep_special, "Keep special tokens (BOS, EOS, ...) in the text");
  return {c, [a] { return run_detokenize(*a); }};
}

}  // namespace afd::cli
