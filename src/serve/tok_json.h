// Reading tokenizer.json quickly: its model.vocab (128k entries) and model.merges (128k pairs)
// are streamed straight into their final containers by a SAX handler instead of first becoming
// a JSON tree (which took most of a second for DeepSeek-V3); everything else is small and is
// kept as a JSON tree.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "serve/tok_bpe.h"

namespace afd::tok {

struct TokenizerJson {
  nlohmann::json rest;  // the document without model.vocab and model.merges
  Vocab vocab;          // model.vocab
  std::vector<std::pair<std::string, std::string>> merges;  // model.merges, in rank order
  bool has_vocab = false;
};

// Parses tokenizer.json text; merges may be "a b" strings or [a, b] pairs. origin names the
// file in errors.
Result<TokenizerJson> parse_tokenizer_json(std::string_view text, const std::string& origin);

}  // namespace afd::tok
