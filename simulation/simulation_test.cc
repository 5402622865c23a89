#include "simulation/simulation.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "coordinator/policy.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "model/cuda_streams.h"
#include "model/tokenizer.h"
#include "protocols/config/config.h"
#include "simulation/default_scenario.h"
#include "simulation/devices.h"
#include "simulation/report.h"

namespace fedfm::simulation {
namespace {

using protocols::Method;

protocols::ModelDims Stories260K() {
  protocols::ModelDims d;
  d.num_params = 260032;
  d.num_layers = 5;
  d.dim = 64;
  d.hidden_dim = 172;
  d.num_heads = 8;
  d.num_kv_heads = 4;
  d.vocab_size = 512;
  return d;
}

// A small mixed-fleet run: 16 clients of the default fleet, SecAgg+ on.
protocols::RunConfig SmallConfig() {
  protocols::RunConfig c;
  c.run.seed = 11;
  c.run.rounds = 3;
  c.rounds.clients_per_round = 10;
  c.rounds.min_clients = 3;
  c.rounds.deadline_s = 0.3;
  c.rounds.eval_every = 0;
  c.lora.rank = 8;
  c.partial.top_blocks = 2;
  c.train.local_steps = 10;
  c.train.batch_size = 8;
  c.train.learning_rate = 0.02;
  c.data.seq_len = 64;
  c.data.partition.scheme = "iid";
  c.zeroth_order.seed_pool = 16;
  c.zeroth_order.learning_rate = 10.0;
  c.secagg.enabled = true;
  c.simulation.num_clients = 16;
  return c;
}

// n synthetic examples of 8 tokens.
std::vector<model::Example> Synthetic(size_t n) {
  std::vector<model::Example> out(n);
  for (size_t i = 0; i < n; ++i) {
    for (int t = 0; t < 8; ++t) {
      out[i].tokens.push_back(static_cast<int32_t>((i * 7 + t) % 500));
      out[i].targets.push_back(static_cast<int32_t>((i * 7 + t + 1) % 500));
    }
    out[i].group = "g" + std::to_string(i % 5);
  }
  return out;
}

struct SimRun {
  absl::StatusOr<SimulationResult> result;
  std::vector<std::string> lines;
};

SimRun Simulate(const protocols::RunConfig& config, size_t examples_per_client = 6, int workers = 2,
                TrainerFactory* trainers_in = nullptr) {
  SimRun run;
  absl::StatusOr<SimData> data = LayOutSimData(Synthetic(examples_per_client * config.simulation.num_clients), {}, 0,
                                               config.data, config.simulation.num_clients, config.run.seed);
  if (!data.ok()) {
    run.result = data.status();
    return run;
  }
  std::unique_ptr<TrainerFactory> owned;
  if (trainers_in == nullptr) {
    absl::StatusOr<std::unique_ptr<TrainerFactory>> trainers = MakeFakeTrainerFactory(config, Stories260K());
    if (!trainers.ok()) {
      run.result = trainers.status();
      return run;
    }
    owned = *std::move(trainers);
    trainers_in = owned.get();
  }
  SimulatorOptions options;
  options.workers = workers;
  run.result = RunSimulation(config, *trainers_in, *data, options);
  if (run.result.ok()) {
    for (const RoundRecord& r : run.result->rounds) run.lines.push_back(RoundJson(r));
  }
  return run;
}

// The results.jsonl line without its "measured" part.
std::string Deterministic(const std::string& line) {
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_TRUE(j.contains("measured"));
  j.erase("measured");
  return j.dump();
}

// The held-out examples are chosen before partitioning: any scheme and any
// number of clients over the same data and seed evaluate centrally on the same
// examples, and every example is either trained on or held out by its client.
TEST(SimDataTest, EveryLayoutHoldsOutTheSameExamples) {
  std::vector<std::string> reference;
  for (const auto& [scheme, clients] :
       std::vector<std::pair<std::string, int>>{{"iid", 1}, {"iid", 4}, {"natural", 5}, {"dirichlet", 8}}) {
    protocols::DataOptions options;
    options.eval_fraction = 0.1;
    options.partition.scheme = scheme;
    options.partition.alpha = 0.5;
    absl::StatusOr<SimData> data = LayOutSimData(Synthetic(600), {}, 0, options, clients, /*seed=*/3);
    ASSERT_TRUE(data.ok()) << scheme << ": " << data.status();
    std::vector<std::string> central;
    for (const model::Example& e : data->central_eval) central.push_back(absl::StrJoin(e.tokens, ","));
    EXPECT_EQ(central.size(), 60u) << scheme;
    size_t held_out = 0;
    for (int64_t c = 0; c < clients; ++c) {
      const client::Dataset d = data->ClientDataset(c);
      EXPECT_FALSE(d.train.empty()) << scheme << " client " << c;
      held_out += d.eval.size();
    }
    EXPECT_EQ(held_out, 60u) << scheme;
    EXPECT_EQ(data->examples.size(), 600u) << scheme;
    if (reference.empty()) reference = central;
    EXPECT_EQ(central, reference) << scheme << " over " << clients << " clients";
  }
  protocols::DataOptions other;
  other.eval_fraction = 0.1;
  absl::StatusOr<SimData> reseeded = LayOutSimData(Synthetic(600), {}, 0, other, 1, /*seed=*/4);
  ASSERT_TRUE(reseeded.ok());
  EXPECT_NE(absl::StrJoin(reseeded->central_eval[0].tokens, ","), reference[0]) << "the seed chooses them";
}

TEST(SimulationTest, MixedFleetTrainsAllThreeMethodsInTheSameRounds) {
  const protocols::RunConfig config = SmallConfig();
  SimRun run = Simulate(config);
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  const SimulationResult& r = *run.result;
  ASSERT_GE(r.rounds.size(), 4u);  // the initial evaluation and three training rounds
  EXPECT_EQ(r.rounds[0].round, 0);
  std::map<Method, int64_t> uploaded;
  for (const RoundRecord& round : r.rounds) {
    if (round.round == 0) continue;
    EXPECT_TRUE(round.committed) << round.failure;
    EXPECT_GT(round.virtual_end_s, round.virtual_start_s);
    for (const auto& [m, s] : round.methods) {
      uploaded[m] += s.uploaded;
      EXPECT_EQ(s.selected, s.uploaded + s.dropped + s.stragglers + s.other);
      if (s.uploaded > 0) EXPECT_GT(s.bytes_up, 0u);
    }
  }
  EXPECT_GT(uploaded[Method::kLora], 0);
  EXPECT_GT(uploaded[Method::kPartial], 0);
  EXPECT_GT(uploaded[Method::kZerothOrder], 0);
  EXPECT_LT(r.final_eval_loss, r.initial_eval_loss);
  EXPECT_EQ(r.finish_reason, "completed 3 training rounds");
  // SecAgg+ key phases time out after twice the slowest device's transfers:
  // the phone's download of the state (30 Mbit/s) and a few KB of keys.
  const coordinator::WorkloadShape shape = coordinator::MakeWorkloadShape(config, Stories260K());
  const double phone_download_s = static_cast<double>(coordinator::EstimateDownloadBytes(shape, config)) / (30e6 / 8);
  EXPECT_GE(r.secagg_phase_s, 2 * phone_download_s);
  EXPECT_LT(r.secagg_phase_s, 2 * phone_download_s + 0.015);
  EXPECT_LT(r.secagg_phase_s, config.rounds.deadline_s / 4);
}

TEST(SimulationTest, SameSeedGivesIdenticalResults) {
  protocols::RunConfig config = SmallConfig();
  config.run.rounds = 2;
  SimRun a = Simulate(config, 6, /*workers=*/1);
  SimRun b = Simulate(config, 6, /*workers=*/3);
  ASSERT_TRUE(a.result.ok()) << a.result.status();
  ASSERT_TRUE(b.result.ok()) << b.result.status();
  ASSERT_EQ(a.lines.size(), b.lines.size());
  for (size_t i = 0; i < a.lines.size(); ++i) EXPECT_EQ(Deterministic(a.lines[i]), Deterministic(b.lines[i]));
  config.run.seed = 12;
  SimRun c = Simulate(config);
  ASSERT_TRUE(c.result.ok()) << c.result.status();
  EXPECT_NE(Deterministic(a.lines.back()), Deterministic(c.lines.back()));
}

// The fake trainers, recording which worker slots the simulation binds.
class SlotRecorder final : public TrainerFactory {
 public:
  explicit SlotRecorder(std::unique_ptr<TrainerFactory> inner) : inner_(std::move(inner)) {}
  absl::StatusOr<std::unique_ptr<client::Trainer>> Create(Method method, uint64_t client) override {
    return inner_->Create(method, client);
  }
  std::unique_ptr<SlotScope> EnterSlot(int slot) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++entered_[slot];
    if (++holders_[slot] > 1) ++shared_;
    return std::make_unique<Held>(this, slot);
  }
  absl::StatusOr<protocols::TensorMap> InitialState() override { return inner_->InitialState(); }
  protocols::ModelDims dims() const override { return inner_->dims(); }
  uint64_t shared_bytes() const override { return inner_->shared_bytes(); }
  std::string description() const override { return inner_->description(); }

  std::map<int, int> entered_;  // slot -> times bound
  int shared_ = 0;              // times a slot was bound while already held

 private:
  struct Held final : SlotScope {
    Held(SlotRecorder* r, int s) : recorder(r), slot(s) {}
    ~Held() override {
      std::lock_guard<std::mutex> lock(recorder->mu_);
      --recorder->holders_[slot];
    }
    SlotRecorder* recorder;
    int slot;
  };
  std::unique_ptr<TrainerFactory> inner_;
  std::mutex mu_;
  std::map<int, int> holders_;
};

TEST(SimulationTest, EveryTrainingAndEvaluationRunsInAWorkerSlotOfItsOwn) {
  const protocols::RunConfig config = SmallConfig();
  auto fake = MakeFakeTrainerFactory(config, Stories260K());
  ASSERT_TRUE(fake.ok()) << fake.status();
  SlotRecorder recorder(*std::move(fake));
  SimRun run = Simulate(config, 6, /*workers=*/3, &recorder);
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  int64_t calls = 0;
  for (const RoundRecord& round : run.result->rounds) {
    for (const auto& [m, st] : round.methods) calls += st.uploaded;
  }
  int64_t bound = 0;
  for (const auto& [slot, n] : recorder.entered_) {
    EXPECT_GE(slot, 0);
    EXPECT_LT(slot, 3);
    bound += n;
  }
  EXPECT_GE(bound, calls);  // every upload was trained in a slot (evaluations too)
  EXPECT_GT(calls, 0);
  EXPECT_EQ(recorder.shared_, 0);
}

TEST(SimulationTest, ReportWritesResultsSummaryPlotsAndHtml) {
  const protocols::RunConfig config = SmallConfig();
  SimRun run = Simulate(config);
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "sim_report";
  std::filesystem::remove_all(dir);
  RunContext context;
  context.model = "stories260K-shaped FakeTrainer";
  absl::StatusOr<ReportFiles> files = WriteReport(dir, config, *run.result, context);
  ASSERT_TRUE(files.ok()) << files.status();
  std::ifstream results(files->results);
  std::string line;
  size_t lines = 0;
  while (std::getline(results, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["round"], lines);
    EXPECT_TRUE(j.contains("methods") && j.contains("virtual_end_s") && j.contains("measured"));
    ++lines;
  }
  EXPECT_EQ(lines, run.result->rounds.size());
  std::ifstream summary_file(files->summary);
  nlohmann::json summary = nlohmann::json::parse(summary_file);
  EXPECT_EQ(summary["fleet"].size(), 5u);
  EXPECT_LT(summary["loss"]["final_eval"].get<double>(), summary["loss"]["initial_eval"].get<double>());
  std::ifstream html_file(files->html);
  const std::string html((std::istreambuf_iterator<char>(html_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("[simulation]"), std::string::npos);  // the config
  if (files->plots.empty()) GTEST_SKIP() << "no gnuplot: " << files->plot_warning;
  EXPECT_EQ(files->plots.size(), 3u);
  for (const auto& p : files->plots) EXPECT_GT(std::filesystem::file_size(p), 1000u) << p;
  EXPECT_NE(html.find("data:image/png;base64,iVBORw0KGgo"), std::string::npos);  // an embedded PNG
}

// Two fast clients and one whose plan (the policy's estimate) ends 1% before
// the deadline: the real messages are a little larger than the estimate
// (safetensors and codec headers), so it misses the deadline every round,
// and the rounds last exactly the deadline. With 10% more time it makes it,
// last, and the round ends with its upload.
TEST(SimulationTest, VirtualClockMakesTheSlowDeviceMissTheDeadline) {
  for (double slack : {1.0, 1.1}) {
    protocols::RunConfig c;
    c.run.seed = 5;
    c.run.rounds = 2;
    c.rounds.clients_per_round = 3;
    c.rounds.min_clients = 2;
    c.rounds.eval_every = 0;
    c.lora.rank = 8;
    c.train.local_steps = 10;
    c.train.batch_size = 8;
    c.data.seq_len = 64;
    c.data.partition.scheme = "iid";
    c.simulation.num_clients = 3;
    const double deadline = 2.0;
    const coordinator::WorkloadShape shape = coordinator::MakeWorkloadShape(c, Stories260K());
    const coordinator::MethodChoice lora{.method = Method::kLora, .lora_rank = 8};
    const double bandwidth = 1e5;  // bytes/s
    const double transfers = 2.0 * coordinator::EstimateUploadBytes(shape, lora) / bandwidth;
    const double tokens = double(c.train.local_steps) * c.train.batch_size * c.data.seq_len;
    protocols::SimProfileOptions edge;
    edge.name = "edge";
    edge.tflops = tokens * coordinator::EstimateFlopsPerToken(shape, lora) / (0.99 * deadline - transfers) / 1e12;
    edge.uplink_mbps = edge.downlink_mbps = bandwidth * 8 / 1e6;
    edge.methods = {"lora"};
    protocols::SimProfileOptions fast = edge;
    fast.name = "fast";
    fast.tflops = 100;
    fast.uplink_mbps = fast.downlink_mbps = 10'000;
    c.simulation.profiles = {fast, edge};
    c.simulation.devices = {{"fast", 2}, {"edge", 1}};
    c.rounds.deadline_s = deadline * slack;

    SimRun run = Simulate(c);
    ASSERT_TRUE(run.result.ok()) << run.result.status();
    ASSERT_EQ(run.result->rounds.size(), 3u);
    ASSERT_EQ(run.result->fleet[1].method, "lora");
    EXPECT_NEAR(run.result->fleet[1].estimated_round_s, 0.99 * deadline, 1e-9);
    for (size_t i = 1; i < 3; ++i) {
      const RoundRecord& r = run.result->rounds[i];
      ASSERT_TRUE(r.committed) << r.failure;
      const MethodRound& m = r.methods.at(Method::kLora);
      EXPECT_EQ(m.selected, 3);
      const double length = r.virtual_end_s - r.virtual_start_s;
      if (slack == 1.0) {
        EXPECT_EQ(m.uploaded, 2) << "round " << r.round;
        EXPECT_EQ(m.stragglers, 1) << "round " << r.round;
        EXPECT_NEAR(length, deadline, 0.0015);
      } else {
        EXPECT_EQ(m.uploaded, 3) << "round " << r.round;
        EXPECT_EQ(m.stragglers, 0);
        EXPECT_GT(length, 0.99 * deadline);
        EXPECT_LT(length, 1.05 * deadline);
      }
    }
  }
}

// 10,000 registered clients, 20 sampled per round: client state exists for
// the sampled clients only; the registry costs a few bytes per client.
TEST(SimulationTest, TenThousandClientsCostMemoryOfTheSampledOnes) {
  protocols::RunConfig c = SmallConfig();
  c.simulation.num_clients = 10'000;
  c.rounds.clients_per_round = 20;
  c.rounds.min_clients = 10;
  c.run.rounds = 2;
  SimRun run = Simulate(c, /*examples_per_client=*/3);
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  const SimulationResult& r = *run.result;
  for (const RoundRecord& round : r.rounds) EXPECT_TRUE(round.committed) << round.failure;
  // Every client's data (3 examples of 8 tokens and targets) plus two
  // working copies of the global state.
  const uint64_t state_bytes = 4 * uint64_t(coordinator::LoraParameterCount(
                                       coordinator::MakeWorkloadShape(c, Stories260K()), c.lora.rank));
  const uint64_t per_client = 3 * (2 * 8 * 4 + 2) + 2 * state_bytes;
  EXPECT_GT(r.peak_live_clients, 0);
  EXPECT_LE(r.peak_live_clients, 22);  // 20, plus at most one SecAgg top-up per group
  EXPECT_LE(r.peak_live_client_bytes, uint64_t(r.peak_live_clients) * per_client);
  EXPECT_LE(r.registry_bytes, 10'000u * 11);
  EXPECT_LT(r.peak_live_client_bytes, 10'000u * per_client / 400);
}

// The built-in demo, shortened (2 rounds of 3 local steps, a smaller central
// evaluation), with the real trainers on stories260K: LoRA, partial layers and
// zeroth order all take part, and the held-out loss falls. A third of the
// work per round needs a deadline scaled alike (Pi: LoRA 0.17 s, partial
// 0.09 s planned) for the policy to spread the methods as in the demo.
// The default scenario cut to 2 rounds of 3 local steps, with the real
// trainers on `device` and 64 central evaluation examples.
struct ShortScenario {
  protocols::RunConfig config;
  SimData data;
  std::unique_ptr<TrainerFactory> trainers;
};
// `edit`, when given, changes the config further before the trainers are built.
void MakeShortDefaultScenario(protocols::DeviceKind device, ShortScenario* out,
                              const std::function<void(protocols::RunConfig&)>& edit = nullptr) {
  absl::StatusOr<protocols::RunConfig> config = protocols::ParseRunConfig(DefaultScenarioToml(), kDefaultScenarioName);
  ASSERT_TRUE(config.ok()) << config.status();
  config->run.rounds = 2;
  config->train.local_steps = 3;
  config->rounds.deadline_s = 0.165;
  config->model.device = device;
  if (edit) edit(*config);
  absl::StatusOr<std::unique_ptr<model::Tokenizer>> tokenizer = model::LoadTokenizer(config->model.tokenizer);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  absl::StatusOr<SimData> data = LoadSimData(*config, **tokenizer, config->simulation.num_clients, config->run.seed);
  ASSERT_TRUE(data.ok()) << data.status();
  data->central_eval.resize(std::min<size_t>(data->central_eval.size(), 64));
  absl::StatusOr<std::unique_ptr<TrainerFactory>> trainers = MakeModelTrainerFactory(*config, data->num_labels);
  ASSERT_TRUE(trainers.ok()) << trainers.status();
  out->config = *std::move(config);
  out->data = *std::move(data);
  out->trainers = *std::move(trainers);
}

TEST(SimulationTest, ShortDefaultScenarioLowersTheLoss) {
  ShortScenario sc;
  ASSERT_NO_FATAL_FAILURE(MakeShortDefaultScenario(protocols::DeviceKind::kCpu, &sc));
  SimulatorOptions options;
  options.workers = 2;
  absl::StatusOr<SimulationResult> r = RunSimulation(sc.config, *sc.trainers, sc.data, options);
  ASSERT_TRUE(r.ok()) << r.status();
  std::map<Method, int64_t> uploaded;
  for (const RoundRecord& round : r->rounds) {
    for (const auto& [m, s] : round.methods) uploaded[m] += s.uploaded;
  }
  EXPECT_GT(uploaded[Method::kLora], 0);
  EXPECT_GT(uploaded[Method::kPartial], 0);
  EXPECT_GT(uploaded[Method::kZerothOrder], 0);
  ASSERT_TRUE(std::isfinite(r->initial_eval_loss));
  EXPECT_LT(r->final_eval_loss, r->initial_eval_loss - 0.2);
}

// train.optimizer_state = "global" in a mixed fleet: the backprop clients'
// updates carry their AdamW moments (about 3x the bytes of an update without
// them), zeroth order's seed scalars do not, and the run still learns.
TEST(SimulationTest, GlobalOptimizerStateTravelsWithTheBackpropUpdates) {
  std::map<std::string, std::map<Method, double>> bytes_per_upload;
  for (const char* mode : {"fresh", "global"}) {
    ShortScenario sc;
    ASSERT_NO_FATAL_FAILURE(MakeShortDefaultScenario(protocols::DeviceKind::kCpu, &sc, [&](protocols::RunConfig& c) {
      c.secagg.enabled = false;
      c.train.optimizer_state = mode;
    }));
    SimulatorOptions options;
    options.workers = 2;
    absl::StatusOr<SimulationResult> r = RunSimulation(sc.config, *sc.trainers, sc.data, options);
    ASSERT_TRUE(r.ok()) << mode << ": " << r.status();
    EXPECT_LT(r->final_eval_loss, r->initial_eval_loss - 0.2) << mode;
    std::map<Method, std::pair<uint64_t, int64_t>> sums;  // bytes up, uploads
    for (const RoundRecord& round : r->rounds) {
      for (const auto& [m, s] : round.methods) {
        if (s.uploaded == 0 || s.uploaded != s.selected) continue;
        sums[m].first += s.bytes_up;
        sums[m].second += s.uploaded;
      }
    }
    for (const auto& [m, s] : sums) bytes_per_upload[mode][m] = static_cast<double>(s.first) / s.second;
  }
  for (Method m : {Method::kLora, Method::kPartial, Method::kZerothOrder}) {
    ASSERT_GT(bytes_per_upload["fresh"][m], 0) << protocols::MethodName(m);
    const double ratio = bytes_per_upload["global"][m] / bytes_per_upload["fresh"][m];
    if (m == Method::kZerothOrder) {
      EXPECT_DOUBLE_EQ(ratio, 1.0);
    } else {
      EXPECT_GT(ratio, 2.8) << protocols::MethodName(m);
      EXPECT_LT(ratio, 3.1) << protocols::MethodName(m);
    }
  }
}

// On CUDA every worker slot trains on its own stream, and over every visible
// GPU (a model replica each): the results must not depend on how many
// workers run at once. Skipped without a CUDA device.
TEST(SimulationTest, OnCudaTheResultsDoNotDependOnTheWorkerCount) {
  if (model::CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  ShortScenario sc;
  ASSERT_NO_FATAL_FAILURE(MakeShortDefaultScenario(protocols::DeviceKind::kCuda, &sc));
  std::vector<std::vector<std::string>> lines;
  for (int workers : {1, 5}) {
    SimulatorOptions options;
    options.workers = workers;
    absl::StatusOr<SimulationResult> r = RunSimulation(sc.config, *sc.trainers, sc.data, options);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_LT(r->final_eval_loss, r->initial_eval_loss - 0.2) << workers << " workers";
    lines.emplace_back();
    for (const RoundRecord& round : r->rounds) lines.back().push_back(Deterministic(RoundJson(round)));
  }
  ASSERT_EQ(lines[0].size(), lines[1].size());
  for (size_t i = 0; i < lines[0].size(); ++i) EXPECT_EQ(lines[0][i], lines[1][i]) << "round line " << i;
}

// Every benchmark scenario is a valid config whose fleet the policy can place.
TEST(SimulationTest, BenchmarkScenariosAreValid) {
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator("bench/scenarios")) {
    if (entry.path().extension() != ".toml") continue;
    absl::StatusOr<protocols::RunConfig> c = protocols::LoadRunConfig(entry.path());
    ASSERT_TRUE(c.ok()) << entry.path() << ": " << c.status();
    absl::StatusOr<std::unique_ptr<TrainerFactory>> trainers = MakeFakeTrainerFactory(*c, Stories260K());
    ASSERT_TRUE(trainers.ok());
    absl::StatusOr<std::vector<FleetEntry>> plan = PlanFleet(*c, **trainers);
    ASSERT_TRUE(plan.ok()) << entry.path() << ": " << plan.status();
    for (const FleetEntry& e : *plan) EXPECT_EQ(e.method.rfind("none", 0), std::string::npos) << entry.path() << " " << e.method;
    ++parsed;
  }
  EXPECT_GE(parsed, 10);
}

}  // namespace
}  // namespace fedfm::simulation
