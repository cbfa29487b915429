// In-process Fabric: every rank is a thread of one process and owns a mailbox in the hub.
//
// send() copies the bytes into the receiver's mailbox under the receiver's mutex and returns,
// so it never waits for the receiver. recv() waits on the receiver's condition variable for
// (peer, tag). Liveness has two sources: mark_dead() (this rank's view only, as with a real
// control plane) and a peer's LocalFabric being destroyed ("closed"), which the hub broadcasts
// to every mailbox.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>

#include "transport/fabric.h"
#include "transport/fabric_util.h"

namespace afd {

using fabric_detail::check_peer_tag;
using fabric_detail::dead_error;
using fabric_detail::timeout_error;
using fabric_detail::Unavailable;

class LocalHub {
 public:
  LocalHub(int world, std::vector<std::string> names)
      : world_(world), names_(std::move(names)), attached_(world) {
    for (int r = 0; r < world; ++r) boxes_.push_back(std::make_unique<Mailbox>(world));
  }

  // One rank's incoming messages and its view of its peers' liveness.
  struct Mailbox {
    explicit Mailbox(int world) : dead(world), closed(world, false) {}
    std::mutex mu;  // guards everything below
    std::condition_variable cv;
    // (sender, tag) -> payloads in send order (the contract allows one in flight; a queue
    // keeps a misbehaving caller's messages in order instead of losing them).
    std::map<std::pair<int, uint64_t>, std::deque<std::vector<uint8_t>>> msgs;
    std::vector<std::string> dead;  // [world] reason given to mark_dead, empty = alive
    std::vector<bool> closed;       // [world] that rank's fabric was destroyed
  };

  int world() const { return world_; }
  const std::string& name(int r) const { return names_[r]; }
  Mailbox& box(int r) { return *boxes_[r]; }

  // Each rank may be attached by at most one live LocalFabric (its mailbox has one reader).
  bool attach(int r) { return !attached_[r].exchange(true); }

  // Called when rank r's fabric goes away: waiters on r everywhere wake and fail.
  void close(int r) {
    for (auto& b : boxes_) {
      std::lock_guard<std::mutex> lk(b->mu);
      b->closed[r] = true;
      b->cv.notify_all();
    }
  }

 private:
  const int world_;
  const std::vector<std::string> names_;
  std::vector<std::unique_ptr<Mailbox>> boxes_;  // [world]
  std::vector<std::atomic<bool>> attached_;      // [world]
};

namespace {

class LocalFabric final : public Fabric {
 public:
  LocalFabric(std::shared_ptr<LocalHub> hub, int rank) : hub_(std::move(hub)), rank_(rank) {}
  ~LocalFabric() override { hub_->close(rank_); }

  int rank() const override { return rank_; }
  int world() const override { return hub_->world(); }
  std::string name(int r) const override {
    return r >= 0 && r < world() ? hub_->name(r) : "rank " + std::to_string(r);
  }

  Status send(int peer, uint64_t tag, const void* data, size_t n) override {
    // Copy before taking the receiver's lock: the receiver never waits for a memcpy.
    const auto* p = static_cast<const uint8_t*>(data);
    return send_owned(peer, tag, n ? std::vector<uint8_t>(p, p + n) : std::vector<uint8_t>());
  }

  Status send_owned(int peer, uint64_t tag, std::vector<uint8_t> bytes) override {
    AFD_RETURN_IF_ERROR(check_peer_tag("send", peer, world(), tag));
    {
      // Our own view of the peer (mark_dead) is kept in our mailbox.
      LocalHub::Mailbox& mine = hub_->box(rank_);
      std::lock_guard<std::mutex> lk(mine.mu);
      if (!mine.dead[peer].empty()) return dead_error(name(peer), mine.dead[peer]);
      if (mine.closed[peer]) return Unavailable("{} has closed its fabric", name(peer));
    }
    const size_t n = bytes.size();
    LocalHub::Mailbox& box = hub_->box(peer);
    {
      std::lock_guard<std::mutex> lk(box.mu);
      box.msgs[{rank_, tag}].push_back(std::move(bytes));
      box.cv.notify_all();  // waiters for different senders share the variable
    }
    sent_ += n;
    return Status::OK();
  }

  Status recv(int peer, uint64_t tag, std::vector<uint8_t>* out,
              std::chrono::milliseconds timeout) override {
    AFD_RETURN_IF_ERROR(check_peer_tag("recv", peer, world(), tag));
    if (out == nullptr) return InvalidArgument("fabric recv: no output vector");
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    LocalHub::Mailbox& box = hub_->box(rank_);
    std::unique_lock<std::mutex> lk(box.mu);
    const auto key = std::make_pair(peer, tag);
    while (true) {
      // A dead peer fails at once, even with messages queued (contract); a closed one still
      // delivers what it sent before closing, since those messages did arrive.
      if (!box.dead[peer].empty()) return dead_error(name(peer), box.dead[peer]);
      auto it = box.msgs.find(key);
      if (it != box.msgs.end()) {
        *out = std::move(it->second.front());
        it->second.pop_front();
        if (it->second.empty()) box.msgs.erase(it);
        received_ += out->size();
        return Status::OK();
      }
      if (box.closed[peer])
        return Unavailable("{} closed its fabric before sending tag {:#x}", name(peer), tag);
      if (box.cv.wait_until(lk, deadline) == std::cv_status::timeout &&
          std::chrono::steady_clock::now() >= deadline) {
        // One last look: the message may have come with the timeout.
        if (box.dead[peer].empty() && box.msgs.count(key)) continue;
        return timeout_error(name(peer), tag, timeout);
      }
    }
  }

  Status flush(std::chrono::milliseconds) override { return Status::OK(); }  // sends are done

  void mark_dead(int peer, const std::string& reason) override {
    if (peer < 0 || peer >= world()) return;
    LocalHub::Mailbox& box = hub_->box(rank_);
    std::lock_guard<std::mutex> lk(box.mu);
    if (box.dead[peer].empty()) box.dead[peer] = reason.empty() ? "marked dead" : reason;
    box.cv.notify_all();
  }

  uint64_t bytes_sent() const override { return sent_.load(); }
  uint64_t bytes_received() const override { return received_.load(); }

 private:
  std::shared_ptr<LocalHub> hub_;
  const int rank_;
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> received_{0};
};

}  // namespace

std::shared_ptr<LocalHub> make_local_hub(int world, std::vector<std::string> names) {
  AFD_CHECK(world >= 1, "local fabric: world {} must be at least 1", world);
  AFD_CHECK(names.empty() || static_cast<int>(names.size()) == world,
            "local fabric: {} names for {} ranks", names.size(), world);
  return std::make_shared<LocalHub>(world, fabric_detail::fill_names(world, std::move(names)));
}

std::unique_ptr<Fabric> make_local_fabric(std::shared_ptr<LocalHub> hub, int rank) {
  AFD_CHECK(hub != nullptr, "local fabric: no hub");
  AFD_CHECK(rank >= 0 && rank < hub->world(), "local fabric: rank {} outside world {}", rank,
            hub->world());
  AFD_CHECK(hub->attach(rank), "local fabric: rank {} ({}) is already attached", rank,
            hub->name(rank));
  return std::make_unique<LocalFabric>(std::move(hub), rank);
}

}  // namespace afd
