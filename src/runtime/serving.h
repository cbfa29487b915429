// The AFD cluster as an Engine (serve/engine.h): requests arrive while it runs, tokens stream
// back per step, cancellations free KV blocks. `afd serve` builds one with start_engine().
#pragma once

#include <memory>
#include <string>

#include "runtime/job.h"
#include "serve/engine.h"

namespace afd {

struct ServeOptions {
  std::string model = "step3-tiny";  // checkpoint folder or preset
  uint64_t weights_seed = 0;
  std::string transport = "ucx";     // "ucx": one process per rank; "local": threads
  JobOptions job;                    // ranks, micro-batches, dispatch dtype, scheduler, KV
  std::string worker_binary;         // `afd` executable for the ucx workers; empty: this one
};

// Starts the ranks (and waits until they are ready). With job.colocated, one in-process rank.
Result<std::unique_ptr<Engine>> start_engine(const ServeOptions& opt);

}  // namespace afd
