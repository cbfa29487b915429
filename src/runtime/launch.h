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
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model/config.h"
#include "runtime/job.h"
#include "transport/control.h"

namespace afd {

struct LaunchSpec {
  std::string model;        // checkpoint folder or preset (workers load it themselves)
  uint64_t weights_seed = 0;
  JobOptions job;
  std::string listen;       // empty: 127.0.0.1:0 and spawn the workers here
  std::string worker_binary;  // the `afd` executable to spawn; empty: this executable
};

// Worker processes of one job after start-up: every rank said hello, loaded the same model
// (fingerprints agree), and got the others' fabric addresses and its "start" message.
struct ChildProcess {
  int pid = -1;      // -1 once reaped, or for an external worker
  std::string name;  // "attention 0"
};
class ProcessCluster {
 public:
  // Spawns (or, with spec.listen, waits for) A + M workers. requests_for(r) gives attention
  // rank r's initial requests as a JSON array text (may be null: none); serving ranks keep
  // taking requests over the control plane.
  static Result<std::unique_ptr<ProcessCluster>> start(
      const LaunchSpec& spec, bool serving, const std::function<std::string(int rank)>& requests_for);
  ~ProcessCluster();  // stops (then kills) every spawned worker

  // " (pid N killed by signal 9)" for a spawned rank that has exited, else "".
  std::string fate(int rank);
  // Tells every rank but `except` why the job stops, then stops the spawned workers.
  void abort_all(const std::string& why, int except = -1);

  int A = 0, M = 0;
  std::vector<std::string> names;                     // [rank]
  std::vector<std::unique_ptr<ControlChannel>> ch;  // [rank]
  std::vector<ChildProcess> kids;
  std::mutex send_mu;  // ControlChannel::send from several threads

 private:
  ProcessCluster() = default;
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
