// Hugging Face checkpoints: the fixtures under tests/fixtures/hf_{llama,qwen2}
// (built by tools/make_hf_fixtures.py with `transformers`) reproduce the
// logits, greedy tokens and bf16 behaviour recorded there; broken copies
// fail with errors that name the file and the problem.
#include <stdlib.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "model/inference.h"
#include "model/loader.h"
#include "model/torch_bridge.h"
#include "nlohmann/json.hpp"
#include "protocols/safetensors.h"

namespace fedfm::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kFixtures[] = {"tests/fixtures/hf_llama", "tests/fixtures/hf_qwen2"};
constexpr int kTexts = 3;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "fedfm_hf_XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Copies a fixture's config and weights (what the loader reads) to `dir`.
void CopyCheckpoint(const fs::path& fixture, const fs::path& dir) {
  fs::copy_file(fixture / "config.json", dir / "config.json");
  fs::copy_file(fixture / "model.safetensors", dir / "model.safetensors");
}

torch::Tensor Reference(const fs::path& fixture, const std::string& name) {
  auto st = protocols::ReadSafetensors(fixture / "reference.safetensors");
  EXPECT_TRUE(st.ok()) << st.status();
  const protocols::Tensor* t = st->tensors.Find(name);
  EXPECT_NE(t, nullptr) << name;
  return t == nullptr ? torch::Tensor() : ToTorch(*t).clone();
}

// max |got - want| / max |want|
double RelativeError(const torch::Tensor& got, const torch::Tensor& want) {
  torch::Tensor g = got.to(torch::kCPU, torch::kFloat), w = want.to(torch::kFloat);
  return (g - w).abs().max().item<double>() / w.abs().max().item<double>();
}

std::string ErrorOf(const fs::path& path) {
  auto model = LoadModel(path);
  EXPECT_FALSE(model.ok()) << path;
  return model.ok() ? "" : std::string(model.status().message());
}

TEST(ModelHfLoaderTest, ReadsConfigOfBothArchitectures) {
  auto llama = ReadCheckpointInfo(kFixtures[0]);
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_EQ(llama->format, CheckpointFormat::kHuggingFace);
  EXPECT_EQ(llama->config.architecture, "LlamaForCausalLM");
  EXPECT_EQ(llama->config.n_layers, 2);
  EXPECT_EQ(llama->config.n_kv_heads, 2);
  EXPECT_FALSE(llama->config.tied_head);
  EXPECT_FALSE(llama->config.qkv_bias);
  EXPECT_EQ(llama->config.rope_theta, 500000.0);
  EXPECT_EQ(llama->config.rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(llama->config.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_EQ(llama->dtype, "F32");
  auto qwen = ReadCheckpointInfo(fs::path(kFixtures[1]) / "config.json");
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_EQ(qwen->config.architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(qwen->config.n_layers, 3);
  EXPECT_TRUE(qwen->config.qkv_bias);
  EXPECT_FALSE(qwen->config.o_bias);
  EXPECT_EQ(qwen->config.rope_theta, 1e6);
  EXPECT_EQ(qwen->config.vocab_size, 496);
  auto bf16 = ReadCheckpointInfo(fs::path(kFixtures[1]) / "bf16");
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(bf16->dtype, "BF16");
}

TEST(ModelHfLoaderTest, Float32LogitsMatchTransformers) {
  for (const char* fixture : kFixtures) {
    auto model = LoadModel(fixture);
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_EQ((*model)->NumParameters(), (*model)->config().NumParameters());
    for (int i = 0; i < kTexts; ++i) {
      torch::Tensor ids = Reference(fixture, "input_ids." + std::to_string(i));
      torch::Tensor want = Reference(fixture, "logits." + std::to_string(i));
      torch::Tensor got = (*model)->Forward(ids).logits;
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_LT(RelativeError(got, want), 1e-4) << fixture << " text " << i;
    }
  }
}

TEST(ModelHfLoaderTest, GreedyTokensMatchTransformersGenerate) {
  for (const char* fixture : kFixtures) {
    auto model = LoadModel(fixture);
    ASSERT_TRUE(model.ok()) << model.status();
    torch::Tensor prompt = Reference(fixture, "generate.prompt")[0];
    torch::Tensor output = Reference(fixture, "generate.output")[0];
    std::vector<int32_t> prompt_ids(prompt.size(0)), want;
    for (int64_t i = 0; i < prompt.size(0); ++i) prompt_ids[i] = static_cast<int32_t>(prompt[i].item<int64_t>());
    for (int64_t i = prompt.size(0); i < output.size(0); ++i) want.push_back(static_cast<int32_t>(output[i].item<int64_t>()));
    SamplingOptions greedy;
    greedy.max_new_tokens = static_cast<int64_t>(want.size());
    EXPECT_EQ(Generate(**model, prompt_ids, greedy), want) << fixture;
  }
}

TEST(ModelHfLoaderTest, Bfloat16FilesAndBfloat16Compute) {
  for (const char* fixture : kFixtures) {
    // bf16 weights on disk, float32 compute: exact widening.
    auto widened = LoadModel(fs::path(fixture) / "bf16");
    ASSERT_TRUE(widened.ok()) << widened.status();
    // float32 weights, bf16 compute: close to transformers' bf16 GPU run.
    auto bf16 = LoadModel(fixture, ModelOptions{torch::kBFloat16, torch::kCPU});
    ASSERT_TRUE(bf16.ok()) << bf16.status();
    for (int i = 0; i < kTexts; ++i) {
      const std::string n = std::to_string(i);
      torch::Tensor ids = Reference(fixture, "input_ids." + n);
      EXPECT_LT(RelativeError((*widened)->Forward(ids).logits, Reference(fixture, "logits_bf16_weights." + n)), 1e-4)
          << fixture << " text " << i;
      torch::Tensor got = (*bf16)->Forward(ids).logits;
      EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
      EXPECT_LT(RelativeError(got, Reference(fixture, "logits." + n)), 0.05) << fixture << " text " << i;
      EXPECT_LT(RelativeError(got, Reference(fixture, "logits_bf16_cuda." + n)), 0.05) << fixture << " text " << i;
    }
  }
}

TEST(ModelHfLoaderTest, ShardedCheckpointLoadsTheSameModel) {
  const fs::path fixture = kFixtures[1];
  TempDir dir;
  fs::copy_file(fixture / "config.json", dir.path() / "config.json");
  auto st = protocols::ReadSafetensors(fixture / "model.safetensors");
  ASSERT_TRUE(st.ok());
  protocols::TensorMap first, second;
  json weight_map = json::object();
  size_t index = 0;
  for (const auto& [name, tensor] : st->tensors) {
    const bool one = index++ % 2 == 0;
    ASSERT_TRUE((one ? first : second).Insert(name, tensor).ok());
    weight_map[name] = one ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  ASSERT_TRUE(protocols::WriteSafetensors(dir.path() / "model-00001-of-00002.safetensors", first).ok());
  ASSERT_TRUE(protocols::WriteSafetensors(dir.path() / "model-00002-of-00002.safetensors", second).ok());
  WriteAll(dir.path() / "model.safetensors.index.json", json{{"metadata", json::object()}, {"weight_map", weight_map}}.dump());
  auto sharded = LoadModel(dir.path());
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  torch::Tensor ids = Reference(fixture, "input_ids.0");
  EXPECT_LT(RelativeError((*sharded)->Forward(ids).logits, Reference(fixture, "logits.0")), 1e-4);

  // An index that misplaces a tensor names it.
  std::string moved = weight_map.begin().key();
  weight_map[moved] = weight_map[moved] == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                                                                               : "model-00001-of-00002.safetensors";
  WriteAll(dir.path() / "model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
  EXPECT_NE(ErrorOf(dir.path()).find(moved), std::string::npos) << ErrorOf(dir.path());
  // A missing shard is named.
  fs::remove(dir.path() / "model-00002-of-00002.safetensors");
  EXPECT_NE(ErrorOf(dir.path()).find("model-00002-of-00002.safetensors"), std::string::npos);
}

TEST(ModelHfLoaderTest, LegacyRopeKeysLoadTheSameModel) {
  // transformers < 5 wrote rope_theta and rope_scaling at the top level.
  const fs::path fixture = kFixtures[0];
  TempDir dir;
  CopyCheckpoint(fixture, dir.path());
  json config = json::parse(ReadAll(fixture / "config.json"));
  json rope = config["rope_parameters"];
  config["rope_theta"] = rope["rope_theta"];
  rope.erase("rope_theta");
  config["rope_scaling"] = rope;
  config.erase("rope_parameters");
  WriteAll(dir.path() / "config.json", config.dump());
  auto model = LoadModel(dir.path());
  ASSERT_TRUE(model.ok()) << model.status();
  torch::Tensor ids = Reference(fixture, "input_ids.1");
  EXPECT_LT(RelativeError((*model)->Forward(ids).logits, Reference(fixture, "logits.1")), 1e-4);
  // Without the llama3 scaling the logits differ: the fixture exercises it.
  config.erase("rope_scaling");
  WriteAll(dir.path() / "config.json", config.dump());
  auto unscaled = LoadModel(dir.path());
  ASSERT_TRUE(unscaled.ok()) << unscaled.status();
  EXPECT_GT(RelativeError((*unscaled)->Forward(ids).logits, Reference(fixture, "logits.1")), 1e-3);
}

TEST(ModelHfLoaderTest, ShapeMismatchNamesTensorAndBothShapes) {
  TempDir dir;
  CopyCheckpoint(kFixtures[0], dir.path());
  json config = json::parse(ReadAll(fs::path(kFixtures[0]) / "config.json"));
  config["intermediate_size"] = 120;
  WriteAll(dir.path() / "config.json", config.dump());
  std::string error = ErrorOf(dir.path());
  EXPECT_NE(error.find(dir.path().string()), std::string::npos) << error;
  EXPECT_NE(error.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << error;
  EXPECT_NE(error.find("[128, 64]"), std::string::npos) << error;
  EXPECT_NE(error.find("[120, 64]"), std::string::npos) << error;
}

TEST(ModelHfLoaderTest, BrokenCheckpointsNameTheFileAndProblem) {
  const fs::path fixture = kFixtures[1];
  TempDir dir;
  CopyCheckpoint(fixture, dir.path());
  const std::string weights = ReadAll(fixture / "model.safetensors");

  // Truncated weights.
  WriteAll(dir.path() / "model.safetensors", weights.substr(0, weights.size() - 1000));
  std::string error = ErrorOf(dir.path());
  EXPECT_NE(error.find((dir.path() / "model.safetensors").string()), std::string::npos) << error;
  EXPECT_NE(error.find("past the end"), std::string::npos) << error;
  // Truncated inside the header.
  WriteAll(dir.path() / "model.safetensors", weights.substr(0, 100));
  error = ErrorOf(dir.path());
  EXPECT_NE(error.find((dir.path() / "model.safetensors").string()), std::string::npos) << error;

  // A tensor missing.
  auto st = protocols::ReadSafetensors(fixture / "model.safetensors");
  ASSERT_TRUE(st.ok());
  protocols::TensorMap fewer;
  for (const auto& [name, tensor] : st->tensors) {
    if (name != "model.layers.2.self_attn.k_proj.bias") ASSERT_TRUE(fewer.Insert(name, tensor).ok());
  }
  ASSERT_TRUE(protocols::WriteSafetensors(dir.path() / "model.safetensors", fewer).ok());
  error = ErrorOf(dir.path());
  EXPECT_NE(error.find("missing tensor \"model.layers.2.self_attn.k_proj.bias\""), std::string::npos) << error;

  // Integer weights.
  protocols::TensorMap ints = fewer;
  ints.Set("model.layers.2.self_attn.k_proj.bias", protocols::Tensor::Zeros(protocols::DType::kI32, {32}));
  ASSERT_TRUE(protocols::WriteSafetensors(dir.path() / "model.safetensors", ints).ok());
  error = ErrorOf(dir.path());
  EXPECT_NE(error.find("has dtype I32"), std::string::npos) << error;

  // No weights at all; bad JSON; unsupported architecture.
  fs::remove(dir.path() / "model.safetensors");
  EXPECT_NE(ErrorOf(dir.path()).find("no model.safetensors"), std::string::npos);
  WriteAll(dir.path() / "config.json", "{\"hidden_size\": 64,");
  EXPECT_NE(ErrorOf(dir.path()).find("not valid JSON"), std::string::npos);
  WriteAll(dir.path() / "config.json", R"({"architectures": ["GPT2LMHeadModel"]})");
  auto gpt2 = LoadModel(dir.path());
  EXPECT_EQ(gpt2.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(std::string(gpt2.status().message()).find("GPT2LMHeadModel"), std::string::npos);
}

}  // namespace
}  // namespace fedfm::model
