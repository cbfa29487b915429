// Subcommands of the `afd` CLI. Each register_* adds its subcommand to the app and returns it
// with the function main() runs when it was chosen; the function returns the process exit code and
// reports errors by throwing afd::Error (main prints one line and exits non-zero).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "core/status.h"

namespace afd::cli {

struct Command {
  CLI::App* app;               // the subcommand
  std::function<int()> run;    // runs it once parsed; returns the exit code
};

Command register_checkpoint(CLI::App& app);
Command register_generate(CLI::App& app);
Command register_info(CLI::App& app);
Command register_cost(CLI::App& app);
Command register_plan(CLI::App& app);
Command register_launch(CLI::App& app);
Command register_worker(CLI::App& app);
Command register_tokenize(CLI::App& app);
Command register_detokenize(CLI::App& app);
Command register_bench(CLI::App& app);
Command register_serve(CLI::App& app);

// Throws afd::Error when s is not OK.
void check(const Status& s);

}  // namespace afd::cli
