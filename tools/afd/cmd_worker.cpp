// afd worker: one rank of an AFD job, for deployments over several hosts.
#include <memory>

#include "runtime/launch.h"
#include "tools/afd/commands.h"

namespace afd::cli {

Command register_worker(CLI::App& app) {
  struct Args {
    std::string coordinator, role, model = "step3-tiny";
    int index = 0;
    uint64_t weights_seed = 0;
    int64_t connect_timeout_ms = 60000;
  };
  auto a = std::make_shared<Args>();
  CLI::App* w = app.add_subcommand(
      "worker",
      "Serve as one rank of an AFD job run by `afd launch --listen HOST:PORT` (docs/deploy.md). "
      "Exits non-zero, naming the peer, when any rank of the job is lost.");
  w->add_option("--coordinator", a->coordinator, "HOST:PORT of the afd launch coordinator")->required();
  w->add_option("--role", a->role, "attention or ffn")->required()->check(CLI::IsMember({"attention", "ffn"}));
  w->add_option("--index", a->index, "Rank index within its role (0-based)")->required();
  w->add_option("--model", a->model, "Checkpoint folder or preset (same model on every rank)")
      ->capture_default_str();
  w->add_option("--weights-seed", a->weights_seed, "Seed of a preset's random weights")->capture_default_str();
  w->add_option("--connect-timeout-ms", a->connect_timeout_ms,
                "How long to keep trying to reach the coordinator")
      ->capture_default_str();
  return {w, [a] {
            check(run_worker(a->coordinator, a->role, a->index, a->model, a->weights_seed,
                             std::chrono::milliseconds(a->connect_timeout_ms)));
            return 0;
          }};
}

}  // namespace afd::cli
