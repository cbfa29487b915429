// Fabric: tagged byte messages between the ranks of one AFD job (DESIGN.md §3).
//
// The fabric moves bytes and knows nothing of layers, experts or tokens: the runtime encodes
// (step, layer, micro-batch, direction) into the 48-bit tag and the payload layout itself.
// Ranks are 0..world-1; each has a name ("attention 0", "ffn 2") that every error uses.
//
// Contract (every implementation):
//   - send() never waits for the receiver: it copies the bytes (or hands them to the network)
//     and returns, so two ranks that send to each other before receiving cannot deadlock.
//     Messages from one sender to one receiver with the same tag must not be in flight twice.
//   - recv() waits at most `timeout` for the message with exactly (peer, tag). Messages may
//     arrive in any order; ones not yet asked for are kept until asked for. A recv() that
//     times out consumes nothing: the next recv() of that (peer, tag) still gets the message.
//   - A peer known to be dead (mark_dead(), or the implementation found out) makes every
//     later recv() from it, and every send() to it, fail at once with kUnavailable naming the
//     peer. A timeout is kUnavailable too, naming the peer and the wait.
//   - Thread safety: send() and recv() may be called from different threads; recv() for the
//     same peer from two threads at once is not supported.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace afd {

constexpr uint64_t kFabricTagBits = 48;  // user tags must fit below 2^48

class Fabric {
 public:
  virtual ~Fabric() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Human name of rank r, as given at construction ("rank r" when none was).
  virtual std::string name(int r) const = 0;

  virtual Status send(int peer, uint64_t tag, const void* data, size_t n) = 0;
  // send() without the copy: the fabric takes the buffer and frees it when done with it.
  virtual Status send_owned(int peer, uint64_t tag, std::vector<uint8_t> bytes) {
    return send(peer, tag, bytes.data(), bytes.size());
  }
  // A send buffer to encode a message into and hand back with send_owned(). The UCX fabric
  // registers each buffer with the transport the first time it is sent and recycles it when
  // the send completes, so steady traffic (one buffer per micro-batch slot and peer) sends from
  // memory registered once, with no copy. Empty (capacity 0) when the pool has none spare.
  virtual std::vector<uint8_t> acquire_buffer() { return {}; }
  // *out is resized to the message and filled; a caller that passes the same vector again
  // saves an allocation. On an error *out's contents are unspecified.
  virtual Status recv(int peer, uint64_t tag, std::vector<uint8_t>* out,
                      std::chrono::milliseconds timeout) = 0;
  // Waits until every send() so far has left this process (for an orderly shutdown).
  virtual Status flush(std::chrono::milliseconds timeout) = 0;
  // Declares `peer` dead with a reason (e.g. from the control plane); wakes waiting recv()s.
  virtual void mark_dead(int peer, const std::string& reason) = 0;

  // Bytes handed to send() and returned by recv() so far (statistics).
  virtual uint64_t bytes_sent() const = 0;
  virtual uint64_t bytes_received() const = 0;
};

// ---- in-process fabric (tests, colocated runs) -----------------------------------------------
// All ranks live in one process (threads); the hub holds one mailbox per rank.
class LocalHub;
std::shared_ptr<LocalHub> make_local_hub(int world, std::vector<std::string> names = {});
std::unique_ptr<Fabric> make_local_fabric(std::shared_ptr<LocalHub> hub, int rank);

// ---- UCX fabric (processes and hosts) --------------------------------------------------------
// Two steps, because addresses travel out of band (the control plane's bootstrap):
//   auto w = UcxEndpoint::create(rank, world, names);   // context + worker
//   std::string mine = w->address();                    // opaque bytes to publish
//   ... exchange addresses of all ranks ...
//   auto fabric = UcxEndpoint::connect(std::move(w), all_addresses);  // endpoints to all
// Transports come from UCX_TLS (default when unset: "sm,self,ib,tcp"; platform-notes.md).
// Endpoints use error mode NONE so that shared memory can be chosen; a dead peer is therefore
// found by the control plane (mark_dead) or by a bounded wait. (UCX itself reports only a
// transfer that fails, e.g. a shared-memory read from a killed peer: that recv() fails at once.)
// UCX's own log lines go to stderr (stdout carries the CLI's results) unless UCX_LOG_FILE is
// set, at level "error" unless UCX_LOG_LEVEL is set.
class UcxEndpoint {
 public:
  virtual ~UcxEndpoint() = default;
  static Result<std::unique_ptr<UcxEndpoint>> create(int rank, int world,
                                                     std::vector<std::string> names);
  // Opaque bytes (a UCX worker address, a few hundred bytes) to publish to every peer.
  virtual std::string address() const = 0;
  // Consumes the endpoint (its context and worker move into the fabric); addresses[r] is rank
  // r's address() (its own included), passed on unchanged. Fails, naming the peer, when an
  // address is empty or no transport in UCX_TLS reaches it.
  static Result<std::unique_ptr<Fabric>> connect(std::unique_ptr<UcxEndpoint> endpoint,
                                                 const std::vector<std::string>& addresses);
};

}  // namespace afd
