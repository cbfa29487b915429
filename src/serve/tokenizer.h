// Tokenizer: Hugging Face tokenizer.json byte-level BPE, as DeepSeek-V3 and Step-3 use it
// (DESIGN.md §2, src/serve; docs/tokenizer.md).
//
// encode(): added tokens (special or not) are cut out of the text first (leftmost-longest, with
// their lstrip/rstrip/single_word flags), then each remaining span is pre-tokenized (the Split
// sequence of tokenizer.json, tok_pretokenize.h), mapped to byte-level symbols and merged by
// BPE rank; BOS/EOS come from tokenizer_config.json (add_bos_token, bos_token, ...) or, without
// those keys, from a TemplateProcessing post-processor. The result equals HF `tokenizers`
// (plus transformers' BOS rule) token for token; tests/oracle/test_tokenizer_oracle.py checks it.
//
// decode() concatenates the bytes of the tokens and replaces broken UTF-8 as HF does;
// StreamDecoder gives the same text piece by piece without ever cutting a character.
//
// A Tokenizer is immutable once loaded and safe to use from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace afd {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;      // skipped by decode(skip_special_tokens = true)
  bool lstrip = false;       // the match absorbs whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched after the normalizer (afd supports identity ones only)
};

class Tokenizer {
 public:
  // path: a directory holding tokenizer.json (and optionally tokenizer_config.json), or a
  // tokenizer.json file (the tokenizer_config.json beside it is read when present).
  static Result<std::shared_ptr<const Tokenizer>> load(const std::string& path);
  // From file contents; config_json may be empty (no tokenizer_config.json). origin names the
  // source in error messages.
  static Result<std::shared_ptr<const Tokenizer>> from_json(std::string_view tokenizer_json,
                                                            std::string_view config_json,
                                                            const std::string& origin);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of text (any bytes; invalid UTF-8 is tokenized byte by byte). With
  // add_special_tokens, BOS/EOS are added as the tokenizer's configuration says.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Appends to *out instead (no allocation in the steady state).
  void encode(std::string_view text, bool add_special_tokens, std::vector<int32_t>* out) const;

  // Text of ids: ill-formed UTF-8 becomes U+FFFD (as HF decode does); ids out of range are
  // skipped (as HF does); special tokens are skipped unless skip_special_tokens is false.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;
  // The raw bytes instead, without U+FFFD replacement: decode_bytes(encode(x, false)) == x for
  // any byte string x.
  std::string decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens = true) const;
  // The bytes one token stands for ("" for an id out of range).
  std::string_view token_bytes(int32_t id) const;

  int32_t vocab_size() const;  // 1 + the largest id of the vocabulary and the added tokens
  bool valid_id(int32_t id) const { return id >= 0 && id < vocab_size(); }
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The token as written in tokenizer.json (byte-level symbols, e.g. "Ġthe"); "" if unused id.
  std::string_view id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;

  // BOS/EOS of tokenizer_config.json (-1 and "" when not configured), and whether encode()
  // with add_special_tokens puts them in.
  int32_t bos_id() const;
  int32_t eos_id() const;
  const std::string& bos_token() const;
  const std::string& eos_token() const;
  bool adds_bos() const;
  bool adds_eos() const;

  // One line for logs: "byte-level BPE, 128815 ids, 127741 merges, 818 added, splits ...".
  std::string describe() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Incremental detokenization for streaming: push() returns the text that the new token
// completes. Bytes of a character split across tokens are held back until it is complete, so
// no piece ever ends inside a UTF-8 sequence, and the concatenation of every push() and the
// final finish() equals tokenizer.decode(all ids) exactly. Not thread-safe (one per request);
// the tokenizer must outlive it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true)
      : tok_(&tokenizer), skip_special_(skip_special_tokens) {}

  std::string push(int32_t id);
  std::string push(std::span<const int32_t> ids);
  // The held-back bytes that never completed a character, as U+FFFD (usually "").
  std::string finish();
  size_t pending_bytes() const { return pending_.size(); }

 private:
  std::string take_complete();

  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_;  // bytes not yet returned; at most 3, the start of one character
};

}  // namespace afd
