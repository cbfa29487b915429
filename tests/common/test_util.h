// Helpers shared by the C++ test suites.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace afd::testing {

// A fresh folder under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("afd-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// max |a - b| / max(|b|) over two equally long float arrays (0 when b is all zero and a == b).
inline double max_rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::fmax(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::fmax(den, std::fabs(double(b[i])));
  }
  return den > 0 ? num / den : num;
}

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs a shell command line, capturing stdout and stderr separately.
inline CommandResult run_command(const std::string& cmd) {
  static std::atomic<int> counter{0};
  std::string errfile = (std::filesystem::temp_directory_path() /
                         ("afd-cmd-" + std::to_string(::getpid()) + "-" +
                          std::to_string(counter++) + ".err"))
                            .string();
  CommandResult r;
  FILE* p = popen((cmd + " 2>" + errfile).c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (FILE* f = fopen(errfile.c_str(), "r")) {
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.err.append(buf, n);
    fclose(f);
  }
  std::remove(errfile.c_str());
  return r;
}

}  // namespace afd::testing
