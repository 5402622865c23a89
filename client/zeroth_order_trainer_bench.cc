#include "client/zeroth_order_trainer_bench.h"

#include <torch/torch.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/internal/torch_compat.h"
#include "client/zeroth_order_trainer.h"
#include "model/dataset_rng.h"
#include "model/loader.h"
#include "model/runtime.h"
#include "model/transformer.h"
#include "peft/trainable.h"
#include "protocols/status_macros.h"
#include "protocols/tensor_codec.h"
#include "protocols/wire.h"
#include "zeroth_order/seed_pool.h"

namespace fedfm::client {
namespace {

using Clock = std::chrono::steady_clock;

struct NamedConfig {
  const char* name;
  model::ModelConfig config;
};

model::ModelConfig Shape(int64_t dim, int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads,
                         int64_t head_dim, int64_t vocab, int64_t max_seq_len, double rope_theta) {
  model::ModelConfig c;
  c.dim = dim;
  c.hidden_dim = hidden;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.vocab_size = vocab;
  c.max_seq_len = max_seq_len;
  c.rope_theta = rope_theta;
  return c;
}

// The published configs' dimensions (config.json of each checkpoint).
std::vector<NamedConfig> NamedConfigs() {
  std::vector<NamedConfig> out;
  out.push_back({"stories260k", Shape(64, 172, 5, 8, 4, 0, 512, 512, 10000)});
  out.push_back({"stories15m", Shape(288, 768, 6, 6, 6, 0, 32000, 256, 10000)});
  model::ModelConfig qwen = Shape(896, 4864, 24, 14, 2, 64, 151936, 32768, 1e6);
  qwen.architecture = "Qwen2ForCausalLM";
  qwen.qkv_bias = true;
  qwen.norm_eps = 1e-6;
  out.push_back({"qwen2.5-0.5b", qwen});
  for (const bool three : {false, true}) {
    model::ModelConfig llama = three ? Shape(3072, 8192, 28, 24, 8, 128, 128256, 131072, 500000)
                                     : Shape(2048, 8192, 16, 32, 8, 64, 128256, 131072, 500000);
    llama.rope_scaling.type = model::RopeScalingType::kLlama3;
    llama.rope_scaling.factor = 32;
    llama.rope_scaling.low_freq_factor = 1;
    llama.rope_scaling.high_freq_factor = 4;
    llama.rope_scaling.original_max_position_embeddings = 8192;
    out.push_back({three ? "llama-3.2-3b" : "llama-3.2-1b", llama});
  }
  return out;
}

void Synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

// Returns freed heap memory to the kernel, so that a phase's resident-set
// growth is not hidden by memory an earlier phase left in the allocator
// (the CLI makes glibc retain freed blocks).
void TrimHeap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

// Peak of `fn` as PeakMemoryMeter reports it, from a trimmed heap.
int64_t MeasurePeak(const torch::Device& device, const std::function<void()>& fn) {
  Synchronize(device);
  TrimHeap();
  internal::PeakMemoryMeter meter(device);
  fn();
  Synchronize(device);
  return meter.PeakBytes();
}

// CPU time of the whole process (every thread), in ms: on a shared CPU it
// counts the work done rather than the wait for a core.
double ProcessCpuMs() { return 1000.0 * static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

// Wall and process CPU milliseconds of each of `iters` calls after `warmup` untimed ones.
void TimeCalls(const torch::Device& device, int warmup, int iters, const std::function<void()>& fn,
               std::vector<double>* wall_ms, std::vector<double>* cpu_ms) {
  for (int i = 0; i < warmup; ++i) fn();
  for (int i = 0; i < iters; ++i) {
    Synchronize(device);
    const auto start = Clock::now();
    const double cpu = ProcessCpuMs();
    fn();
    Synchronize(device);
    cpu_ms->push_back(ProcessCpuMs() - cpu);
    wall_ms->push_back(1000.0 * std::chrono::duration<double>(Clock::now() - start).count());
  }
}

struct Stats {
  double mean = 0, median = 0, min = 0;
};
Stats Summarize(std::vector<double> ms) {
  Stats s;
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  for (double m : ms) s.mean += m / static_cast<double>(ms.size());
  const size_t n = ms.size();
  s.median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  s.min = ms.front();
  return s;
}

absl::StatusOr<ZoBenchResult> BenchImpl(const ZoBenchRequest& request) {
  if (request.batch < 1 || request.seq_len < 2 || request.steps < 1 || request.warmup < 0 || request.seed_pool < 0) {
    return absl::InvalidArgumentError("bench zo needs batch >= 1, seq_len >= 2, steps >= 1, warmup >= 0, seed_pool >= 0");
  }
  FEDFM_ASSIGN_OR_RETURN(model::ModelOptions model_options, model::ParseModelOptions(request.dtype, request.device));
  ZoBenchResult result;
  std::shared_ptr<const model::Model> model;
  if (!request.random_config.empty()) {
    const model::ModelConfig* config = nullptr;
    const std::vector<NamedConfig> named = NamedConfigs();
    for (const NamedConfig& c : named) {
      if (request.random_config == c.name) config = &c.config;
    }
    if (config == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown random config \"", request.random_config,
                                                     "\"; one of ", absl::StrJoin(ZoBenchConfigNames(), ", ")));
    }
    FEDFM_ASSIGN_OR_RETURN(model, model::Model::RandomInit(*config, request.seed, model_options));
    result.model = absl::StrCat("random:", request.random_config);
  } else {
    FEDFM_ASSIGN_OR_RETURN(model, model::LoadModel(request.model, model_options));
    result.model = request.model.string();
  }
  const model::ModelConfig& mc = model->config();
  if (request.seq_len > mc.max_seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len ", request.seq_len, " exceeds the model's ", mc.max_seq_len, " positions"));
  }
  const torch::Device device = model->device();
  result.model_parameters = model->NumParameters();
  result.weight_bytes = result.model_parameters * static_cast<int64_t>(c10::elementSize(model->dtype()));
  result.threads = model::TorchThreads();

  // One batch of random windows.
  Dataset data;
  model::DataRng rng(request.seed);
  for (int i = 0; i < request.batch; ++i) {
    model::Example e;
    for (int t = 0; t <= request.seq_len; ++t) e.tokens.push_back(static_cast<int32_t>(rng.Uniform(mc.vocab_size)));
    e.targets.assign(e.tokens.begin() + 1, e.tokens.end());
    e.tokens.pop_back();
    data.train.push_back(std::move(e));
  }
  protocols::LoraOptions lora_options;
  lora_options.rank = request.rank;
  lora_options.alpha = 2.0 * request.rank;
  lora_options.targets = request.targets;
  FEDFM_ASSIGN_OR_RETURN(peft::LoraSpec spec, peft::LoraSpecFromOptions(lora_options));
  peft::StateLayout layout;
  layout.lora = spec;
  FEDFM_ASSIGN_OR_RETURN(protocols::TensorMap state, peft::InitTrainableState(*model, layout, request.seed));
  result.dense_update_bytes = static_cast<int64_t>(protocols::EncodedSize(state));

  // The forward baselines on the same batch.
  std::vector<size_t> all(static_cast<size_t>(request.batch));
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  const model::Batch host = model::MakeBatch(data.train, all, /*pad_id=*/0, request.seq_len);
  const torch::Tensor inputs =
      torch::from_blob(const_cast<int32_t*>(host.inputs.data()), {request.batch, request.seq_len}, torch::kInt)
          .to(device, torch::kLong);
  const torch::Tensor targets =
      torch::from_blob(const_cast<int32_t*>(host.targets.data()), {request.batch, request.seq_len}, torch::kInt)
          .to(device, torch::kLong);
  // One loss evaluation through the adapter (what a step does 2P times) and
  // one of the base model alone. Timed before and after the zeroth-order
  // round, so that a change in machine load between the phases shows up in
  // both; memory over as many forward passes as the round makes.
  std::vector<double> forward_ms, base_forward_ms, forward_cpu_ms, base_forward_cpu_ms;
  auto forward_phase = [&](bool measure_memory) -> absl::Status {
    peft::StateForwardOptions fo;
    fo.alpha = spec.alpha;
    if (request.bf16_autocast && device.is_cuda()) fo.compute_dtype = torch::kFloat;
    FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<peft::StateForward> forward,
                           peft::StateForward::Create(model, state, protocols::Coverage::Full(state), fo));
    auto adapter_forward = [&] {
      torch::NoGradGuard no_grad;
      internal::Bf16AutocastGuard autocast(device, request.bf16_autocast);
      forward->Materialize();
      model::ForwardOptions options = forward->forward_options();
      (void)model::CausalLmLoss(model->Forward(inputs, options).logits, targets).item<double>();
    };
    auto base_forward = [&] {
      c10::InferenceMode inference;
      internal::Bf16AutocastGuard autocast(device, request.bf16_autocast);
      (void)model::CausalLmLoss(model->Forward(inputs).logits, targets).item<double>();
    };
    if (measure_memory) {
      adapter_forward();  // first-call allocations
      const int passes = 2 * request.zo.perturbations * (request.warmup + request.steps);
      result.forward_peak_bytes = MeasurePeak(device, [&] {
        for (int i = 0; i < passes; ++i) adapter_forward();
      });
    }
    TimeCalls(device, request.warmup, request.steps, adapter_forward, &forward_ms, &forward_cpu_ms);
    TimeCalls(device, request.warmup, request.steps, base_forward, &base_forward_ms, &base_forward_cpu_ms);
    return absl::OkStatus();
  };
  FEDFM_RETURN_IF_ERROR(forward_phase(/*measure_memory=*/true));

  // The zeroth-order round.
  ZerothOrderTrainerOptions options;
  options.zo = request.zo;
  options.lora = spec;
  options.train.bf16_autocast = request.bf16_autocast;
  std::vector<double> ends, cpu_ends;
  options.on_step = [&](const TrainProgress& p) {
    ends.push_back(p.elapsed_s);
    cpu_ends.push_back(ProcessCpuMs());
    result.final_loss = p.loss;
  };
  protocols::Task task;
  task.method = protocols::Method::kZerothOrder;
  task.local_steps = request.steps + request.warmup;
  task.batch_size = request.batch;
  task.seq_len = request.seq_len;
  task.zo_epsilon = request.zo.epsilon;
  task.zo_learning_rate = request.zo.learning_rate;
  task.zo_perturbations = request.zo.perturbations;
  task.round_seed = request.seed;
  if (request.seed_pool > 0) {
    task.seed_pool = zeroth_order::SeedPool::ForRound(request.seed, /*round=*/0, request.seed_pool).seeds();
  }
  ZerothOrderTrainer trainer(model, options, request.seed);
  protocols::TensorMap scratch = state;
  Synchronize(device);
  TrimHeap();
  FEDFM_ASSIGN_OR_RETURN(protocols::Update update, trainer.Train(task, scratch, data));
  result.trainable_parameters = static_cast<int64_t>(update.metrics.at("trainable_parameters"));
  result.step_peak_bytes = static_cast<int64_t>(update.metrics.at("peak_memory_bytes"));

  FEDFM_RETURN_IF_ERROR(forward_phase(/*measure_memory=*/false));

  std::vector<double> step_ms, step_cpu_ms;
  for (size_t i = static_cast<size_t>(std::max(1, request.warmup)); i < ends.size(); ++i) {
    step_ms.push_back(1000 * (ends[i] - ends[i - 1]));
    step_cpu_ms.push_back(cpu_ends[i] - cpu_ends[i - 1]);
  }
  if (step_ms.empty()) return absl::InternalError("bench zo: no timed steps (every step skipped?)");
  const Stats step = Summarize(step_ms), fwd = Summarize(forward_ms), base = Summarize(base_forward_ms);
  result.step_ms = step.mean;
  result.step_ms_median = step.median;
  result.step_ms_min = step.min;
  result.forward_ms = fwd.median;
  result.forward_ms_min = fwd.min;
  result.base_forward_ms = base.median;
  result.base_forward_ms_min = base.min;
  result.step_over_forward = step.median / fwd.median;
  result.step_over_forward_min = step.min / fwd.min;
  result.step_over_base_forward = step.median / base.median;
  if (!device.is_cuda()) {
    const Stats step_cpu = Summarize(step_cpu_ms), fwd_cpu = Summarize(forward_cpu_ms);
    result.step_cpu_ms = step_cpu.median;
    result.forward_cpu_ms = fwd_cpu.median;
    result.step_over_forward_cpu = step_cpu.median / fwd_cpu.median;
  }
  if (result.forward_peak_bytes >= 0 && result.step_peak_bytes >= 0) {
    const int64_t weights = device.is_cuda() ? 0 : result.weight_bytes;  // CUDA peaks include them
    result.forward_peak_total_bytes = weights + result.forward_peak_bytes;
    result.step_peak_total_bytes = weights + result.step_peak_bytes;
    result.peak_ratio =
        static_cast<double>(result.step_peak_total_bytes) / static_cast<double>(result.forward_peak_total_bytes);
  }

  // What the upload of this round puts on the wire.
  if (update.kind == protocols::UpdateKind::kSeedScalars) {
    result.seed_scalar_bytes = static_cast<int64_t>(update.seed_scalars.size() * sizeof(float));
    update.client_id = "client-0000";
    namespace v1 = protocols::wire::v1;
    v1::UploadHeader header;
    protocols::wire::UpdateHeaderToProto(update, &header);
    protocols::Binding binding{.run_id = "fedfm-run", .round = 1, .client_id = update.client_id,
                               .phase = protocols::Phase::kCollect, .sequence = 1};
    protocols::wire::ToProto(binding, header.mutable_binding());
    header.set_total_bytes(0);
    header.set_mac(std::string(32, '\x5a'));  // HMAC-SHA256
    result.upload_header_bytes = static_cast<int64_t>(header.ByteSizeLong());
    v1::UploadChunk head, mac;
    *head.mutable_header() = header;
    mac.set_mac(std::string(32, '\x5a'));
    result.upload_bytes = static_cast<int64_t>(head.ByteSizeLong() + mac.ByteSizeLong());
    header.clear_metrics();
    result.upload_header_bytes_without_metrics = static_cast<int64_t>(header.ByteSizeLong());
  }
  return result;
}

}  // namespace

std::vector<std::string> ZoBenchConfigNames() {
  std::vector<std::string> names;
  for (const NamedConfig& c : NamedConfigs()) names.push_back(c.name);
  return names;
}

absl::StatusOr<ZoBenchResult> BenchZerothOrder(const ZoBenchRequest& request) {
  try {
    return BenchImpl(request);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("bench zo failed: ", e.what_without_backtrace()));
  }
}

}  // namespace fedfm::client
