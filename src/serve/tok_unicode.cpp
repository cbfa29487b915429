#include "serve/tok_unicode.h"

#include <array>
#include <string>

namespace afd::tok {

namespace {

#include "serve/tok_unicode_table.inc"

constexpr uint8_t class_of_category(UnicodeCategory c) {
  switch (c) {
    case UnicodeCategory::kLl:
    case UnicodeCategory::kLm:
    case UnicodeCategory::kLo:
    case UnicodeCategory::kLt:
    case UnicodeCategory::kLu: return kClassLetter;
    case UnicodeCategory::kMc:
    case UnicodeCategory::kMe:
    case UnicodeCategory::kMn: return kClassMark;
    case UnicodeCategory::kNd:
    case UnicodeCategory::kNl:
    case UnicodeCategory::kNo: return kClassNumber;
    case UnicodeCategory::kPc:
    case UnicodeCategory::kPd:
    case UnicodeCategory::kPe:
    case UnicodeCategory::kPf:
    case UnicodeCategory::kPi:
    case UnicodeCategory::kPo:
    case UnicodeCategory::kPs: return kClassPunct;
    case UnicodeCategory::kSc:
    case UnicodeCategory::kSk:
    case UnicodeCategory::kSm:
    case UnicodeCategory::kSo: return kClassSymbol;
    default: return 0;
  }
}

// Latin-1 is by far the most frequent range: one table lookup instead of two.
const std::array<uint8_t, 256>& latin1_classes() {
  static const std::array<uint8_t, 256> table = [] {
    std::array<uint8_t, 256> t{};
    for (char32_t cp = 0; cp < 256; ++cp) {
      uint8_t c =
          class_of_category(static_cast<UnicodeCategory>(kCatStage2[kCatStage1[0] * 256 + cp]));
      if (is_whitespace(cp)) c |= kClassWhitespace;
      if (cp == '\r' || cp == '\n') c |= kClassCrLf;
      t[cp] = c;
    }
    return t;
  }();
  return table;
}

// Expected length of a sequence by lead byte (0: never a lead byte) and the allowed range of
// its second byte (Unicode Table 3-7, which excludes overlongs, surrogates and > U+10FFFF).
struct Lead {
  uint8_t len;
  uint8_t lo, hi;
};
constexpr Lead lead_info(uint8_t b) {
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Number of bytes from s[i] that form a valid prefix of one sequence (1..lead.len), given that
// s[i] is a lead byte; equals lead.len when the sequence is complete.
size_t valid_prefix(std::string_view s, size_t i, const Lead& lead) {
  size_t k = 1;
  for (; k < lead.len && i + k < s.size(); ++k) {
    uint8_t b = static_cast<uint8_t>(s[i + k]);
    uint8_t lo = k == 1 ? lead.lo : 0x80, hi = k == 1 ? lead.hi : 0xBF;
    if (b < lo || b > hi) break;
  }
  return k;
}

}  // namespace

UnicodeCategory category(char32_t cp) {
  if (cp >= 0x110000) return UnicodeCategory::kCn;
  return static_cast<UnicodeCategory>(kCatStage2[kCatStage1[cp >> 8] * 256 + (cp & 255)]);
}

bool is_whitespace(char32_t cp) {
  // Unicode's White_Space property (PropList.txt), which Oniguruma's \s and Rust's
  // char::is_whitespace use; unlike Python's str.isspace() it excludes U+001C..U+001F.
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint8_t char_class(char32_t cp) {
  if (cp < 256) return latin1_classes()[cp];
  if (cp >= 0x110000) return 0;
  uint8_t c = class_of_category(category(cp));
  if (is_whitespace(cp)) c |= kClassWhitespace;
  return c;
}

const char* unicode_version() { return kUnicodeVersion; }

size_t decode_utf8(std::string_view s, size_t i, char32_t* cp) {
  uint8_t b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  Lead lead = lead_info(b0);
  if (lead.len == 0 || valid_prefix(s, i, lead) != lead.len) {
    *cp = kInvalidCodePoint;
    return 1;
  }
  char32_t v = b0 & (0x7F >> lead.len);
  for (size_t k = 1; k < lead.len; ++k) v = (v << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  *cp = v;
  return lead.len;
}

void append_utf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_lossy(std::string_view s) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    uint8_t b0 = static_cast<uint8_t>(s[i]);
    if (b0 < 0x80) {
      out.push_back(static_cast<char>(b0));
      ++i;
      continue;
    }
    Lead lead = lead_info(b0);
    if (lead.len == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t k = valid_prefix(s, i, lead);
    if (k == lead.len) {
      out.append(s.substr(i, k));
    } else {
      out += kReplacement;  // one U+FFFD for the maximal valid prefix of a broken sequence
    }
    i += k;
  }
  return out;
}

size_t incomplete_utf8_suffix(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    uint8_t b = static_cast<uint8_t>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // a continuation byte: its lead is further back
    Lead lead = lead_info(b);
    if (lead.len > back && valid_prefix(s, n - back, lead) == back) return back;
    return 0;
  }
  return 0;
}

}  // namespace afd::tok
