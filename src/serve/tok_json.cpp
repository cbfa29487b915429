#include "serve/tok_json.h"

namespace afd::tok {

namespace {

using nlohmann::json;

// SAX handler: builds the JSON tree except for model.vocab and model.merges, which go straight
// into TokenizerJson.
class Handler {
 public:
  explicit Handler(TokenizerJson* out) : out_(out) {}

  bool null() { return value(json(nullptr)); }
  bool boolean(bool v) { return value(json(v)); }
  bool number_integer(json::number_integer_t v) {
    if (mode_ == Mode::kVocab) return vocab_entry(v);
    return value(json(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (mode_ == Mode::kVocab) return vocab_entry(static_cast<int64_t>(v));
    return value(json(v));
  }
  bool number_float(json::number_float_t v, const std::string&) {
    if (mode_ != Mode::kNone) return fail("a number where a token was expected");
    return value(json(v));
  }
  bool string(std::string& s) {
    if (mode_ == Mode::kMerges) {  // "a b"
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        return fail("merge \"" + s + "\" is not two tokens separated by one space");
      out_->merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      return true;
    }
    if (mode_ == Mode::kMergePair) {  // [a, b]
      if (pair_.size() == 2) return fail("a merge pair has more than two tokens");
      pair_.push_back(std::move(s));
      return true;
    }
    if (mode_ == Mode::kVocab) return fail("a vocab id that is not an integer");
    return value(json(std::move(s)));
  }
  bool binary(json::binary_t&) { return fail("binary value"); }

  bool key(std::string& k) {
    if (mode_ == Mode::kVocab) {
      vocab_key_ = std::move(k);
      return true;
    }
    frames_.back().key = std::move(k);
    return true;
  }

  bool start_object(size_t) {
    if (mode_ != Mode::kNone) return fail("an object inside model.vocab or model.merges");
    if (at_model_field("vocab")) {
      mode_ = Mode::kVocab;
      out_->has_vocab = true;
      return true;
    }
    return open(json::object());
  }
  bool end_object() {
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kNone;
      return true;
    }
    frames_.pop_back();
    return true;
  }
  bool start_array(size_t) {
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kMergePair;
      pair_.clear();
      return true;
    }
    if (mode_ != Mode::kNone) return fail("an array inside model.vocab or a merge pair");
    if (at_model_field("merges")) {
      mode_ = Mode::kMerges;
      return true;
    }
    return open(json::array());
  }
  bool end_array() {
    if (mode_ == Mode::kMergePair) {
      if (pair_.size() != 2) return fail("a merge pair without exactly two tokens");
      out_->merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::kMerges;
      return true;
    }
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kNone;
      return true;
    }
    frames_.pop_back();
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    return fail(std::string("not valid JSON: ") + e.what());
  }

  const std::string& error() const { return error_; }

 private:
  enum class Mode { kNone, kVocab, kMerges, kMergePair };
  struct Frame {
    json* node;
    std::string key;  // the last key seen when node is an object
  };

  // The container about to open is the field `name` of the root's "model" object.
  bool at_model_field(const char* name) const {
    return frames_.size() == 2 && frames_[0].key == "model" && frames_[1].node->is_object() &&
           frames_[1].key == name;
  }
  json* place(json v) {
    if (frames_.empty()) {
      out_->rest = std::move(v);
      return &out_->rest;
    }
    Frame& f = frames_.back();
    if (f.node->is_object()) {
      json& slot = (*f.node)[f.key];
      slot = std::move(v);
      return &slot;
    }
    f.node->push_back(std::move(v));
    return &f.node->back();
  }
  bool value(json v) {
    if (mode_ != Mode::kNone) return fail("an unexpected value in model.vocab or model.merges");
    place(std::move(v));
    return true;
  }
  bool open(json container) {
    json* p = place(std::move(container));
    frames_.push_back({p, ""});
    return true;
  }
  bool vocab_entry(int64_t v) {
    if (v < 0 || v > INT32_MAX) return fail("vocab id " + std::to_string(v) + " out of range");
    out_->vocab.emplace(std::move(vocab_key_), static_cast<int32_t>(v));
    return true;
  }
  bool fail(std::string msg) {
    if (error_.empty()) error_ = std::move(msg);
    return false;
  }

  TokenizerJson* out_;
  std::vector<Frame> frames_;
  Mode mode_ = Mode::kNone;
  std::string vocab_key_;
  std::vector<std::string> pair_;
  std::string error_;
};

}  // namespace

Result<TokenizerJson> parse_tokenizer_json(std::string_view text, const std::string& origin) {
  TokenizerJson out;
  out.vocab.reserve(1 << 17);
  Handler h(&out);
  bool ok = json::sax_parse(text.begin(), text.end(), &h, json::input_format_t::json,
                            /*strict=*/true);
  if (!ok || !h.error().empty())
    return Corrupt("{}: {}", origin, h.error().empty() ? "not valid JSON" : h.error());
  if (!out.rest.is_object()) return Corrupt("{}: must be a JSON object", origin);
  return out;
}

}  // namespace afd::tok
