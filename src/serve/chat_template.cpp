#include "serve/chat_template.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace afd {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Step-3's turn markers (docs/tokenizer.md: where the layout comes from).
constexpr std::string_view kBot = "<|BOT|>";
constexpr std::string_view kEot = "<|EOT|>";

// DeepSeek-V3's role and tool markers, as in its tokenizer_config.json chat_template.
#define AFD_FW_BAR "\xEF\xBD\x9C"  // U+FF5C FULLWIDTH VERTICAL LINE
#define AFD_LOW "\xE2\x96\x81"     // U+2581 LOWER ONE EIGHTH BLOCK
constexpr std::string_view kDsUser = "<" AFD_FW_BAR "User" AFD_FW_BAR ">";
constexpr std::string_view kDsAssistant = "<" AFD_FW_BAR "Assistant" AFD_FW_BAR ">";
constexpr std::string_view kDsToolOutputsBegin =
    "<" AFD_FW_BAR "tool" AFD_LOW "outputs" AFD_LOW "begin" AFD_FW_BAR ">";
constexpr std::string_view kDsToolOutputsEnd =
    "<" AFD_FW_BAR "tool" AFD_LOW "outputs" AFD_LOW "end" AFD_FW_BAR ">";
constexpr std::string_view kDsToolOutputBegin =
    "<" AFD_FW_BAR "tool" AFD_LOW "output" AFD_LOW "begin" AFD_FW_BAR ">";
constexpr std::string_view kDsToolOutputEnd =
    "<" AFD_FW_BAR "tool" AFD_LOW "output" AFD_LOW "end" AFD_FW_BAR ">";
#undef AFD_FW_BAR
#undef AFD_LOW

Result<std::string> read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open {}", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// System messages, wherever they are, joined by a blank line: both built-in formats put the
// system prompt once, right after BOS (DeepSeek-V3's template does exactly this).
std::string joined_system(std::span<const ChatMessage> messages) {
  std::string s;
  bool first = true;
  for (const ChatMessage& m : messages) {
    if (m.role != "system") continue;
    if (!first) s += "\n\n";
    s += m.content;
    first = false;
  }
  return s;
}

}  // namespace

Result<ChatTemplate> ChatTemplate::builtin(std::string_view name, std::string bos,
                                           std::string eos) {
  ChatTemplate t;
  if (name == "step3") {
    t.kind_ = Kind::kStep3;
    t.stop_ = {std::string(kEot), eos};
  } else if (name == "deepseek-v3") {
    t.kind_ = Kind::kDeepSeekV3;
    t.stop_ = {eos};
  } else {
    return InvalidArgument(
        "unknown chat template \"{}\" (built-in: step3, deepseek-v3; or a "
        "template file, docs/tokenizer.md)",
        name);
  }
  t.name_ = std::string(name);
  t.bos_ = std::move(bos);
  t.eos_ = std::move(eos);
  return t;
}

Result<ChatTemplate> ChatTemplate::from_file(const std::string& path, std::string bos,
                                             std::string eos) {
  AFD_ASSIGN_OR_RETURN(std::string text, read_text(path));
  return from_json_text(text, std::move(bos), std::move(eos), path);
}

Result<ChatTemplate> ChatTemplate::from_json_text(std::string_view text, std::string bos,
                                                  std::string eos, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return InvalidArgument("chat template {}: not valid JSON: {}", origin, e.what());
  }
  if (!j.is_object()) return InvalidArgument("chat template {}: must be a JSON object", origin);
  ChatTemplate t;
  t.kind_ = Kind::kFile;
  t.bos_ = std::move(bos);
  t.eos_ = std::move(eos);
  t.name_ = origin;
  for (const auto& [key, value] : j.items()) {
    if (key == "stop") {
      if (!value.is_array())
        return InvalidArgument("chat template {}: \"stop\" must be an array of strings", origin);
      for (const json& s : value) {
        if (!s.is_string())
          return InvalidArgument("chat template {}: \"stop\" must be an array of strings", origin);
        t.stop_.push_back(s.get<std::string>());
      }
      continue;
    }
    if (!value.is_string())
      return InvalidArgument("chat template {}: \"{}\" must be a string", origin, key);
    std::string v = value.get<std::string>();
    if (key == "name") {
      t.name_ = v;
    } else if (key == "prefix") {
      t.prefix_ = v;
    } else if (key == "suffix") {
      t.suffix_ = v;
    } else if (key == "generation_prompt") {
      t.generation_prompt_ = v;
    } else if (key == "message") {
      t.roles_.push_back({"", v});
    } else if (key == "system" || key == "user" || key == "assistant" || key == "tool") {
      t.roles_.push_back({key, v});
    } else {
      return InvalidArgument(
          "chat template {}: unknown key \"{}\" (keys: name, prefix, system, "
          "user, assistant, tool, message, generation_prompt, suffix, stop)",
          origin, key);
    }
  }
  if (t.roles_.empty())
    return InvalidArgument(
        "chat template {}: no message format (give \"user\", \"assistant\" "
        "... or \"message\")",
        origin);
  for (std::string& s : t.stop_) s = t.expand(s, "", "");
  return t;
}

std::string ChatTemplate::identify(std::string_view jinja) {
  if (jinja.find(kBot) != std::string_view::npos) return "step3";
  if (jinja.find(kDsUser) != std::string_view::npos &&
      jinja.find(kDsAssistant) != std::string_view::npos)
    return "deepseek-v3";
  return "";
}

Result<ChatTemplate> ChatTemplate::for_model(const std::string& model_dir,
                                             const std::string& choice) {
  std::error_code ec;
  fs::path dir = model_dir;
  if (!model_dir.empty() && !fs::is_directory(dir, ec)) dir = dir.parent_path();
  std::string bos = kDeepSeekBos, eos = kDeepSeekEos;
  json cfg;
  const fs::path cfg_path = dir / "tokenizer_config.json";
  if (fs::exists(cfg_path, ec)) {
    AFD_ASSIGN_OR_RETURN(std::string text, read_text(cfg_path.string()));
    try {
      cfg = json::parse(text);
    } catch (const json::exception& e) {
      return Corrupt("{}: not valid JSON: {}", cfg_path.string(), e.what());
    }
    auto token = [&](const char* key, std::string* out) {
      if (!cfg.contains(key)) return;
      const json& v = cfg[key];
      if (v.is_string()) *out = v.get<std::string>();
      if (v.is_object() && v.contains("content") && v["content"].is_string())
        *out = v["content"].get<std::string>();
    };
    token("bos_token", &bos);
    token("eos_token", &eos);
  }
  if (!choice.empty()) {
    if (choice == "step3" || choice == "deepseek-v3") return builtin(choice, bos, eos);
    if (fs::is_regular_file(choice, ec)) return from_file(choice, bos, eos);
    return InvalidArgument(
        "chat template \"{}\" is neither a built-in (step3, deepseek-v3) nor "
        "a file",
        choice);
  }
  std::string source;
  if (cfg.is_object() && cfg.contains("chat_template")) {
    const json& ct = cfg["chat_template"];
    if (ct.is_string()) source = ct.get<std::string>();
    if (ct.is_array()) {  // HF's list of named templates: take "default"
      for (const json& e : ct)
        if (e.is_object() && e.value("name", "") == "default") source = e.value("template", "");
    }
  }
  if (!source.empty()) {
    if (source == "step3" || source == "deepseek-v3") return builtin(source, bos, eos);
    std::string name = identify(source);
    if (!name.empty()) return builtin(name, bos, eos);
    return InvalidArgument(
        "{}: chat_template is a Jinja template afd does not recognize (it "
        "knows step3 and deepseek-v3); choose one or give a template file "
        "(docs/tokenizer.md)",
        cfg_path.string());
  }
  const fs::path config = dir / "config.json";
  if (fs::exists(config, ec)) {
    AFD_ASSIGN_OR_RETURN(std::string text, read_text(config.string()));
    json c = json::parse(text, nullptr, /*allow_exceptions=*/false);
    std::string type = c.is_object() ? c.value("model_type", "") : "";
    if (type.rfind("step3", 0) == 0) return builtin("step3", bos, eos);
  }
  return NotFound(
      "no chat template for {}: tokenizer_config.json has no chat_template and "
      "config.json is not a Step-3 model; choose step3, deepseek-v3 or a template "
      "file (docs/tokenizer.md)",
      model_dir);
}

std::string ChatTemplate::expand(std::string_view format, std::string_view role,
                                 std::string_view content) const {
  std::string out;
  out.reserve(format.size() + content.size());
  size_t i = 0;
  while (i < format.size()) {
    if (format[i] == '{') {
      std::string_view rest = format.substr(i);
      auto take = [&](std::string_view ph, std::string_view value) {
        if (rest.substr(0, ph.size()) != ph) return false;
        out += value;
        i += ph.size();
        return true;
      };
      if (take("{content}", content) || take("{role}", role) || take("{bos}", bos_) ||
          take("{eos}", eos_))
        continue;
    }
    out.push_back(format[i++]);
  }
  return out;
}

Result<std::string> ChatTemplate::render(std::span<const ChatMessage> messages,
                                         bool add_generation_prompt) const {
  std::string out;
  switch (kind_) {
    case Kind::kStep3: {
      // BOS, the system prompt as plain text, then one <|BOT|>role\n ... <|EOT|> block per
      // turn; the assistant's turn is opened with its reasoning block (<think>\n).
      out = bos_ + joined_system(messages);
      for (const ChatMessage& m : messages) {
        if (m.role == "system") continue;
        if (m.role != "user" && m.role != "assistant")
          return InvalidArgument(
              "chat template step3: unsupported role \"{}\" (system, user, "
              "assistant)",
              m.role);
        out.append(kBot).append(m.role).append("\n").append(m.content).append(kEot);
      }
      if (add_generation_prompt) out.append(kBot).append("assistant\n<think>\n");
      return out;
    }
    case Kind::kDeepSeekV3: {
      // DeepSeek-V3's Jinja template for string contents (no tool_calls): its namespace
      // flags is_tool and is_output_first are kept as the template keeps them.
      out = bos_ + joined_system(messages);
      bool is_tool = false, output_first = true;
      for (const ChatMessage& m : messages) {
        if (m.role == "system") continue;
        if (m.role == "user") {
          is_tool = false;
          out.append(kDsUser).append(m.content);
        } else if (m.role == "assistant") {
          out.append(is_tool ? kDsToolOutputsEnd : kDsAssistant).append(m.content).append(eos_);
          is_tool = false;
        } else if (m.role == "tool") {
          is_tool = true;
          if (output_first) {
            out.append(kDsToolOutputsBegin);
            output_first = false;
          } else {
            out.append("\n");
          }
          out.append(kDsToolOutputBegin).append(m.content).append(kDsToolOutputEnd);
        } else {
          return InvalidArgument(
              "chat template deepseek-v3: unsupported role \"{}\" (system, "
              "user, assistant, tool)",
              m.role);
        }
      }
      if (is_tool) out.append(kDsToolOutputsEnd);
      if (add_generation_prompt && !is_tool) out.append(kDsAssistant);
      return out;
    }
    case Kind::kFile: {
      out = expand(prefix_, "", "");
      for (const ChatMessage& m : messages) {
        // A role's own entry wins over the fallback "message" entry.
        const RoleFormat* f = nullptr;
        for (const RoleFormat& r : roles_)
          if (!m.role.empty() && r.role == m.role) f = &r;
        for (const RoleFormat& r : roles_)
          if (f == nullptr && r.role.empty()) f = &r;
        if (f == nullptr)
          return InvalidArgument("chat template {}: no format for role \"{}\"", name_, m.role);
        out += expand(f->format, m.role, m.content);
      }
      if (add_generation_prompt) out += expand(generation_prompt_, "assistant", "");
      out += expand(suffix_, "", "");
      return out;
    }
  }
  return out;
}

}  // namespace afd
