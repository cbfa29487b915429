// The byte-level BPE model of a tokenizer.json ("model": {"type": "BPE", ...}): vocabulary,
// merges by rank, and the GPT-2 byte <-> symbol map. Used by Tokenizer (tokenizer.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/status.h"

namespace afd::tok {

// GPT-2's map of the 256 byte values to printable characters (bytes 0x21-0x7E, 0xA1-0xAC and
// 0xAE-0xFF stand for themselves, the others for U+0100 upwards), so every token is text.
char32_t byte_to_symbol(uint8_t b);
// The byte a symbol stands for, or -1 when c is not one of the 256 symbols.
int symbol_to_byte(char32_t c);
// The symbols of bytes, as UTF-8 ("Ġthe" for " the").
std::string bytes_to_symbols(std::string_view bytes);
// The bytes a token stands for, following HF's ByteLevel decoder: a token whose characters are
// all symbols gives their bytes; any other token (e.g. "<｜User｜>") gives its own UTF-8.
std::string token_to_bytes(std::string_view token);

// Open-addressing hash map from a merge pair (two ids packed in 64 bits) to (rank, merged id):
// the BPE inner loop does a lookup per adjacent pair, so it must be cheap.
class PairMap {
 public:
  void reserve(size_t n);
  // Keeps the first value inserted for a key (lower rank wins, as HF's merge map does).
  void insert(uint64_t key, uint64_t value);
  // value or UINT64_MAX when absent
  uint64_t find(uint64_t key) const {
    size_t i = hash(key) & mask_;
    while (true) {
      const Slot& s = slots_[i];
      if (s.key == key) return s.value;
      if (s.key == kEmpty) return UINT64_MAX;
      i = (i + 1) & mask_;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = UINT64_MAX;
  struct Slot {
    uint64_t key = kEmpty;
    uint64_t value = 0;
  };
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // vocab: token -> id. merges: the token pairs in rank order (rank 0 first). Every merge's
  // parts and result must be in the vocabulary, and so must the 256 byte symbols.
  static Result<BpeModel> build(Vocab vocab,
                                const std::vector<std::pair<std::string, std::string>>& merges,
                                bool ignore_merges, const std::string& origin);

  // Appends the ids of one pre-token (its raw bytes, non-empty).
  void encode(std::string_view piece, std::vector<int32_t>* out) const;

  const Vocab& vocab() const { return vocab_; }
  size_t num_merges() const { return merges_.size(); }

 private:
  Vocab vocab_;
  int32_t byte_id_[256] = {};  // id of each byte's symbol
  PairMap merges_;             // (left id << 32 | right id) -> (rank << 32 | merged id)
  bool ignore_merges_ = false;
};

}  // namespace afd::tok
