// AFD across processes (and hosts): a coordinator and one worker process per rank.
//
// Protocol over the control plane (transport/control.h), JSON text messages:
//   worker -> coordinator  {"type":"hello", role, index, pid}           on connect
//   worker -> coordinator  {"type":"ready", fingerprint, model}        model loaded
//   coordinator -> worker  {"type":"assign", rank, world, names}       after all hellos agree
//   worker -> coordinator  {"type":"address", address (hex of the UCX worker address)}
//   coordinator -> worker  {"type":"start", addresses, job, requests}
//   worker -> coordinator  {"type":"result", results, stats, trace}
//   coordinator -> worker  {"type":"abort", reason}                    when any rank is lost
// A worker's control connection is its liveness: when it closes before "result", the
// coordinator names the dead rank, aborts every other rank, and fails the job.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "model/config.h"
#include "runtime/job.h"

namespace afd {

struct LaunchSpec {
  std::string model;        // checkpoint folder or preset (workers load it themselves)
  uint64_t weights_seed = 0;
  JobOptions job;
  std::string listen;       // empty: 127.0.0.1:0 and spawn the workers here
};

// Config of `--model` without loading weights (for vocab checks in the coordinator).
Result<ModelConfig> model_config_of(const std::string& model);

// Coordinator: spawns (or, with spec.listen, waits for) A + M workers, runs the job.
Result<JobReport> launch_processes(const LaunchSpec& spec, const std::vector<Request>& reqs);

// Worker: connects to the coordinator, loads the model, serves as `role` ("attention" or
// "ffn") number `index`. Returns the process exit status.
Status run_worker(const std::string& coordinator, const std::string& role, int index,
                  const std::string& model, uint64_t weights_seed,
                  std::chrono::milliseconds connect_timeout = std::chrono::milliseconds(60000));

}  // namespace afd
