// Text <-> token ids as the OpenAI API needs them: encode a prompt, render and encode a chat,
// decode generated ids incrementally, and the ids that end a generation. The API layer depends
// only on this interface; load_text_codec() adapts the tokenizer (serve/tokenizer.h) and the
// chat template (serve/chat_template.h), and tests supply their own.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "serve/chat_template.h"  // ChatMessage

namespace afd {

// Turns generated ids into text as they arrive. Never returns a partial UTF-8 sequence: bytes
// of a character split over tokens wait for the rest.
class IncrementalDecoder {
 public:
  virtual ~IncrementalDecoder() = default;
  virtual std::string push(int32_t id) = 0;  // text completed by this id (maybe empty)
  virtual std::string flush() = 0;           // whatever is left at the end
};

class TextCodec {
 public:
  virtual ~TextCodec() = default;
  // A completion prompt: BOS as the tokenizer's config asks, then the text.
  virtual Result<std::vector<int32_t>> encode(const std::string& text) const = 0;
  // A chat: rendered with the model's template, with the assistant turn opened.
  virtual Result<std::vector<int32_t>> encode_chat(const std::vector<ChatMessage>& msgs) const = 0;
  virtual std::unique_ptr<IncrementalDecoder> decoder() const = 0;
  // End-of-sequence ids (EOS, and the chat template's end-of-turn tokens): passed to the
  // engine as stop tokens and left out of the text.
  virtual std::vector<int32_t> stop_token_ids() const = 0;
  // Chat only: texts that end the assistant's turn but are not single tokens.
  virtual std::vector<std::string> chat_stop_strings() const { return {}; }
  virtual int64_t vocab_size() const = 0;    // ids the tokenizer can produce: [0, vocab_size)
  virtual std::string describe() const = 0;  // "tokenizer.json at ..." for the start-up line
};

// The codec of a model: `tokenizer_path` is a folder with tokenizer.json (and optionally
// tokenizer_config.json) or the tokenizer.json file itself. The chat template is
// `chat_template` (a built-in name or a template file) when given, else the one the tokenizer's
// folder names (ChatTemplate::for_model). Without a usable template the codec still loads and
// chat requests fail with a message saying how to give one.
Result<std::shared_ptr<const TextCodec>> load_text_codec(const std::string& tokenizer_path,
                                                         const std::string& chat_template = "");

}  // namespace afd
