// fedfm adapter export / merge / info and eval with an adapter, on the
// bundled stories260K model (a llama2.c base).
#include "peft/tasks.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <fstream>

#include "model/checkpoint.h"
#include "model/dataset_rng.h"
#include "model/loader.h"
#include "model/torch_bridge.h"
#include "peft/adapter_io.h"
#include "peft/state.h"
#include "peft/trainable.h"
#include "protocols/safetensors.h"

namespace fedfm::peft {
namespace {

constexpr char kModel[] = "assets/stories260K/stories260K.bin";
constexpr char kTokenizer[] = "assets/stories260K/tok512.bin";

std::filesystem::path TempDir(const std::string& name) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("fedfm_adapter_tasks_test_" + std::to_string(getpid()) + "_" + name);
  std::filesystem::remove_all(dir);
  return dir;
}

protocols::TensorMap State(bool random_b) {
  StateLayout layout;
  layout.lora.rank = 4;
  layout.lora.targets.assign(model::kAllProjections.begin(), model::kAllProjections.end());
  protocols::TensorMap state = *InitAdapterState((*model::LoadModel(kModel))->config(), layout, 3);
  if (random_b) {
    model::DataRng rng(4);
    for (auto& [name, t] : state) {
      if (name.find("lora_B") == std::string::npos) continue;
      for (float& v : t.mutable_floats()) v = static_cast<float>(0.05 * rng.Normal());
    }
  }
  return state;
}

std::filesystem::path SaveState(const protocols::TensorMap& state, const std::string& name) {
  const std::filesystem::path dir = TempDir(name);
  AdapterConfig hyper;
  hyper.lora_alpha = 8;
  absl::StatusOr<Adapter> adapter = AdapterFromState(state, hyper);
  EXPECT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_TRUE(SaveAdapter(dir, *adapter).ok());
  return dir;
}

TEST(AdapterTasksTest, ExportFromAStateFileAndDescribe) {
  const std::filesystem::path dir = TempDir("export");
  std::filesystem::create_directories(dir);
  const protocols::TensorMap state = State(/*random_b=*/true);
  ASSERT_TRUE(protocols::WriteSafetensors(dir / "state.safetensors", state).ok());
  ExportRequest request;
  request.input = dir / "state.safetensors";
  request.out = dir / "adapter";
  request.alpha = 16;
  request.base_model = kModel;
  absl::StatusOr<AdapterSummary> exported = ExportAdapter(request);
  ASSERT_TRUE(exported.ok()) << exported.status();
  absl::StatusOr<AdapterSummary> info = DescribeAdapter(dir / "adapter");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->config.r, 4);
  EXPECT_DOUBLE_EQ(info->config.lora_alpha, 16);
  EXPECT_DOUBLE_EQ(info->scale, 4);
  EXPECT_EQ(info->config.base_model_name_or_path, kModel);
  EXPECT_EQ(info->lora_parameters, 23120);
  EXPECT_EQ(info->num_layers, 5);
  EXPECT_EQ(info->num_modules, 35);
  EXPECT_EQ(info->tensors.size(), 70u);
  // Re-exporting a directory keeps its values unless told otherwise.
  request.input = dir / "adapter";
  request.out = dir / "again";
  request.alpha.reset();
  ASSERT_TRUE(ExportAdapter(request).ok());
  EXPECT_DOUBLE_EQ(DescribeAdapter(dir / "again")->config.lora_alpha, 16);
  std::filesystem::remove_all(dir);
}

TEST(AdapterTasksTest, MergeIntoALlama2cBaseWritesALoadableHfCheckpoint) {
  const protocols::TensorMap state = State(/*random_b=*/true);
  const std::filesystem::path adapter = SaveState(state, "merge_adapter");
  const std::filesystem::path out = TempDir("merge_out");
  MergeRequest request;
  request.model = kModel;
  request.adapter = adapter;
  request.out = out;
  absl::StatusOr<MergeResult> merged = MergeAdapterIntoModel(request);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->base_format, "llama2c");
  EXPECT_EQ(merged->dtype, "F32");
  EXPECT_EQ(merged->merged_modules, 35);
  absl::StatusOr<std::shared_ptr<const model::Model>> base = model::LoadModel(kModel);
  absl::StatusOr<std::shared_ptr<const model::Model>> loaded = model::LoadModel(out);
  ASSERT_TRUE(base.ok() && loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->config().n_layers, 5);
  EXPECT_TRUE((*loaded)->config().tied_head);
  StateForwardOptions options;
  options.alpha = 8;
  absl::StatusOr<std::unique_ptr<StateForward>> forward = StateForward::Create(*base, state, {}, options);
  ASSERT_TRUE(forward.ok());
  at::Generator gen = at::detail::createCPUGenerator(2);
  const torch::Tensor tokens = torch::randint(0, 512, {2, 20}, gen, torch::kLong);
  torch::NoGradGuard no_grad;
  const torch::Tensor want = (*base)->Forward(tokens, (*forward)->forward_options()).logits;
  const torch::Tensor got = (*loaded)->Forward(tokens).logits;
  EXPECT_LT(((got - want).abs().max() / want.abs().max()).item<double>(), 1e-5);
  // bf16 output on request.
  request.out = TempDir("merge_bf16");
  request.dtype = "BF16";
  ASSERT_TRUE(MergeAdapterIntoModel(request).ok());
  absl::StatusOr<model::CheckpointInfo> info = model::ReadCheckpointInfo(request.out);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->dtype, "BF16");
  std::filesystem::remove_all(adapter);
  std::filesystem::remove_all(out);
  std::filesystem::remove_all(request.out);
}

TEST(AdapterTasksTest, EvaluateTextWithAdapter) {
  model::EvalRequest request;
  request.model = kModel;
  request.tokenizer = kTokenizer;
  request.text = "assets/tinystories_val/cs336_tinystories_sample.txt";
  request.seq_len = 64;
  absl::StatusOr<model::EvalResult> plain = model::EvaluateText(request);
  ASSERT_TRUE(plain.ok()) << plain.status();
  // B = 0: the adapter is the identity, so the loss is the base's.
  const std::filesystem::path zero = SaveState(State(false), "eval_zero");
  absl::StatusOr<model::EvalResult> same = EvaluateTextWithAdapter(request, zero);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->tokens, plain->tokens);
  EXPECT_NEAR(same->mean_loss, plain->mean_loss, 1e-5);
  const std::filesystem::path random = SaveState(State(true), "eval_random");
  absl::StatusOr<model::EvalResult> other = EvaluateTextWithAdapter(request, random);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_GT(std::fabs(other->mean_loss - plain->mean_loss), 1e-3);
  EXPECT_EQ(EvaluateTextWithAdapter(request, TempDir("none")).status().code(), absl::StatusCode::kNotFound);
  // A tokenizer with ids past the model's vocabulary is refused by name, not
  // left to index past the embedding.
  const std::filesystem::path tok_dir = TempDir("eval_tok");
  std::filesystem::create_directories(tok_dir);
  const std::filesystem::path big_tok = tok_dir / "tok520.bin";
  {
    std::ifstream in(kTokenizer, std::ios::binary);
    std::ofstream out(big_tok, std::ios::binary);
    out << in.rdbuf();
    for (int i = 0; i < 8; ++i) {
      const float score = 0;
      const int32_t len = 3;
      out.write(reinterpret_cast<const char*>(&score), 4);
      out.write(reinterpret_cast<const char*>(&len), 4);
      out.write("zz", 2);
      out.put(static_cast<char>('a' + i));
    }
  }
  request.tokenizer = big_tok;
  absl::StatusOr<model::EvalResult> mismatched = EvaluateTextWithAdapter(request, random);
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatched.status().message().find("520 ids but model"), std::string::npos) << mismatched.status();
  std::filesystem::remove_all(tok_dir);
  std::filesystem::remove_all(zero);
  std::filesystem::remove_all(random);
}

}  // namespace
}  // namespace fedfm::peft
