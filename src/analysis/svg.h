// Hand-written SVG charts of `afd cost --table --svg FILE` (no plotting library: the product
// has no Python and a chart is a few hundred elements).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/hardware.h"
#include "analysis/model_shape.h"

namespace afd::analysis {

// The contexts panel (b) samples: 4K to 128K tokens, log-spaced (the tick marks are the powers
// of two; between them the curves get a few more points so Llama 4's 8K chunk shows as a bend).
std::vector<int64_t> svg_curve_contexts();

// One SVG document with two panels:
//  (a) the roofline picture: each model's decode-attention arithmetic intensity at `context`
//      (a dot per model) against each accelerator's ridge point (a vertical line per hardware),
//      on a log axis; left of a line means memory-bound on that accelerator;
//  (b) USD per 1M tokens (attention + FFN on `curve_hw`) against context, log-log, one line per
//      model.
std::string cost_svg(const std::vector<ModelShape>& models, const std::vector<Hardware>& hardware,
                     int64_t context, const Hardware& curve_hw);

}  // namespace afd::analysis
