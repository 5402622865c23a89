// fedfm bench coordinator: many lightweight clients against a real
// coordinator (RoundEngine + SQLite store + gRPC service with TLS) on
// loopback, in one round or a few. Prints one JSON object: round time (the
// engine's, select to commit), ingest rate of the coordinator's upload path
// against a bare gRPC streaming upload of the same bytes over the same
// credentials in the same run, the coordinator's peak RSS against its RSS
// before the round, and lost updates.
//
// Processes: the coordinator runs in a child process (forked before any
// gRPC use), so its peak RSS is its own; the clients run in the parent on a
// pool of driver threads, each client on its own TCP connection with its own
// identity (mutual TLS with a client certificate each, as enrolled devices
// run; --hmac: HMAC-signed requests over server-authenticated TLS).
//
// Lightweight clients: every client uploads the same FakeTrainer update
// (made once per round from the state the first client downloads) under its
// own client id, so the measured window holds uploads only, not training.
#include <CLI/CLI.hpp>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/command.h"
#include "cli/flag_parsing.h"

#ifdef FEDFM_HAVE_GRPC
#include "client/grpc_link.h"
#include "client/testing/fake_trainer.h"
#include "coordinator/clock.h"
#include "coordinator/grpc_bench.h"
#include "coordinator/grpc_server.h"
#include "coordinator/round_engine.h"
#include "coordinator/sqlite_store.h"
#include "protocols/tensor_codec.h"
#include "protocols/tls_certs.h"
#endif

namespace fedfm::cli {

#ifdef FEDFM_HAVE_GRPC
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using protocols::Tensor;
using protocols::TensorMap;

struct BenchFlags {
  int clients = 1000;
  std::string update_bytes = "4MiB";
  int rounds = 1;
  std::string chunk_bytes = "1MiB";
  int client_threads = 64;
  int max_active_uploads = 8;
  bool insecure = false;
  bool hmac = false;
  bool memory_store = false;
  uint64_t seed = 1;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// "VmHWM" / "VmRSS" of /proc/<pid>/status, bytes.
int64_t ProcStatusBytes(pid_t pid, const std::string& key) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/status") : absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream fields(line.substr(key.size() + 1));
      int64_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return -1;
}

// The global state: tensors of 256Ki floats (1 MiB) and a remainder, P =
// bytes / 4 values in all.
TensorMap SyntheticState(int64_t bytes, uint64_t seed) {
  const int64_t values = std::max<int64_t>(1, bytes / 4);
  constexpr int64_t kPerTensor = 256 * 1024;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  TensorMap state;
  for (int64_t done = 0, i = 0; done < values; ++i) {
    const int64_t n = std::min(kPerTensor, values - done);
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    state.Set(absl::StrCat("block", i, ".weight"), Tensor::FromFloats({n}, v));
    done += n;
  }
  return state;
}

protocols::RunConfig BenchConfig(const BenchFlags& f, int64_t update_bytes, int64_t chunk_bytes) {
  protocols::RunConfig c;
  c.run.name = "bench-coordinator";
  c.run.seed = f.seed;
  c.run.rounds = f.rounds;
  c.rounds.clients_per_round = f.clients;
  c.rounds.min_clients = f.clients;
  c.rounds.deadline_s = 3600;
  c.rounds.eval_every = 0;
  c.train.local_steps = 1;
  c.train.batch_size = 1;
  c.train.learning_rate = 0.5;
  c.zeroth_order.seed_pool = 0;
  c.coordinator.max_update_bytes = 2 * update_bytes + (int64_t{1} << 20);
  c.coordinator.chunk_bytes = static_cast<int>(chunk_bytes);
  c.coordinator.rate_limit_per_s = 1000;
  return c;
}

// Writes all of `text` to `fd`.
void WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// Reads one line from `fd` (blocking), without the newline.
std::string ReadLine(int fd) {
  std::string line;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
  return line;
}

struct Credentials {
  protocols::tls::KeyAndCertificate ca;
  protocols::tls::KeyAndCertificate server;
};

// --- The coordinator (child process) ----------------------------------------------

[[noreturn]] void CoordinatorChild(const BenchFlags& f, int64_t update_bytes, int64_t chunk_bytes,
                                   const std::optional<Credentials>& creds, const fs::path& dir, int to_parent,
                                   int from_parent) {
  auto fail = [&](const absl::Status& s) {
    WriteAll(to_parent, absl::StrCat("ERROR ", s.message(), "\n"));
    std::_Exit(1);
  };
  const protocols::RunConfig config = BenchConfig(f, update_bytes, chunk_bytes);
  const TensorMap state = SyntheticState(update_bytes, f.seed);
  auto store = coordinator::OpenSqliteStore(f.memory_store ? fs::path(coordinator::kInMemoryStore)
                                                           : dir / "coordinator.db");
  if (!store.ok()) fail(store.status());
  coordinator::SystemClock clock;
  coordinator::RoundEngineOptions eo;
  eo.poll_interval_ms = 500;
  eo.selection_wait_ms = 60'000;
  eo.liveness_ms = 600'000;
  eo.coverage_rule = [](const TensorMap& global, const coordinator::MethodChoice&, const protocols::RunConfig&,
                        const protocols::ModelDims&) -> absl::StatusOr<protocols::Coverage> {
    return protocols::Coverage::Full(global);
  };
  eo.method_rule = [](const std::string&, const protocols::DeviceProfile&, const protocols::RunConfig&,
                      const coordinator::WorkloadShape&) -> absl::StatusOr<coordinator::MethodChoice> {
    coordinator::MethodChoice c;
    c.method = protocols::Method::kLora;
    return c;
  };
  protocols::ModelDims dims;
  dims.num_params = state.TotalElements();
  dims.num_layers = 1;
  dims.dim = 64;
  dims.hidden_dim = 64;
  dims.num_heads = 1;
  dims.num_kv_heads = 1;
  dims.vocab_size = 64;
  auto engine = coordinator::RoundEngine::Create(config, **store, clock, state, dims, nullptr, eo);
  if (!engine.ok()) fail(engine.status());
  {
    std::ofstream ids(dir / "identities.txt");
    for (int i = 0; i < f.clients; ++i) {
      auto r = (*engine)->RegisterClient(absl::StrFormat("bench-%05d", i), "bench", {});
      if (!r.ok()) fail(r.status());
      ids << r->client_id << ' ' << absl::BytesToHexString(r->client_secret) << ' ' << r->run_id << '\n';
    }
  }
  coordinator::CoordinatorServerOptions so;
  so.listen = "127.0.0.1:0";
  if (creds.has_value()) {
    so.tls = coordinator::CoordinatorServerOptions::Tls{creds->server.key_pem, creds->server.certificate_pem,
                                                        creds->ca.certificate_pem};
  }
  so.service.max_update_bytes = config.coordinator.max_update_bytes;
  so.service.chunk_bytes = chunk_bytes;
  so.service.rate_limit_per_s = config.coordinator.rate_limit_per_s;
  so.service.max_active_uploads = f.max_active_uploads;
  const int64_t rss_before = ProcStatusBytes(0, "VmRSS");
  auto server = coordinator::CoordinatorServer::Start(so, **engine, **store);
  if (!server.ok()) fail(server.status());
  auto sink = coordinator::BareUploadSink::Start("127.0.0.1:0", so.tls, chunk_bytes + coordinator::kMessageSlackBytes);
  if (!sink.ok()) fail(sink.status());
  WriteAll(to_parent, absl::StrCat("READY ", (*server)->port(), " ", (*sink)->port(), "\n"));

  // Tick until the parent says stop. "MARK": the rounds are over; the peak
  // RSS so far is the coordinator's, then the peak is reset (clear_refs 5)
  // so the bare baseline's own is measured apart.
  int64_t peak_during_rounds = -1;
  for (;;) {
    (*engine)->Tick().IgnoreError();
    struct pollfd p = {from_parent, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const std::string command = ReadLine(from_parent);
    if (command != "MARK") break;
    peak_during_rounds = ProcStatusBytes(0, "VmHWM");
    std::ofstream("/proc/self/clear_refs") << "5";
    WriteAll(to_parent, "OK\n");
  }
  nlohmann::json out;
  out["rss_before_bytes"] = rss_before;
  out["peak_rss_bytes"] = peak_during_rounds;
  out["bare_sink_peak_rss_bytes"] = ProcStatusBytes(0, "VmHWM");
  out["finished"] = (*engine)->finished();
  nlohmann::json rounds = nlohmann::json::array();
  for (const coordinator::RoundSummary& r : (*engine)->History()) {
    if (r.round == 0) continue;
    auto parts = (*store)->ListParticipants((*engine)->run_id(), r.round);
    int64_t uploaded = 0;
    if (parts.ok()) {
      for (const auto& p : *parts) uploaded += p.status == coordinator::ParticipantStatus::kUploaded;
    }
    rounds.push_back({{"round", r.round}, {"committed", r.committed}, {"seconds", r.duration_s},
                      {"updates_committed", uploaded}});
  }
  out["rounds"] = rounds;
  coordinator::CoordinatorServiceStats stats = (*server)->stats();
  out["uploads_accepted"] = stats.uploads_accepted;
  out["uploads_refused"] = stats.uploads_refused;
  out["requests_refused"] = stats.requests_refused;
  out["rate_limited"] = stats.rate_limited;
  out["upload_decode_seconds"] = stats.upload_decode_seconds;
  out["upload_engine_seconds"] = stats.upload_engine_seconds;
  out["bare_bytes"] = (*sink)->bytes_received();
  WriteAll(to_parent, out.dump() + "\n");
  (*server)->Shutdown(1'000);
  std::_Exit(0);
}

// --- The clients (parent process) -------------------------------------------------

struct BenchClient {
  std::unique_ptr<client::GrpcLink> link;
  std::string id;
  uint64_t sequence = 0;
};

// Runs fn(i) for i in [0, n) on `threads` threads.
template <typename Fn>
void ParallelFor(int n, int threads, Fn fn) {
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < std::min(n, threads); ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < n; i = next++) fn(i);
    });
  }
  for (std::thread& t : pool) t.join();
}

int RunCoordinatorBench(const BenchFlags& f) {
  const char* kCmd = "bench coordinator";
  absl::StatusOr<int64_t> update_bytes = ParseSizeBytes(f.update_bytes);
  absl::StatusOr<int64_t> chunk_bytes = ParseSizeBytes(f.chunk_bytes);
  if (!update_bytes.ok()) return Fail(kCmd, update_bytes.status());
  if (!chunk_bytes.ok()) return Fail(kCmd, chunk_bytes.status());
  if (*update_bytes < 4 || *chunk_bytes < 4096) {
    return Fail(kCmd, absl::InvalidArgumentError("--update-bytes must be >= 4 and --chunk-bytes >= 4KiB"));
  }
  // Two sockets per client and process (coordinator path and baseline).
  struct rlimit limit;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  char tmpl[] = "/tmp/fedfm-bench-coordinator-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return Fail(kCmd, absl::InternalError("mkdtemp failed"));
  const fs::path dir = tmpl;
  std::optional<Credentials> creds;
  if (!f.insecure) {
    auto ca = protocols::tls::CreateCertificateAuthority("fedfm bench CA", 1);
    if (!ca.ok()) return Fail(kCmd, ca.status());
    auto server = protocols::tls::CreateServerCertificate(*ca, {"localhost", "127.0.0.1"}, 1);
    if (!server.ok()) return Fail(kCmd, server.status());
    creds = Credentials{*ca, *server};
  }
  spdlog::set_level(spdlog::level::warn);

  int up[2], down[2];
  if (::pipe(up) != 0 || ::pipe(down) != 0) return Fail(kCmd, absl::InternalError("pipe failed"));
  const pid_t child = ::fork();
  if (child < 0) return Fail(kCmd, absl::InternalError("fork failed"));
  if (child == 0) {
    ::close(up[0]);
    ::close(down[1]);
    CoordinatorChild(f, *update_bytes, *chunk_bytes, creds, dir, up[1], down[0]);
  }
  ::close(up[1]);
  ::close(down[0]);
  auto finish_child = [&]() -> nlohmann::json {
    WriteAll(down[1], "STOP\n");
    const std::string line = ReadLine(up[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    return j.is_discarded() ? nlohmann::json{{"error", line}} : j;
  };
  const std::string ready = ReadLine(up[0]);
  int port = 0, sink_port = 0;
  if (std::sscanf(ready.c_str(), "READY %d %d", &port, &sink_port) != 2) {
    ::waitpid(child, nullptr, 0);
    return Fail(kCmd, absl::InternalError(absl::StrCat("coordinator process: ", ready)));
  }
  const std::string target = absl::StrCat("127.0.0.1:", port);

  // Clients with their identities, each on its own connection.
  std::vector<BenchClient> clients(f.clients);
  {
    std::ifstream ids(dir / "identities.txt");
    for (BenchClient& c : clients) {
      std::string hex, run_id;
      ids >> c.id >> hex >> run_id;
      const std::string secret = absl::HexStringToBytes(hex);
      client::GrpcLinkOptions o;
      o.target = target;
      if (creds.has_value()) {
        o.ca_pem = creds->ca.certificate_pem;
        if (!f.hmac) {
          // Mutual TLS, as enrolled devices run: a certificate naming the
          // client, signed by the coordinator's CA; requests go unsigned.
          auto csr = protocols::tls::CreateKeyAndCsr(c.id);
          if (!csr.ok()) return Fail(kCmd, csr.status());
          auto cert = protocols::tls::SignClientCertificate(creds->ca, csr->csr_pem, c.id, /*valid_days=*/1);
          if (!cert.ok()) return Fail(kCmd, cert.status());
          o.certificate = client::ClientCertificate{csr->key_pem, *cert};
        }
      }
      o.chunk_bytes = *chunk_bytes;
      o.call_timeout_ms = 600'000;
      auto link = client::GrpcLink::Create(o);
      if (!link.ok()) return Fail(kCmd, link.status());
      c.link = *std::move(link);
      (void)c.link->UseIdentity({c.id, secret, run_id});
    }
  }

  client::FakeTrainerOptions fo;
  fo.target_seed = f.seed + 7;
  client::FakeTrainer trainer(fo);
  const Clock::time_point bench_start = Clock::now();
  double upload_seconds_total = 0;
  int64_t upload_bytes_total = 0;
  int64_t accepted_total = 0;
  std::vector<std::string> errors;
  std::mutex mu;
  nlohmann::json per_round = nlohmann::json::array();
  double loss_before = -1, loss_after = -1;

  for (int round = 1; round <= f.rounds; ++round) {
    // Phase A: every client polls until the round hands it a task.
    std::vector<protocols::PollResponse> tasks(f.clients);
    std::vector<char> ready_flags(f.clients, 0);
    const Clock::time_point poll_start = Clock::now();
    nlohmann::json passes = nlohmann::json::array();
    for (int pass = 0;; ++pass) {
      std::atomic<int> waiting{0};
      const Clock::time_point pass_start = Clock::now();
      ParallelFor(f.clients, f.client_threads, [&](int i) {
        if (ready_flags[i]) return;
        auto r = clients[i].link->Poll({clients[i].id, ""});
        if (r.ok() && r->kind == protocols::PollKind::kTrain && r->task.round == round) {
          tasks[i] = *r;
          ready_flags[i] = 1;
        } else {
          ++waiting;
        }
      });
      passes.push_back({{"seconds", Seconds(Clock::now() - pass_start)}, {"waiting", waiting.load()}});
      if (waiting == 0) break;
      if (Seconds(Clock::now() - poll_start) > 600) {
        finish_child();
        return Fail(kCmd, absl::DeadlineExceededError(absl::StrCat("round ", round, ": ", waiting.load(),
                                                                   " clients never got a task")));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const double poll_seconds = Seconds(Clock::now() - poll_start);
    // One download and one FakeTrainer update, shared by every client.
    const Clock::time_point download_start = Clock::now();
    auto model = clients[0].link->DownloadModel(tasks[0].model_version);
    if (!model.ok()) {
      finish_child();
      return Fail(kCmd, model.status());
    }
    const double download_seconds = Seconds(Clock::now() - download_start);
    if (loss_before < 0) loss_before = trainer.Loss(model->state);
    TensorMap state = model->state;
    client::Dataset no_data;
    auto update = trainer.Train(tasks[0].task, state, no_data);
    if (!update.ok()) {
      finish_child();
      return Fail(kCmd, update.status());
    }
    const int64_t encoded = static_cast<int64_t>(protocols::EncodedSize(update->delta));

    // Phase B: every client uploads; the measured window.
    std::atomic<int64_t> accepted{0}, retried{0};
    const Clock::time_point upload_start = Clock::now();
    ParallelFor(f.clients, f.client_threads, [&](int i) {
      protocols::Update u = *update;
      u.client_id = clients[i].id;
      protocols::Binding b = tasks[i].binding;
      b.phase = protocols::Phase::kCollect;
      // As ClientRuntime does: a transport failure (the connection dropped,
      // a GOAWAY) is retried after a jittered back-off with a fresh sequence
      // number; a refusal is final.
      absl::Status s;
      for (int attempt = 0; attempt < 6; ++attempt) {
        if (attempt > 0) {
          ++retried;
          std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt + i % 97));
        }
        b.sequence = ++clients[i].sequence;
        s = clients[i].link->UploadUpdate(b, u);
        if (s.ok() || !client::IsTransportFailure(s)) break;
      }
      if (s.ok()) {
        ++accepted;
      } else {
        std::lock_guard<std::mutex> lock(mu);
        if (errors.size() < 5) errors.push_back(std::string(s.message()));
      }
    });
    const double upload_seconds = Seconds(Clock::now() - upload_start);
    upload_seconds_total += upload_seconds;
    upload_bytes_total += accepted.load() * encoded;
    accepted_total += accepted.load();
    per_round.push_back({{"round", round},
                         {"poll_seconds", poll_seconds},
                         {"poll_passes", passes},
                         {"download_seconds", download_seconds},
                         {"upload_seconds", upload_seconds},
                         {"updates_accepted", accepted.load()},
                         {"upload_retries", retried.load()},
                         {"ingest_mb_per_s", accepted.load() * encoded / 1e6 / upload_seconds}});
  }
  // Let the last round commit, then read its state.
  for (int i = 0; i < 600; ++i) {
    auto r = clients[0].link->Poll({clients[0].id, ""});
    if (r.ok() && r->kind == protocols::PollKind::kStop) {
      auto model = clients[0].link->DownloadModel(r->model_version);
      if (model.ok()) loss_after = trainer.Loss(model->state);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double bench_seconds = Seconds(Clock::now() - bench_start);
  WriteAll(down[1], "MARK\n");
  ReadLine(up[0]);

  // The baseline: the same number of streams of the same size, bare.
  std::vector<std::unique_ptr<coordinator::BareUploadClient>> bare(f.clients);
  const int64_t bare_bytes_each = static_cast<int64_t>(protocols::EncodedSize(SyntheticState(*update_bytes, 0)));
  const std::string payload(static_cast<size_t>(bare_bytes_each), '\x5a');
  ParallelFor(f.clients, f.client_threads, [&](int i) {
    coordinator::BareUploadClientOptions o;
    o.target = absl::StrCat("127.0.0.1:", sink_port);
    if (creds.has_value()) o.ca_pem = creds->ca.certificate_pem;
    o.chunk_bytes = *chunk_bytes;
    auto c = coordinator::BareUploadClient::Create(o);
    if (c.ok()) {
      bare[i] = *std::move(c);
      bare[i]->Connect(60'000).IgnoreError();
    }
  });
  std::atomic<int64_t> bare_ok{0};
  const Clock::time_point bare_start = Clock::now();
  ParallelFor(f.clients, f.client_threads, [&](int i) {
    if (bare[i] != nullptr && bare[i]->Upload(payload).ok()) ++bare_ok;
  });
  const double bare_seconds = Seconds(Clock::now() - bare_start);
  bare.clear();
  clients.clear();

  nlohmann::json server = finish_child();
  std::error_code ec;
  fs::remove_all(dir, ec);

  const double ingest = upload_seconds_total > 0 ? upload_bytes_total / 1e6 / upload_seconds_total : 0;
  const double bare_rate = bare_seconds > 0 ? bare_ok.load() * bare_bytes_each / 1e6 / bare_seconds : 0;
  const int64_t expected = static_cast<int64_t>(f.clients) * f.rounds;
  int64_t committed = 0;
  double round_seconds = 0;
  if (server.contains("rounds")) {
    for (const auto& r : server["rounds"]) {
      committed += r.value("updates_committed", 0);
      round_seconds = std::max(round_seconds, r.value("seconds", 0.0));
    }
  }
  nlohmann::json out;
  out["benchmark"] = "coordinator";
  out["clients"] = f.clients;
  out["rounds"] = f.rounds;
  out["update_bytes"] = *update_bytes;
  out["encoded_update_bytes"] = bare_bytes_each;
  out["chunk_bytes"] = *chunk_bytes;
  out["client_threads"] = f.client_threads;
  out["max_active_uploads"] = f.max_active_uploads;
  out["transport"] = f.insecure ? "plaintext, HMAC-signed requests"
                     : f.hmac   ? "TLS, HMAC-signed requests"
                                : "mutual TLS (client certificates), unsigned requests";
  out["store"] = f.memory_store ? "sqlite in memory" : "sqlite file (fsync per message)";
  out["round_seconds_max"] = round_seconds;
  out["bench_seconds"] = bench_seconds;
  out["per_round"] = per_round;
  out["ingest_mb_per_s"] = ingest;
  out["bare_grpc_mb_per_s"] = bare_rate;
  out["ingest_vs_bare"] = bare_rate > 0 ? ingest / bare_rate : 0;
  // Where an upload's coordinator time goes: the service's own work
  // (authentication, MACs, decoding; parallel on the worker pool) and the
  // engine's (sequence check and bookkeeping under the round lock;
  // validation and aggregation outside it, several updates at once).
  const double per_update = accepted_total > 0 ? 1e3 / accepted_total : 0;
  out["service_ms_per_update"] = server.value("upload_decode_seconds", 0.0) * per_update;
  out["engine_ms_per_update"] = server.value("upload_engine_seconds", 0.0) * per_update;
  out["coordinator_rss_before_bytes"] = server.value("rss_before_bytes", int64_t{-1});
  out["coordinator_peak_rss_bytes"] = server.value("peak_rss_bytes", int64_t{-1});
  out["clients_times_update_bytes"] = static_cast<int64_t>(f.clients) * bare_bytes_each;
  out["updates_expected"] = expected;
  out["updates_accepted"] = accepted_total;
  out["updates_committed"] = committed;
  out["lost_updates"] = expected - committed;
  out["run_finished"] = server.value("finished", false);
  out["loss_before"] = loss_before;
  out["loss_after"] = loss_after;
  out["server"] = server;
  if (!errors.empty()) out["upload_errors"] = errors;
  std::printf("%s\n", out.dump(2).c_str());
  return expected == committed ? kExitOk : kExitRuntimeError;
}

}  // namespace

void RegisterCoordinatorBench(CLI::App& bench, Action& action, const GlobalFlags&) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* sub = bench.add_subcommand("coordinator", "Round time and ingest rate with many lightweight clients");
  sub->add_option("--clients", f->clients, "Clients, all in every round")->check(CLI::Range(2, 100'000))
      ->capture_default_str();
  sub->add_option("--update-bytes", f->update_bytes, "Size of each update (= the global state)")
      ->capture_default_str();
  sub->add_option("--rounds", f->rounds, "Rounds")->check(CLI::Range(1, 1000))->capture_default_str();
  sub->add_option("--chunk-bytes", f->chunk_bytes, "Stream chunk size")->capture_default_str();
  sub->add_option("--client-threads", f->client_threads, "Driver threads of the clients (uploads in flight)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  sub->add_flag("--hmac", f->hmac,
                "Clients authenticate each request with an HMAC over server-authenticated TLS (default: mutual TLS "
                "with a client certificate each, as enrolled devices run)");
  sub->add_option("--max-active-uploads", f->max_active_uploads, "Uploads the coordinator decodes at once")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  sub->add_flag("--insecure", f->insecure, "Plaintext instead of TLS (both paths)");
  sub->add_flag("--memory-store", f->memory_store, "SQLite in memory instead of a file");
  sub->add_option("--seed", f->seed, "Seed")->capture_default_str();
  sub->callback([&action, f] { action = [f] { return RunCoordinatorBench(*f); }; });
}

#else  // !FEDFM_HAVE_GRPC

void RegisterCoordinatorBench(CLI::App& bench, Action& action, const GlobalFlags&) {
  CLI::App* sub = bench.add_subcommand("coordinator", "Round time and ingest rate [not built: FEDFM_GRPC=OFF]");
  sub->prefix_command();
  sub->callback([&action] {
    action = [] { return NotBuilt("bench coordinator", "this fedfm was built without gRPC"); };
  });
}

#endif  // FEDFM_HAVE_GRPC

}  // namespace fedfm::cli
