// The two-panel cost chart (svg.h). Coordinates are SVG user units (pixels at 100% zoom).
#include "analysis/svg.h"

#include <algorithm>
#include <cmath>

#include "analysis/cost.h"
#include "core/status.h"

namespace afd::analysis {

namespace {

constexpr double kWidth = 1100;
// Tableau 10: distinct for the common forms of colour blindness, readable on white.
const char* const kColors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                               "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
const char* const kDashes[] = {"", "8,4", "2,3", "8,3,2,3"};

// Solid lines for the first five models, then dashed, so curves that nearly coincide (Pangu and
// Qwen3-235B) stay apart; past ten models the colours repeat with other dashes.
std::string color(size_t i) { return kColors[i % 10]; }
std::string dash(size_t i) { return kDashes[(i % 10 >= 5 ? 1 : 0) + 2 * ((i / 10) % 2)]; }

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default: o += c;
    }
  }
  return o;
}

// A model's label: long names (config.json paths) keep their informative end, so the labels
// fit the left margin of panel (a) and the legend of panel (b).
std::string label_of(const std::string& name) {
  constexpr size_t kMax = 26;
  return name.size() <= kMax ? name : "..." + name.substr(name.size() - (kMax - 3));
}

std::string num(double x) { return fmt::format("{:.1f}", x); }

std::string text(double x, double y, const std::string& s, const std::string& extra = "") {
  return fmt::format("<text x=\"{}\" y=\"{}\"{}>{}</text>\n", num(x), num(y),
                     extra.empty() ? "" : " " + extra, esc(s));
}

std::string line(double x1, double y1, double x2, double y2, const std::string& style) {
  return fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {}/>\n", num(x1), num(y1),
                     num(x2), num(y2), style);
}

// A log10 axis mapping [lo, hi] to [p0, p1] pixels.
struct LogAxis {
  double lo, hi, p0, p1;
  double operator()(double v) const {
    return p0 + (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) * (p1 - p0);
  }
};

// Whole decades around [lo, hi] (a single decade when they are equal).
std::pair<double, double> decades(double lo, double hi) {
  double a = std::pow(10.0, std::floor(std::log10(lo)));
  double b = std::pow(10.0, std::ceil(std::log10(hi)));
  if (b <= a) b = a * 10;
  return {a, b};
}

// The nearest 1, 2, 5 x 10^k around [lo, hi]: a tighter log axis than whole decades.
std::pair<double, double> nice_bounds(double lo, double hi) {
  auto down = [](double v) {
    double d = std::pow(10.0, std::floor(std::log10(v)));
    for (double m : {5.0, 2.0, 1.0})
      if (d * m <= v * 1.0000001) return d * m;
    return d;
  };
  auto up = [](double v) {
    double d = std::pow(10.0, std::floor(std::log10(v)));
    for (double m : {1.0, 2.0, 5.0, 10.0})
      if (d * m >= v * 0.9999999) return d * m;
    return d * 10;
  };
  double a = down(lo), b = up(hi);
  if (b <= a) b = a * 2;
  return {a, b};
}

// Tick values of a log axis: 1, 2, 5 x 10^k inside [lo, hi] when it spans at most 3 decades,
// else the decades alone.
std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> t;
  const bool fine = std::log10(hi / lo) <= 3.01;
  for (double d = std::pow(10.0, std::floor(std::log10(lo))); d <= hi * 1.0001; d *= 10)
    for (double m : {1.0, 2.0, 5.0}) {
      if (!fine && m != 1.0) continue;
      double v = d * m;
      if (v >= lo * 0.9999 && v <= hi * 1.0001) t.push_back(v);
    }
  return t;
}

std::string tick_label(double v) {
  if (v >= 1e4 || v < 1e-3) return fmt::format("{:.0e}", v);
  if (v >= 1) return fmt::format("{:.0f}", v);
  return fmt::format("{:g}", v);
}

std::string context_label(int64_t t) {
  if (t % 1024 == 0) return fmt::format("{}K", t / 1024);
  return std::to_string(t);
}

// A hardware label above the roofline panel: the text starts just right of its ridge line, and
// the line runs up to it. Placed right to left, each label takes the row just above every label
// it would overlap, so lines only pass through rows whose labels lie to their right: a staircase
// that keeps equal ridge points (h800, h100) and near ones (a800, 910b) legible.
struct RidgeLabel {
  std::string label;
  double line_x = 0, x0 = 0, x1 = 0;  // the line, the text's extent
  int row = 0;                        // 0: just above the plot
};

constexpr double kLabelCharWidth = 7.2;  // 12 px sans, roughly

std::vector<RidgeLabel> place_ridge_labels(const std::vector<Hardware>& hardware,
                                           const LogAxis& x) {
  std::vector<size_t> order(hardware.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t p, size_t q) {
    return hardware[p].ridge_point() > hardware[q].ridge_point();
  });
  std::vector<RidgeLabel> placed;
  for (size_t k : order) {
    const Hardware& h = hardware[k];
    RidgeLabel p;
    p.label = fmt::format("{} {:.0f}", h.name, h.ridge_point());
    p.line_x = x(h.ridge_point());
    p.x0 = p.line_x + 4;
    p.x1 = p.x0 + kLabelCharWidth * static_cast<double>(p.label.size());
    for (const auto& q : placed)
      if (p.x0 < q.x1 + 6 && q.x0 - 6 < p.x1) p.row = std::max(p.row, q.row + 1);
    placed.push_back(p);
  }
  return placed;
}

// Panel (a); returns its height. y0 is the panel's top.
std::string roofline_panel(const std::vector<ModelShape>& models,
                           const std::vector<Hardware>& hardware, int64_t context, double y0,
                           double* height) {
  std::vector<double> ai;
  double lo = 1e300, hi = 0;
  for (const auto& m : models) {
    ai.push_back(token_cost(m, context).arithmetic_intensity());
    lo = std::min(lo, ai.back());
    hi = std::max(hi, ai.back());
  }
  for (const auto& h : hardware) {
    lo = std::min(lo, h.ridge_point());
    hi = std::max(hi, h.ridge_point());
  }
  auto [a0, a1] = decades(lo, hi);
  // Room on the right for the label of a ridge line at the axis' end.
  size_t longest = 0;
  for (const auto& h : hardware)
    longest = std::max(longest, fmt::format("{} {:.0f}", h.name, h.ridge_point()).size());
  const double left = 190, row_h = 26;
  const double right = std::max(left + 300, kWidth - 14 - kLabelCharWidth * longest);
  LogAxis x{a0, a1, left, right};
  const std::vector<RidgeLabel> ridge_labels = place_ridge_labels(hardware, x);
  int label_rows = 1;
  for (const auto& p : ridge_labels) label_rows = std::max(label_rows, p.row + 1);
  // Title, subtitle, then the rows of hardware labels above the plot.
  const double top = y0 + 60 + 15 * static_cast<double>(label_rows);
  const double plot_h = row_h * static_cast<double>(models.size()) + 10;
  const double bottom = top + plot_h;
  std::string s;
  s += text(kWidth / 2, y0 + 22,
            fmt::format("(a) Decode attention: arithmetic intensity vs. accelerator ridge points "
                        "(context {})",
                        context_label(context)),
            "text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\"");
  s += text(kWidth / 2, y0 + 40,
            "dot: model's attention FLOPs per KV byte; line: ridge point = pricing peak / HBM "
            "bandwidth; left of a line = memory-bound there",
            "text-anchor=\"middle\" font-size=\"12\" fill=\"#444\"");
  s += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" "
      "stroke=\"#999\"/>\n",
      num(left), num(top), num(right - left), num(plot_h));
  for (double t : log_ticks(a0, a1)) {
    s += line(x(t), top, x(t), bottom, "stroke=\"#e3e3e3\"");
    s += line(x(t), bottom, x(t), bottom + 5, "stroke=\"#333\"");
    s += text(x(t), bottom + 18, tick_label(t), "text-anchor=\"middle\" font-size=\"12\"");
  }
  s += text((left + right) / 2, bottom + 38, "arithmetic intensity (FLOP per byte, log scale)",
            "text-anchor=\"middle\" font-size=\"13\"");
  for (const auto& p : ridge_labels) {
    const double ly = top - 8 - 15 * static_cast<double>(p.row);
    s += line(p.line_x, ly - 10, p.line_x, bottom,
              "stroke=\"#555\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\"");
    s += text(p.x0, ly, p.label, "font-size=\"12\" fill=\"#222\"");
  }
  for (size_t i = 0; i < models.size(); ++i) {
    const double cy = top + 5 + row_h * (static_cast<double>(i) + 0.5);
    s += line(left, cy, right, cy, "stroke=\"#eee\"");
    s += text(left - 8, cy + 4, label_of(models[i].name), "text-anchor=\"end\" font-size=\"13\"");
    s += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"6\" fill=\"{}\" stroke=\"#222\"/>\n",
                     num(x(ai[i])), num(cy), color(i));
    // A white halo keeps the value legible where a ridge line crosses it.
    s += text(x(ai[i]) + 10, cy - 6, fmt::format("{:.3g}", ai[i]),
              "font-size=\"11\" fill=\"#333\" stroke=\"white\" stroke-width=\"3\" "
              "paint-order=\"stroke\"");
  }
  *height = bottom + 50 - y0;
  return s;
}

// Panel (b); returns its height.
std::string curve_panel(const std::vector<ModelShape>& models, const Hardware& hw, double y0,
                        double* height) {
  const std::vector<int64_t> ctx = svg_curve_contexts();
  std::vector<std::vector<double>> cost(models.size());
  double lo = 1e300, hi = 0;
  for (size_t i = 0; i < models.size(); ++i)
    for (int64_t t : ctx) {
      double c = usd_per_million_tokens(token_cost(models[i], t), hw).total;
      cost[i].push_back(c);
      lo = std::min(lo, c);
      hi = std::max(hi, c);
    }
  auto [c0, c1] = nice_bounds(lo, hi);
  const double left = 90, right = kWidth - 330, top = y0 + 56, plot_h = 380;
  const double bottom = top + plot_h;
  LogAxis x{static_cast<double>(ctx.front()), static_cast<double>(ctx.back()), left, right};
  LogAxis y{c0, c1, bottom, top};
  std::string s;
  s += text(
      kWidth / 2, y0 + 22,
      fmt::format("(b) USD per 1M decoded tokens vs. context on {} (attention + FFN)", hw.name),
      "text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\"");
  s += text(kWidth / 2, y0 + 40,
            fmt::format("{} USD/h, pricing peak {:.3g} FLOP/s, HBM {:.3g} B/s; log-log axes",
                        hw.price_per_hour, hw.pricing_peak(), hw.memory_bandwidth),
            "text-anchor=\"middle\" font-size=\"12\" fill=\"#444\"");
  s += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" "
      "stroke=\"#999\"/>\n",
      num(left), num(top), num(right - left), num(plot_h));
  for (int64_t t = ctx.front(); t <= ctx.back(); t *= 2) {
    const double px = x(static_cast<double>(t));
    s += line(px, top, px, bottom, "stroke=\"#e3e3e3\"");
    s += line(px, bottom, px, bottom + 5, "stroke=\"#333\"");
    s += text(px, bottom + 18, context_label(t), "text-anchor=\"middle\" font-size=\"12\"");
  }
  for (double v : log_ticks(c0, c1)) {
    s += line(left, y(v), right, y(v), "stroke=\"#e3e3e3\"");
    s += line(left - 5, y(v), left, y(v), "stroke=\"#333\"");
    s += text(left - 8, y(v) + 4, tick_label(v), "text-anchor=\"end\" font-size=\"12\"");
  }
  s += text((left + right) / 2, bottom + 40, "context length T (tokens attended, log scale)",
            "text-anchor=\"middle\" font-size=\"13\"");
  s += text(24, (top + bottom) / 2, "USD per 1M tokens (log scale)",
            fmt::format("text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 24 {})\"",
                        num((top + bottom) / 2)));
  for (size_t i = 0; i < models.size(); ++i) {
    std::string pts;
    for (size_t k = 0; k < ctx.size(); ++k)
      pts += fmt::format("{}{},{}", k ? " " : "", num(x(static_cast<double>(ctx[k]))),
                         num(y(cost[i][k])));
    std::string d = dash(i).empty() ? "" : fmt::format(" stroke-dasharray=\"{}\"", dash(i));
    s += fmt::format(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\"{}/>\n", pts,
        color(i), d);
    for (size_t k = 0; k < ctx.size(); ++k) {
      const int64_t t = ctx[k];
      if ((t & (t - 1)) != 0) continue;  // markers on the power-of-two ticks only
      s += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\"/>\n",
                       num(x(static_cast<double>(t))), num(y(cost[i][k])), color(i));
    }
  }
  // Legend, ordered by the cost at the longest context so it reads like the right edge.
  std::vector<size_t> order(models.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t p, size_t q) { return cost[p].back() > cost[q].back(); });
  const double lx = right + 20;
  s += text(lx, top + 4, "model (USD at 4K / 128K)", "font-size=\"12\" font-weight=\"bold\"");
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    const double ly = top + 24 + 20 * static_cast<double>(k);
    std::string d = dash(i).empty() ? "" : fmt::format(" stroke-dasharray=\"{}\"", dash(i));
    s +=
        line(lx, ly, lx + 24, ly, fmt::format("stroke=\"{}\" stroke-width=\"2.5\"{}", color(i), d));
    s += text(lx + 30, ly + 4,
              fmt::format("{} ({:.3g} / {:.3g})", label_of(models[i].name), cost[i].front(),
                          cost[i].back()),
              "font-size=\"12\"");
  }
  *height = std::max(bottom + 56, top + 40 + 20 * static_cast<double>(models.size())) - y0;
  return s;
}

}  // namespace

std::vector<int64_t> svg_curve_contexts() {
  std::vector<int64_t> v;
  // 4 points per octave from 4K to 128K: 21 samples, exact powers of two among them.
  for (int k = 0; k <= 20; ++k)
    v.push_back(static_cast<int64_t>(std::llround(4096.0 * std::pow(2.0, k / 4.0))));
  return v;
}

std::string cost_svg(const std::vector<ModelShape>& models, const std::vector<Hardware>& hardware,
                     int64_t context, const Hardware& curve_hw) {
  double ha = 0, hb = 0;
  std::string a = roofline_panel(models, hardware, context, 0, &ha);
  std::string b = curve_panel(models, curve_hw, ha + 10, &hb);
  const double height = ha + 10 + hb;
  std::string s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"DejaVu Sans, Arial, Helvetica, "
      "sans-serif\">\n",
      num(kWidth), num(height));
  s += "<title>afd cost: decoding cost model (cost-model.md)</title>\n";
  s += fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"white\"/>\n", num(kWidth), num(height));
  s += a;
  s += line(20, ha + 5, kWidth - 20, ha + 5, "stroke=\"#ccc\"");
  s += b;
  s += "</svg>\n";
  return s;
}

}  // namespace afd::analysis
