#include "peft/adapter_io.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "model/dataset_rng.h"
#include "peft/state.h"
#include "protocols/file_util.h"
#include "protocols/optimizer_state.h"
#include "protocols/safetensors.h"

namespace fedfm::peft {
namespace {

model::ModelConfig Tiny() {
  model::ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 24;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 32;
  c.max_seq_len = 16;
  return c;
}

AdapterConfig WithAlpha(double alpha) {
  AdapterConfig c;
  c.lora_alpha = alpha;
  return c;
}

std::filesystem::path TempDir(const std::string& name) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("fedfm_adapter_test_" + std::to_string(getpid()) + "_" + name);
  std::filesystem::remove_all(dir);
  return dir;
}

// A state with random non-zero B (as after training) and a head.
protocols::TensorMap RandomState(int num_labels) {
  StateLayout layout;
  layout.lora.rank = 3;
  layout.lora.targets = {model::Projection::kQ, model::Projection::kV, model::Projection::kDown};
  layout.num_labels = num_labels;
  protocols::TensorMap state = *InitAdapterState(Tiny(), layout, 11);
  model::DataRng rng(5);
  for (auto& [name, t] : state) {
    for (float& v : t.mutable_floats()) v += static_cast<float>(0.1 * rng.Normal());
  }
  return state;
}

TEST(AdapterIoTest, RoundTripThroughPeftLayout) {
  const protocols::TensorMap state = RandomState(/*num_labels=*/0);
  AdapterConfig hyper;
  hyper.lora_alpha = 6;
  hyper.lora_dropout = 0.05;
  hyper.use_rslora = true;
  hyper.base_model_name_or_path = "assets/stories260K/stories260K.bin";
  absl::StatusOr<Adapter> adapter = AdapterFromState(state, hyper);
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_EQ(adapter->config.r, 3);
  EXPECT_EQ(adapter->config.target_modules, (std::vector<std::string>{"q_proj", "v_proj", "down_proj"}));
  EXPECT_EQ(adapter->config.task_type, "CAUSAL_LM");

  const std::filesystem::path dir = TempDir("roundtrip");
  ASSERT_TRUE(SaveAdapter(dir, *adapter).ok());
  EXPECT_FALSE(std::filesystem::exists(dir / kPartialBlocksFile));

  // The files are what PEFT expects.
  nlohmann::json config = nlohmann::json::parse(*protocols::ReadFileToString(dir / kAdapterConfigFile));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["r"], 3);
  EXPECT_EQ(config["lora_alpha"], 6);
  EXPECT_EQ(config["use_rslora"], true);
  EXPECT_EQ(config["bias"], "none");
  EXPECT_EQ(config["fan_in_fan_out"], false);
  EXPECT_EQ(config["task_type"], "CAUSAL_LM");
  EXPECT_EQ(config["base_model_name_or_path"], "assets/stories260K/stories260K.bin");
  absl::StatusOr<protocols::Safetensors> file = protocols::ReadSafetensors(dir / kAdapterWeightsFile);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->metadata.at("format"), "pt");
  EXPECT_TRUE(file->tensors.Contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));

  absl::StatusOr<Adapter> loaded = LoadAdapter(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.r, 3);
  EXPECT_DOUBLE_EQ(loaded->config.lora_alpha, 6);
  EXPECT_DOUBLE_EQ(loaded->config.lora_dropout, 0.05);
  EXPECT_TRUE(loaded->config.use_rslora);
  EXPECT_EQ(loaded->config.target_modules, (std::vector<std::string>{"down_proj", "q_proj", "v_proj"}));
  const protocols::TensorMap back = StateFromAdapter(*loaded);
  ASSERT_EQ(back.size(), state.size());
  for (const auto& [name, t] : state) {
    ASSERT_NE(back.Find(name), nullptr) << name;
    EXPECT_TRUE(back.at(name).Identical(t)) << name;
  }
  std::filesystem::remove_all(dir);
}

// A global state that carries AdamW moments (train.optimizer_state =
// "global") exports the same adapter as one without them.
TEST(AdapterIoTest, OptimizerStateIsLeftOutOfAnAdapter) {
  const protocols::TensorMap state = RandomState(/*num_labels=*/2);
  absl::StatusOr<protocols::TensorMap> carried = protocols::WithZeroOptimizerState(state);
  ASSERT_TRUE(carried.ok());
  absl::StatusOr<Adapter> adapter = AdapterFromState(*carried, WithAlpha(16));
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_EQ(adapter->tensors.size(), state.size());
  EXPECT_TRUE(adapter->full_weights.empty());
  for (const auto& [name, t] : adapter->tensors) EXPECT_TRUE(t.Identical(state.at(name))) << name;
}

TEST(AdapterIoTest, HeadAndFullWeightsRoundTrip) {
  protocols::TensorMap state = RandomState(/*num_labels=*/2);
  state.Set("model.layers.1.input_layernorm.weight", protocols::Tensor::FromFloats({4}, std::vector<float>{1, 2, 3, 4}));
  absl::StatusOr<Adapter> adapter = AdapterFromState(state, WithAlpha(16));
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_EQ(adapter->config.task_type, "SEQ_CLS");
  EXPECT_EQ(adapter->config.modules_to_save, std::vector<std::string>{"score"});
  EXPECT_EQ(adapter->full_weights.size(), 1u);
  const std::filesystem::path dir = TempDir("head");
  ASSERT_TRUE(SaveAdapter(dir, *adapter).ok());
  EXPECT_TRUE(std::filesystem::exists(dir / kPartialBlocksFile));
  absl::StatusOr<Adapter> loaded = LoadAdapter(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const protocols::TensorMap back = StateFromAdapter(*loaded);
  ASSERT_EQ(back.size(), state.size());  // LoRA, full weights, then the head
  EXPECT_EQ(back.names().back(), kScoreHeadName);
  for (const auto& [name, t] : state) EXPECT_TRUE(back.at(name).Identical(t)) << name;
  std::filesystem::remove_all(dir);
}

TEST(AdapterIoTest, AcceptsAdapterNamesAndHalfPrecision) {
  const std::filesystem::path dir = TempDir("names");
  std::filesystem::create_directories(dir);
  protocols::TensorMap raw;
  const protocols::Tensor a = protocols::Tensor::FromFloats({2, 16}, std::vector<float>(32, 0.5f));
  const protocols::Tensor b = protocols::Tensor::FromFloats({16, 2}, std::vector<float>(32, -0.25f));
  raw.Set("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", a.To(protocols::DType::kBF16));
  raw.Set("base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight", b.To(protocols::DType::kF16));
  ASSERT_TRUE(protocols::WriteSafetensors(dir / kAdapterWeightsFile, raw).ok());
  ASSERT_TRUE(protocols::WriteFileAtomic(dir / kAdapterConfigFile,
                                         R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                                             "target_modules": "all-linear", "rank_pattern": {}})")
                  .ok());
  absl::StatusOr<Adapter> loaded = LoadAdapter(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.target_modules.size(), 7u);
  const protocols::Tensor* la = loaded->tensors.Find(LoraTensorName(0, model::Projection::kQ, LoraMatrix::kA));
  const protocols::Tensor* lb = loaded->tensors.Find(LoraTensorName(0, model::Projection::kQ, LoraMatrix::kB));
  ASSERT_NE(la, nullptr);
  ASSERT_NE(lb, nullptr);
  EXPECT_TRUE(la->Identical(a));  // 0.5 and -0.25 are exact in bf16 / f16
  EXPECT_TRUE(lb->Identical(b));
  std::filesystem::remove_all(dir);
}

TEST(AdapterIoTest, RefusesWhatItCannotApply) {
  auto parse = [](const std::string& text) { return ParseAdapterConfigJson(text, "adapter_config.json"); };
  EXPECT_TRUE(parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8})").ok());
  EXPECT_EQ(parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": true})").status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "rank_pattern": {"q_proj": 2}})").status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "bias": "all"})").status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "lora_bias": true})").status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "trainable_token_indices": [3]})")
                .status()
                .code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "trainable_token_indices": null,
                        "lora_bias": false, "target_parameters": null})")
                  .ok());
  EXPECT_EQ(parse(R"({"peft_type": "IA3", "r": 4, "lora_alpha": 8})").status().code(),
            absl::StatusCode::kUnimplemented);
  absl::StatusOr<AdapterConfig> no_r = parse(R"({"peft_type": "LORA", "lora_alpha": 8})");
  ASSERT_FALSE(no_r.ok());
  EXPECT_NE(no_r.status().message().find("\"r\""), std::string::npos) << no_r.status();
  EXPECT_FALSE(parse("[1, 2]").ok());
  EXPECT_EQ(LoadAdapter(TempDir("missing")).status().code(), absl::StatusCode::kNotFound);
}

TEST(AdapterIoTest, RefusesRankDisagreement) {
  const std::filesystem::path dir = TempDir("rank");
  Adapter adapter = *AdapterFromState(RandomState(0), WithAlpha(16));
  adapter.config.r = 5;
  absl::Status saved = SaveAdapter(dir, adapter);
  EXPECT_EQ(saved.code(), absl::StatusCode::kInvalidArgument) << saved;
  adapter.config.r = 3;
  ASSERT_TRUE(SaveAdapter(dir, adapter).ok());
  ASSERT_TRUE(protocols::WriteFileAtomic(dir / kAdapterConfigFile, R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16})")
                  .ok());
  absl::StatusOr<Adapter> loaded = LoadAdapter(dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("rank 3"), std::string::npos) << loaded.status();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fedfm::peft
