#include "serve/tok_pretokenize.h"

#include "serve/tok_unicode.h"

namespace afd::tok {

namespace {

// The exact regex strings of the supported Split patterns, as they appear in tokenizer.json
// (the DeepSeek-V3 word pattern holds literal CR and LF characters, not escapes).
constexpr std::string_view kDigits1To3Regex = "\\p{N}{1,3}";
// [U+4E00-U+9FA5 U+3040-U+309F U+30A0-U+30FF]+ : CJK unified ideographs, hiragana, katakana.
constexpr std::string_view kCjkRunRegex =
    "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-\xE3\x83\xBF]+";
constexpr std::string_view kDeepSeekWordRegex =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
    "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
// What HF's ByteLevel pre-tokenizer applies when use_regex is true (the GPT-2 pattern).
constexpr std::string_view kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// The text decoded once: code point, class flags and byte offset per character.
struct Chars {
  std::vector<char32_t> cp;
  std::vector<uint8_t> cls;
  std::vector<uint32_t> off;  // [n + 1]: byte offset of character i; off[n] = text size

  void decode(std::string_view text) {
    cp.clear();
    cls.clear();
    off.clear();
    size_t i = 0;
    while (i < text.size()) {
      char32_t c;
      size_t len = decode_utf8(text, i, &c);
      cp.push_back(c);
      cls.push_back(c == kInvalidCodePoint ? 0 : char_class(c));
      off.push_back(static_cast<uint32_t>(i));
      i += len;
    }
    off.push_back(static_cast<uint32_t>(text.size()));
  }
};

// End of the run of characters from p (< end) whose class has any bit of mask.
inline size_t run(const Chars& t, size_t p, size_t end, uint8_t mask) {
  while (p < end && (t.cls[p] & mask)) ++p;
  return p;
}

inline bool ascii_letter(char32_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
inline bool ascii_punct(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

// The trailing alternatives `\s+(?!\S)|\s+` that both word patterns end with. [p, e) is the
// whitespace run at p; at the end of the piece the lookahead succeeds, before a non-space it
// succeeds one character earlier (backtracking), and a lone space falls through to `\s+`.
inline size_t whitespace_tail(size_t p, size_t e, size_t end) {
  if (e == end || e - p < 2) return e - p;
  return e - p - 1;
}

// Length of the match of `pattern` starting exactly at p (0: no match there). Each function
// returns what Oniguruma's first matching alternative (with backtracking) would.
size_t match_digits(const Chars& t, size_t p, size_t end) {
  size_t q = p;
  while (q < end && q - p < 3 && (t.cls[q] & kClassNumber)) ++q;
  return q - p;
}

inline bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x309F) ||
         (c >= 0x30A0 && c <= 0x30FF);
}
size_t match_cjk(const Chars& t, size_t p, size_t end) {
  size_t q = p;
  while (q < end && is_cjk(t.cp[q])) ++q;
  return q - p;
}

size_t match_deepseek_word(const Chars& t, size_t p, size_t end) {
  const char32_t c = t.cp[p];
  const uint8_t k = t.cls[p];
  // [!"#...~][A-Za-z]+
  if (ascii_punct(c) && p + 1 < end && ascii_letter(t.cp[p + 1])) {
    size_t q = p + 1;
    while (q < end && ascii_letter(t.cp[q])) ++q;
    return q - p;
  }
  // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ : the optional char is taken when letters/marks
  // follow it; otherwise the run must start at p itself.
  constexpr uint8_t kLM = kClassLetter | kClassMark;
  if (!(k & (kClassLetter | kClassPunct | kClassSymbol | kClassCrLf)) && p + 1 < end &&
      (t.cls[p + 1] & kLM)) {
    return run(t, p + 1, end, kLM) - p;
  }
  if (k & kLM) return run(t, p, end, kLM) - p;
  // ' ?[\p{P}\p{S}]+[\r\n]*'
  constexpr uint8_t kPS = kClassPunct | kClassSymbol;
  if (c == ' ' && p + 1 < end && (t.cls[p + 1] & kPS)) {
    return run(t, run(t, p + 1, end, kPS), end, kClassCrLf) - p;
  }
  if (k & kPS) return run(t, run(t, p, end, kPS), end, kClassCrLf) - p;
  if (!(k & kClassWhitespace)) return 0;
  const size_t e = run(t, p, end, kClassWhitespace);
  // \s*[\r\n]+ : \s* backs off to the last CR/LF of the whitespace run, [\r\n]+ takes it.
  for (size_t q = e; q > p; --q) {
    if (t.cls[q - 1] & kClassCrLf) return q - p;
  }
  return whitespace_tail(p, e, end);
}

size_t match_gpt2(const Chars& t, size_t p, size_t end) {
  const char32_t c = t.cp[p];
  const uint8_t k = t.cls[p];
  if (c == '\'' && p + 1 < end) {  // 's|'t|'re|'ve|'m|'ll|'d
    char32_t a = t.cp[p + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (p + 2 < end) {
      char32_t b = t.cp[p + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
  }
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' in that order
  const bool space = c == ' ' && p + 1 < end;
  if (space && (t.cls[p + 1] & kClassLetter)) return run(t, p + 1, end, kClassLetter) - p;
  if (k & kClassLetter) return run(t, p, end, kClassLetter) - p;
  if (space && (t.cls[p + 1] & kClassNumber)) return run(t, p + 1, end, kClassNumber) - p;
  if (k & kClassNumber) return run(t, p, end, kClassNumber) - p;
  constexpr uint8_t kNotOther = kClassWhitespace | kClassLetter | kClassNumber;
  auto other_end = [&](size_t q) {
    while (q < end && !(t.cls[q] & kNotOther)) ++q;
    return q;
  };
  if (space && !(t.cls[p + 1] & kNotOther)) return other_end(p + 1) - p;
  if (!(k & kNotOther)) return other_end(p) - p;
  const size_t e = run(t, p, end, kClassWhitespace);
  return whitespace_tail(p, e, end);
}

using Matcher = size_t (*)(const Chars&, size_t, size_t);

Matcher matcher_for(SplitPattern p) {
  switch (p) {
    case SplitPattern::kDigits1To3: return match_digits;
    case SplitPattern::kCjkRun: return match_cjk;
    case SplitPattern::kDeepSeekWord: return match_deepseek_word;
    case SplitPattern::kGpt2: return match_gpt2;
  }
  return match_digits;
}

// HF's Split with SplitDelimiterBehavior::Isolated over the characters [b, e): matches and the
// gaps between them become pieces, in order (find_iter: after a match, search resumes at its end).
void split_isolated(const Chars& t, size_t b, size_t e, Matcher m,
                    std::vector<std::pair<uint32_t, uint32_t>>* out) {
  size_t gap = b, p = b;
  while (p < e) {
    size_t len = m(t, p, e);
    if (len == 0) {
      ++p;
      continue;
    }
    if (gap < p) out->emplace_back(gap, p);
    out->emplace_back(p, p + len);
    p += len;
    gap = p;
  }
  if (gap < e) out->emplace_back(gap, e);
}

}  // namespace

Result<SplitPattern> parse_split_pattern(std::string_view regex) {
  if (regex == kDigits1To3Regex) return SplitPattern::kDigits1To3;
  if (regex == kCjkRunRegex) return SplitPattern::kCjkRun;
  if (regex == kDeepSeekWordRegex) return SplitPattern::kDeepSeekWord;
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  return InvalidArgument(
      "unsupported Split regex \"{}\" (afd matches the DeepSeek-V3 and GPT-2 patterns only; "
      "see docs/tokenizer.md)",
      regex);
}

const char* split_pattern_name(SplitPattern p) {
  switch (p) {
    case SplitPattern::kDigits1To3: return "digits-1-3";
    case SplitPattern::kCjkRun: return "cjk-run";
    case SplitPattern::kDeepSeekWord: return "deepseek-word";
    case SplitPattern::kGpt2: return "gpt2";
  }
  return "?";
}

void PreTokenizer::split(std::string_view text,
                         std::vector<std::pair<uint32_t, uint32_t>>* out) const {
  if (text.empty()) return;
  // Thread-local scratch: encode() runs on many server threads at once and must not allocate
  // per call in the steady state.
  thread_local Chars chars;
  thread_local std::vector<std::pair<uint32_t, uint32_t>> cur, next;
  chars.decode(text);
  const size_t n = chars.cp.size();
  cur.clear();
  cur.emplace_back(0, static_cast<uint32_t>(n));
  for (SplitPattern s : splits_) {
    Matcher m = matcher_for(s);
    next.clear();
    for (auto [b, e] : cur) split_isolated(chars, b, e, m, &next);
    cur.swap(next);
  }
  for (auto [b, e] : cur) out->emplace_back(chars.off[b], chars.off[e]);
  // A rare huge prompt must not pin its scratch memory to the thread for good.
  if (chars.cp.capacity() > (size_t{1} << 20)) chars = Chars();
}

}  // namespace afd::tok
