// Accelerator specs for the cost model and the planner (cost-model.md §2): a preset name or a
// JSON file with exactly the fields
//   {"name", "price_per_hour", "bf16_flops", "fp8_flops" (null if none), "memory_bandwidth",
//    "network_bandwidth"}
// in USD per card-hour, FLOP/s, bytes/s; the network is the server total in bytes/s
// (8 NICs x NIC speed).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace afd::analysis {

struct Hardware {
  std::string name;
  double price_per_hour = 0;        // USD per card-hour
  double bf16_flops = 0;            // dense BF16/FP16 peak, FLOP/s
  std::optional<double> fp8_flops;  // dense FP8 peak, FLOP/s; none on A800 / 910B
  double memory_bandwidth = 0;      // HBM, bytes/s
  double network_bandwidth = 0;     // scale-out, server total, bytes/s

  // §2: the peak that prices a FLOP: FP8 where the card has it, else BF16 (A800 and 910B run
  // INT8 weights and KV with BF16/FP16 compute: FP8's bytes, BF16's FLOP rate).
  double pricing_peak() const { return fp8_flops ? *fp8_flops : bf16_flops; }
  // §2: the roofline's ridge point, FLOP per byte.
  double ridge_point() const { return pricing_peak() / memory_bandwidth; }
  // §3.2: USD per FLOP and per HBM byte at full use of the card.
  double usd_per_flop() const { return price_per_hour / 3600.0 / pricing_peak(); }
  double usd_per_byte() const { return price_per_hour / 3600.0 / memory_bandwidth; }
};

// h800, h20, a800, 910b (paper Table 4), h100, h200 (vendor sheets; prices are assumptions,
// docs/analysis.md).
std::vector<std::string> hardware_preset_names();
Result<Hardware> hardware_preset(const std::string& name);

// Parses the JSON above; `source` names the file in errors. Missing, extra, mistyped or
// non-positive fields are errors naming the field.
Result<Hardware> hardware_from_json(const std::string& text, const std::string& source);

// A preset name or the path of a hardware JSON file.
Result<Hardware> load_hardware(const std::string& name_or_path);

}  // namespace afd::analysis
