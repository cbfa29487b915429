#include "serve/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "serve/tok_bpe.h"
#include "serve/tok_json.h"
#include "serve/tok_pretokenize.h"
#include "serve/tok_unicode.h"

namespace afd {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Added-token matcher: a byte trie giving HF's aho-corasick LeftmostLongest matches.
class AddedTrie {
 public:
  void add(std::string_view s, int32_t index) {
    if (s.empty()) return;
    first_[static_cast<uint8_t>(s[0])] = true;
    int32_t node = 0;
    for (char ch : s) {
      uint8_t b = static_cast<uint8_t>(ch);
      int32_t child = find_child(node, b);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(b, child);
        nodes_.emplace_back();
      }
      node = child;
    }
    if (nodes_[node].index < 0) nodes_[node].index = index;
  }
  bool empty() const { return nodes_.size() == 1; }
  bool may_start(uint8_t b) const { return first_[b]; }
  // Longest entry that text[i..end) starts with: its index, and its length in *len (0: none).
  int32_t longest(std::string_view text, size_t i, size_t end, size_t* len) const {
    int32_t node = 0, best = -1;
    *len = 0;
    for (size_t j = i; j < end; ++j) {
      node = find_child(node, static_cast<uint8_t>(text[j]));
      if (node < 0) break;
      if (nodes_[node].index >= 0) {
        best = nodes_[node].index;
        *len = j + 1 - i;
      }
    }
    return best;
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t index = -1;
  };
  int32_t find_child(int32_t node, uint8_t b) const {
    for (auto [c, child] : nodes_[node].children)
      if (c == b) return child;
    return -1;
  }
  std::vector<Node> nodes_ = std::vector<Node>(1);
  bool first_[256] = {};
};

// A span of the input still to tokenize (id < 0) or an added token already matched.
struct Segment {
  uint32_t begin, end;
  int32_t id;
};

bool is_word_char(char32_t c) {
  return c != tok::kInvalidCodePoint &&
         (tok::char_class(c) & (tok::kClassLetter | tok::kClassNumber));
}

// Code point ending just before byte i of s (i > 0), and where it starts.
char32_t char_before(std::string_view s, size_t i, size_t* start) {
  size_t j = i - 1;
  while (j > 0 && i - j < 4 && (static_cast<uint8_t>(s[j]) & 0xC0) == 0x80) --j;
  char32_t c;
  size_t len = tok::decode_utf8(s, j, &c);
  if (j + len != i) {  // not a whole character: treat the last byte alone
    *start = i - 1;
    return tok::kInvalidCodePoint;
  }
  *start = j;
  return c;
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open {}", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return IOError("cannot read {}", path);
  return ss.str();
}

// bos_token / eos_token of tokenizer_config.json: a string, an AddedToken object or null.
std::string config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return "";
}

}  // namespace

struct Tokenizer::Impl {
  tok::BpeModel model;
  tok::PreTokenizer pre;
  std::vector<AddedToken> added;
  AddedTrie raw_trie;         // added tokens with normalized == false: matched on the raw text
  AddedTrie normalized_trie;  // normalized == true: matched on the (identity-)normalized rest
  std::vector<std::string> id_token;    // [vocab_size]
  std::vector<std::string> id_bytes;    // [vocab_size]: what each id decodes to
  std::vector<uint8_t> special;         // [vocab_size]
  std::vector<int32_t> prefix, suffix;  // added by encode(add_special_tokens = true)
  int32_t bos_id = -1, eos_id = -1;
  std::string bos_token, eos_token;
  bool adds_bos = false, adds_eos = false;

  // HF AddedVocabulary::find_matches over the Segment `seg` (id < 0), with one trie.
  void split_added(std::string_view text, const Segment& seg, const AddedTrie& trie,
                   std::vector<Segment>* out) const {
    if (trie.empty()) {
      out->push_back(seg);
      return;
    }
    size_t start_offset = seg.begin, i = seg.begin;
    const size_t end = seg.end;
    while (i < end) {
      if (!trie.may_start(static_cast<uint8_t>(text[i]))) {
        ++i;
        continue;
      }
      size_t len;
      int32_t index = trie.longest(text, i, end, &len);
      if (index < 0) {
        ++i;
        continue;
      }
      const AddedToken& t = added[index];
      size_t start = i, stop = i + len;
      if (t.single_word) {
        size_t unused;
        bool word_before = start > seg.begin && is_word_char(char_before(text, start, &unused));
        char32_t next = tok::kInvalidCodePoint;
        if (stop < end) tok::decode_utf8(text, stop, &next);
        if (word_before || (stop < end && is_word_char(next))) {
          i = stop;  // the automaton resumes after a rejected match
          continue;
        }
      }
      if (t.lstrip) {
        size_t s = start;
        while (s > seg.begin) {
          size_t cs;
          char32_t c = char_before(text, s, &cs);
          if (c == tok::kInvalidCodePoint || !tok::is_whitespace(c)) break;
          s = cs;
        }
        start = std::max(s, start_offset);
      }
      if (t.rstrip) {
        while (stop < end) {
          char32_t c;
          size_t l = tok::decode_utf8(text, stop, &c);
          if (c == tok::kInvalidCodePoint || !tok::is_whitespace(c)) break;
          stop += l;
        }
      }
      if (start_offset < start) out->push_back({uint32_t(start_offset), uint32_t(start), -1});
      out->push_back({uint32_t(start), uint32_t(stop), t.id});
      start_offset = stop;
      i = stop;
    }
    if (start_offset < end) out->push_back({uint32_t(start_offset), uint32_t(end), -1});
  }

  void encode(std::string_view text, bool add_special, std::vector<int32_t>* out) const {
    if (add_special) out->insert(out->end(), prefix.begin(), prefix.end());
    thread_local std::vector<Segment> pass1, pass2;
    thread_local std::vector<std::pair<uint32_t, uint32_t>> pieces;
    pass1.clear();
    pass2.clear();
    if (!text.empty()) split_added(text, {0, uint32_t(text.size()), -1}, raw_trie, &pass1);
    for (const Segment& s : pass1) {
      if (s.id >= 0) {
        pass2.push_back(s);
      } else {
        split_added(text, s, normalized_trie, &pass2);
      }
    }
    for (const Segment& s : pass2) {
      if (s.id >= 0) {
        out->push_back(s.id);
        continue;
      }
      pieces.clear();
      std::string_view span = text.substr(s.begin, s.end - s.begin);
      pre.split(span, &pieces);
      for (auto [b, e] : pieces) model.encode(span.substr(b, e - b), out);
    }
    if (add_special) out->insert(out->end(), suffix.begin(), suffix.end());
  }

  std::string bytes_of(std::span<const int32_t> ids, bool skip_special) const {
    std::string out;
    for (int32_t id : ids) {
      if (id < 0 || id >= int32_t(id_bytes.size())) continue;
      if (skip_special && special[id]) continue;
      out += id_bytes[id];
    }
    return out;
  }
};

namespace {

Status parse_pre_tokenizer(const json& pt, const std::string& origin,
                           std::vector<tok::SplitPattern>* splits, bool* byte_level) {
  if (!pt.is_object()) return Corrupt("{}: pre_tokenizer must be an object", origin);
  const std::string type = pt.value("type", "");
  if (type == "Sequence") {
    for (const json& p : pt.value("pretokenizers", json::array()))
      AFD_RETURN_IF_ERROR(parse_pre_tokenizer(p, origin, splits, byte_level));
    return Status::OK();
  }
  if (type == "Split") {
    if (pt.value("behavior", "") != "Isolated" || pt.value("invert", false))
      return InvalidArgument(
          "{}: Split pre_tokenizer with behavior \"{}\" invert {} is not "
          "supported (Isolated only)",
          origin, pt.value("behavior", ""), pt.value("invert", false));
    const json& pat = pt.value("pattern", json::object());
    if (!pat.contains("Regex") || !pat["Regex"].is_string())
      return InvalidArgument("{}: Split pre_tokenizer needs a {{\"Regex\": ...}} pattern", origin);
    auto p = tok::parse_split_pattern(pat["Regex"].get<std::string>());
    if (!p.ok()) return Status(p.status().code(), origin + ": " + p.status().message());
    if (*byte_level)
      return InvalidArgument("{}: a Split after the ByteLevel pre_tokenizer is not supported",
                             origin);
    splits->push_back(*p);
    return Status::OK();
  }
  if (type == "ByteLevel") {
    if (pt.value("add_prefix_space", false))
      return InvalidArgument("{}: ByteLevel pre_tokenizer with add_prefix_space is not supported",
                             origin);
    if (pt.value("use_regex", true)) splits->push_back(tok::SplitPattern::kGpt2);
    *byte_level = true;
    return Status::OK();
  }
  return InvalidArgument(
      "{}: pre_tokenizer type \"{}\" is not supported (Sequence, Split, "
      "ByteLevel)",
      origin, type);
}

Status parse_normalizer(const json& n, const std::string& origin) {
  if (n.is_null()) return Status::OK();
  if (n.value("type", "") == "Sequence" && n.value("normalizers", json::array()).empty())
    return Status::OK();
  return InvalidArgument(
      "{}: normalizer {} is not supported (afd supports none or an empty "
      "Sequence)",
      origin, n.dump());
}

// The special ids a TemplateProcessing post-processor puts around a single sequence.
Status parse_post_processor(const json& pp, const std::string& origin, std::vector<int32_t>* pre,
                            std::vector<int32_t>* post) {
  if (pp.is_null()) return Status::OK();
  const std::string type = pp.value("type", "");
  if (type == "ByteLevel") return Status::OK();  // offsets only
  if (type == "Sequence") {
    for (const json& p : pp.value("processors", json::array()))
      AFD_RETURN_IF_ERROR(parse_post_processor(p, origin, pre, post));
    return Status::OK();
  }
  if (type != "TemplateProcessing")
    return InvalidArgument("{}: post_processor type \"{}\" is not supported", origin, type);
  bool seen_sequence = false;
  const json& specials = pp.value("special_tokens", json::object());
  for (const json& piece : pp.value("single", json::array())) {
    if (piece.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    std::string name = piece.value("SpecialToken", json::object()).value("id", "");
    if (!specials.contains(name))
      return Corrupt("{}: post_processor names special token \"{}\" it does not define", origin,
                     name);
    for (const json& id : specials[name].value("ids", json::array()))
      (seen_sequence ? post : pre)->push_back(id.get<int32_t>());
  }
  return Status::OK();
}

}  // namespace

Result<std::shared_ptr<const Tokenizer>> Tokenizer::from_json(std::string_view tokenizer_json,
                                                              std::string_view config_json,
                                                              const std::string& origin) {
  auto parsed = tok::parse_tokenizer_json(tokenizer_json, origin);
  if (!parsed.ok()) return parsed.status();
  const json& j = parsed->rest;
  auto impl = std::make_unique<Impl>();
  try {
    AFD_RETURN_IF_ERROR(parse_normalizer(j.value("normalizer", json()), origin));
    std::vector<tok::SplitPattern> splits;
    bool byte_level = false;
    AFD_RETURN_IF_ERROR(parse_pre_tokenizer(j.value("pre_tokenizer", json::object()), origin,
                                            &splits, &byte_level));
    if (!byte_level)
      return InvalidArgument("{}: no ByteLevel pre_tokenizer (afd supports byte-level BPE only)",
                             origin);
    impl->pre = tok::PreTokenizer(std::move(splits));
    const json& dec = j.value("decoder", json());
    if (!dec.is_object() || dec.value("type", "") != "ByteLevel")
      return InvalidArgument("{}: decoder {} is not supported (ByteLevel only)", origin,
                             dec.dump());

    const json& m = j.value("model", json());
    if (!m.is_object() || m.value("type", "") != "BPE")
      return InvalidArgument("{}: model type \"{}\" is not supported (BPE only)", origin,
                             m.is_object() ? m.value("type", "") : "");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (m.contains(key) && !m[key].is_null() && m[key] != "")
        return InvalidArgument("{}: BPE {} is not supported", origin, key);
    if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() != 0.0)
      return InvalidArgument("{}: BPE dropout is not supported", origin);
    if (!parsed->has_vocab) return Corrupt("{}: model.vocab must be an object", origin);
    int32_t max_id = -1;
    for (const auto& [tokstr, id] : parsed->vocab) max_id = std::max(max_id, id);
    auto model = tok::BpeModel::build(std::move(parsed->vocab), parsed->merges,
                                      m.value("ignore_merges", false), origin);
    if (!model.ok()) return model.status();
    impl->model = std::move(*model);

    for (const json& a : j.value("added_tokens", json::array())) {
      AddedToken t;
      t.id = a.at("id").get<int32_t>();
      t.content = a.at("content").get<std::string>();
      t.special = a.value("special", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.single_word = a.value("single_word", false);
      t.normalized = a.value("normalized", !t.special);
      if (t.id < 0 || t.content.empty())
        return Corrupt("{}: added token {} has a negative id or empty content", origin, a.dump());
      max_id = std::max(max_id, t.id);
      impl->added.push_back(std::move(t));
    }
    const size_t n = size_t(max_id) + 1;
    impl->id_token.assign(n, "");
    impl->id_bytes.assign(n, "");
    impl->special.assign(n, 0);
    for (const auto& [tokstr, id] : impl->model.vocab()) {
      impl->id_token[id] = tokstr;
      impl->id_bytes[id] = tok::token_to_bytes(tokstr);
    }
    for (size_t i = 0; i < impl->added.size(); ++i) {
      const AddedToken& t = impl->added[i];
      impl->id_token[t.id] = t.content;
      impl->id_bytes[t.id] = tok::token_to_bytes(t.content);
      impl->special[t.id] = t.special;
      (t.normalized ? impl->normalized_trie : impl->raw_trie).add(t.content, int32_t(i));
    }
    AFD_RETURN_IF_ERROR(parse_post_processor(j.value("post_processor", json()), origin,
                                             &impl->prefix, &impl->suffix));
  } catch (const json::exception& e) {
    return Corrupt("{}: malformed field: {}", origin, e.what());
  }

  // tokenizer_config.json: transformers' BOS/EOS rule (LlamaTokenizerFast rebuilds the
  // post-processor from add_bos_token / add_eos_token), which tokenizer.json alone lacks.
  if (!config_json.empty()) {
    const std::string corigin = "tokenizer_config.json of " + origin;
    json cfg;
    try {
      cfg = json::parse(config_json);
    } catch (const json::exception& e) {
      return Corrupt("{}: not valid JSON: {}", corigin, e.what());
    }
    if (!cfg.is_object()) return Corrupt("{}: must be a JSON object", corigin);
    Impl& t = *impl;
    t.bos_token = config_token(cfg, "bos_token");
    t.eos_token = config_token(cfg, "eos_token");
    auto id_of = [&](const std::string& s) -> int32_t {
      for (const AddedToken& a : t.added)
        if (a.content == s) return a.id;
      auto it = t.model.vocab().find(s);
      return it == t.model.vocab().end() ? -1 : it->second;
    };
    if (!t.bos_token.empty() && (t.bos_id = id_of(t.bos_token)) < 0)
      return Corrupt("{}: bos_token \"{}\" is not a token", corigin, t.bos_token);
    if (!t.eos_token.empty() && (t.eos_id = id_of(t.eos_token)) < 0)
      return Corrupt("{}: eos_token \"{}\" is not a token", corigin, t.eos_token);
    if (cfg.contains("add_bos_token") || cfg.contains("add_eos_token")) {
      t.adds_bos = cfg.value("add_bos_token", false) && t.bos_id >= 0;
      t.adds_eos = cfg.value("add_eos_token", false) && t.eos_id >= 0;
      t.prefix.clear();
      t.suffix.clear();
      if (t.adds_bos) t.prefix.push_back(t.bos_id);
      if (t.adds_eos) t.suffix.push_back(t.eos_id);
    }
  }
  if (!impl->adds_bos && impl->bos_id >= 0 && !impl->prefix.empty())
    impl->adds_bos = impl->prefix.front() == impl->bos_id;
  if (!impl->adds_eos && impl->eos_id >= 0 && !impl->suffix.empty())
    impl->adds_eos = impl->suffix.back() == impl->eos_id;
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

Result<std::shared_ptr<const Tokenizer>> Tokenizer::load(const std::string& path) {
  std::error_code ec;
  fs::path file = path, dir;
  if (fs::is_directory(file, ec)) {
    dir = file;
    file = dir / "tokenizer.json";
  } else {
    dir = file.parent_path();
  }
  if (!fs::exists(file, ec))
    return NotFound(
        "no tokenizer at {}: {} does not exist (pass a model directory or a "
        "tokenizer.json)",
        path, file.string());
  AFD_ASSIGN_OR_RETURN(std::string text, read_text(file.string()));
  std::string config;
  fs::path cfg = dir / "tokenizer_config.json";
  if (fs::exists(cfg, ec)) {
    AFD_ASSIGN_OR_RETURN(config, read_text(cfg.string()));
  }
  return from_json(text, config, file.string());
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  impl_->encode(text, add_special_tokens, &out);
  return out;
}

void Tokenizer::encode(std::string_view text, bool add_special_tokens,
                       std::vector<int32_t>* out) const {
  impl_->encode(text, add_special_tokens, out);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return tok::utf8_lossy(impl_->bytes_of(ids, skip_special_tokens));
}

std::string Tokenizer::decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return impl_->bytes_of(ids, skip_special_tokens);
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  return valid_id(id) ? std::string_view(impl_->id_bytes[id]) : std::string_view();
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->id_token.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& a : impl_->added)
    if (a.content == token) return a.id;
  auto it = impl_->model.vocab().find(token);
  if (it == impl_->model.vocab().end()) return std::nullopt;
  return it->second;
}

std::string_view Tokenizer::id_to_token(int32_t id) const {
  return valid_id(id) ? std::string_view(impl_->id_token[id]) : std::string_view();
}

bool Tokenizer::is_special(int32_t id) const { return valid_id(id) && impl_->special[id]; }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
int32_t Tokenizer::bos_id() const { return impl_->bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->eos_id; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }
bool Tokenizer::adds_bos() const { return impl_->adds_bos; }
bool Tokenizer::adds_eos() const { return impl_->adds_eos; }

std::string Tokenizer::describe() const {
  std::string splits;
  for (auto s : impl_->pre.splits())
    splits += std::string(splits.empty() ? "" : ",") + tok::split_pattern_name(s);
  return fmt::format("byte-level BPE, {} ids, {} merges, {} added tokens, splits [{}], bos {}{}",
                     vocab_size(), impl_->model.num_merges(), impl_->added.size(), splits,
                     impl_->bos_id, impl_->adds_bos ? " (added)" : "");
}

std::string StreamDecoder::take_complete() {
  size_t keep = tok::incomplete_utf8_suffix(pending_);
  if (keep == pending_.size()) return "";
  // The held part starts at a lead byte, where no UTF-8 sequence (valid or broken) of the
  // whole stream can straddle, so decoding the prefix alone gives the same characters.
  std::string out = tok::utf8_lossy(std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  if (!tok_->valid_id(id) || (skip_special_ && tok_->is_special(id))) return "";
  pending_ += tok_->token_bytes(id);
  return take_complete();
}

std::string StreamDecoder::push(std::span<const int32_t> ids) {
  for (int32_t id : ids)
    if (tok_->valid_id(id) && !(skip_special_ && tok_->is_special(id)))
      pending_ += tok_->token_bytes(id);
  return take_complete();
}

std::string StreamDecoder::finish() {
  std::string out = tok::utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace afd
