// Hardware presets and the custom-hardware JSON reader.
#include "analysis/hardware.h"

#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace afd::analysis {

namespace {

using nlohmann::json;

// 8 NICs x 400 Gbps and 8 x 200 Gbps, as server totals in bytes/s (§2, §4.12).
constexpr double kNet8x400G = 8 * 400e9 / 8;
constexpr double kNet8x200G = 8 * 200e9 / 8;

const std::vector<Hardware>& presets() {
  static const std::vector<Hardware> kPresets = {
      // Paper Table 4 (cost-model.md §2).
      {"h800", 2.0, 9.89e14, 1.98e15, 3.35e12, kNet8x400G},
      {"h20", 0.8, 1.48e14, 2.96e14, 4.00e12, kNet8x400G},
      {"a800", 0.75, 3.12e14, std::nullopt, 2.00e12, kNet8x200G},
      {"910b", 0.67, 2.80e14, std::nullopt, 1.60e12, kNet8x200G},
      // Vendor sheets (performance.md §2): dense 989 TFLOP/s BF16, 1979 FP8. The prices are
      // this tool's assumptions (not from the paper): H100 as the H800 it mirrors, H200 15%
      // more for its memory. Network: 8 x 400 Gbps ConnectX-7 per HGX server.
      {"h100", 2.0, 9.89e14, 1.979e15, 3.35e12, kNet8x400G},
      {"h200", 2.3, 9.89e14, 1.979e15, 4.8e12, kNet8x400G},
  };
  return kPresets;
}

const char* const kFields[] = {"name",      "price_per_hour",   "bf16_flops",
                               "fp8_flops", "memory_bandwidth", "network_bandwidth"};

Status positive_number(const json& o, const char* f, const std::string& source, double* out) {
  const json& v = o.at(f);
  if (!v.is_number())
    return InvalidArgument("{}: field \"{}\" must be a number, got {}", source, f, v.dump());
  *out = v.get<double>();
  if (!std::isfinite(*out) || *out <= 0)
    return InvalidArgument("{}: field \"{}\" must be positive, got {}", source, f, v.dump());
  return Status::OK();
}

}  // namespace

std::vector<std::string> hardware_preset_names() {
  std::vector<std::string> names;
  for (const auto& h : presets()) names.push_back(h.name);
  return names;
}

Result<Hardware> hardware_preset(const std::string& name) {
  for (const auto& h : presets())
    if (h.name == name) return h;
  return InvalidArgument("unknown hardware \"{}\": presets are {}", name,
                         fmt::join(hardware_preset_names(), ", "));
}

Result<Hardware> hardware_from_json(const std::string& text, const std::string& source) {
  json o;
  try {
    o = json::parse(text);
  } catch (const json::parse_error& e) {
    return InvalidArgument("{}: not valid JSON: {}", source, e.what());
  }
  if (!o.is_object()) return InvalidArgument("{}: must hold a JSON object", source);
  for (const char* f : kFields)
    if (!o.contains(f))
      return InvalidArgument("{}: missing field \"{}\" (a hardware file has exactly: {})", source,
                             f, fmt::join(kFields, ", "));
  // Exactly these fields: an unknown one is most likely a misspelt known one.
  for (auto it = o.begin(); it != o.end(); ++it)
    if (std::find(std::begin(kFields), std::end(kFields), it.key()) == std::end(kFields))
      return InvalidArgument("{}: unknown field \"{}\" (a hardware file has exactly: {})", source,
                             it.key(), fmt::join(kFields, ", "));
  Hardware h;
  if (!o["name"].is_string() || o["name"].get<std::string>().empty())
    return InvalidArgument("{}: field \"name\" must be a non-empty string", source);
  h.name = o["name"].get<std::string>();
  AFD_RETURN_IF_ERROR(positive_number(o, "price_per_hour", source, &h.price_per_hour));
  AFD_RETURN_IF_ERROR(positive_number(o, "bf16_flops", source, &h.bf16_flops));
  if (!o["fp8_flops"].is_null()) {
    double f = 0;
    AFD_RETURN_IF_ERROR(positive_number(o, "fp8_flops", source, &f));
    h.fp8_flops = f;
  }
  AFD_RETURN_IF_ERROR(positive_number(o, "memory_bandwidth", source, &h.memory_bandwidth));
  AFD_RETURN_IF_ERROR(positive_number(o, "network_bandwidth", source, &h.network_bandwidth));
  return h;
}

Result<Hardware> load_hardware(const std::string& name_or_path) {
  for (const auto& h : presets())
    if (h.name == name_or_path) return h;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(name_or_path, ec))
    return InvalidArgument("unknown hardware \"{}\": not a preset ({}) and no such JSON file",
                           name_or_path, fmt::join(hardware_preset_names(), ", "));
  std::ifstream in(name_or_path, std::ios::binary);
  if (!in) return IOError("{}: cannot open", name_or_path);
  std::stringstream ss;
  ss << in.rdbuf();
  return hardware_from_json(ss.str(), name_or_path);
}

}  // namespace afd::analysis
