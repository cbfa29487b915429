// UCX Fabric: one ucp context and worker per rank, tag matching, endpoints built from worker
// addresses exchanged out of band (platform-notes.md, UCX section).
//
// Threads and locking. Every ucp_* call on the worker or its endpoints happens under `mu_`
// (the worker is created UCS_THREAD_MODE_SERIALIZED). Whoever drives the worker runs rounds of
// "progress until idle, then probe UCX's unexpected queue for every registered receive and post
// the ones found"; when a round finds nothing it arms the worker and sleeps in poll() on UCX's
// event fd and our wake fd, lock released. At most one thread sleeps in poll() (`polling_`).
//   - A recv() caller drives the worker itself while it waits, so an arriving message wakes
//     the very thread that wants it (one wake-up per message, no hand-over).
//   - The progress thread drives it when no recv() has been waiting for a while
//     (kHandBackDelay). It keeps a rank's transfers moving while its caller computes and calls
//     no fabric method: rendezvous and multi-fragment sends need the sender's progress too.
//     A recv() that finds it asleep in poll() wakes it, and it pauses until recv()s are done.
// A second recv() thread (another peer) waits on `cv_` while one polls: every round serves
// every registered receive, whoever runs it.
//
// Tags. UCX tag = (sender rank << 48) | user tag, matched on all 64 bits, so a message is found
// by exactly (peer, tag); messages nobody asked for yet stay in UCX's unexpected queue.
//
// Ownership. A send copies the caller's bytes (send_owned: takes them) into a SendOp owned by
// the fabric until UCX completes it (immediately, or in the completion callback). A receive
// lands directly in the caller's vector. Once matched, a message is UCX's no more: if the
// caller gives up (timeout) while the transfer runs (a long message over TCP takes a while),
// the vector's heap block moves into the op, the op is "detached" (owned by the fabric), and
// the next recv() of that (peer, tag) adopts it; the message is not lost.
//
// Logging. UCX's log handler is replaced (see log_handler): lines go to stderr, and "fatal"
// lines that UCX logs and then returns an error for (e.g. a CMA read from a peer that was just
// killed) no longer abort the process: the error reaches recv() and names the peer.
#include <poll.h>
#include <sys/eventfd.h>
#include <ucp/api/ucp.h>
#include <ucs/config/global_opts.h>
#include <ucs/debug/log_def.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "transport/fabric.h"
#include "transport/fabric_util.h"

namespace afd {

using fabric_detail::check_peer_tag;
using fabric_detail::dead_error;
using fabric_detail::timeout_error;
using fabric_detail::Unavailable;

namespace {

using Clock = std::chrono::steady_clock;

// Shared memory on one host, self for a rank's messages to itself, InfiniBand/RoCE across hosts
// where there is some (ignored where there is none, as here), else tcp. Endpoints use error
// mode NONE, the only mode in which UCX 1.13 picks shared memory.
constexpr const char* kDefaultTls = "sm,self,ib,tcp";
constexpr uint64_t kFullTagMask = ~uint64_t{0};
// Some protocol steps raise no event: a sender whose shared memory FIFO or TCP socket was full
// must simply retry, and a receive whose transfer failed (its peer was killed mid-rendezvous)
// completes at a later progress call. So while sends or matched receives are outstanding,
// poll() sleeps at most this long. (A shorter bound after every bit of activity was tried: no
// gain in round trips here, more wake-ups.)
constexpr auto kOpPoll = std::chrono::microseconds(200);
// Idle sleep; every interesting event (network, send(), stop) wakes the thread earlier.
constexpr auto kIdlePollInterval = std::chrono::milliseconds(100);
// How long recv() polls without sleeping (AFD_UCX_SPIN_US). Off by default: on a host with
// fewer cores than busy threads a spinning waiter slows the very peers it waits for (on the
// 2-core machines here it made 896 KiB round trips slower); worth trying on a many-core host.
constexpr int64_t kDefaultSpinUs = 0;
// How long the progress thread leaves the worker alone after the last recv() returned. Short
// enough that a caller's send()s keep moving while it computes; long enough to span the gap
// between two recv() calls of a receive loop.
constexpr auto kHandBackDelay = std::chrono::microseconds(500);
// Bound on closing endpoints in the destructor (a dead peer never confirms anything).
constexpr auto kCloseTimeout = std::chrono::milliseconds(1000);

uint64_t ucx_tag(int sender, uint64_t tag) {
  return (static_cast<uint64_t>(sender) << kFabricTagBits) | tag;
}

// ---- process-wide UCX settings ---------------------------------------------------------------

// UCX writes its log to stdout by default; stdout carries the CLI's JSON results, so every UCX
// line goes to stderr instead, unless the user chose a UCX_LOG_FILE (then non-fatal lines go
// there through UCX's own handler). UCX's default handler also aborts the process on lines at
// the "trigger" level (fatal), including ones after which UCX carries on and returns an error
// (a CMA read from a dead peer): stopping those here turns them into errors the caller sees.
bool g_ucx_log_to_stderr = true;
// Set while a fabric closes its endpoints: UCX then logs an error for every peer that left
// first ("error during flush: Endpoint timeout" over tcp), which at shutdown is expected.
// Kept when the user asked for UCX_LOG_LEVEL explicitly.
thread_local bool t_closing = false;
bool g_quiet_close = true;

ucs_log_func_rc_t log_handler(const char* file, unsigned line, const char*, ucs_log_level_t level,
                              const ucs_log_component_config_t*, const char* format, va_list ap) {
  if (t_closing && g_quiet_close && level != UCS_LOG_LEVEL_FATAL) return UCS_LOG_FUNC_RC_STOP;
  if (!g_ucx_log_to_stderr && level != UCS_LOG_LEVEL_FATAL) return UCS_LOG_FUNC_RC_CONTINUE;
  char msg[1024];
  vsnprintf(msg, sizeof msg, format, ap);
  const char* base = std::strrchr(file, '/');
  std::fprintf(stderr, "[ucx %s] %s:%u %s%s\n",
               level < UCS_LOG_LEVEL_LAST ? ucs_log_level_names[level] : "log",
               base ? base + 1 : file, line, msg,
               level == UCS_LOG_LEVEL_FATAL ? " (afd: not fatal, returned as an error)" : "");
  return UCS_LOG_FUNC_RC_STOP;
}

int64_t g_spin_us = kDefaultSpinUs;

void init_ucx_process_settings() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Global options were parsed when libucs loaded; the level may still be changed.
    g_quiet_close = std::getenv("UCX_LOG_LEVEL") == nullptr;
    if (g_quiet_close) ucs_global_opts_set_value("LOG_LEVEL", "error");
    g_ucx_log_to_stderr = std::getenv("UCX_LOG_FILE") == nullptr;
    ucs_log_push_handler(&log_handler);
    if (const char* s = std::getenv("AFD_UCX_SPIN_US")) g_spin_us = std::max(0L, std::atol(s));
  });
}

std::string effective_tls() {
  const char* env = std::getenv("UCX_TLS");
  return env ? env : kDefaultTls;
}

// ---- RAII for UCX handles --------------------------------------------------------------------

struct ConfigDeleter {
  void operator()(ucp_config_t* c) const { ucp_config_release(c); }
};
struct ContextDeleter {
  void operator()(ucp_context_h c) const { ucp_cleanup(c); }
};
struct WorkerDeleter {
  void operator()(ucp_worker_h w) const { ucp_worker_destroy(w); }
};
using ConfigPtr = std::unique_ptr<ucp_config_t, ConfigDeleter>;
using ContextPtr = std::unique_ptr<std::remove_pointer_t<ucp_context_h>, ContextDeleter>;
using WorkerPtr = std::unique_ptr<std::remove_pointer_t<ucp_worker_h>, WorkerDeleter>;

// A file descriptor closed on destruction.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// ---- the endpoint before connect() -----------------------------------------------------------

class UcxEndpointImpl final : public UcxEndpoint {
 public:
  std::string address() const override { return address_; }

  int rank = 0;
  int world = 0;
  std::vector<std::string> names;  // [world]
  // Declared context first: members are destroyed in reverse, so the worker goes first.
  ContextPtr context;
  WorkerPtr worker;
  std::string address_;  // the worker's address bytes, copied out of UCX
};

// ---- the fabric ------------------------------------------------------------------------------

class UcxFabric;

// One send in flight: owns the copied bytes until UCX completes the request.
struct SendOp {
  UcxFabric* owner;
  int peer;
  std::vector<uint8_t> bytes;  // u8 [n]
  bool pooled = false;         // from send_owned: register it and recycle it into the pool
};

constexpr size_t kPoolMax = 256;  // spare registered buffers kept (about slots x peers)

// One receive. Owned by the recv() call until it returns; then either finished, or (when UCX is
// still writing into the buffer) detached: `data` takes over the caller's heap block, `out`
// points at `data`, and the op waits in UcxFabric::detached_ for the next recv() of its key.
struct RecvOp {
  enum State { kWaiting, kPosted, kDone, kFailed };
  UcxFabric* owner;
  int peer;
  uint64_t tag;
  // Where UCX writes, resized to the message: the caller's vector, or `data` once detached.
  std::vector<uint8_t>* out;
  State state = kWaiting;
  ucs_status_t status = UCS_OK;
  std::vector<uint8_t> data;  // u8 [message length]: a detached op's buffer
};

class UcxFabric final : public Fabric {
 public:
  explicit UcxFabric(UcxEndpointImpl&& ep)
      : rank_(ep.rank),
        world_(ep.world),
        names_(std::move(ep.names)),
        context_(std::move(ep.context)),
        worker_(std::move(ep.worker)),
        eps_(world_, nullptr),
        dead_(world_) {}
  ~UcxFabric() override;

  // Creates one endpoint per rank and starts the progress thread.
  Status start(const std::vector<std::string>& addresses);

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string name(int r) const override {
    return r >= 0 && r < world_ ? names_[r] : "rank " + std::to_string(r);
  }
  Status send(int peer, uint64_t tag, const void* data, size_t n) override;
  Status send_owned(int peer, uint64_t tag, std::vector<uint8_t> bytes) override;
  std::vector<uint8_t> acquire_buffer() override;
  Status recv(int peer, uint64_t tag, std::vector<uint8_t>* out,
              std::chrono::milliseconds timeout) override;
  Status flush(std::chrono::milliseconds timeout) override;
  void mark_dead(int peer, const std::string& reason) override;
  uint64_t bytes_sent() const override { return sent_.load(); }
  uint64_t bytes_received() const override { return received_.load(); }

 private:
  static void on_send(void* request, ucs_status_t status, void* user_data);
  static void on_recv(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info,
                      void* user_data);

  // All below: called with mu_ held.
  bool progress_once();        // progress until idle; true when anything happened
  bool try_match(RecvOp* op);  // probe for op's message and post it; true when found
  bool match_waiting();        // try_match every registered receive
  Status post_send(std::unique_ptr<SendOp> op, uint64_t tag, std::unique_lock<std::mutex>& lk);
  void wake();  // wakes the thread in poll(), if any (any thread, any lock)
  // One round on the calling thread (see the header comment): progress and match, or sleep in
  // poll() until an event, a wake(), or `until`. No sleeping before `spin_until`.
  void drive_once(std::unique_lock<std::mutex>& lk, Clock::time_point until,
                  Clock::time_point spin_until, bool progress_thread);
  void progress_loop();
  size_t live_sends() const;  // sends to peers not marked dead

  const int rank_;
  const int world_;
  const std::vector<std::string> names_;  // [world]
  ContextPtr context_;                    // outlives worker_ (declared first)
  WorkerPtr worker_;
  int ucx_fd_ = -1;  // the worker's event fd (owned by UCX); -1 when wakeup is unavailable
  Fd wake_fd_;       // eventfd: send(), recv(), mark_dead() and stop wake the poll()ing thread

  mutable std::mutex mu_;               // guards every ucp_* call and everything below
  std::condition_variable cv_;          // recv() and flush() waiters
  std::condition_variable pt_cv_;       // the progress thread sleeps here while recv()s drive
  int drivers_ = 0;                     // recv() callers inside their wait loop
  bool polling_ = false;                // a thread sleeps in poll() (lock released)
  bool pt_polling_ = false;             // ... and it is the progress thread
  Clock::time_point last_driver_exit_;  // when drivers_ last fell to 0
  std::vector<ucp_ep_h> eps_;           // [world] endpoint to each rank (self included)
  std::vector<std::string> dead_;       // [world] reason given to mark_dead, empty = alive
  std::set<SendOp*> sends_;             // owned: sends UCX has not completed
  // Send buffers registered with UCX (ucp_mem_map), by data pointer: mapped the first time a
  // buffer is sent, kept while it circulates between pool_ and sends, unmapped when dropped.
  struct Registration {
    ucp_mem_h memh;
    size_t length;
  };
  std::map<const void*, Registration> registered_;
  std::vector<std::vector<uint8_t>> pool_;  // completed, registered buffers ready for reuse
  void drop_registration(const void* p);
  std::map<std::pair<int, uint64_t>, RecvOp*> waiting_;  // registered, not yet matched
  // Owned: matched receives whose caller gave up before the transfer ended, by (peer, tag).
  std::map<std::pair<int, uint64_t>, RecvOp*> detached_;
  std::string send_error_;    // first asynchronous send failure, reported by flush()
  int posted_recvs_ = 0;      // receives UCX is still writing (detached ones included)
  uint64_t completions_ = 0;  // requests completed by UCX callbacks so far
  bool stop_ = false;
  std::thread progress_;

  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> received_{0};
};

Status UcxFabric::start(const std::vector<std::string>& addresses) {
  int efd = -1;
  if (ucp_worker_get_efd(worker_.get(), &efd) == UCS_OK) ucx_fd_ = efd;
  wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (wake_fd_.get() < 0) return IOError("ucx fabric: eventfd: {}", std::strerror(errno));

  std::lock_guard<std::mutex> lk(mu_);
  for (int r = 0; r < world_; ++r) {
    const std::string& a = addresses[r];
    if (a.empty()) return InvalidArgument("ucx fabric: empty address for {}", name(r));
    ucp_ep_params_t p{};
    p.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    p.address = reinterpret_cast<const ucp_address_t*>(a.data());
    p.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    ucs_status_t s = ucp_ep_create(worker_.get(), &p, &eps_[r]);
    if (s != UCS_OK) {
      eps_[r] = nullptr;
      return Unavailable("ucx fabric: {} cannot reach {} (UCX_TLS={}): {}", name(rank_), name(r),
                         effective_tls(), ucs_status_string(s));
    }
  }
  progress_ = std::thread([this] { progress_loop(); });
  return Status::OK();
}

UcxFabric::~UcxFabric() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    cv_.notify_all();
    pt_cv_.notify_all();
  }
  wake();
  if (progress_.joinable()) progress_.join();

  std::unique_lock<std::mutex> lk(mu_);  // no other thread uses the fabric now; kept for form
  // Flush-mode close: a forced close may raise transport errors on the peer, which endpoints
  // in error mode NONE must not see (ucp.h). The wait is bounded: a dead peer never answers,
  // and the worker's destruction below releases whatever is left.
  t_closing = true;
  std::vector<void*> closing;
  for (ucp_ep_h& ep : eps_) {
    if (!ep) continue;
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = 0;
    ucs_status_ptr_t r = ucp_ep_close_nbx(ep, &p);
    if (UCS_PTR_IS_PTR(r)) closing.push_back(r);
    ep = nullptr;
  }
  const auto deadline = Clock::now() + kCloseTimeout;
  while (!closing.empty() && Clock::now() < deadline) {
    ucp_worker_progress(worker_.get());
    for (size_t i = 0; i < closing.size();) {
      if (ucp_request_check_status(closing[i]) != UCS_INPROGRESS) {
        ucp_request_free(closing[i]);
        closing[i] = closing.back();
        closing.pop_back();
      } else {
        ++i;
      }
    }
  }
  for (void* r : closing) ucp_request_free(r);  // released by UCX when it completes
  // Callbacks that fire while the worker is destroyed free their ops; whatever is left after
  // that, UCX no longer references. (A peer that still wants an unreceived rendezvous message
  // from us then fails to read it: shut down after flush(), as the contract says.)
  worker_.reset();
  for (SendOp* op : sends_) delete op;
  sends_.clear();
  pool_.clear();
  for (auto& [ptr, reg] : registered_) ucp_mem_unmap(context_.get(), reg.memh);
  registered_.clear();
  for (auto& [key, op] : detached_) delete op;
  detached_.clear();
  lk.unlock();
  context_.reset();
  t_closing = false;
}

void UcxFabric::wake() {
  if (wake_fd_.get() < 0) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
}

bool UcxFabric::progress_once() {
  bool any = false;
  // Bounded so that a stream of events cannot keep mu_ from other threads forever.
  for (int i = 0; i < 256 && ucp_worker_progress(worker_.get()) != 0; ++i) any = true;
  return any;
}

bool UcxFabric::try_match(RecvOp* op) {
  ucp_tag_recv_info_t info{};
  ucp_tag_message_h msg =
      ucp_tag_probe_nb(worker_.get(), ucx_tag(op->peer, op->tag), kFullTagMask, 1, &info);
  if (msg == nullptr) return false;
  op->out->resize(info.length);  // no allocation when the caller reuses a big enough vector
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.recv = &UcxFabric::on_recv;
  p.user_data = op;
  ucs_status_ptr_t r = ucp_tag_msg_recv_nbx(worker_.get(), op->out->data(), info.length, msg, &p);
  if (UCS_PTR_IS_ERR(r)) {
    op->state = RecvOp::kFailed;
    op->status = UCS_PTR_STATUS(r);
  } else if (r == nullptr) {
    op->state = RecvOp::kDone;  // completed in place; no callback will come
  } else {
    op->state = RecvOp::kPosted;  // on_recv finishes it; the request is freed there
    ++posted_recvs_;
  }
  return true;
}

bool UcxFabric::match_waiting() {
  bool any = false;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (try_match(it->second)) {
      any = true;
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  if (any) cv_.notify_all();
  return any;
}

void UcxFabric::on_send(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<SendOp*>(user_data);
  UcxFabric* self = op->owner;
  ucp_request_free(request);
  if (status != UCS_OK && status != UCS_ERR_CANCELED && self->send_error_.empty())
    self->send_error_ =
        fmt::format("sending to {} failed: {}", self->name(op->peer), ucs_status_string(status));
  self->sends_.erase(op);
  ++self->completions_;
  if (self->registered_.count(op->bytes.data())) {
    if (self->pool_.size() < kPoolMax) self->pool_.push_back(std::move(op->bytes));
    else self->drop_registration(op->bytes.data());
  }
  delete op;
  self->cv_.notify_all();  // flush() waits for sends_ to drain
}

void UcxFabric::on_recv(void* request, ucs_status_t status, const ucp_tag_recv_info_t*,
                        void* user_data) {
  auto* op = static_cast<RecvOp*>(user_data);
  ucp_request_free(request);
  --op->owner->posted_recvs_;
  ++op->owner->completions_;
  op->status = status;
  op->state = status == UCS_OK ? RecvOp::kDone : RecvOp::kFailed;
  op->owner->cv_.notify_all();
}

size_t UcxFabric::live_sends() const {
  size_t n = 0;
  for (const SendOp* op : sends_) n += dead_[op->peer].empty() ? 1 : 0;
  return n;
}

void UcxFabric::drive_once(std::unique_lock<std::mutex>& lk, Clock::time_point until,
                           Clock::time_point spin_until, bool progress_thread) {
  const uint64_t before = completions_;
  bool busy = progress_once();
  busy |= match_waiting();
  // A callback may complete a request in a progress call that reports no events (seen: a
  // receive failing after its peer was killed): its waiter must look before anyone sleeps.
  busy |= completions_ != before;
  const auto now = Clock::now();
  if (busy || now < spin_until) {
    // Let send()/recv() callers in between rounds (std::mutex is not fair).
    lk.unlock();
    std::this_thread::yield();
    lk.lock();
    return;
  }
  if (now >= until) return;
  // Arm only after a round that found nothing: UCS_ERR_BUSY means events came meanwhile.
  bool armed = false;
  if (ucx_fd_ >= 0) {
    ucs_status_t s = ucp_worker_arm(worker_.get());
    if (s == UCS_ERR_BUSY) return;
    armed = s == UCS_OK;
  }
  auto wait = std::chrono::duration_cast<std::chrono::microseconds>(until - now);
  if (!sends_.empty() || posted_recvs_ > 0 || !armed)
    wait = std::min<std::chrono::microseconds>(wait, kOpPoll);
  polling_ = true;
  pt_polling_ = progress_thread;
  lk.unlock();
  pollfd fds[2] = {{wake_fd_.get(), POLLIN, 0}, {armed ? ucx_fd_ : -1, POLLIN, 0}};
  timespec ts{static_cast<time_t>(wait.count() / 1000000),
              static_cast<long>(wait.count() % 1000000) * 1000};
  ::ppoll(fds, 2, &ts, nullptr);
  if (fds[0].revents & POLLIN) {
    uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(wake_fd_.get(), &v, sizeof v);
  }
  lk.lock();
  polling_ = false;
  pt_polling_ = false;
  // Another recv() may be waiting for its turn to poll.
  if (drivers_ > (progress_thread ? 0 : 1)) cv_.notify_all();
}

void UcxFabric::progress_loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    // Take over only once recv() has been away for a while. Checked periodically rather than
    // notified: a caller that receives in a loop would otherwise cost this thread two
    // wake-ups per message.
    if (drivers_ > 0 || Clock::now() < last_driver_exit_ + kHandBackDelay) {
      pt_cv_.wait_for(lk, kHandBackDelay);  // notified only by the destructor
      continue;
    }
    drive_once(lk, Clock::now() + kIdlePollInterval, Clock::time_point(), true);
  }
}

Status UcxFabric::send(int peer, uint64_t tag, const void* data, size_t n) {
  AFD_RETURN_IF_ERROR(check_peer_tag("send", peer, world_, tag));
  // Copy outside the lock: the progress thread and receivers are not held up by a memcpy.
  auto op = std::make_unique<SendOp>();
  const auto* p = static_cast<const uint8_t*>(data);
  if (n) op->bytes.assign(p, p + n);
  op->owner = this;
  op->peer = peer;
  std::unique_lock<std::mutex> lk(mu_);
  return post_send(std::move(op), tag, lk);
}

std::vector<uint8_t> UcxFabric::acquire_buffer() {
  std::lock_guard<std::mutex> lk(mu_);
  if (pool_.empty()) return {};
  std::vector<uint8_t> b = std::move(pool_.back());
  pool_.pop_back();
  b.clear();  // keeps the capacity, and so the registration
  return b;
}

void UcxFabric::drop_registration(const void* p) {
  auto it = registered_.find(p);
  if (it == registered_.end()) return;
  ucp_mem_unmap(context_.get(), it->second.memh);
  registered_.erase(it);
}

Status UcxFabric::send_owned(int peer, uint64_t tag, std::vector<uint8_t> bytes) {
  AFD_RETURN_IF_ERROR(check_peer_tag("send", peer, world_, tag));
  auto op = std::make_unique<SendOp>();
  op->bytes = std::move(bytes);
  op->pooled = true;
  op->owner = this;
  op->peer = peer;
  std::unique_lock<std::mutex> lk(mu_);
  return post_send(std::move(op), tag, lk);
}

Status UcxFabric::post_send(std::unique_ptr<SendOp> op, uint64_t tag,
                            std::unique_lock<std::mutex>& lk) {
  const int peer = op->peer;
  const size_t n = op->bytes.size();
  if (!dead_[peer].empty()) return dead_error(name(peer), dead_[peer]);
  if (stop_) return Unavailable("ucx fabric of {} is shutting down", name(rank_));
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = &UcxFabric::on_send;
  p.user_data = op.get();
  if (op->pooled && n > 0) {
    // Register once; a buffer that grew past its registration is registered again.
    const void* data = op->bytes.data();
    auto it = registered_.find(data);
    if (it != registered_.end() && it->second.length < op->bytes.capacity()) {
      drop_registration(data);
      it = registered_.end();
    }
    if (it == registered_.end() && registered_.size() >= 2 * kPoolMax) {
      // A buffer that grew while being encoded was reallocated: its old registration names
      // freed memory. Keep only the registrations of buffers in the pool or in flight.
      std::set<const void*> live;
      for (const auto& b : pool_) live.insert(b.data());
      for (const SendOp* s : sends_) live.insert(s->bytes.data());
      std::vector<const void*> stale;
      for (const auto& [ptr, reg] : registered_)
        if (!live.count(ptr)) stale.push_back(ptr);
      for (const void* ptr : stale) drop_registration(ptr);
    }
    if (it == registered_.end()) {
      ucp_mem_map_params_t mp{};
      mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
      mp.address = const_cast<void*>(data);
      mp.length = op->bytes.capacity();
      ucp_mem_h memh = nullptr;
      if (ucp_mem_map(context_.get(), &mp, &memh) == UCS_OK)
        it = registered_.emplace(data, Registration{memh, op->bytes.capacity()}).first;
    }
    if (it != registered_.end()) {
      p.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      p.memh = it->second.memh;
    }
  }
  ucs_status_ptr_t r = ucp_tag_send_nbx(eps_[peer], op->bytes.data(), n, ucx_tag(rank_, tag), &p);
  if (UCS_PTR_IS_ERR(r))
    return Unavailable("sending {} bytes to {} (tag {:#x}) failed: {}", n, name(peer), tag,
                       ucs_status_string(UCS_PTR_STATUS(r)));
  sent_ += n;
  if (r == nullptr) {  // done in place: UCX no longer needs the bytes
    if (registered_.count(op->bytes.data())) {
      if (pool_.size() < kPoolMax) pool_.push_back(std::move(op->bytes));
      else drop_registration(op->bytes.data());
    }
    return Status::OK();
  }
  sends_.insert(op.release());            // owned by sends_ until on_send
  // A thread asleep in poll() must shorten its sleep to kOpPoll now that a send is pending.
  const bool someone_polls = polling_;
  lk.unlock();
  if (someone_polls) wake();
  return Status::OK();
}

Status UcxFabric::recv(int peer, uint64_t tag, std::vector<uint8_t>* out,
                       std::chrono::milliseconds timeout) {
  AFD_RETURN_IF_ERROR(check_peer_tag("recv", peer, world_, tag));
  if (out == nullptr) return InvalidArgument("fabric recv: no output vector");
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  std::unique_lock<std::mutex> lk(mu_);
  if (!dead_[peer].empty()) return dead_error(name(peer), dead_[peer]);
  const auto key = std::make_pair(peer, tag);
  if (waiting_.count(key))
    return InvalidArgument("ucx fabric: two recv() from {} with tag {:#x} at once", name(peer),
                           tag);

  std::unique_ptr<RecvOp> op;
  if (auto it = detached_.find(key); it != detached_.end()) {
    op.reset(it->second);  // an earlier recv() matched this message and gave up: adopt it
    detached_.erase(it);
  } else {
    op = std::make_unique<RecvOp>();
    op->owner = this;
    op->peer = peer;
    op->tag = tag;
    op->out = out;
    waiting_[key] = op.get();  // whoever progresses next matches it
  }
  auto finished = [&] {
    return op->state == RecvOp::kDone || op->state == RecvOp::kFailed || !dead_[peer].empty() ||
           stop_;
  };

  ++drivers_;
  if (pt_polling_) wake();  // take the worker over: the progress thread pauses
  const auto spin_until = std::min(deadline, start + std::chrono::microseconds(g_spin_us));
  // One round first, whoever polls and whatever the timeout: a message that arrived earlier
  // sits in the unexpected queue, and only a round (not an event) matches it.
  progress_once();
  match_waiting();
  while (!finished() && Clock::now() < deadline) {
    if (polling_) {
      // Another thread sleeps in poll(); it matches our message too, or hands over.
      cv_.wait_until(lk, deadline, [&] { return finished() || !polling_; });
      continue;
    }
    drive_once(lk, deadline, spin_until, false);
  }
  if (--drivers_ == 0) last_driver_exit_ = Clock::now();
  if (op->state == RecvOp::kWaiting) waiting_.erase(key);

  if (op->state == RecvOp::kDone) {
    if (op->out != out) *out = std::move(op->data);  // adopted: the bytes are the op's
    received_ += out->size();
    return Status::OK();
  }
  if (op->state == RecvOp::kFailed)
    return Unavailable("receiving from {} (tag {:#x}) failed: {} (has {} died?)", name(peer), tag,
                       ucs_status_string(op->status), name(peer));
  if (op->state == RecvOp::kPosted) {
    // UCX still writes into the buffer: keep it (a vector move keeps the heap block) for the
    // next recv() of this key, so that the message is not lost with this wait.
    if (op->out == out) {
      op->data = std::move(*out);
      op->out = &op->data;
      out->clear();
    }
    detached_[key] = op.release();
  }
  if (!dead_[peer].empty()) return dead_error(name(peer), dead_[peer]);
  if (stop_) return Unavailable("ucx fabric of {} is shutting down", name(rank_));
  return timeout_error(name(peer), tag, timeout);
}

Status UcxFabric::flush(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  bool drained = cv_.wait_for(lk, timeout, [&] { return live_sends() == 0 || stop_; });
  if (!send_error_.empty()) return Unavailable("{}", send_error_);
  if (drained) return Status::OK();
  std::set<int> peers;
  for (const SendOp* op : sends_)
    if (dead_[op->peer].empty()) peers.insert(op->peer);
  std::string who;
  for (int p : peers) who += (who.empty() ? "" : ", ") + name(p);
  return Unavailable("{} sends to {} not complete within {} ms", live_sends(), who,
                     timeout.count());
}

void UcxFabric::mark_dead(int peer, const std::string& reason) {
  if (peer < 0 || peer >= world_) return;
  std::lock_guard<std::mutex> lk(mu_);
  if (dead_[peer].empty()) dead_[peer] = reason.empty() ? "marked dead" : reason;
  cv_.notify_all();
  wake();  // a recv() sleeping in poll() re-checks its peer
}

}  // namespace

Result<std::unique_ptr<UcxEndpoint>> UcxEndpoint::create(int rank, int world,
                                                         std::vector<std::string> names) {
  if (world < 1 || world > (1 << 16))
    return InvalidArgument("ucx fabric: world {} outside 1..65536", world);
  if (rank < 0 || rank >= world)
    return InvalidArgument("ucx fabric: rank {} outside world {}", rank, world);
  if (!names.empty() && static_cast<int>(names.size()) != world)
    return InvalidArgument("ucx fabric: {} names for {} ranks", names.size(), world);
  init_ucx_process_settings();

  auto ep = std::make_unique<UcxEndpointImpl>();
  ep->rank = rank;
  ep->world = world;
  ep->names = fabric_detail::fill_names(world, std::move(names));

  ucp_config_t* raw_cfg = nullptr;
  ucs_status_t s = ucp_config_read(nullptr, nullptr, &raw_cfg);
  if (s != UCS_OK) return Unavailable("ucx: reading UCX_* settings: {}", ucs_status_string(s));
  ConfigPtr cfg(raw_cfg);
  // Defaults through the config object rather than setenv(): the process environment stays
  // as the user left it, and no other thread's getenv() races with us.
  if (!std::getenv("UCX_TLS")) ucp_config_modify(cfg.get(), "TLS", kDefaultTls);
  if (!std::getenv("UCX_WARN_UNUSED_ENV_VARS"))
    ucp_config_modify(cfg.get(), "WARN_UNUSED_ENV_VARS", "n");

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED |
                      UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 0;
  params.estimated_num_eps = static_cast<size_t>(world);
  ucp_context_h ctx = nullptr;
  s = ucp_init(&params, cfg.get(), &ctx);
  if (s != UCS_OK)
    return Unavailable("ucx: initialising {} (UCX_TLS={}): {}", ep->names[rank], effective_tls(),
                       ucs_status_string(s));
  ep->context.reset(ctx);

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;  // the fabric's mutex serialises all calls
  ucp_worker_h worker = nullptr;
  s = ucp_worker_create(ep->context.get(), &wp, &worker);
  if (s != UCS_OK)
    return Unavailable("ucx: creating the worker of {}: {}", ep->names[rank], ucs_status_string(s));
  ep->worker.reset(worker);

  ucp_address_t* addr = nullptr;
  size_t len = 0;
  s = ucp_worker_get_address(worker, &addr, &len);
  if (s != UCS_OK)
    return Unavailable("ucx: address of {}: {}", ep->names[rank], ucs_status_string(s));
  ep->address_.assign(reinterpret_cast<const char*>(addr), len);
  ucp_worker_release_address(worker, addr);
  return std::unique_ptr<UcxEndpoint>(std::move(ep));
}

Result<std::unique_ptr<Fabric>> UcxEndpoint::connect(std::unique_ptr<UcxEndpoint> endpoint,
                                                     const std::vector<std::string>& addresses) {
  auto* impl = dynamic_cast<UcxEndpointImpl*>(endpoint.get());
  if (!impl || !impl->worker)
    return InvalidArgument("ucx fabric: connect() needs an endpoint from UcxEndpoint::create");
  if (static_cast<int>(addresses.size()) != impl->world)
    return InvalidArgument("ucx fabric: {} addresses for {} ranks", addresses.size(), impl->world);
  auto fabric = std::make_unique<UcxFabric>(std::move(*impl));
  AFD_RETURN_IF_ERROR(fabric->start(addresses));
  return std::unique_ptr<Fabric>(std::move(fabric));
}

}  // namespace afd
