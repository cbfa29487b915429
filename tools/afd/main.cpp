// afd: the one command-line entry point (DESIGN.md §2). `afd --help` lists the subcommands.
#include <cstdio>
#include <exception>
#include <vector>

#include "core/status.h"
#include "tools/afd/commands.h"

namespace afd::cli {
void check(const Status& s) {
  if (!s.ok()) throw Error(s);
}
}  // namespace afd::cli

int main(int argc, char** argv) {
  CLI::App app{
      "afd: serve Step-3 with Attention-FFN Disaggregation.\n"
      "Every subcommand has --help. Errors are one line on stderr and a non-zero exit."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Help for every subcommand");
  std::vector<afd::cli::Command> commands = {afd::cli::register_checkpoint(app),
                                             afd::cli::register_generate(app),
                                             afd::cli::register_info(app),
                                             afd::cli::register_cost(app),
                                             afd::cli::register_plan(app),
                                             afd::cli::register_launch(app),
                                             afd::cli::register_worker(app),
                                             afd::cli::register_tokenize(app),
                                             afd::cli::register_detokenize(app),
                                             afd::cli::register_bench(app),
                                             afd::cli::register_serve(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const afd::Error& e) {
    std::fprintf(stderr, "afd: error: %s\n", e.status().message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "afd: error: %s\n", e.what());
    return 1;
  }
  return 1;
}
