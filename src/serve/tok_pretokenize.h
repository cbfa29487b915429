// The pre-tokenizer of byte-level BPE tokenizer.json files: a sequence of regex splits, each
// with Hugging Face's "Isolated" behaviour (every match and every gap between matches becomes
// its own piece, and the next split runs on each piece separately).
//
// The regexes are not interpreted: each supported pattern string is recognized exactly and
// matched by a hand-written matcher that reproduces Oniguruma's leftmost, first-alternative,
// backtracking semantics for that pattern (docs/tokenizer.md lists them). An unknown pattern is
// an error at load time, never a silent approximation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace afd::tok {

enum class SplitPattern {
  kDigits1To3,    // \p{N}{1,3}                         (DeepSeek-V3)
  kCjkRun,        // [一-龥぀-ゟ゠-ヿ]+                    (DeepSeek-V3)
  kDeepSeekWord,  // [!"#...~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|...  (DeepSeek-V3)
  kGpt2,          // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|...  (ByteLevel use_regex: true)
};

// The pattern for a Split's {"Regex": ...} string; NotFound-style InvalidArgument otherwise.
Result<SplitPattern> parse_split_pattern(std::string_view regex);
const char* split_pattern_name(SplitPattern p);

class PreTokenizer {
 public:
  PreTokenizer() = default;
  explicit PreTokenizer(std::vector<SplitPattern> splits) : splits_(std::move(splits)) {}

  // Appends the pre-tokens of text as byte ranges [begin, end) of text, in order; they cover
  // text exactly. With no splits the whole text is one piece.
  void split(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>* out) const;

  const std::vector<SplitPattern>& splits() const { return splits_; }

 private:
  std::vector<SplitPattern> splits_;
};

}  // namespace afd::tok
