#include "coordinator/policy.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "protocols/config/config.h"

namespace fedfm::coordinator {
namespace {

using protocols::DeviceProfile;
using protocols::Method;
using protocols::ModelDims;
using protocols::RunConfig;

constexpr double kActivationBytes = 4.0;  // activations are kept in fp32 on CPU
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

int64_t HeadDim(const ModelDims& m) { return m.num_heads > 0 ? m.dim / m.num_heads : m.dim; }
int64_t KvDim(const ModelDims& m) { return HeadDim(m) * (m.num_kv_heads > 0 ? m.num_kv_heads : m.num_heads); }

// (in, out) features of projection i of kProjections.
std::pair<int64_t, int64_t> ProjectionShape(const ModelDims& m, int i) {
  switch (i) {
    case 0: return {m.dim, m.dim};
    case 1:
    case 2: return {m.dim, KvDim(m)};
    case 3: return {m.dim, m.dim};
    case 4:
    case 5: return {m.dim, m.hidden_dim};
    default: return {m.hidden_dim, m.dim};
  }
}

// Bytes of activations one block keeps for backward, per token: inputs of
// the norms, q/k/v/o, attention output, the MLP's gate/up/activation, plus
// the attention probabilities (one T-long row per head).
double SavedActivationBytesPerToken(const WorkloadShape& s) {
  const ModelDims& m = s.model;
  double per_token = 6.0 * m.dim + 2.0 * KvDim(m) + 4.0 * m.hidden_dim + m.num_heads * static_cast<double>(s.seq_len);
  return per_token * kActivationBytes;
}

// Transient activations of a forward pass without a graph: one block's
// working set plus the logits.
double InferenceActivationBytes(const WorkloadShape& s) {
  const ModelDims& m = s.model;
  double tokens = static_cast<double>(s.batch_size) * s.seq_len;
  double block = tokens * (4.0 * m.dim + 2.0 * m.hidden_dim) +
                 static_cast<double>(s.batch_size) * m.num_heads * s.seq_len * s.seq_len;
  return (block + tokens * m.vocab_size) * kActivationBytes;
}

double WeightBytes(const ModelDims& m) { return static_cast<double>(m.num_params) * m.bytes_per_param; }

std::vector<int> OfferedRanks(const RunConfig& config) {
  std::vector<int> ranks = config.lora.client_ranks;
  if (ranks.empty()) ranks.push_back(config.lora.rank);
  std::sort(ranks.begin(), ranks.end(), std::greater<>());
  return ranks;
}

bool Supports(const DeviceProfile& device, Method method) {
  return device.methods.empty() || std::find(device.methods.begin(), device.methods.end(), method) != device.methods.end();
}

}  // namespace

WorkloadShape MakeWorkloadShape(const RunConfig& config, const ModelDims& model) {
  WorkloadShape s;
  s.model = model;
  s.batch_size = config.train.batch_size;
  s.seq_len = config.data.seq_len;
  s.local_steps = config.train.local_steps;
  s.zo_perturbations = config.zeroth_order.perturbations;
  s.zo_seed_pool = config.zeroth_order.seed_pool;
  s.partial_full_weights = config.partial.full_weights;
  s.optimizer_state = config.train.optimizer_state == "global";
  s.lora_targets_mask = 0;
  for (const std::string& target : config.lora.targets) {
    for (int i = 0; i < 7; ++i) {
      if (target == kProjections[i]) s.lora_targets_mask |= 1 << i;
    }
  }
  return s;
}

int64_t LoraParameterCount(const WorkloadShape& shape, int rank) {
  int64_t per_layer = 0;
  for (int i = 0; i < 7; ++i) {
    if (shape.lora_targets_mask & (1 << i)) {
      auto [in, out] = ProjectionShape(shape.model, i);
      per_layer += static_cast<int64_t>(rank) * (in + out);
    }
  }
  return per_layer * shape.model.num_layers;
}

int64_t BlockParameterCount(const ModelDims& m, int top_blocks) {
  int64_t attention = 2 * m.dim * m.dim + 2 * m.dim * KvDim(m);
  int64_t mlp = 3 * m.dim * m.hidden_dim;
  return (attention + mlp + 2 * m.dim) * top_blocks;
}

uint64_t EstimateMemoryBytes(const WorkloadShape& s, const MethodChoice& c) {
  const ModelDims& m = s.model;
  double tokens = static_cast<double>(s.batch_size) * s.seq_len;
  double weights = WeightBytes(m);
  double logits_and_grad = 2.0 * tokens * m.vocab_size * kActivationBytes;
  double bytes = 0;
  switch (c.method) {
    case Method::kZerothOrder:
    case Method::kAuto:
      bytes = weights + InferenceActivationBytes(s);
      break;
    case Method::kLora: {
      // Gradients must reach the lowest adapter: every block keeps activations.
      double trainable = static_cast<double>(LoraParameterCount(s, c.lora_rank)) * 4.0 * 4.0;  // value, grad, 2 moments
      bytes = weights + tokens * SavedActivationBytesPerToken(s) * m.num_layers + logits_and_grad + trainable;
      break;
    }
    case Method::kPartial: {
      double params = s.partial_full_weights
                          ? static_cast<double>(BlockParameterCount(m, c.top_blocks))
                          : static_cast<double>(LoraParameterCount(s, c.lora_rank)) * c.top_blocks /
                                std::max<int64_t>(1, m.num_layers);
      bytes = weights + tokens * SavedActivationBytesPerToken(s) * c.top_blocks + logits_and_grad +
              params * 4.0 * 4.0;
      break;
    }
  }
  return static_cast<uint64_t>(bytes);
}

double EstimateFlopsPerToken(const WorkloadShape& s, const MethodChoice& c) {
  const ModelDims& m = s.model;
  double forward = 2.0 * static_cast<double>(m.num_params) + 4.0 * m.num_layers * m.dim * static_cast<double>(s.seq_len);
  switch (c.method) {
    case Method::kZerothOrder:
    case Method::kAuto:
      return 2.0 * forward * s.zo_perturbations;
    case Method::kLora:
      return 2.0 * forward + 6.0 * static_cast<double>(LoraParameterCount(s, c.lora_rank));
    case Method::kPartial: {
      double fraction = m.num_layers > 0 ? static_cast<double>(c.top_blocks) / m.num_layers : 1.0;
      return forward * (1.0 + 2.0 * fraction);
    }
  }
  return forward;
}

namespace {
// Trained values plus, with carried optimizer state, their two moments and the step.
uint64_t WithMoments(const WorkloadShape& s, uint64_t bytes) { return s.optimizer_state ? 3 * bytes + 4 : bytes; }
}  // namespace

uint64_t EstimateUploadBytes(const WorkloadShape& s, const MethodChoice& c) {
  switch (c.method) {
    case Method::kZerothOrder:
    case Method::kAuto:
      return s.zo_seed_pool > 0 ? static_cast<uint64_t>(s.zo_seed_pool) * 4
                                : static_cast<uint64_t>(LoraParameterCount(s, c.lora_rank)) * 4;
    case Method::kLora:
      return WithMoments(s, static_cast<uint64_t>(LoraParameterCount(s, c.lora_rank)) * 4);
    case Method::kPartial:
      return WithMoments(s, s.partial_full_weights
                                ? static_cast<uint64_t>(BlockParameterCount(s.model, c.top_blocks)) * 4
                                : static_cast<uint64_t>(LoraParameterCount(s, c.lora_rank)) * 4 * c.top_blocks /
                                      std::max<int64_t>(1, s.model.num_layers));
  }
  return 0;
}

uint64_t EstimateDownloadBytes(const WorkloadShape& s, const RunConfig& config) {
  uint64_t bytes = static_cast<uint64_t>(LoraParameterCount(s, config.lora.rank)) * 4;
  if (config.partial.full_weights) bytes += static_cast<uint64_t>(BlockParameterCount(s.model, config.partial.top_blocks)) * 4;
  return WithMoments(s, bytes);
}

double EstimateRoundSeconds(const WorkloadShape& s, const DeviceProfile& device, const MethodChoice& c,
                            uint64_t download_bytes) {
  double tokens = static_cast<double>(s.local_steps) * s.batch_size * s.seq_len;
  double compute = device.flops_per_s > 0 ? tokens * EstimateFlopsPerToken(s, c) / device.flops_per_s : 0.0;
  double up = device.uplink_bytes_per_s > 0 ? EstimateUploadBytes(s, c) / device.uplink_bytes_per_s : 0.0;
  double down = device.downlink_bytes_per_s > 0 ? download_bytes / device.downlink_bytes_per_s : 0.0;
  return compute + up + down;
}

absl::StatusOr<MethodChoice> ChooseMethod(const DeviceProfile& device, const RunConfig& config,
                                          const WorkloadShape& shape) {
  const uint64_t download = EstimateDownloadBytes(shape, config);
  const double deadline = config.rounds.deadline_s;
  auto fits = [&](MethodChoice& c) {
    c.memory_bytes = EstimateMemoryBytes(shape, c);
    c.round_seconds = EstimateRoundSeconds(shape, device, c, download);
    return c.memory_bytes <= device.memory_bytes && c.round_seconds <= deadline;
  };
  const Method wanted = config.train.method;
  auto allowed = [&](Method m) { return (wanted == Method::kAuto || wanted == m) && Supports(device, m); };

  if (allowed(Method::kLora)) {
    for (int rank : OfferedRanks(config)) {
      MethodChoice c{.method = Method::kLora, .lora_rank = rank};
      if (fits(c)) return c;
    }
  }
  if (allowed(Method::kPartial)) {
    int max_k = static_cast<int>(shape.model.num_layers);
    for (int k = std::min(max_k, std::max(config.partial.top_blocks, 1)); k >= 1; --k) {
      MethodChoice c{.method = Method::kPartial, .lora_rank = config.lora.rank, .top_blocks = k};
      if (fits(c)) return c;
    }
  }
  MethodChoice zo{.method = Method::kZerothOrder, .lora_rank = config.lora.rank};
  if (allowed(Method::kZerothOrder) && fits(zo)) return zo;
  return absl::FailedPreconditionError(absl::StrCat(
      "device \"", device.name, "\" (", device.memory_bytes / kGiB, " GiB) fits no allowed method (",
      protocols::MethodName(wanted), "): zeroth-order alone needs ", zo.memory_bytes / kGiB, " GiB and ",
      zo.round_seconds, " s of the ", deadline, " s deadline"));
}

}  // namespace fedfm::coordinator
