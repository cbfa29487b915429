#include "runtime/launch.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/log.h"
#include "model/model_source.h"
#include "runtime/attention_worker.h"
#include "runtime/ffn_worker.h"
#include "runtime/placement.h"
#include "transport/control.h"
#include "transport/fabric.h"

namespace afd {

using nlohmann::json;
using std::chrono::milliseconds;

namespace {

constexpr milliseconds kStartTimeout{120000};  // loading a model can take a while

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string o;
  for (unsigned char c : s) o += d[c >> 4], o += d[c & 15];
  return o;
}
std::string unhex(const std::string& h) {
  std::string o;
  for (size_t i = 0; i + 1 < h.size(); i += 2) o += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return o;
}

uint64_t fnv(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  return h;
}

// Identifies model + weights: the config and samples of the embedding and lm_head.
std::string fingerprint(const Step3Model& m) {
  std::string c = m.config().to_json();
  uint64_t h = fnv(c.data(), c.size());
  const auto& w = m.weights();
  h = fnv(w.embed.raw(), static_cast<size_t>(std::min<int64_t>(w.embed.nbytes(), 4096)), h);
  h = fnv(w.lm_head.raw(), static_cast<size_t>(std::min<int64_t>(w.lm_head.nbytes(), 4096)), h);
  return fmt::format("{:016x}", h);
}

json job_json(const JobOptions& o) {
  return {{"attention_ranks", o.attention_ranks}, {"ffn_ranks", o.ffn_ranks},
          {"micro_batches", o.micro_batches},     {"dispatch", wire_dtype_name(o.dispatch)},
          {"max_running", o.sched.max_running},   {"max_step_tokens", o.sched.max_step_tokens},
          {"prefill_chunk", o.sched.prefill_chunk}, {"seed", o.sched.seed},
          {"temperature", o.sched.sampling.temperature}, {"top_p", o.sched.sampling.top_p},
          {"top_k", o.sched.sampling.top_k},     {"kv_tokens", o.kv_tokens},
          {"block_size", o.block_size},          {"peer_timeout_ms", o.peer_timeout.count()},
          {"trace", o.trace}};
}

JobOptions job_from_json(const json& j) {
  JobOptions o;
  o.attention_ranks = j["attention_ranks"];
  o.ffn_ranks = j["ffn_ranks"];
  o.micro_batches = j["micro_batches"];
  o.dispatch = parse_wire_dtype(j["dispatch"].get<std::string>()).value();
  o.sched.max_running = j["max_running"];
  o.sched.max_step_tokens = j["max_step_tokens"];
  o.sched.prefill_chunk = j["prefill_chunk"];
  o.sched.seed = j["seed"];
  o.sched.sampling.temperature = j["temperature"];
  o.sched.sampling.top_p = j["top_p"];
  o.sched.sampling.top_k = j["top_k"];
  o.kv_tokens = j["kv_tokens"];
  o.block_size = j["block_size"];
  o.peer_timeout = milliseconds(j["peer_timeout_ms"].get<int64_t>());
  o.trace = j["trace"];
  return o;
}

json stats_json(const RankStats& s) {
  return {{"name", s.name}, {"wall_s", s.wall_s}, {"compute_s", s.compute_s},
          {"wait_s", s.wait_s}, {"comm_s", s.comm_s}, {"steps", s.steps},
          {"messages", s.messages}, {"bytes_sent", s.bytes_sent},
          {"bytes_received", s.bytes_received}};
}

RankStats stats_from_json(const json& j) {
  RankStats s;
  s.name = j["name"];
  s.wall_s = j["wall_s"], s.compute_s = j["compute_s"], s.wait_s = j["wait_s"];
  s.comm_s = j["comm_s"], s.steps = j["steps"], s.messages = j["messages"];
  s.bytes_sent = j["bytes_sent"], s.bytes_received = j["bytes_received"];
  return s;
}

Result<json> recv_json(ControlChannel& c, milliseconds timeout) {
  std::string msg;
  AFD_RETURN_IF_ERROR(c.recv(&msg, timeout));
  try {
    return json::parse(msg);
  } catch (const std::exception& e) {
    return Corrupt("control message from {} is not JSON: {}", c.peer(), e.what());
  }
}

using Child = ChildProcess;

std::string exit_text(int st) {
  if (WIFSIGNALED(st)) return fmt::format("killed by signal {}", WTERMSIG(st));
  if (WIFEXITED(st)) return fmt::format("exited with status {}", WEXITSTATUS(st));
  return "stopped";
}

// Waits up to `grace` for the children to exit by themselves (after an abort they report
// their own error), then SIGTERM, then SIGKILL; reaps every child.
void stop_children(std::vector<Child>& kids, milliseconds grace = milliseconds(0)) {
  auto until = std::chrono::steady_clock::now() + grace;
  for (auto& k : kids) {
    int st;
    while (k.pid > 0 && std::chrono::steady_clock::now() < until) {
      if (waitpid(k.pid, &st, WNOHANG) == k.pid) k.pid = -1;
      else std::this_thread::sleep_for(milliseconds(20));
    }
  }
  for (auto& k : kids)
    if (k.pid > 0) kill(k.pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (auto& k : kids) {
    while (k.pid > 0) {
      int st;
      pid_t r = waitpid(k.pid, &st, WNOHANG);
      if (r == k.pid || r < 0) {
        k.pid = -1;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        kill(k.pid, SIGKILL);
        waitpid(k.pid, &st, 0);
        k.pid = -1;
        break;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
}


// Serving: what the watcher thread hands to the attention loop.
struct WorkerInbox {
  std::mutex mu;
  std::vector<Request> add;
  std::vector<int64_t> cancel;
  bool shutdown = false;
};

Request request_from_json(const json& j) {
  Request r;
  r.index = j["index"];
  r.prompt = j["prompt"].get<std::vector<int32_t>>();
  r.max_new_tokens = j["max_new_tokens"];
  r.own_sampling = true;
  r.sampling.temperature = j["temperature"];
  r.sampling.top_p = j["top_p"];
  r.sampling.top_k = j["top_k"];
  r.rng_seed = j["rng_seed"];
  r.stop_token_ids = j["stop_token_ids"].get<std::vector<int32_t>>();
  return r;
}

std::vector<double> recent(const std::vector<double>& v, size_t n) {
  return std::vector<double>(v.end() - static_cast<long>(std::min(n, v.size())), v.end());
}

class WorkerHooks : public ServingHooks {
 public:
  WorkerHooks(WorkerInbox* in, ControlChannel* ctl) : in_(in), ctl_(ctl) {}
  void poll(std::vector<Request>* add, std::vector<int64_t>* cancel, bool* shutdown) override {
    std::lock_guard<std::mutex> g(in_->mu);
    add->swap(in_->add);
    cancel->swap(in_->cancel);
    *shutdown = in_->shutdown;
  }
  void emit(std::vector<TokenUpdate> ups, const Scheduler& s, const RankStats& st) override {
    json u = json::array();
    for (const auto& x : ups)
      u.push_back({{"index", x.index}, {"tokens", x.tokens}, {"finished", x.finished}, {"reason", x.reason}});
    json j = {{"type", "tokens"},   {"updates", u},          {"running", s.running()},
              {"waiting", s.waiting()}, {"kv", s.kv_used_fraction()}, {"stats", stats_json(st)},
              {"latency", recent(st.transfer_latency, 64)}};
    (void)ctl_->send(j.dump());  // a lost coordinator is noticed by the watcher
  }

 private:
  WorkerInbox* in_;
  ControlChannel* ctl_;
};

}  // namespace

Result<ModelConfig> model_config_of(const std::string& model) {
  std::error_code ec;
  if (std::filesystem::is_directory(model, ec))
    return ModelConfig::from_file((std::filesystem::path(model) / "config.json").string());
  return ModelConfig::preset(model);
}

Result<std::unique_ptr<ProcessCluster>> ProcessCluster::start(
    const LaunchSpec& spec, bool serving,
    const std::function<std::string(int rank)>& requests_for) {
  const JobOptions& o = spec.job;
  const int A = o.attention_ranks, M = o.ffn_ranks, W = A + M;
  AFD_ASSIGN_OR_RETURN(ModelConfig cfg, model_config_of(spec.model));
  AFD_RETURN_IF_ERROR(Placement::build(cfg, M).status());  // "more FFN ranks than slices"
  const bool external = !spec.listen.empty();
  AFD_ASSIGN_OR_RETURN(auto server, ControlServer::listen(external ? spec.listen : "127.0.0.1:0"));
  const std::string coord = fmt::format("127.0.0.1:{}", server->port());

  auto pc = std::unique_ptr<ProcessCluster>(new ProcessCluster());
  pc->A = A, pc->M = M;
  std::vector<Child>& kids = pc->kids;
  std::vector<std::string>& names = pc->names;
  names.resize(static_cast<size_t>(W));
  for (int r = 0; r < W; ++r) names[r] = r < A ? fmt::format("attention {}", r) : fmt::format("ffn {}", r - A);
  if (!external) {
    const std::string self = !spec.worker_binary.empty()
                                 ? spec.worker_binary
                                 : std::filesystem::read_symlink("/proc/self/exe").string();
    for (int r = 0; r < W; ++r) {
      std::string role = r < A ? "attention" : "ffn", idx = std::to_string(r < A ? r : r - A);
      std::string seed = std::to_string(spec.weights_seed);
      pid_t pid = fork();
      if (pid < 0) return IOError("fork failed");
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the coordinator
        // W ranks share this host's cores: give each BLAS its share, unless the user chose.
        if (!getenv("OPENBLAS_NUM_THREADS"))
          setenv("OPENBLAS_NUM_THREADS", std::to_string(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN) / W)).c_str(), 1);
        execl(self.c_str(), self.c_str(), "worker", "--coordinator", coord.c_str(), "--role",
              role.c_str(), "--index", idx.c_str(), "--model", spec.model.c_str(),
              "--weights-seed", seed.c_str(), static_cast<char*>(nullptr));
        _exit(127);
      }
      kids.push_back({pid, names[r]});
    }
  } else {
    log_info("waiting for {} attention and {} FFN workers on {} (afd worker --coordinator ...)", A,
             M, spec.listen);
  }
  std::vector<std::unique_ptr<ControlChannel>>& ch = pc->ch;
  ch.resize(static_cast<size_t>(W));
  // Every failure tells each connected worker why before it stops them.
  auto fail = [&](Status s) -> Status {
    for (auto& c : ch)
      if (c) (void)c->send(json{{"type", "abort"}, {"reason", s.message()}}.dump());
    stop_children(kids, milliseconds(2000));
    return s;
  };

  // Names a dead child with its exit status, when it is ours.
  auto fate = [&](const std::string& name) {
    std::string out;
    for (auto& k : kids) {
      int st;
      if (k.name == name && k.pid > 0 && waitpid(k.pid, &st, WNOHANG) == k.pid) {
        out = fmt::format(" (pid {} {})", k.pid, exit_text(st));
        k.pid = -1;
      }
    }
    return out;
  };
  // ---- hello (sent on connect): every rank exactly once ----
  std::vector<json> hello(static_cast<size_t>(W));
  const auto start_deadline = std::chrono::steady_clock::now() + kStartTimeout;
  for (int got = 0; got < W;) {
    for (auto& k : kids) {
      int st;
      if (k.pid > 0 && waitpid(k.pid, &st, WNOHANG) == k.pid) {
        k.pid = -1;
        return fail(Status(Code::kUnavailable, fmt::format("{} exited during start-up: {}", k.name, exit_text(st))));
      }
    }
    if (std::chrono::steady_clock::now() > start_deadline)
      return fail(Status(Code::kUnavailable, fmt::format("only {} of {} workers connected within {} s", got, W, kStartTimeout.count() / 1000)));
    auto c = server->accept(milliseconds(500));
    if (!c.ok()) continue;
    auto h = recv_json(**c, milliseconds(10000));
    if (!h.ok()) return fail(Status(Code::kUnavailable, fmt::format("a worker from {} connected but sent no hello: {}", (*c)->peer(), h.status().message())));
    std::string role = (*h).value("role", "");
    int idx = (*h).value("index", -1);
    int r = role == "attention" ? idx : role == "ffn" ? A + idx : -1;
    if (r < 0 || (role == "attention" && idx >= A) || (role == "ffn" && idx >= M))
      return fail(InvalidArgument("a worker announced itself as {} {}, but the job has {} attention and {} FFN ranks", role, idx, A, M));
    if (ch[r]) return fail(InvalidArgument("two workers announced themselves as {}", names[r]));
    ch[r] = std::move(c).value();
    ++got;
  }
  // ---- ready: each rank loaded the model; all must have loaded the same one ----
  for (int got = 0; got < W;) {
    std::vector<ControlChannel*> waiting;
    for (int r = 0; r < W; ++r) waiting.push_back(hello[r].is_null() ? ch[r].get() : nullptr);
    int r = wait_any(waiting, milliseconds(500));
    if (r < 0) {
      if (std::chrono::steady_clock::now() > start_deadline)
        return fail(Status(Code::kUnavailable, "workers did not load the model in time"));
      continue;
    }
    auto h = recv_json(*ch[r], milliseconds(1000));
    if (!h.ok()) return fail(Status(Code::kUnavailable, fmt::format("{} died during start-up{}", names[r], fate(names[r]))));
    if ((*h).value("type", "") == "error")
      return fail(Status(Code::kUnavailable, fmt::format("{} failed at start: {}", names[r], (*h).value("reason", std::string("?")))));
    hello[r] = *h;
    ++got;
  }
  for (int r = 1; r < W; ++r)
    if (hello[r]["fingerprint"] != hello[0]["fingerprint"])
      return fail(InvalidArgument("ranks disagree on the model: {} loaded {} ({}), {} loaded {} ({})",
                                  names[0], hello[0]["model"].get<std::string>(),
                                  hello[0]["fingerprint"].get<std::string>(), names[r],
                                  hello[r]["model"].get<std::string>(),
                                  hello[r]["fingerprint"].get<std::string>()));
  // ---- assign ranks, collect fabric addresses, start ----
  for (int r = 0; r < W; ++r)
    AFD_RETURN_IF_ERROR(ch[r]->send(json{{"type", "assign"}, {"rank", r}, {"world", W}, {"names", names}}.dump()));
  std::vector<std::string> addrs(static_cast<size_t>(W));
  for (int r = 0; r < W; ++r) {
    auto a = recv_json(*ch[r], kStartTimeout);
    if (!a.ok() || (*a).value("type", "") != "address")
      return fail(Status(Code::kUnavailable, fmt::format("{} failed while creating its UCX endpoint: {}", names[r], a.ok() ? (*a).value("reason", std::string("no address")) : a.status().message())));
    addrs[r] = (*a)["address"];
  }
  for (int r = 0; r < W; ++r) {
    json req = json::parse(r < A && requests_for ? requests_for(r) : std::string("[]"));
    AFD_RETURN_IF_ERROR(ch[r]->send(json{{"type", "start"}, {"addresses", addrs}, {"job", job_json(o)},
                                         {"requests", req}, {"serving", serving}}.dump()));
  }
  return pc;
}

std::string ProcessCluster::fate(int r) {
  std::string out;
  for (auto& k : kids) {
    int st;
    if (k.name == names[static_cast<size_t>(r)] && k.pid > 0 && waitpid(k.pid, &st, WNOHANG) == k.pid) {
      out = fmt::format(" (pid {} {})", k.pid, exit_text(st));
      k.pid = -1;
    }
  }
  return out;
}

void ProcessCluster::abort_all(const std::string& why, int except) {
  for (int r = 0; r < static_cast<int>(ch.size()); ++r)
    if (r != except && ch[r]) {
      std::lock_guard<std::mutex> g(send_mu);
      (void)ch[r]->send(json{{"type", "abort"}, {"reason", why}}.dump());
    }
  stop_children(kids, milliseconds(3000));
}

ProcessCluster::~ProcessCluster() { stop_children(kids, milliseconds(5000)); }

Result<JobReport> launch_processes(const LaunchSpec& spec, const std::vector<Request>& reqs) {
  const JobOptions& o = spec.job;
  const int A = o.attention_ranks, M = o.ffn_ranks, W = A + M;
  std::vector<int> owner = balance_requests(reqs, A);
  AFD_ASSIGN_OR_RETURN(auto pc, ProcessCluster::start(spec, false, [&](int r) {
    json req = json::array();
    for (size_t i = 0; i < reqs.size(); ++i)
      if (owner[i] == r)
        req.push_back({{"index", reqs[i].index}, {"prompt", reqs[i].prompt}, {"max_new_tokens", reqs[i].max_new_tokens}});
    return req.dump();
  }));
  std::vector<std::unique_ptr<ControlChannel>>& ch = pc->ch;
  std::vector<std::string>& names = pc->names;
  std::vector<Child>& kids = pc->kids;

  // ---- run: collect results; a closed connection before the result is a dead rank ----
  JobReport rep;
  rep.ranks.resize(static_cast<size_t>(W));
  std::vector<bool> have(static_cast<size_t>(W), false);
  std::vector<std::string> traces;
  const auto t0 = std::chrono::steady_clock::now();
  int remaining = W;
  while (remaining > 0) {
    std::vector<ControlChannel*> live;
    for (int r = 0; r < W; ++r) live.push_back(have[r] ? nullptr : ch[r].get());
    int r = wait_any(live, milliseconds(1000));
    if (r < 0) continue;
    auto m = recv_json(*ch[r], milliseconds(1000));
    std::string why;
    if (!m.ok()) why = fmt::format("{} died (its control connection closed)", names[r]);
    else if ((*m).value("type", "") == "error") why = fmt::format("{} failed: {}", names[r], (*m).value("reason", std::string("?")));
    if (!why.empty()) {
      std::this_thread::sleep_for(milliseconds(50));  // let the exit status land
      why += pc->fate(r);
      int64_t in_flight = 0;
      for (int a = 0; a < A; ++a) if (!have[a]) for (int x : owner) in_flight += x == a;
      pc->abort_all(why, r);
      return (Status(Code::kUnavailable, fmt::format("{}; {} requests in flight failed", why, in_flight)));
    }
    const json& res = *m;
    rep.ranks[r] = stats_from_json(res["stats"]);
    for (const auto& e : res["results"]) {
      RequestOutcome out;
      out.index = e["index"], out.ok = true, out.attention_rank = r;
      out.tokens = e["tokens"].get<std::vector<int32_t>>();
      out.ttft_s = e["ttft_s"], out.tpot_ms = e["tpot_ms"];
      rep.results.push_back(std::move(out));
    }
    if (res.contains("trace")) traces.push_back(res["trace"].get<std::string>());
    have[r] = true;
    --remaining;
  }
  rep.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::sort(rep.results.begin(), rep.results.end(), [](auto& x, auto& y) { return x.index < y.index; });
  for (auto& r : rep.results) rep.generated_tokens += static_cast<int64_t>(r.tokens.size());
  for (auto& t : traces) if (!t.empty()) rep.trace_events += (rep.trace_events.empty() ? "" : ",\n") + t;
  // Workers exit after sending their result; reap them (bounded).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (auto& k : kids) {
    int st;
    while (k.pid > 0 && waitpid(k.pid, &st, WNOHANG) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(10));
  }
  stop_children(kids);
  return rep;
}

Status run_worker(const std::string& coordinator, const std::string& role, int index,
                  const std::string& model_name, uint64_t weights_seed,
                  milliseconds connect_timeout) {
  if (role != "attention" && role != "ffn")
    return InvalidArgument("--role must be attention or ffn, got \"{}\"", role);
  AFD_ASSIGN_OR_RETURN(auto ctl, ControlChannel::connect(coordinator, connect_timeout));
  const std::string me = fmt::format("{} {}", role, index);
  AFD_RETURN_IF_ERROR(ctl->send(json{{"type", "hello"}, {"role", role}, {"index", index},
                                     {"pid", static_cast<int>(getpid())}}.dump()));
  auto model = load_model(model_name, weights_seed);
  if (!model.ok()) {
    (void)ctl->send(json{{"type", "error"}, {"reason", model.status().message()}}.dump());
    return model.status();
  }
  const Step3Model& m = **model;
  AFD_RETURN_IF_ERROR(ctl->send(json{{"type", "ready"}, {"fingerprint", fingerprint(m)},
                                     {"model", model_name}}.dump()));
  AFD_ASSIGN_OR_RETURN(json assign, recv_json(*ctl, kStartTimeout));
  if (assign.value("type", "") == "abort")
    return Status(Code::kUnavailable, fmt::format("the coordinator aborted the job: {}",
                                                  assign["reason"].get<std::string>()));
  const int rank = assign["rank"], world = assign["world"];
  auto names = assign["names"].get<std::vector<std::string>>();
  auto ep = UcxEndpoint::create(rank, world, names);
  if (!ep.ok()) {
    (void)ctl->send(json{{"type", "error"}, {"reason", ep.status().message()}}.dump());
    return ep.status();
  }
  AFD_RETURN_IF_ERROR(ctl->send(json{{"type", "address"}, {"address", hex((*ep)->address())}}.dump()));
  AFD_ASSIGN_OR_RETURN(json start, recv_json(*ctl, kStartTimeout));
  if (start.value("type", "") != "start")
    return Status(Code::kUnavailable, start.value("reason", std::string("the coordinator aborted the start")));
  std::vector<std::string> addrs;
  for (const auto& a : start["addresses"]) addrs.push_back(unhex(a.get<std::string>()));
  AFD_ASSIGN_OR_RETURN(std::unique_ptr<Fabric> fabric, UcxEndpoint::connect(std::move(ep).value(), addrs));
  const JobOptions o = job_from_json(start["job"]);
  const int A = o.attention_ranks;
  AFD_ASSIGN_OR_RETURN(Placement placement, Placement::build(m.config(), o.ffn_ranks));

  // The watcher reads the control plane while the rank runs: requests, cancellations and
  // shutdown (serving) go to the inbox; an abort, or a lost coordinator, turns into dead peers,
  // so no wait outlives it.
  const bool serving = start.value("serving", false);
  WorkerInbox inbox;
  std::atomic<bool> finished{false};
  std::thread watcher([&] {
    while (!finished) {
      std::string msg;
      Status s = ctl->recv(&msg, milliseconds(200));
      if (s.ok()) {
        auto j = json::parse(msg, nullptr, false);
        const std::string type = j.is_object() ? j.value("type", "") : "";
        if (type == "request" || type == "cancel" || type == "shutdown") {
          std::lock_guard<std::mutex> g(inbox.mu);
          if (type == "request") inbox.add.push_back(request_from_json(j));
          else if (type == "cancel") inbox.cancel.push_back(j["index"].get<int64_t>());
          else inbox.shutdown = true;
          continue;
        }
        std::string why = j.is_object() ? j.value("reason", std::string("aborted")) : "aborted";
        for (int p = 0; p < world; ++p) if (p != rank) fabric->mark_dead(p, why);
        return;
      }
      if (s.message().find("closed") != std::string::npos) {
        for (int p = 0; p < world; ++p) if (p != rank) fabric->mark_dead(p, "the coordinator is gone");
        return;
      }
    }
  });
  RankStats st;
  st.name = names[static_cast<size_t>(rank)];
  Trace trace(o.trace);
  trace.name_track(rank, st.name);
  json results = json::array();
  Status run;
  if (rank < A) {
    KVCache cache = m.make_cache(o.kv_tokens, o.block_size);
    Scheduler sched(o.sched, &cache);
    for (const auto& r : start["requests"]) {
      Request q{r["index"], r["prompt"].get<std::vector<int32_t>>(), r["max_new_tokens"]};
      run = sched.add(q);
      if (!run.ok()) break;
    }
    if (run.ok()) {
      auto ffn = make_remote_ffn(fabric.get(), m.config(), &placement, A, o.dispatch, o.peer_timeout, &st, &trace);
      AttentionRankOptions ao;
      ao.micro_batches = o.micro_batches;
      WorkerHooks hooks(&inbox, ctl.get());
      if (serving) ao.hooks = &hooks;
      AttentionResult res;
      run = run_attention_rank(m, cache, sched, *ffn, ao, rank, &st, &trace, &res);
      for (const Finished& f : res.finished) {
        RequestOutcome oc = outcome_from(f, rank);
        results.push_back({{"index", oc.index}, {"tokens", oc.tokens}, {"ttft_s", oc.ttft_s}, {"tpot_ms", oc.tpot_ms}});
      }
    }
  } else {
    FfnExecutor ex(m.config(), m.weights(), placement, rank - A);
    FfnRankOptions fo{A, o.micro_batches, o.dispatch, o.peer_timeout, {}};
    double last = 0;
    if (serving)
      fo.on_step = [&](const RankStats& s) {  // gauges for /metrics, twice a second
        if (Trace::now_us() - last < 5e5) return;
        last = Trace::now_us();
        (void)ctl->send(json{{"type", "gauges"}, {"stats", stats_json(s)}}.dump());
      };
    run = run_ffn_rank(*fabric, ex, m.config(), fo, &st, &trace);
  }
  st.bytes_sent = fabric->bytes_sent();
  st.bytes_received = fabric->bytes_received();
  finished = true;
  watcher.join();
  if (!run.ok()) {
    Status named(run.code(), fmt::format("{}: {}", me, run.message()));
    (void)ctl->send(json{{"type", "error"}, {"reason", named.message()}}.dump());
    return named;
  }
  json res = {{"type", "result"}, {"results", results}, {"stats", stats_json(st)}};
  if (o.trace) res["trace"] = trace.events_json();
  return ctl->send(res.dump());
}

}  // namespace afd
