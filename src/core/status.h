// Status, Result<T> and AFD_CHECK: how afd reports errors.
//
// Layers (DESIGN.md §5): functions that read user input (files, configs, flags) return a
// Status or Result<T> whose message names the file, tensor or field at fault. Internal
// invariants use AFD_CHECK, which throws afd::Error carrying file:line; the CLI and server
// catch it at the top and print one line. Nothing in afd calls abort() on bad input.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace afd {

enum class Code {
  kOk = 0,
  kInvalidArgument,  // a bad flag, field or shape supplied by the user
  kNotFound,         // a file or tensor that should exist does not
  kCorrupt,          // a file exists but its contents are malformed
  kIOError,          // the OS refused (open, mmap, write)
  kUnimplemented,    // a valid request this build cannot serve (e.g. CUDA op without CUDA)
  kUnavailable,      // a peer is down or timed out
  kInternal,         // a broken invariant inside afd
};

const char* code_name(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string msg) : code_(code), msg_(std::move(msg)) {}
  static Status OK() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  // "<code name>: <message>", or "OK".
  std::string to_string() const;

 private:
  Code code_ = Code::kOk;
  std::string msg_;
};

template <typename... Args>
Status InvalidArgument(fmt::format_string<Args...> f, Args&&... a) {
  return Status(Code::kInvalidArgument, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
Status NotFound(fmt::format_string<Args...> f, Args&&... a) {
  return Status(Code::kNotFound, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
Status Corrupt(fmt::format_string<Args...> f, Args&&... a) {
  return Status(Code::kCorrupt, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
Status IOError(fmt::format_string<Args...> f, Args&&... a) {
  return Status(Code::kIOError, fmt::format(f, std::forward<Args>(a)...));
}

// The exception behind AFD_CHECK and Result::value() on an error. It carries a Status so
// a caller can still tell a user error from an internal one.
class Error : public std::runtime_error {
 public:
  explicit Error(Status s) : std::runtime_error(s.message()), status_(std::move(s)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

// Either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) {      // NOLINT: implicit by design
    if (std::get<Status>(v_).ok()) v_ = Status(Code::kInternal, "Result built from OK status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    if (!ok()) throw Error(std::get<Status>(v_));
    return std::get<T>(v_);
  }
  T&& value() && {
    if (!ok()) throw Error(std::get<Status>(v_));
    return std::move(std::get<T>(v_));
  }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Status> v_;
};

[[noreturn]] void throw_check_failure(const char* file, int line, const char* cond,
                                      const std::string& msg);

}  // namespace afd

// AFD_CHECK(cond, "fmt {}", args...): throw afd::Error(kInternal) naming file:line when false.
#define AFD_CHECK(cond, ...)                                                        \
  do {                                                                              \
    if (!(cond)) ::afd::throw_check_failure(__FILE__, __LINE__, #cond,              \
                                            ::fmt::format(__VA_ARGS__));            \
  } while (0)

// Propagate a non-OK Status from an expression.
#define AFD_RETURN_IF_ERROR(expr)            \
  do {                                       \
    ::afd::Status _afd_s = (expr);           \
    if (!_afd_s.ok()) return _afd_s;         \
  } while (0)

#define AFD_CONCAT_INNER(a, b) a##b
#define AFD_CONCAT(a, b) AFD_CONCAT_INNER(a, b)
// AFD_ASSIGN_OR_RETURN(auto x, ResultExpr): bind the value or return the error Status.
#define AFD_ASSIGN_OR_RETURN(lhs, expr)                                 \
  auto AFD_CONCAT(_afd_r_, __LINE__) = (expr);                          \
  if (!AFD_CONCAT(_afd_r_, __LINE__).ok())                              \
    return AFD_CONCAT(_afd_r_, __LINE__).status();                      \
  lhs = std::move(AFD_CONCAT(_afd_r_, __LINE__)).value()
