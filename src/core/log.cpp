#include "core/log.h"

#include <cstdlib>
#include <cstring>

namespace afd {

LogLevel log_level() {
  static const LogLevel lvl = [] {
    const char* e = std::getenv("AFD_LOG");
    if (!e) return LogLevel::kInfo;
    if (!std::strcmp(e, "error")) return LogLevel::kError;
    if (!std::strcmp(e, "warn")) return LogLevel::kWarn;
    if (!std::strcmp(e, "debug")) return LogLevel::kDebug;
    return LogLevel::kInfo;
  }();
  return lvl;
}

void log_line(LogLevel lvl, const std::string& msg) {
  static const char* names[] = {"error", "warn", "info", "debug"};
  std::fprintf(stderr, "[afd %s] %s\n", names[static_cast<int>(lvl)], msg.c_str());
}

}  // namespace afd
