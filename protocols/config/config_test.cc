#include "protocols/config/config.h"

#include <filesystem>

#include "gtest/gtest.h"

namespace fedfm::protocols {
namespace {

std::string ErrorOf(std::string_view text) {
  auto config = ParseRunConfig(text, "run.toml");
  EXPECT_FALSE(config.ok()) << text;
  return std::string(config.status().message());
}

TEST(ConfigTest, EmptyFileGivesDefaults) {
  auto config = ParseRunConfig("", "run.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->lora.rank, LoraOptions{}.rank);
  EXPECT_EQ(config->aggregation.algorithm, "fedavg");
}

TEST(ConfigTest, ReadsNestedSectionsAndArraysOfTables) {
  auto config = ParseRunConfig(R"(
[run]
rounds = 3
seed = 42
[peft.lora]
rank = 4
targets = ["q_proj", "down_proj"]
[data.partition]
scheme = "dirichlet"
alpha = 0.1
[[simulation.devices]]
profile = "rpi5"
count = 3
[[simulation.devices]]
profile = "h100"
count = 1
)",
                               "run.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->run.rounds, 3);
  EXPECT_EQ(config->run.seed, 42u);
  EXPECT_EQ(config->lora.rank, 4);
  EXPECT_EQ(config->lora.targets, (std::vector<std::string>{"q_proj", "down_proj"}));
  EXPECT_EQ(config->data.partition.scheme, "dirichlet");
  EXPECT_DOUBLE_EQ(config->data.partition.alpha, 0.1);
  ASSERT_EQ(config->simulation.devices.size(), 2u);
  EXPECT_EQ(config->simulation.devices[1].profile, "h100");
  EXPECT_EQ(config->simulation.devices[0].count, 3);
}

TEST(ConfigTest, OutOfRangeNamesFileLineKeyAndValue) {
  EXPECT_EQ(ErrorOf("[peft.lora]\n\nrank = 0\n"), "run.toml:3: peft.lora.rank must be in 1..256, got 0");
}

TEST(ConfigTest, UnknownKeysAndSectionsAreErrors) {
  EXPECT_EQ(ErrorOf("[peft.lora]\nrnak = 4\n"), "run.toml:2: unknown key peft.lora.rnak");
  EXPECT_EQ(ErrorOf("[peft.lorra]\nrank = 4\n"), "run.toml:1: unknown key peft.lorra");
  EXPECT_EQ(ErrorOf("bogus = 1\n"), "run.toml:1: unknown key bogus");
}

TEST(ConfigTest, WrongTypesAreErrors) {
  EXPECT_EQ(ErrorOf("[run]\nrounds = \"ten\"\n"), "run.toml:2: run.rounds must be an integer");
  EXPECT_EQ(ErrorOf("[secagg]\nenabled = 1\n"), "run.toml:2: secagg.enabled must be true or false");
  EXPECT_EQ(ErrorOf("[aggregation]\nalgorithm = \"fedsgd\"\n"),
            "run.toml:2: aggregation.algorithm must be one of fedavg|fedavgm|fedadam|fedyogi|fedadagrad, got \"fedsgd\"");
  EXPECT_EQ(ErrorOf("run = 3\n"), "run.toml:1: run must be a table");
}

TEST(ConfigTest, ReportsEveryErrorOfTheFile) {
  std::string err = ErrorOf("[run]\nrounds = 0\n[dp]\ndelta = 2.0\n");
  EXPECT_NE(err.find("run.toml:2: run.rounds"), std::string::npos) << err;
  EXPECT_NE(err.find("run.toml:4: dp.delta"), std::string::npos) << err;
}

TEST(ConfigTest, SyntaxErrorsNameTheLine) {
  std::string err = ErrorOf("[run]\nrounds = = 3\n");
  EXPECT_EQ(err.rfind("run.toml:2: ", 0), 0u) << err;
}

TEST(ConfigTest, RobustRuleWithSecAggIsRejected) {
  std::string err = ErrorOf("[secagg]\nenabled = true\n[aggregation]\nrobust = \"median\"\n");
  EXPECT_NE(err.find("cannot run with secagg.enabled"), std::string::npos) << err;
}

TEST(ConfigTest, GlobalOptimizerStateNeedsPlainFedAvgInTheClear) {
  const std::string global = "[train]\noptimizer_state = \"global\"\n";
  absl::StatusOr<RunConfig> ok = ParseRunConfig(global, "run.toml");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->train.optimizer_state, "global");
  const std::string secagg = ErrorOf(global + "[secagg]\nenabled = true\n");
  EXPECT_NE(secagg.find("secagg.enabled = false"), std::string::npos) << secagg;
  const std::string plain = "[secagg]\nenabled = false\n";
  std::string err = ErrorOf(global + plain + "[aggregation]\nalgorithm = \"fedadam\"\n");
  EXPECT_NE(err.find("aggregation.algorithm = \"fedavg\""), std::string::npos) << err;
  err = ErrorOf(global + plain + "[aggregation]\nserver_lr = 0.5\n");
  EXPECT_NE(err.find("server_lr = 1"), std::string::npos) << err;
  err = ErrorOf("[train]\noptimizer_state = \"global\"\noptimizer = \"sgd\"\n" + plain);
  EXPECT_NE(err.find("train.optimizer = \"adamw\""), std::string::npos) << err;
  err = ErrorOf(global + plain + "[dp]\nenabled = true\n");
  EXPECT_NE(err.find("dp.enabled"), std::string::npos) << err;
  err = ErrorOf("[train]\noptimizer_state = \"carried\"\n");
  EXPECT_NE(err.find("optimizer_state"), std::string::npos) << err;
}

TEST(ConfigTest, TomlWriterRoundTrips) {
  RunConfig config;
  config.run.seed = 9;
  config.lora.client_ranks = {2, 4};
  config.zeroth_order.noise = "rademacher";
  config.simulation.devices = {{"jetson", 2}, {"phone", 5}};
  config.rounds.target_value = -1.5;
  std::string text = RunConfigToToml(config);
  auto back = ParseRunConfig(text, "written.toml");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(RunConfigToToml(*back), text);
  EXPECT_EQ(back->simulation.devices[1].profile, "phone");
  EXPECT_EQ(back->lora.client_ranks, (std::vector<int>{2, 4}));
}

TEST(ConfigTest, TomlWriterEscapesEveryStringItWrites) {
  RunConfig config;
  const std::string awkward = std::string("line\nbreak \"quoted\" back\\slash\ttab\r\x01\x7f[x]") + '\0' + "end";
  config.run.name = awkward;
  config.simulation.devices = {{awkward, 2}, {"phone", 5}};
  const std::string text = RunConfigToToml(config);
  auto back = ParseRunConfig(text, "written.toml");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(back->run.name, awkward);
  EXPECT_EQ(back->simulation.devices[0].profile, awkward);
  EXPECT_EQ(RunConfigToToml(*back), text);
}

TEST(ConfigTest, OverridesSetDottedKeysAndKeepTheRest) {
  auto base = ParseRunConfig("[run]\nseed = 42\nrounds = 10\n[[simulation.devices]]\nprofile = \"rpi5\"\ncount = 3\n",
                             "run.toml");
  ASSERT_TRUE(base.ok()) << base.status();
  auto c = ApplyOverrides(*base, {"rounds.deadline_s=0.5", "aggregation.zo_mixing=snr", "secagg.enabled=false",
                                  "peft.lora.targets=[\"q_proj\", \"v_proj\"]", "run.rounds=3", "run.rounds=5",
                                  "simulation.devices=[{profile = \"h100\", count = 2}]"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rounds.deadline_s, 0.5);
  EXPECT_EQ(c->aggregation.zo_mixing, "snr");  // a bare word is a string
  EXPECT_FALSE(c->secagg.enabled);
  EXPECT_EQ(c->lora.targets, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(c->run.rounds, 5);  // the last one wins
  EXPECT_EQ(c->run.seed, 42u);  // not overridden
  ASSERT_EQ(c->simulation.devices.size(), 1u);
  EXPECT_EQ(c->simulation.devices[0].profile, "h100");
  EXPECT_EQ(c->simulation.devices[0].count, 2);
  // The base's other arrays stay when not overridden.
  auto d = ApplyOverrides(*base, {"run.rounds=7"});
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->simulation.devices.size(), 1u);
  EXPECT_EQ(d->simulation.devices[0].profile, "rpi5");
}

TEST(ConfigTest, BadOverridesNameTheOverride) {
  auto error = [](const std::string& o) {
    auto c = ApplyOverrides(RunConfig{}, {"run.rounds=3", o});
    EXPECT_FALSE(c.ok()) << o;
    return std::string(c.status().message());
  };
  EXPECT_EQ(error("peft.lora.rank=0"), "--set peft.lora.rank=0:1: peft.lora.rank must be in 1..256, got 0");
  EXPECT_EQ(error("peft.lora.rnak=4"), "--set peft.lora.rnak=4:1: unknown key peft.lora.rnak");
  EXPECT_EQ(error("run.rounds=ten"), "--set run.rounds=ten:1: run.rounds must be an integer");
  EXPECT_EQ(error("aggregation.algorithm=fedsgd"),
            "--set aggregation.algorithm=fedsgd:1: aggregation.algorithm must be one of "
            "fedavg|fedavgm|fedadam|fedyogi|fedadagrad, got \"fedsgd\"");
  for (const std::string& malformed : {"run.rounds", "=3", "run..rounds=3", ".run=3", "run.rounds=", "run rounds=3"}) {
    EXPECT_NE(error(malformed).find("expected KEY=VALUE"), std::string::npos) << malformed;
  }
  // Cross-section checks run on the result.
  auto robust = ApplyOverrides(RunConfig{}, {"secagg.enabled=true", "aggregation.robust=median"});
  ASSERT_FALSE(robust.ok());
  EXPECT_NE(robust.status().message().find("cannot run with secagg.enabled"), std::string::npos) << robust.status();
}

TEST(ConfigTest, ReadsSimulationProfiles) {
  auto config = ParseRunConfig(R"(
[[simulation.profiles]]
name = "old_laptop"
memory_gib = 6.5
tflops = 0.15
uplink_mbps = 8
downlink_mbps = 40
availability = 0.6
dropout = 0.1
jitter = 0.4
methods = ["partial", "zo"]

[[simulation.devices]]
profile = "old_laptop"
count = 3
)",
                               "run.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->simulation.profiles.size(), 1u);
  const SimProfileOptions& p = config->simulation.profiles[0];
  EXPECT_EQ(p.name, "old_laptop");
  EXPECT_EQ(p.accelerator, "cpu");
  EXPECT_DOUBLE_EQ(p.memory_gib, 6.5);
  EXPECT_DOUBLE_EQ(p.tflops, 0.15);
  EXPECT_DOUBLE_EQ(p.uplink_mbps, 8.0);
  EXPECT_DOUBLE_EQ(p.availability, 0.6);
  EXPECT_DOUBLE_EQ(p.jitter, 0.4);
  EXPECT_EQ(p.methods, (std::vector<std::string>{"partial", "zo"}));
  // Written and read back unchanged.
  std::string text = RunConfigToToml(*config);
  auto back = ParseRunConfig(text, "written.toml");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(RunConfigToToml(*back), text);
  EXPECT_EQ(back->simulation.profiles[0].methods, p.methods);

  EXPECT_EQ(ErrorOf("[[simulation.profiles]]\nname = \"a\"\nmethods = [\"sgd\"]\n"),
            "run.toml:3: simulation.profiles[0].methods entries must be among lora|partial|zo, got \"sgd\"");
  EXPECT_EQ(ErrorOf("[[simulation.profiles]]\nname = \"a\"\ndropout = 1.5\n"),
            "run.toml:3: simulation.profiles[0].dropout must be in 0..1, got 1.5");
  EXPECT_NE(ErrorOf("[[simulation.profiles]]\nname = \"a\"\n[[simulation.profiles]]\nname = \"a\"\n")
                .find("the name \"a\" is defined twice"),
            std::string::npos);
}

TEST(ConfigTest, EveryShippedExampleParses) {
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator("examples")) {
    if (entry.path().extension() != ".toml") continue;
    auto config = LoadRunConfig(entry.path());
    EXPECT_TRUE(config.ok()) << entry.path() << ": " << config.status();
    ++parsed;
  }
  EXPECT_GE(parsed, 3);
}

}  // namespace
}  // namespace fedfm::protocols
