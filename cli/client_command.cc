// fedfm client: a deployed device. Enrolls once (its identity, certificate
// and the coordinator's CA are kept in --state), measures a device profile,
// then runs client::ClientRuntime over a GrpcLink until the coordinator says
// the run is over.
//
// State directory (--state, 0700):
//   identity.json       client id, HMAC secret, run id (0600)
//   client.key          mTLS private key, made on this device (0600)
//   client.pem          its certificate, issued by the coordinator's CA
//   ca.pem              the coordinator's CA, as given with --ca at enrollment
#include <CLI/CLI.hpp>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "cli/flag_parsing.h"
#include "protocols/config/config.h"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

#ifdef FEDFM_HAVE_GRPC
#include "client/grpc_link.h"
#include "client/runtime.h"
#include "client/trainer.h"
#include "model/tokenizer.h"
#include "simulation/data.h"
#include "simulation/trainers.h"
#endif

namespace fedfm::cli {
namespace fs = std::filesystem;

#ifdef FEDFM_HAVE_GRPC
namespace {

using protocols::Method;

struct ClientFlags {
  std::string coordinator;
  std::string token;
  std::string model;
  std::string tokenizer;
  std::string data;
  std::string data_format;
  int seq_len = 64;
  int max_eval_examples = 256;
  std::string device = "cpu";
  std::string memory_budget;
  std::string method = "auto";
  std::string ca;
  std::string tls_server_name;
  std::string state = "fedfm-client";
  std::string name;
  bool insecure = false;
  uint64_t seed = 0;
};

std::atomic<bool> g_stop{false};
extern "C" void OnClientStopSignal(int) { g_stop.store(true); }

absl::Status WritePrivate(const fs::path& path, const std::string& contents) {
  return protocols::WriteFileAtomic(path, contents, 0600);
}

// --- Identity -------------------------------------------------------------------

struct StoredIdentity {
  protocols::EnrollResponse identity;
  std::optional<client::ClientCertificate> certificate;
};

absl::StatusOr<std::optional<StoredIdentity>> LoadIdentity(const fs::path& dir) {
  const fs::path path = dir / "identity.json";
  if (!fs::exists(path)) return std::optional<StoredIdentity>();
  FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  const auto is_string = [&](const char* key) { return j.contains(key) && j[key].is_string(); };
  if (!j.is_object() || !is_string("client_id") || !is_string("secret_hex") ||
      (j.contains("run_id") && !j["run_id"].is_string())) {
    return absl::DataLossError(absl::StrCat(path.string(), ": not a fedfm client identity"));
  }
  StoredIdentity out;
  out.identity.client_id = j["client_id"].get<std::string>();
  out.identity.run_id = j.value("run_id", "");
  const std::string hex = j["secret_hex"].get<std::string>();
  if (hex.size() % 2 != 0 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::DataLossError(absl::StrCat(path.string(), ": secret_hex is not lowercase hex"));
  }
  out.identity.client_secret = absl::HexStringToBytes(hex);
  if (fs::exists(dir / "client.pem") && fs::exists(dir / "client.key")) {
    client::ClientCertificate cert;
    FEDFM_ASSIGN_OR_RETURN(cert.certificate_pem, protocols::ReadFileToString(dir / "client.pem"));
    FEDFM_ASSIGN_OR_RETURN(cert.key_pem, protocols::ReadFileToString(dir / "client.key"));
    out.certificate = cert;
  }
  return std::optional<StoredIdentity>(out);
}

absl::Status SaveIdentity(const fs::path& dir, const protocols::EnrollResponse& identity,
                          const std::optional<client::ClientCertificate>& certificate) {
  nlohmann::json j = {{"client_id", identity.client_id},
                      {"run_id", identity.run_id},
                      {"secret_hex", absl::BytesToHexString(identity.client_secret)}};
  if (certificate.has_value()) {
    FEDFM_RETURN_IF_ERROR(WritePrivate(dir / "client.key", certificate->key_pem));
    FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(dir / "client.pem", certificate->certificate_pem));
  }
  return WritePrivate(dir / "identity.json", j.dump(2) + "\n");
}

// --- Trainers -------------------------------------------------------------------

// Keeps at most `max` evaluation examples, evenly spaced, so that an
// evaluation round costs the same on a device with much data as on one with
// little (and fits the round's deadline).
void CapEvalExamples(client::Dataset& data, int max) {
  if (max <= 0 || data.eval.size() <= static_cast<size_t>(max)) return;
  std::vector<model::Example> kept;
  kept.reserve(static_cast<size_t>(max));
  for (int k = 0; k < max; ++k) kept.push_back(std::move(data.eval[data.eval.size() * k / static_cast<size_t>(max)]));
  data.eval = std::move(kept);
}

// The Trainer the runtime drives: routes each task to the trainer of its
// method (made on first use by the factory) and trains on this device's data,
// tokenized in windows of the task's seq_len (re-read when a task asks for
// another length than the one loaded).
class DeviceTrainer final : public client::Trainer {
 public:
  DeviceTrainer(simulation::TrainerFactory& factory, protocols::RunConfig data_config,
                std::unique_ptr<model::Tokenizer> tokenizer, client::Dataset data, uint64_t client_seed,
                int max_eval_examples)
      : factory_(factory),
        data_config_(std::move(data_config)),
        tokenizer_(std::move(tokenizer)),
        data_(std::move(data)),
        client_seed_(client_seed),
        max_eval_examples_(max_eval_examples) {}

  absl::StatusOr<protocols::Update> Train(const protocols::Task& task, client::TrainableState& state,
                                          client::Dataset&) override {
    FEDFM_ASSIGN_OR_RETURN(client::Trainer * trainer, TrainerFor(task.method));
    FEDFM_RETURN_IF_ERROR(EnsureSeqLen(task.seq_len));
    return trainer->Train(task, state, data_);
  }

  absl::StatusOr<protocols::EvalReport> Evaluate(const protocols::Task& task, const client::TrainableState& state,
                                                  client::Dataset&) override {
    const Method method = task.method == Method::kAuto ? Method::kLora : task.method;
    FEDFM_ASSIGN_OR_RETURN(client::Trainer * trainer, TrainerFor(method));
    FEDFM_RETURN_IF_ERROR(EnsureSeqLen(task.seq_len));
    return trainer->Evaluate(task, state, data_);
  }

 private:
  absl::StatusOr<client::Trainer*> TrainerFor(Method method) {
    if (method == Method::kAuto) method = Method::kLora;
    auto it = trainers_.find(method);
    if (it == trainers_.end()) {
      FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<client::Trainer> t, factory_.Create(method, client_seed_));
      it = trainers_.emplace(method, std::move(t)).first;
    }
    return it->second.get();
  }

  absl::Status EnsureSeqLen(int seq_len) {
    if (seq_len <= 0 || seq_len == data_config_.data.seq_len) return absl::OkStatus();
    data_config_.data.seq_len = seq_len;
    FEDFM_ASSIGN_OR_RETURN(simulation::SimData sim,
                           simulation::LoadSimData(data_config_, *tokenizer_, 1, data_config_.run.seed));
    data_ = sim.ClientDataset(0);
    CapEvalExamples(data_, max_eval_examples_);
    spdlog::info("re-read the data in windows of {} tokens: {} train, {} eval examples", seq_len,
                 data_.train.size(), data_.eval.size());
    return absl::OkStatus();
  }

  simulation::TrainerFactory& factory_;
  protocols::RunConfig data_config_;
  std::unique_ptr<model::Tokenizer> tokenizer_;
  client::Dataset data_;
  const uint64_t client_seed_;
  const int max_eval_examples_;
  std::map<Method, std::unique_ptr<client::Trainer>> trainers_;
};

// --- The device profile --------------------------------------------------------------

uint64_t AvailableMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

// Training throughput from one short local step of `method` on the run's
// initial state: FLOP/s ~ 6 x parameters x tokens / seconds (forward and
// backward), the cost model the coordinator's policy uses.
double MeasureFlopsPerSecond(simulation::TrainerFactory& factory, Method method, client::Dataset& data,
                             int seq_len) {
  absl::StatusOr<protocols::TensorMap> state = factory.InitialState();
  absl::StatusOr<std::unique_ptr<client::Trainer>> trainer = factory.Create(method, /*client=*/0);
  if (!state.ok() || !trainer.ok() || data.train.empty()) return 0;
  protocols::Task task;
  task.method = method;
  task.lora_rank = 0;
  task.top_blocks = 1;
  task.local_steps = 2;
  task.batch_size = 4;
  task.seq_len = seq_len;
  task.learning_rate = 1e-4;
  task.coverage = protocols::Coverage::Full(*state);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<protocols::Update> u = (*trainer)->Train(task, *state, data);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!u.ok() || s <= 0) {
    spdlog::warn("throughput measurement failed: {}", u.ok() ? "no time" : std::string(u.status().message()));
    return 0;
  }
  const double tokens = 2.0 * 4 * seq_len;
  return 6.0 * static_cast<double>(factory.dims().num_params) * tokens / s;
}

// The config the device's trainers and data follow: the run's (from the
// coordinator), with this device's model files, data and accelerator.
protocols::RunConfig DeviceConfig(protocols::RunConfig run, const ClientFlags& f) {
  run.model.path = f.model;
  run.model.tokenizer = f.tokenizer;
  run.model.device = f.device.rfind("cuda", 0) == 0 ? protocols::DeviceKind::kCuda : protocols::DeviceKind::kCpu;
  run.data.path = f.data;
  if (!f.data_format.empty()) run.data.format = f.data_format;
  run.data.eval_path.clear();
  run.data.partition.scheme = "iid";
  run.run.seed ^= f.seed;
  return run;
}

uint64_t ClientSeed(const std::string& client_id) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : client_id) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Retries `call` while the coordinator is unreachable (it may be starting).
template <typename Call>
auto RetryTransport(const char* what, Call call) -> decltype(call()) {
  for (int attempt = 0;; ++attempt) {
    auto r = call();
    if (r.ok() || !client::IsTransportFailure(r.status()) || attempt >= 40) return r;
    spdlog::warn("{}: {}; retrying", what, std::string(r.status().message()));
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5'000, 250 << std::min(attempt, 5))));
  }
}

int RunClient(const ClientFlags& f) {
  const char* kCmd = "client";
  const fs::path dir = f.state;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Fail(kCmd, absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message())));
  ::chmod(dir.c_str(), 0700);

  absl::StatusOr<std::optional<StoredIdentity>> stored = LoadIdentity(dir);
  if (!stored.ok()) return Fail(kCmd, stored.status());
  if (!stored->has_value() && f.token.empty()) {
    std::fprintf(stderr, "fedfm client: this device is not enrolled yet (no %s): pass --token from `fedfm enroll`\n",
                 (dir / "identity.json").c_str());
    return kExitUsage;
  }

  // Transport security: --ca, or the CA kept at enrollment, or --insecure.
  std::optional<std::string> ca_pem;
  if (!f.insecure) {
    const fs::path ca = !f.ca.empty() ? fs::path(f.ca) : dir / "ca.pem";
    absl::StatusOr<std::string> pem = protocols::ReadFileToString(ca);
    if (!pem.ok()) {
      std::fprintf(stderr,
                   "fedfm client: no CA certificate (%s): pass --ca with the file `fedfm coordinator` printed, "
                   "or --insecure for a plaintext coordinator\n",
                   ca.c_str());
      return kExitUsage;
    }
    ca_pem = *pem;
    if (!f.ca.empty()) {
      if (absl::Status s = protocols::WriteFileAtomic(dir / "ca.pem", *pem); !s.ok()) return Fail(kCmd, s);
    }
  }
  client::GrpcLinkOptions link_options;
  link_options.target = f.coordinator;
  link_options.ca_pem = ca_pem;
  link_options.tls_server_name = f.tls_server_name;
  if (stored->has_value() && ca_pem.has_value()) link_options.certificate = (*stored)->certificate;
  absl::StatusOr<std::unique_ptr<client::GrpcLink>> link = client::GrpcLink::Create(link_options);
  if (!link.ok()) return Fail(kCmd, link.status());
  absl::StatusOr<std::unique_ptr<model::Tokenizer>> tokenizer = model::LoadTokenizer(f.tokenizer);
  if (!tokenizer.ok()) return Fail(kCmd, tokenizer.status());

  // Enrollment, once, with the profile the coordinator's policy chooses
  // methods from: the trainers this build has and a measured throughput
  // (on this device's defaults; the run's own config comes after enrolling).
  protocols::EnrollResponse identity;
  if (stored->has_value()) {
    identity = (*stored)->identity;
    if (absl::Status s = (*link)->UseIdentity(identity); !s.ok()) return Fail(kCmd, s);
    spdlog::info("client {} (enrolled earlier, {})", identity.client_id,
                 link_options.certificate.has_value() ? "mutual TLS" : "request MACs");
  } else {
    protocols::RunConfig local;
    local.data.seq_len = f.seq_len;
    local = DeviceConfig(local, f);
    if (f.data_format.empty()) local.data.format = "text";
    absl::StatusOr<simulation::SimData> sample = simulation::LoadSimData(local, **tokenizer, 1, local.run.seed);
    if (!sample.ok()) return Fail(kCmd, sample.status());
    absl::StatusOr<std::unique_ptr<simulation::TrainerFactory>> probe =
        simulation::MakeModelTrainerFactory(local, sample->num_labels);
    if (!probe.ok()) return Fail(kCmd, probe.status());
    protocols::DeviceProfile profile;
    for (Method m : {Method::kLora, Method::kPartial, Method::kZerothOrder}) {
      if (f.method != "auto" && f.method != protocols::MethodName(m)) continue;
      profile.methods.push_back(m);
    }
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    profile.name = f.name.empty() ? std::string(host) : f.name;
    profile.accelerator = local.model.device == protocols::DeviceKind::kCuda ? "cuda" : "cpu";
    if (!f.memory_budget.empty()) {
      absl::StatusOr<int64_t> budget = ParseSizeBytes(f.memory_budget);
      if (!budget.ok()) return Fail(kCmd, budget.status());
      profile.memory_bytes = static_cast<uint64_t>(*budget);
    } else {
      profile.memory_bytes = AvailableMemoryBytes();
    }
    client::Dataset sample_data = sample->ClientDataset(0);
    profile.flops_per_s = MeasureFlopsPerSecond(**probe, profile.methods.front(), sample_data, f.seq_len);
    probe->reset();
    std::vector<std::string> names;
    for (Method m : profile.methods) names.push_back(protocols::MethodName(m));
    spdlog::info("device {}: {}, memory budget {}, {:.3g} GFLOP/s measured, methods {}", profile.name,
                 profile.accelerator, FormatBytes(static_cast<double>(profile.memory_bytes)),
                 profile.flops_per_s / 1e9, absl::StrJoin(names, ", "));
    absl::StatusOr<protocols::EnrollResponse> enrolled =
        RetryTransport("enroll", [&] { return (*link)->Enroll({f.token, profile.name, profile}); });
    if (!enrolled.ok()) return Fail(kCmd, enrolled.status());
    identity = *enrolled;
    if (absl::Status s = SaveIdentity(dir, identity, (*link)->certificate()); !s.ok()) return Fail(kCmd, s);
    spdlog::info("enrolled as {} ({}); identity kept in {}", identity.client_id,
                 (*link)->certificate().has_value() ? "mutual TLS" : "request MACs", dir.string());
  }

  // The run's config, with this device's files: its trainers and data.
  absl::StatusOr<std::string> toml = RetryTransport("run config", [&] { return (*link)->GetRunConfigToml(); });
  if (!toml.ok()) return Fail(kCmd, toml.status());
  absl::StatusOr<protocols::RunConfig> run = protocols::ParseRunConfig(*toml, "the coordinator's run config");
  if (!run.ok()) return Fail(kCmd, run.status());
  const protocols::RunConfig config = DeviceConfig(*run, f);
  absl::StatusOr<simulation::SimData> sim = simulation::LoadSimData(config, **tokenizer, 1, config.run.seed);
  if (!sim.ok()) return Fail(kCmd, sim.status());
  absl::StatusOr<std::unique_ptr<simulation::TrainerFactory>> factory =
      simulation::MakeModelTrainerFactory(config, sim->num_labels);
  if (!factory.ok()) return Fail(kCmd, factory.status());
  client::Dataset data = sim->ClientDataset(0);
  CapEvalExamples(data, f.max_eval_examples);
  spdlog::info("run \"{}\": data {} ({}), {} train and {} eval windows of {} tokens", config.run.name, f.data,
               config.data.format, data.train.size(), data.eval.size(), config.data.seq_len);

  DeviceTrainer trainer(**factory, config, *std::move(tokenizer), std::move(data), ClientSeed(identity.client_id),
                        f.max_eval_examples);
  client::Dataset unused;
  client::ClientRuntimeOptions options;
  options.identity = identity;
  options.name = identity.client_id;
  options.backoff_max_ms = 10'000;
  client::ClientRuntime runtime(**link, trainer, unused, client::SystemClientEnv(), options);
  struct sigaction action = {};
  action.sa_handler = OnClientStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  absl::Status result = absl::OkStatus();
  while (!runtime.stopped() && !g_stop.load()) {
    absl::StatusOr<client::StepResult> step = runtime.Step();
    if (!step.ok()) {
      result = step.status();
      break;
    }
    const client::ClientRuntimeStats& stats = runtime.stats();
    switch (step->event) {
      case client::StepEvent::kRefused:
        spdlog::warn("refused: {}", step->detail);
        break;
      case client::StepEvent::kLinkFailure:
        spdlog::warn("coordinator unreachable ({}); retrying in {} ms", step->detail, step->next_in_ms);
        break;
      case client::StepEvent::kStopped:
        spdlog::info("stopped: {}", step->detail);
        break;
      case client::StepEvent::kRoundDone:
      case client::StepEvent::kUploaded:
        spdlog::info("{} (trained {}, evaluated {}, up {}, down {})", step->detail, stats.rounds_trained,
                     stats.rounds_evaluated, FormatBytes(static_cast<double>(stats.bytes_up)),
                     FormatBytes(static_cast<double>(stats.bytes_down)));
        break;
      default:
        break;
    }
    if (step->event == client::StepEvent::kStopped) break;
    if (step->next_in_ms > 0) {
      // Sleep in slices so that a signal stops the device promptly.
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(step->next_in_ms);
      while (std::chrono::steady_clock::now() < until && !g_stop.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
  if (g_stop.load()) spdlog::info("signal: stopping between exchanges");
  if (!result.ok()) return Fail(kCmd, result);
  return kExitOk;
}

}  // namespace

void RegisterClientCommand(CLI::App& app, Action& action, const GlobalFlags&) {
  auto f = std::make_shared<ClientFlags>();
  CLI::App* sub = app.add_subcommand("client", "Run a client device that trains on local data");
  sub->add_option("--coordinator", f->coordinator, "Coordinator address HOST:PORT")->required();
  sub->add_option("--token", f->token, "Enrollment token from `fedfm enroll` (first start only)");
  sub->add_option("--model", f->model, "Base model: llama2.c .bin or HF directory")->required();
  sub->add_option("--tokenizer", f->tokenizer, "Tokenizer: tokenizer.bin or tokenizer.json")->required();
  sub->add_option("--data", f->data, "This device's data file")->required()->check(CLI::ExistingFile);
  sub->add_option("--data-format", f->data_format,
                  "text | shakespeare | tsv | csv | jsonl | spamassassin (default: the run's data.format)");
  sub->add_option("--max-eval-examples", f->max_eval_examples,
                  "Evaluation rounds use at most this many of the local held-out examples (evenly spaced)")
      ->check(CLI::Range(1, 1'000'000'000))
      ->capture_default_str();
  sub->add_option("--seq-len", f->seq_len, "Tokens per window of the throughput measurement at enrollment")
      ->capture_default_str();
  sub->add_option("--device", f->device, "cpu | cuda[:N]")->capture_default_str();
  sub->add_option("--memory-budget", f->memory_budget, "Memory training may use (4GiB, 512MiB); default: available RAM");
  sub->add_option("--method", f->method, "Methods to offer: auto (every trainer built in) | lora | partial | zo")
      ->check(CLI::IsMember({"auto", "lora", "partial", "zo"}))
      ->capture_default_str();
  sub->add_option("--ca", f->ca, "The coordinator's CA certificate (printed by `fedfm coordinator`)");
  sub->add_option("--tls-server-name", f->tls_server_name, "Name expected in the coordinator's certificate");
  sub->add_option("--state", f->state, "Where this device keeps its identity")->capture_default_str();
  sub->add_option("--name", f->name, "Device name shown to the admin (default: host name)");
  sub->add_option("--seed", f->seed, "Seed of the data order")->capture_default_str();
  sub->add_flag("--insecure", f->insecure, "Plaintext (a coordinator started with --insecure)");
  sub->callback([&action, f] { action = [f] { return RunClient(*f); }; });
}

#else  // !FEDFM_HAVE_GRPC

void RegisterClientCommand(CLI::App& app, Action& action, const GlobalFlags&) {
  CLI::App* sub = app.add_subcommand("client", "Run a client device that trains on local data [not built: FEDFM_GRPC=OFF]");
  sub->prefix_command();
  sub->callback([&action] {
    action = [] { return NotBuilt("client", "this fedfm was built without gRPC (configure with -DFEDFM_GRPC=ON)"); };
  });
}

#endif  // FEDFM_HAVE_GRPC

}  // namespace fedfm::cli
