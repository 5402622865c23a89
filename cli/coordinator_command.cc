// fedfm coordinator | enroll | clients: the deployed coordinator and its
// admin commands.
//
// State directory (the directory of --state FILE.db, 0700):
//   FILE.db, FILE.db.models/   the SQLite store (runs, rounds, clients, models)
//   admin_token                the admin credential of enroll / clients (0600)
//   tls/ca.pem, tls/ca.key     the coordinator's CA (created on first start)
//   tls/server.pem, server.key its server certificate (re-issued each start,
//                              for the current host names)
#include <CLI/CLI.hpp>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "cli/flag_parsing.h"
#include "protocols/config/config.h"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

#ifdef FEDFM_HAVE_GRPC
#include "coordinator/clock.h"
#include "coordinator/dashboard.h"
#include "coordinator/grpc_admin_client.h"
#include "coordinator/grpc_server.h"
#include "coordinator/ids.h"
#include "coordinator/round_engine.h"
#include "coordinator/round_engine_seed_replay.h"
#include "coordinator/sqlite_store.h"
#include "model/tokenizer.h"
#include "protocols/tls_certs.h"
#include "simulation/data.h"
#include "simulation/trainers.h"
#endif

namespace fedfm::cli {
namespace fs = std::filesystem;

#ifdef FEDFM_HAVE_GRPC
namespace {

using protocols::tls::KeyAndCertificate;

constexpr char kDefaultStateDir[] = "fedfm-state";
constexpr int kCaDays = 3650;
constexpr int kServerCertDays = 825;

// --- The state directory ----------------------------------------------------

fs::path StateDirOf(const fs::path& db) {
  fs::path dir = db.parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

absl::Status EnsurePrivateDir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  ::chmod(dir.c_str(), 0700);
  return absl::OkStatus();
}

absl::Status WritePrivateFile(const fs::path& path, const std::string& contents) {
  return protocols::WriteFileAtomic(path, contents, 0600);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

absl::StatusOr<std::string> LoadOrCreateAdminToken(const fs::path& dir) {
  const fs::path path = dir / "admin_token";
  if (fs::exists(path)) {
    FEDFM_ASSIGN_OR_RETURN(std::string token, protocols::ReadFileToString(path));
    token = Trim(token);
    if (!token.empty()) return token;
  }
  FEDFM_ASSIGN_OR_RETURN(std::string token, coordinator::NewEnrollmentToken());
  token = "fedfm_admin_" + token.substr(token.find_last_of('_') + 1);
  FEDFM_RETURN_IF_ERROR(WritePrivateFile(path, token + "\n"));
  return token;
}

absl::StatusOr<std::string> ReadAdminToken(const fs::path& dir) {
  const fs::path path = dir / "admin_token";
  absl::StatusOr<std::string> token = protocols::ReadFileToString(path);
  if (!token.ok()) {
    return absl::NotFoundError(absl::StrCat("no admin token at ", path.string(),
                                            ": pass --state with the coordinator's state directory"));
  }
  return Trim(*token);
}

// The host names the server certificate lists: loopback, this machine's
// name, and the listen host unless it is a wildcard.
std::vector<std::string> ServerHostNames(const std::string& listen_host) {
  std::vector<std::string> hosts = {"localhost", "127.0.0.1", "::1"};
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0') hosts.push_back(name);
  if (!listen_host.empty() && listen_host != "0.0.0.0" && listen_host != "::" && listen_host != "localhost" &&
      listen_host != "127.0.0.1" && listen_host != "::1" && listen_host != name) {
    hosts.push_back(listen_host);
  }
  return hosts;
}

// The CA (created once) and a fresh server certificate in dir/tls.
absl::StatusOr<std::pair<KeyAndCertificate, KeyAndCertificate>> EnsureTlsFiles(const fs::path& dir,
                                                                               const std::string& listen_host) {
  const fs::path tls = dir / "tls";
  FEDFM_RETURN_IF_ERROR(EnsurePrivateDir(tls));
  KeyAndCertificate ca;
  if (fs::exists(tls / "ca.pem") && fs::exists(tls / "ca.key")) {
    FEDFM_ASSIGN_OR_RETURN(ca.certificate_pem, protocols::ReadFileToString(tls / "ca.pem"));
    FEDFM_ASSIGN_OR_RETURN(ca.key_pem, protocols::ReadFileToString(tls / "ca.key"));
  } else {
    char name[256] = {};
    ::gethostname(name, sizeof(name) - 1);
    FEDFM_ASSIGN_OR_RETURN(ca, protocols::tls::CreateCertificateAuthority(
                                   absl::StrCat("fedfm coordinator CA (", name, ")"), kCaDays));
    FEDFM_RETURN_IF_ERROR(WritePrivateFile(tls / "ca.key", ca.key_pem));
    FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(tls / "ca.pem", ca.certificate_pem));
    spdlog::info("created a certificate authority in {}", (tls / "ca.pem").string());
  }
  FEDFM_ASSIGN_OR_RETURN(KeyAndCertificate server, protocols::tls::CreateServerCertificate(
                                                       ca, ServerHostNames(listen_host), kServerCertDays));
  FEDFM_RETURN_IF_ERROR(WritePrivateFile(tls / "server.key", server.key_pem));
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(tls / "server.pem", server.certificate_pem));
  return std::make_pair(std::move(ca), std::move(server));
}

// --- fedfm coordinator --------------------------------------------------------

struct CoordinatorFlags {
  std::string config;
  std::string listen;
  std::string state;
  std::optional<std::string> http;
  std::string tls_cert;
  std::string tls_key;
  std::string client_ca;
  bool insecure = false;
  bool new_run = false;
  std::string linger = "5s";
  std::string tick = "100ms";
  std::string poll_interval = "1s";
  std::string selection_wait = "10s";
  std::string phase_timeout = "60s";
  std::string liveness = "60s";
};

std::atomic<int> g_signal{0};
extern "C" void OnStopSignal(int sig) { g_signal.store(sig); }

std::string MethodKey(protocols::Method m) { return protocols::MethodName(m); }

// One line per finished round.
void LogRound(const coordinator::RoundSummary& r, int64_t total_rounds) {
  std::vector<std::string> parts;
  int64_t clients = 0, bytes_up = 0;
  std::vector<std::string> methods;
  for (const auto& [method, stats] : r.methods) {
    clients += stats.participants;
    bytes_up += stats.bytes_up;
    methods.push_back(absl::StrCat(stats.participants, " ", MethodKey(method)));
  }
  std::string metrics;
  for (const auto& [name, value] : r.metrics) absl::StrAppend(&metrics, ", ", name, " ", absl::StrFormat("%.4g", value));
  spdlog::info("round {}/{} {} in {:.1f} s: {} clients ({}){}, up {}", r.round, total_rounds,
               r.committed ? "committed" : "failed", r.duration_s, clients, absl::StrJoin(methods, ", "), metrics,
               FormatBytes(static_cast<double>(bytes_up)));
}

int RunCoordinator(const CoordinatorFlags& f) {
  const char* kCmd = "coordinator";
  protocols::RunConfig config;
  if (!f.config.empty()) {
    absl::StatusOr<protocols::RunConfig> c = protocols::LoadRunConfig(f.config);
    if (!c.ok()) return Fail(kCmd, c.status());
    config = *std::move(c);
  }
  if (!f.listen.empty()) config.coordinator.listen = f.listen;
  if (!f.state.empty()) config.coordinator.state = f.state;
  if (f.http.has_value()) config.coordinator.http = *f.http;
  coordinator::RoundEngineOptions engine_options;
  int64_t linger_ms = 0, tick_ms = 0;
  for (auto [text, out] : {std::pair{&f.linger, &linger_ms}, std::pair{&f.tick, &tick_ms},
                           std::pair{&f.poll_interval, &engine_options.poll_interval_ms},
                           std::pair{&f.selection_wait, &engine_options.selection_wait_ms},
                           std::pair{&f.phase_timeout, &engine_options.secagg_phase_ms},
                           std::pair{&f.liveness, &engine_options.liveness_ms}}) {
    absl::StatusOr<int64_t> ms = ParseDurationMs(*text);
    if (!ms.ok()) return Fail(kCmd, ms.status());
    *out = *ms;
  }

  absl::StatusOr<HostPort> listen = ParseHostPort(config.coordinator.listen);
  if (!listen.ok()) return Fail(kCmd, listen.status());
  const bool custom_tls = !f.tls_cert.empty() || !f.tls_key.empty() || !f.client_ca.empty();
  if (custom_tls && (f.tls_cert.empty() || f.tls_key.empty() || f.client_ca.empty())) {
    std::fprintf(stderr, "fedfm coordinator: --tls-cert, --tls-key and --client-ca go together\n");
    return kExitUsage;
  }
  const bool plaintext = f.insecure || config.coordinator.insecure;
  if (plaintext && custom_tls) {
    std::fprintf(stderr, "fedfm coordinator: --insecure serves plaintext; drop the TLS flags or --insecure\n");
    return kExitUsage;
  }
  if (plaintext && !f.insecure && !IsLoopbackHost(listen->host)) {
    return Fail(kCmd, absl::FailedPreconditionError(absl::StrCat(
                          "refusing to serve plaintext on ", config.coordinator.listen,
                          ", which is not a loopback address: coordinator.insecure in the config is honoured on "
                          "loopback only; pass --insecure to serve without TLS anyway, or drop coordinator.insecure "
                          "for TLS")));
  }
  if (plaintext && !IsLoopbackHost(listen->host)) {
    spdlog::warn("serving PLAINTEXT on {} (--insecure): requests are authenticated by MAC but not encrypted",
                 config.coordinator.listen);
  }

  const fs::path db = config.coordinator.state;
  const fs::path dir = StateDirOf(db);
  if (absl::Status s = EnsurePrivateDir(dir); !s.ok()) return Fail(kCmd, s);
  absl::StatusOr<std::string> admin_token = LoadOrCreateAdminToken(dir);
  if (!admin_token.ok()) return Fail(kCmd, admin_token.status());

  coordinator::CoordinatorServerOptions server_options;
  server_options.listen = config.coordinator.listen;
  server_options.service.max_update_bytes = config.coordinator.max_update_bytes;
  server_options.service.chunk_bytes = config.coordinator.chunk_bytes;
  server_options.service.rate_limit_per_s = config.coordinator.rate_limit_per_s;
  server_options.service.admin_token = *admin_token;
  std::string ca_path;
  if (custom_tls) {
    coordinator::CoordinatorServerOptions::Tls tls;
    for (auto [path, out] : {std::pair{&f.tls_cert, &tls.server_certificate_pem},
                             std::pair{&f.tls_key, &tls.server_key_pem}, std::pair{&f.client_ca, &tls.client_ca_pem}}) {
      absl::StatusOr<std::string> text = protocols::ReadFileToString(*path);
      if (!text.ok()) return Fail(kCmd, text.status());
      *out = *text;
    }
    server_options.tls = tls;
    ca_path = f.client_ca;
    spdlog::info("TLS with the given certificates; clients enroll with HMAC secrets (the coordinator holds no CA key "
                 "to issue client certificates)");
  } else if (!plaintext) {
    auto files = EnsureTlsFiles(dir, listen->host);
    if (!files.ok()) return Fail(kCmd, files.status());
    server_options.tls = coordinator::CoordinatorServerOptions::Tls{
        files->second.key_pem, files->second.certificate_pem, files->first.certificate_pem};
    server_options.service.ca = files->first;
    ca_path = (dir / "tls" / "ca.pem").string();
  }
  if (!ca_path.empty()) {
    absl::StatusOr<std::string> fingerprint = protocols::tls::CertificateFingerprint(server_options.tls->client_ca_pem);
    if (!fingerprint.ok()) return Fail(kCmd, fingerprint.status());
    spdlog::info("clients verify this coordinator with the CA {} (SHA-256 fingerprint {}): fedfm client --ca {}",
                 ca_path, *fingerprint, ca_path);
  }

  // The model: the run's initial global state and its sizes. A
  // classification run's head needs the label set of data.path.
  int num_labels = 0;
  if (config.data.format == "tsv" || config.data.format == "csv" || config.data.format == "spamassassin") {
    absl::StatusOr<std::unique_ptr<model::Tokenizer>> tokenizer = model::LoadTokenizer(config.model.tokenizer);
    if (!tokenizer.ok()) return Fail(kCmd, tokenizer.status());
    absl::StatusOr<simulation::SimData> data = simulation::LoadSimData(config, **tokenizer, 1, config.run.seed);
    if (!data.ok()) {
      return Fail(kCmd, absl::Status(data.status().code(),
                                     absl::StrCat("a classification run reads its label set from data.path: ",
                                                  data.status().message())));
    }
    num_labels = data->num_labels;
  }
  absl::StatusOr<std::unique_ptr<simulation::TrainerFactory>> factory =
      simulation::MakeModelTrainerFactory(config, num_labels);
  if (!factory.ok()) return Fail(kCmd, factory.status());
  absl::StatusOr<protocols::TensorMap> initial = (*factory)->InitialState();
  if (!initial.ok()) return Fail(kCmd, initial.status());
  const protocols::ModelDims dims = (*factory)->dims();

  absl::StatusOr<std::unique_ptr<coordinator::Store>> store = coordinator::OpenSqliteStore(db);
  if (!store.ok()) return Fail(kCmd, store.status());
  // Resume the latest run unless told to start another.
  if (!f.new_run) {
    absl::StatusOr<std::vector<coordinator::RunRecord>> runs = (*store)->ListRuns();
    if (!runs.ok()) return Fail(kCmd, runs.status());
    if (!runs->empty()) {
      const coordinator::RunRecord& last = runs->back();
      if (last.status != coordinator::RunStatus::kRunning) {
        spdlog::info("run {} in {} is {}; pass --new-run to start another", last.id, db.string(),
                     coordinator::RunStatusName(last.status));
        return kExitOk;
      }
      engine_options.run_id = last.id;
      spdlog::info("resuming run {} from {}", last.id, db.string());
    }
  }
  absl::StatusOr<std::unique_ptr<coordinator::SeedPoolReplay>> replay =
      coordinator::SeedPoolReplay::FromConfig(config, *initial);
  if (!replay.ok()) return Fail(kCmd, replay.status());
  coordinator::SystemClock clock;
  absl::StatusOr<std::unique_ptr<coordinator::RoundEngine>> engine = coordinator::RoundEngine::Create(
      config, **store, clock, *std::move(initial), dims, replay->get(), engine_options);
  if (!engine.ok()) return Fail(kCmd, engine.status());
  coordinator::RoundEngine& e = **engine;
  spdlog::info("run {} (\"{}\"): {} over {}, {} training rounds", e.run_id(), config.run.name,
               (*factory)->description(), config.model.path, config.run.rounds);

  std::unique_ptr<coordinator::HttpServer> dashboard;
  if (!config.coordinator.http.empty()) {
    absl::StatusOr<std::unique_ptr<coordinator::HttpServer>> d =
        coordinator::StartDashboard(config.coordinator.http, &e.dashboard());
    if (!d.ok()) return Fail(kCmd, d.status());
    dashboard = *std::move(d);
    spdlog::info("dashboard on http://{}/", dashboard->address());
  }
  absl::StatusOr<std::unique_ptr<coordinator::CoordinatorServer>> server =
      coordinator::CoordinatorServer::Start(server_options, e, **store);
  if (!server.ok()) return Fail(kCmd, server.status());

  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  size_t logged = e.History().size();
  std::optional<std::chrono::steady_clock::time_point> finished_at;
  std::string last_failure;
  while (g_signal.load() == 0) {
    absl::Status tick = e.Tick();
    if (!tick.ok()) spdlog::warn("round engine: {}", std::string(tick.message()));
    const coordinator::RoundEngineStatus status = e.Status();
    std::vector<coordinator::RoundSummary> history = e.History();
    for (; logged < history.size(); ++logged) LogRound(history[logged], status.total_rounds);
    if (status.last_failure != last_failure && !status.last_failure.empty()) {
      spdlog::warn("round {} failed: {}", status.round, status.last_failure);
    }
    last_failure = status.last_failure;
    if (e.finished() && !finished_at.has_value()) {
      spdlog::info("run {} finished: {}", e.run_id(), status.finish_reason);
      finished_at = std::chrono::steady_clock::now();
    }
    if (finished_at.has_value() &&
        std::chrono::steady_clock::now() - *finished_at > std::chrono::milliseconds(linger_ms)) {
      break;  // clients had time to hear "stop"
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::max<int64_t>(10, tick_ms)));
  }
  if (g_signal.load() != 0) spdlog::info("signal {}: shutting down", g_signal.load());
  (*server)->Shutdown(/*grace_ms=*/3'000);
  coordinator::CoordinatorServiceStats stats = (*server)->stats();
  spdlog::info("served {} uploads ({} refused, {}), {} downloads ({})", stats.uploads_accepted, stats.uploads_refused,
               FormatBytes(static_cast<double>(stats.upload_bytes)), stats.downloads,
               FormatBytes(static_cast<double>(stats.download_bytes)));
  if (dashboard) dashboard->Stop();
  return kExitOk;
}

// --- fedfm enroll / fedfm clients -------------------------------------------------

struct AdminFlags {
  std::string coordinator = "127.0.0.1:7443";
  std::string state = kDefaultStateDir;
  std::string ca;
  std::string tls_server_name;
  bool insecure = false;
};

absl::StatusOr<std::unique_ptr<coordinator::AdminClient>> ConnectAdmin(const AdminFlags& f) {
  coordinator::AdminClientOptions o;
  o.target = f.coordinator;
  o.tls_server_name = f.tls_server_name;
  FEDFM_ASSIGN_OR_RETURN(o.admin_token, ReadAdminToken(f.state));
  if (!f.insecure) {
    const fs::path ca = f.ca.empty() ? fs::path(f.state) / "tls" / "ca.pem" : fs::path(f.ca);
    absl::StatusOr<std::string> pem = protocols::ReadFileToString(ca);
    if (!pem.ok()) {
      return absl::NotFoundError(absl::StrCat("no CA certificate at ", ca.string(),
                                              ": pass --ca, or --insecure for a plaintext coordinator"));
    }
    o.ca_pem = *pem;
  }
  return coordinator::AdminClient::Connect(o);
}

void AddAdminFlags(CLI::App* sub, AdminFlags& f) {
  sub->add_option("--state", f.state, "The coordinator's state directory (admin_token, tls/ca.pem)")
      ->capture_default_str();
  sub->add_option("--ca", f.ca, "The coordinator's CA certificate (default: STATE/tls/ca.pem)");
  sub->add_option("--tls-server-name", f.tls_server_name, "Name expected in the coordinator's certificate");
  sub->add_flag("--insecure", f.insecure, "Plaintext (a coordinator started with --insecure)");
}

struct EnrollFlags {
  AdminFlags admin;
  int64_t uses = 1;
  std::string expires = "24h";
};

int RunEnroll(const EnrollFlags& f) {
  absl::StatusOr<int64_t> expires_ms = ParseDurationMs(f.expires);
  if (!expires_ms.ok()) return Fail("enroll", expires_ms.status());
  auto admin = ConnectAdmin(f.admin);
  if (!admin.ok()) return Fail("enroll", admin.status());
  absl::StatusOr<std::string> token = (*admin)->CreateToken(f.uses, std::max<int64_t>(1, *expires_ms / 1000));
  if (!token.ok()) return Fail("enroll", token.status());
  std::printf("%s\n", token->c_str());
  const std::string ca = f.admin.ca.empty() ? (fs::path(f.admin.state) / "tls" / "ca.pem").string() : f.admin.ca;
  std::fprintf(stderr,
               "enrollment token for %lld device(s), valid %s. On each device:\n"
               "  fedfm client --coordinator %s --token %s%s --model PATH --tokenizer PATH --data PATH\n",
               static_cast<long long>(f.uses), f.expires.c_str(), f.admin.coordinator.c_str(), token->c_str(),
               f.admin.insecure ? " --insecure" : absl::StrCat(" --ca ", ca).c_str());
  return kExitOk;
}

std::string Ago(int64_t ms) {
  if (ms <= 0) return "never";
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t s = std::max<int64_t>(0, (now - ms) / 1000);
  if (s < 120) return absl::StrCat(s, "s ago");
  if (s < 7200) return absl::StrCat(s / 60, "m ago");
  if (s < 172800) return absl::StrCat(s / 3600, "h ago");
  return absl::StrCat(s / 86400, "d ago");
}

int RunClientsList(const AdminFlags& f) {
  auto admin = ConnectAdmin(f);
  if (!admin.ok()) return Fail("clients list", admin.status());
  absl::StatusOr<std::vector<coordinator::ClientInfo>> clients = (*admin)->ListClients();
  if (!clients.ok()) return Fail("clients list", clients.status());
  std::printf("%-24s %-16s %-6s %-10s %-18s %-8s %s\n", "CLIENT", "NAME", "ACCEL", "MEMORY", "METHODS", "STATE",
              "LAST SEEN");
  for (const coordinator::ClientInfo& c : *clients) {
    std::vector<std::string> methods;
    for (protocols::Method m : c.profile.methods) methods.push_back(protocols::MethodName(m));
    std::printf("%-24s %-16s %-6s %-10s %-18s %-8s %s\n", c.client_id.c_str(), c.name.c_str(),
                c.profile.accelerator.c_str(), FormatBytes(static_cast<double>(c.profile.memory_bytes)).c_str(),
                methods.empty() ? "all" : absl::StrJoin(methods, ",").c_str(), c.revoked ? "revoked" : "active",
                Ago(c.last_seen_ms).c_str());
  }
  return kExitOk;
}

int RunClientsRevoke(const AdminFlags& f, const std::string& id) {
  auto admin = ConnectAdmin(f);
  if (!admin.ok()) return Fail("clients revoke", admin.status());
  if (absl::Status s = (*admin)->RevokeClient(id); !s.ok()) return Fail("clients revoke", s);
  std::printf("revoked %s\n", id.c_str());
  return kExitOk;
}

}  // namespace

void RegisterCoordinatorCommands(CLI::App& app, Action& action, const GlobalFlags&) {
  {
    auto f = std::make_shared<CoordinatorFlags>();
    CLI::App* sub = app.add_subcommand("coordinator", "Run the coordinator service (gRPC, SQLite state, dashboard)");
    sub->add_option("--config", f->config, "Run configuration (TOML); default: the built-in defaults")
        ->check(CLI::ExistingFile);
    sub->add_option("--listen", f->listen, "Address to serve gRPC on (default coordinator.listen, 127.0.0.1:7443)");
    sub->add_option("--state", f->state,
                    "SQLite state file; its directory also holds the CA and the admin token "
                    "(default coordinator.state, fedfm-state/coordinator.db)");
    sub->add_option("--http", f->http, "Dashboard address, \"\" for none (default coordinator.http)");
    sub->add_option("--tls-cert", f->tls_cert, "Server certificate (PEM) instead of the generated one")
        ->check(CLI::ExistingFile);
    sub->add_option("--tls-key", f->tls_key, "Its private key (PEM)")->check(CLI::ExistingFile);
    sub->add_option("--client-ca", f->client_ca, "CA that client certificates are verified against (PEM)")
        ->check(CLI::ExistingFile);
    sub->add_flag("--insecure", f->insecure, "Serve plaintext (no TLS), on any address");
    sub->add_flag("--new-run", f->new_run, "Start a new run even if the state holds one");
    sub->add_option("--linger", f->linger, "After the run ends, keep answering \"stop\" this long")
        ->capture_default_str();
    sub->add_option("--tick", f->tick, "How often deadlines are checked")->capture_default_str();
    sub->add_option("--poll-interval", f->poll_interval, "How soon waiting clients poll again")
        ->capture_default_str();
    sub->add_option("--selection-wait", f->selection_wait,
                    "With rounds.min_clients but not rounds.clients_per_round available, wait this long before "
                    "selecting")
        ->capture_default_str();
    sub->add_option("--phase-timeout", f->phase_timeout,
                    "Deadline of each SecAgg+ phase but collect (missing clients then count as dropped)")
        ->capture_default_str();
    sub->add_option("--liveness", f->liveness, "A client is available when it polled within this")
        ->capture_default_str();
    sub->callback([&action, f] { action = [f] { return RunCoordinator(*f); }; });
  }
  {
    auto f = std::make_shared<EnrollFlags>();
    CLI::App* sub = app.add_subcommand("enroll", "Issue an enrollment token for client devices");
    sub->add_option("--coordinator", f->admin.coordinator, "Coordinator address HOST:PORT")->required();
    sub->add_option("--uses", f->uses, "Devices the token may enroll")->check(CLI::Range(1, 1'000'000))
        ->capture_default_str();
    sub->add_option("--expires", f->expires, "Validity (10m, 24h, 7d)")->capture_default_str();
    AddAdminFlags(sub, f->admin);
    sub->callback([&action, f] { action = [f] { return RunEnroll(*f); }; });
  }
  {
    auto f = std::make_shared<AdminFlags>();
    auto id = std::make_shared<std::string>();
    CLI::App* sub = app.add_subcommand("clients", "List or revoke enrolled client devices");
    sub->require_subcommand(1);
    sub->add_option("--coordinator", f->coordinator, "Coordinator address HOST:PORT")->capture_default_str();
    AddAdminFlags(sub, *f);
    CLI::App* list = sub->add_subcommand("list", "List enrolled devices");
    list->fallthrough();  // `clients list --state DIR` as well as `clients --state DIR list`
    list->callback([&action, f] { action = [f] { return RunClientsList(*f); }; });
    CLI::App* revoke = sub->add_subcommand("revoke", "Revoke a device: its requests are refused from now on");
    revoke->fallthrough();
    revoke->add_option("ID", *id, "Client id")->required();
    revoke->callback([&action, f, id] { action = [f, id] { return RunClientsRevoke(*f, *id); }; });
  }
}

#else  // !FEDFM_HAVE_GRPC

namespace {
void AddNotBuilt(CLI::App& app, Action& action, const std::string& name, const std::string& description) {
  CLI::App* sub = app.add_subcommand(name, description + " [not built: FEDFM_GRPC=OFF]");
  sub->prefix_command();
  sub->callback([&action, name] {
    action = [name] { return NotBuilt(name, "this fedfm was built without gRPC (configure with -DFEDFM_GRPC=ON)"); };
  });
}
}  // namespace

void RegisterCoordinatorCommands(CLI::App& app, Action& action, const GlobalFlags&) {
  AddNotBuilt(app, action, "coordinator", "Run the coordinator service (gRPC, SQLite state, dashboard)");
  AddNotBuilt(app, action, "enroll", "Issue an enrollment token for client devices");
  AddNotBuilt(app, action, "clients", "List or revoke enrolled client devices");
}

#endif  // FEDFM_HAVE_GRPC

}  // namespace fedfm::cli
