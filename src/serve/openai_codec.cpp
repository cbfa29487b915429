#include "serve/openai_codec.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "serve/chat_template.h"
#include "serve/tokenizer.h"

namespace afd {

namespace {

class TokenizerDecoder : public IncrementalDecoder {
 public:
  explicit TokenizerDecoder(std::shared_ptr<const Tokenizer> tok)
      : tok_(std::move(tok)), dec_(*tok_) {}
  std::string push(int32_t id) override { return dec_.push(id); }
  std::string flush() override { return dec_.finish(); }

 private:
  std::shared_ptr<const Tokenizer> tok_;  // outlives dec_, which points at it
  StreamDecoder dec_;
};

class TokenizerCodec : public TextCodec {
 public:
  TokenizerCodec(std::shared_ptr<const Tokenizer> tok, std::string path, Result<ChatTemplate> chat)
      : tok_(std::move(tok)), path_(std::move(path)) {
    if (tok_->eos_id() >= 0) stop_ids_.push_back(tok_->eos_id());
    if (chat.ok()) {
      chat_.emplace(std::move(chat.value()));
      // End-of-turn texts that are one token stop in the engine; others are matched as text.
      for (const std::string& s : chat_->stop_strings()) {
        auto id = tok_->token_to_id(s);
        if (id && std::find(stop_ids_.begin(), stop_ids_.end(), *id) == stop_ids_.end())
          stop_ids_.push_back(*id);
        else if (!id && !s.empty())
          chat_stops_.push_back(s);
      }
    } else {
      chat_error_ = chat.status();
    }
  }

  Result<std::vector<int32_t>> encode(const std::string& text) const override {
    return tok_->encode(text, /*add_special_tokens=*/true);
  }

  Result<std::vector<int32_t>> encode_chat(const std::vector<ChatMessage>& msgs) const override {
    if (!chat_)
      return InvalidArgument(
          "this server has no chat template ({}); start it with "
          "--chat-template NAME|FILE",
          chat_error_.message());
    auto text = chat_->render(msgs, /*add_generation_prompt=*/true);
    if (!text.ok()) return text.status();
    // The rendered text carries BOS itself when the format has one.
    return tok_->encode(*text, /*add_special_tokens=*/false);
  }

  std::unique_ptr<IncrementalDecoder> decoder() const override {
    return std::make_unique<TokenizerDecoder>(tok_);
  }

  std::vector<int32_t> stop_token_ids() const override { return stop_ids_; }
  std::vector<std::string> chat_stop_strings() const override { return chat_stops_; }

  int64_t vocab_size() const override { return tok_->vocab_size(); }

  std::string describe() const override {
    return fmt::format("{} ({}; chat template {})", path_, tok_->describe(),
                       chat_ ? chat_->name() : "none: " + chat_error_.message());
  }

 private:
  std::shared_ptr<const Tokenizer> tok_;
  std::string path_;
  std::optional<ChatTemplate> chat_;
  Status chat_error_;
  std::vector<int32_t> stop_ids_;
  std::vector<std::string> chat_stops_;
};

}  // namespace

Result<std::shared_ptr<const TextCodec>> load_text_codec(const std::string& tokenizer_path,
                                                         const std::string& chat_template) {
  auto tok = Tokenizer::load(tokenizer_path);
  if (!tok.ok()) return tok.status();
  auto chat = ChatTemplate::for_model(tokenizer_path, chat_template);
  // A template the user named must load; one guessed from the folder may be missing.
  if (!chat.ok() && !chat_template.empty()) return chat.status();
  return std::shared_ptr<const TextCodec>(
      std::make_shared<TokenizerCodec>(std::move(tok.value()), tokenizer_path, std::move(chat)));
}

}  // namespace afd
