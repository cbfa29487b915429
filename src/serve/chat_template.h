// Chat templates: how a conversation of {role, content} messages becomes the prompt text
// (DESIGN.md §2, src/serve; docs/tokenizer.md "Chat templates").
//
// afd does not run Jinja. The formats it serves are written natively: "step3" and "deepseek-v3"
// (the chat_template of DeepSeek-V3's tokenizer_config.json, for string contents), chosen from
// the model directory; any other format comes from a small JSON template file with {role},
// {content}, {bos} and {eos} placeholders.
//
// The rendered text contains BOS itself when the format does (as HF's apply_chat_template), so
// tokenize it with add_special_tokens = false.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace afd {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" ("tool" for deepseek-v3; any for a file)
  std::string content;
};

class ChatTemplate {
 public:
  // BOS/EOS text of the DeepSeek-V3 tokenizer, which Step-3 also uses; the defaults when a
  // model directory has no tokenizer_config.json.
  static constexpr const char* kDeepSeekBos =
      "<\xEF\xBD\x9C"
      "begin\xE2\x96\x81of\xE2\x96\x81"
      "sentence\xEF\xBD\x9C>";
  static constexpr const char* kDeepSeekEos =
      "<\xEF\xBD\x9C"
      "end\xE2\x96\x81of\xE2\x96\x81"
      "sentence\xEF\xBD\x9C>";

  // A built-in format: "step3" or "deepseek-v3". bos/eos: the tokenizer's BOS/EOS text.
  static Result<ChatTemplate> builtin(std::string_view name, std::string bos = kDeepSeekBos,
                                      std::string eos = kDeepSeekEos);
  // A template file (JSON; docs/tokenizer.md), or its text (origin names it in errors).
  static Result<ChatTemplate> from_file(const std::string& path, std::string bos = kDeepSeekBos,
                                        std::string eos = kDeepSeekEos);
  static Result<ChatTemplate> from_json_text(std::string_view text, std::string bos,
                                             std::string eos, const std::string& origin);
  // The template of a model: `choice` (a built-in name or a template file) when not empty;
  // otherwise tokenizer_config.json's chat_template in model_dir (a built-in name, or a Jinja
  // template recognized by identify()); otherwise "step3" when config.json says step3. BOS/EOS
  // come from tokenizer_config.json. model_dir may also be a tokenizer.json path.
  static Result<ChatTemplate> for_model(const std::string& model_dir,
                                        const std::string& choice = "");
  // Which built-in format a Jinja chat_template is ("step3", "deepseek-v3"), or "".
  static std::string identify(std::string_view jinja);

  // The prompt for messages; with add_generation_prompt it ends with the opening of the
  // assistant's turn. An unsupported role is an InvalidArgument naming it.
  Result<std::string> render(std::span<const ChatMessage> messages,
                             bool add_generation_prompt = true) const;

  const std::string& name() const { return name_; }
  // Texts that end an assistant turn: generation stops at them.
  const std::vector<std::string>& stop_strings() const { return stop_; }

 private:
  enum class Kind { kStep3, kDeepSeekV3, kFile };
  struct RoleFormat {
    std::string role;    // "" for the fallback "message" entry
    std::string format;  // with {role} {content} {bos} {eos}
  };

  std::string expand(std::string_view format, std::string_view role,
                     std::string_view content) const;

  Kind kind_ = Kind::kFile;
  std::string name_;
  std::string bos_, eos_;
  std::vector<std::string> stop_;
  // kFile only
  std::string prefix_, suffix_, generation_prompt_;
  std::vector<RoleFormat> roles_;
};

}  // namespace afd
