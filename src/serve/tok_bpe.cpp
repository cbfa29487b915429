#include "serve/tok_bpe.h"

#include <algorithm>
#include <array>
#include <functional>

#include "serve/tok_unicode.h"

namespace afd::tok {

namespace {

struct ByteMaps {
  std::array<char32_t, 256> to_symbol{};
  std::array<int16_t, 324> to_byte{};  // indexed by symbol code point (all symbols are < 324)
};

const ByteMaps& byte_maps() {
  static const ByteMaps maps = [] {
    ByteMaps m;
    m.to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      char32_t c = printable ? static_cast<char32_t>(b) : next++;
      m.to_symbol[b] = c;
      m.to_byte[c] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return maps;
}

}  // namespace

char32_t byte_to_symbol(uint8_t b) { return byte_maps().to_symbol[b]; }

int symbol_to_byte(char32_t c) {
  const auto& m = byte_maps().to_byte;
  return c < m.size() ? m[c] : -1;
}

std::string bytes_to_symbols(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) append_utf8(byte_to_symbol(static_cast<uint8_t>(ch)), &out);
  return out;
}

std::string token_to_bytes(std::string_view token) {
  std::string out;
  size_t i = 0;
  while (i < token.size()) {
    char32_t c;
    i += decode_utf8(token, i, &c);
    int b = c == kInvalidCodePoint ? -1 : symbol_to_byte(c);
    if (b < 0) return std::string(token);
    out.push_back(static_cast<char>(b));
  }
  return out;
}

void PairMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  size_ = 0;
}

void PairMap::insert(uint64_t key, uint64_t value) {
  if ((size_ + 1) * 2 > slots_.size()) {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(16, old.size()));
    for (const Slot& s : old)
      if (s.key != kEmpty) insert(s.key, s.value);
  }
  size_t i = hash(key) & mask_;
  while (slots_[i].key != kEmpty) {
    if (slots_[i].key == key) return;
    i = (i + 1) & mask_;
  }
  slots_[i] = Slot{key, value};
  ++size_;
}

Result<BpeModel> BpeModel::build(Vocab vocab,
                                 const std::vector<std::pair<std::string, std::string>>& merges,
                                 bool ignore_merges, const std::string& origin) {
  BpeModel m;
  for (int b = 0; b < 256; ++b) {
    std::string sym;
    append_utf8(byte_to_symbol(static_cast<uint8_t>(b)), &sym);
    auto it = vocab.find(sym);
    if (it == vocab.end())
      return Corrupt(
          "{}: model.vocab lacks the byte-level symbol \"{}\" of byte {} (every byte "
          "must have a token in byte-level BPE)",
          origin, sym, b);
    m.byte_id_[b] = it->second;
  }
  m.merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = vocab.find(a), ib = vocab.find(b);
    joined = a + b;
    auto ij = vocab.find(joined);
    if (ia == vocab.end() || ib == vocab.end() || ij == vocab.end())
      return Corrupt("{}: merge {} \"{} {}\" uses a token that is not in model.vocab", origin, rank,
                     a, b);
    uint64_t key = (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second);
    m.merges_.insert(key, (uint64_t(rank) << 32) | uint32_t(ij->second));
  }
  m.vocab_ = std::move(vocab);
  m.ignore_merges_ = ignore_merges;
  return m;
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>* out) const {
  const size_t n = piece.size();
  if (n == 1) {
    out->push_back(byte_id_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (ignore_merges_) {
    auto it = vocab_.find(bytes_to_symbols(piece));
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // HF's Word::merge_all: a heap of candidate merges ordered by (rank, position); an entry is
  // stale when either side has been merged away since it was pushed.
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbours among live symbols (-1 / n at the ends)
    bool alive;
  };
  struct Cand {
    uint32_t rank;
    uint32_t pos;
    int32_t merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<Cand> heap;  // min-heap through std::push_heap with greater<>
  sym.resize(n);
  for (size_t i = 0; i < n; ++i)
    sym[i] = Symbol{byte_id_[static_cast<uint8_t>(piece[i])], int32_t(i) - 1, int32_t(i) + 1, true};
  heap.clear();
  auto push_pair = [&](int32_t left) {
    int32_t right = sym[left].next;
    if (right >= int32_t(n)) return;
    uint64_t v = merges_.find((uint64_t(uint32_t(sym[left].id)) << 32) | uint32_t(sym[right].id));
    if (v == UINT64_MAX) return;
    heap.push_back(Cand{uint32_t(v >> 32), uint32_t(left), int32_t(uint32_t(v))});
    std::push_heap(heap.begin(), heap.end(), std::greater<Cand>{});
  };
  for (size_t i = 0; i + 1 < n; ++i) push_pair(int32_t(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Cand>{});
    Cand c = heap.back();
    heap.pop_back();
    Symbol& left = sym[c.pos];
    if (!left.alive || left.next >= int32_t(n)) continue;
    Symbol& right = sym[left.next];
    uint64_t v = merges_.find((uint64_t(uint32_t(left.id)) << 32) | uint32_t(right.id));
    if (v == UINT64_MAX || int32_t(uint32_t(v)) != c.merged) continue;  // stale entry
    left.id = c.merged;
    right.alive = false;
    left.next = right.next;
    if (left.next < int32_t(n)) sym[left.next].prev = int32_t(c.pos);
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(int32_t(c.pos));
  }
  for (int32_t i = 0; i < int32_t(n); i = sym[i].next) out->push_back(sym[i].id);
}

}  // namespace afd::tok
