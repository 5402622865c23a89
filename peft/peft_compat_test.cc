// fedfm's LoRA against Hugging Face PEFT on the tiny HF Llama fixture, both
// ways (tools/check_peft_adapter.py wrote the references with torch,
// transformers and peft; tests/fixtures/peft_llama/README.md):
//   ours       an adapter fedfm trained and saved, loaded there by
//              PeftModel.from_pretrained: PEFT's logits must equal ours;
//   peft_made  an adapter PEFT made (random non-zero A and B, rsLoRA, other
//              targets and rank) and saved with save_pretrained: our logits
//              with it must equal PEFT's.
#include <gtest/gtest.h>
#include <unistd.h>

#include "model/loader.h"
#include "model/torch_bridge.h"
#include "peft/adapter_io.h"
#include "peft/tasks.h"
#include "peft/trainable.h"
#include "protocols/safetensors.h"

namespace fedfm::peft {
namespace {

constexpr char kBase[] = "tests/fixtures/hf_llama";
constexpr char kFixtures[] = "tests/fixtures/peft_llama";

struct Reference {
  torch::Tensor input_ids, logits_base, logits_ours, logits_peft;
};

Reference LoadReference() {
  absl::StatusOr<protocols::Safetensors> file =
      protocols::ReadSafetensors(std::string(kFixtures) + "/reference.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  Reference r;
  if (!file.ok()) return r;
  r.input_ids = model::ToTorch(file->tensors.at("input_ids"));
  r.logits_base = model::ToTorch(file->tensors.at("logits_base"));
  r.logits_ours = model::ToTorch(file->tensors.at("logits_ours"));
  r.logits_peft = model::ToTorch(file->tensors.at("logits_peft"));
  return r;
}

double RelErr(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got - want).abs().max() / want.abs().max()).item<double>();
}

torch::Tensor LogitsWith(const std::string& adapter_dir, const torch::Tensor& input_ids) {
  absl::StatusOr<std::shared_ptr<const model::Model>> base = model::LoadModel(kBase);
  EXPECT_TRUE(base.ok()) << base.status();
  absl::StatusOr<Adapter> adapter = LoadAdapter(adapter_dir);
  EXPECT_TRUE(adapter.ok()) << adapter.status();
  if (!base.ok() || !adapter.ok()) return {};
  StateForwardOptions options;
  options.alpha = adapter->config.lora_alpha;
  options.rslora = adapter->config.use_rslora;
  absl::StatusOr<std::unique_ptr<StateForward>> forward =
      StateForward::Create(*base, StateFromAdapter(*adapter), {}, options);
  EXPECT_TRUE(forward.ok()) << forward.status();
  if (!forward.ok()) return {};
  torch::NoGradGuard no_grad;
  return (*base)->Forward(input_ids, (*forward)->forward_options()).logits;
}

TEST(AdapterPeftCompatTest, BaseModelMatchesTransformers) {
  const Reference ref = LoadReference();
  absl::StatusOr<std::shared_ptr<const model::Model>> base = model::LoadModel(kBase);
  ASSERT_TRUE(base.ok()) << base.status();
  torch::NoGradGuard no_grad;
  EXPECT_LT(RelErr((*base)->Forward(ref.input_ids).logits, ref.logits_base), 1e-4);
}

TEST(AdapterPeftCompatTest, PeftLoadsOurAdapterAndAgrees) {
  const Reference ref = LoadReference();
  const torch::Tensor ours = LogitsWith(std::string(kFixtures) + "/ours", ref.input_ids);
  ASSERT_TRUE(ours.defined());
  EXPECT_GT(RelErr(ref.logits_base, ref.logits_ours), 1e-2);  // the adapter matters
  EXPECT_LT(RelErr(ours, ref.logits_ours), 1e-4);
}

TEST(AdapterPeftCompatTest, WeLoadPeftsAdapterAndAgree) {
  const Reference ref = LoadReference();
  absl::StatusOr<Adapter> adapter = LoadAdapter(std::string(kFixtures) + "/peft_made");
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_EQ(adapter->config.r, 6);
  EXPECT_TRUE(adapter->config.use_rslora);
  EXPECT_EQ(adapter->tensors.size(), 2u * 4u * 2u);
  const torch::Tensor ours = LogitsWith(std::string(kFixtures) + "/peft_made", ref.input_ids);
  ASSERT_TRUE(ours.defined());
  EXPECT_GT(RelErr(ref.logits_base, ref.logits_peft), 1e-2);
  EXPECT_LT(RelErr(ours, ref.logits_peft), 1e-4);
}

TEST(AdapterPeftCompatTest, MergedCheckpointMatchesPeft) {
  // fedfm adapter merge: HF base + PEFT's adapter -> an HF directory whose
  // plain forward gives PEFT's logits.
  const Reference ref = LoadReference();
  const std::filesystem::path out =
      std::filesystem::temp_directory_path() / ("fedfm_peft_merge_" + std::to_string(getpid()));
  std::filesystem::remove_all(out);
  MergeRequest request;
  request.model = kBase;
  request.adapter = std::string(kFixtures) + "/peft_made";
  request.out = out;
  absl::StatusOr<MergeResult> merged = MergeAdapterIntoModel(request);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->merged_modules, 8);
  EXPECT_EQ(merged->base_format, "huggingface");
  EXPECT_TRUE(std::filesystem::exists(out / "tokenizer.json"));
  absl::StatusOr<std::shared_ptr<const model::Model>> model = model::LoadModel(out);
  ASSERT_TRUE(model.ok()) << model.status();
  torch::NoGradGuard no_grad;
  EXPECT_LT(RelErr((*model)->Forward(ref.input_ids).logits, ref.logits_peft), 1e-4);
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace fedfm::peft
