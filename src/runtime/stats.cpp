#include "runtime/stats.h"

#include <fmt/format.h>

namespace afd {

double Trace::now_us() {
  // CLOCK_MONOTONIC: one clock for every process of a host, so ranks' spans line up.
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Trace::span(int track, const std::string& name, const char* cat, double s, double e) {
  std::lock_guard<std::mutex> g(mu_);
  spans_.push_back({track, name, cat, s, e});
}

void Trace::name_track(int track, const std::string& name) {
  std::lock_guard<std::mutex> g(mu_);
  tracks_.emplace_back(track, name);
}

std::string Trace::events_json(double shift_us) const {
  std::lock_guard<std::mutex> g(mu_);
  std::string out;
  auto sep = [&] { if (!out.empty()) out += ",\n"; };
  for (const auto& [track, name] : tracks_) {
    sep();
    out += fmt::format(R"({{"ph":"M","name":"thread_name","pid":1,"tid":{},"args":{{"name":"{}"}}}})",
                       track, name);
  }
  for (const Span& s : spans_) {
    sep();
    out += fmt::format(R"({{"ph":"X","name":"{}","cat":"{}","pid":1,"tid":{},"ts":{:.1f},"dur":{:.1f}}})",
                       s.name, s.cat, s.track, s.start + shift_us, s.end - s.start);
  }
  return out;
}

}  // namespace afd
