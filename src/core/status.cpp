#include "core/status.h"

namespace afd {

const char* code_name(Code c) {
  switch (c) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kCorrupt: return "corrupt";
    case Code::kIOError: return "I/O error";
    case Code::kUnimplemented: return "unimplemented";
    case Code::kUnavailable: return "unavailable";
    case Code::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "OK";
  return fmt::format("{}: {}", code_name(code_), msg_);
}

void throw_check_failure(const char* file, int line, const char* cond, const std::string& msg) {
  throw Error(Status(Code::kInternal,
                     fmt::format("{} ({}:{}: check failed: {})", msg, file, line, cond)));
}

}  // namespace afd
