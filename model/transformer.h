// The Llama-family decoder (Llama 2/3, Qwen2, llama2.c models) as plain
// LibTorch functions over a frozen, shared set of base weights.
//
// Sharing. A Model holds the frozen base tensors (requires_grad = false) and
// nothing mutable: one instance, loaded once per process, serves any number
// of clients from any number of threads. Everything a client trains lives
// outside the Model and reaches Forward through ForwardOptions:
//   - a ProjectionHook called on any of the seven projections of any block
//     (LoRA: y = base(x) + scale * (dropout(x) A^T) B^T);
//   - full replacement weights for chosen blocks (partial-layer training of
//     the top k blocks: CloneBlock() makes a trainable copy);
//   - first_trainable_block: blocks below it run under torch::NoGradGuard, so
//     no activations are kept for them;
//   - a classification head over pooled final hidden states.
// Forward is const and thread-safe: concurrent calls with different options
// share the base weights without copying them.
//
// Shapes: B = batch, T = tokens, D = dim, V = vocab, C = classes.
// Errors: Forward and the loss helpers throw c10::Error (TORCH_CHECK) on bad
// inputs (wrong rank, token ids out of range, too many positions); catch it at
// the trainer / command boundary.
#ifndef FEDFM_MODEL_TRANSFORMER_H_
#define FEDFM_MODEL_TRANSFORMER_H_

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"

namespace fedfm::model {

// Name -> tensor, in a meaningful order (checkpoint order for loaders).
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Labels equal to this are ignored by the losses (PyTorch's convention; the
// same value as dataset.h's kIgnoreIndex for example targets).
inline constexpr int64_t kLossIgnoreIndex = -100;

// Where and in which precision the base weights live.
struct ModelOptions {
  torch::ScalarType dtype = torch::kFloat;  // kFloat or kBFloat16
  torch::Device device = torch::kCPU;
};

// The weights of one decoder block. In the base model every tensor is frozen
// and `weight[p]` of q/k/v (gate/up) are row-slices of `qkv_weight`
// (`gate_up_weight`), which Forward uses to run one matmul instead of three
// (two). Overrides built by CloneBlock() hold only the separate tensors.
struct BlockWeights {
  torch::Tensor attn_norm;  // [D]   input_layernorm
  torch::Tensor ffn_norm;   // [D]   post_attention_layernorm
  std::array<torch::Tensor, kNumProjections> weight;  // indexed by Projection, [out, in]
  std::array<torch::Tensor, kNumProjections> bias;    // [out], undefined when absent
  // Optional fused forms: rows q|k|v and gate|up (biases likewise, when present).
  torch::Tensor qkv_weight, qkv_bias;
  torch::Tensor gate_up_weight, gate_up_bias;
};

// Per-call hook on the linear projections: how adapters (LoRA and kin) enter
// the frozen model. For each block and projection with Covers() true, Forward
// computes the base output y = x W^T (+ b) and replaces it with
// Apply(layer, projection, x, y). Forward calls the hook only from its own
// thread; a hook object serves one Forward at a time unless its Apply is
// itself thread-safe (a hook that draws dropout masks is not).
class ProjectionHook {
 public:
  virtual ~ProjectionHook() = default;
  // Whether Apply is called for (layer, projection).
  virtual bool Covers(int layer, Projection projection) const = 0;
  // input: [B, T, in] in the model's dtype; base_output: [B, T, out].
  // Returns the projection's output, shape [B, T, out] (e.g. base_output + delta).
  virtual torch::Tensor Apply(int layer, Projection projection, const torch::Tensor& input,
                              const torch::Tensor& base_output) const = 0;
};

enum class Pooling {
  kLastToken,  // the hidden state of each row's last real token
  kMean,       // the mean over each row's real tokens
};

// A sequence-classification head on the final (normed) hidden states.
struct ClassificationHead {
  torch::Tensor weight;  // [C, D]
  torch::Tensor bias;    // [C], or undefined
  Pooling pooling = Pooling::kLastToken;
};

// Keys and values of earlier positions, for incremental decoding. Made by
// Model::NewKvCache; inference only (Forward refuses it when grad mode is on).
// Not shareable between concurrent calls.
struct KvCache {
  std::vector<torch::Tensor> k, v;  // per layer [B, KV, capacity, hd]
  int64_t length = 0;               // positions filled
  int64_t capacity() const { return k.empty() ? 0 : k.front().size(2); }
};

struct ForwardOptions {
  const ProjectionHook* hook = nullptr;
  // layer -> replacement weights (kept alive by the caller for the call).
  std::map<int, const BlockWeights*> block_overrides;
  // Blocks [0, first_trainable_block) and the embedding run under
  // NoGradGuard (hooks and overrides there too: nothing below trains).
  // 0: everything under the caller's grad mode.
  int first_trainable_block = 0;
  bool compute_logits = true;   // the LM head (skip it for classification)
  bool return_hidden = false;   // ForwardResult::hidden
  const ClassificationHead* classification_head = nullptr;
  // [B, T], nonzero = real token, right padding only. Used for pooling; the
  // causal mask already keeps padding at the end from reaching real tokens.
  // Undefined: every token is real.
  torch::Tensor attention_mask;
  // Continue from cached positions (their count is the start position).
  KvCache* kv_cache = nullptr;
};

struct ForwardResult {
  torch::Tensor logits;        // [B, T, V] in the model dtype (compute_logits)
  torch::Tensor hidden;        // [B, T, D] after the final norm (return_hidden)
  torch::Tensor class_logits;  // [B, C] (classification_head)
};

class Model {
 public:
  // Builds a model from HF-named tensors (config.h lists them). Converts to
  // `options` (dtype, device), freezes, fuses q|k|v and gate|up.
  // InvalidArgument naming the tensor: a missing or unexpected name, or a
  // shape that disagrees with `config` (both shapes in the message).
  static absl::StatusOr<std::shared_ptr<const Model>> Create(const ModelConfig& config, NamedTensors weights,
                                                             const ModelOptions& options = {});
  // Random weights (normal, std 0.02; norms 1 + N(0, 0.1)) of `config`'s
  // shapes, reproducible from `seed`. For tests and benchmarks at real sizes.
  static absl::StatusOr<std::shared_ptr<const Model>> RandomInit(const ModelConfig& config, uint64_t seed,
                                                                 const ModelOptions& options = {});

  // tokens: [B, T] integer ids (any integer dtype, any device).
  ForwardResult Forward(const torch::Tensor& tokens, const ForwardOptions& options = {}) const;

  const ModelConfig& config() const { return config_; }
  torch::ScalarType dtype() const { return options_.dtype; }
  torch::Device device() const { return options_.device; }

  const BlockWeights& block(int layer) const { return blocks_.at(layer); }
  const torch::Tensor& embed_tokens() const { return embed_; }  // [V, D]
  const torch::Tensor& final_norm() const { return final_norm_; }  // [D]
  const torch::Tensor& lm_head() const { return lm_head_; }  // [V, D]; embed_tokens() when tied

  // A copy of block `layer`'s weights (separate tensors, no fused forms),
  // leaves with requires_grad = `requires_grad`, for ForwardOptions overrides.
  BlockWeights CloneBlock(int layer, bool requires_grad) const;

  // Every base tensor under its HF name (views, not copies), in checkpoint
  // order; lm_head.weight only when untied.
  NamedTensors NamedParameters() const;
  int64_t NumParameters() const;

  // An empty cache for `batch` rows and up to `capacity` positions (at most
  // max_seq_len).
  KvCache NewKvCache(int64_t batch, int64_t capacity) const;

 private:
  Model(const ModelConfig& config, const ModelOptions& options) : config_(config), options_(options) {}
  torch::Tensor Block(int layer, const BlockWeights& w, const torch::Tensor& x, int64_t start_pos,
                      const ForwardOptions& options) const;
  torch::Tensor Project(int layer, Projection p, const BlockWeights& w, const torch::Tensor& x,
                        const ProjectionHook* hook) const;
  torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& weight) const;
  torch::Tensor Rope(const torch::Tensor& x, int64_t start_pos) const;

  ModelConfig config_;
  ModelOptions options_;
  torch::Tensor embed_, final_norm_, lm_head_;
  std::vector<BlockWeights> blocks_;
  // [max_seq_len, hd] in the model dtype: cos, and sin with the rotation's
  // sign folded in (-sin on the half / element that takes the partner's negation).
  torch::Tensor rope_cos_, rope_sin_;
};

// Mean cross-entropy (nats, float32) of logits [B, T, V] against labels
// [B, T] (target for each position; kLossIgnoreIndex skipped). NaN when every
// label is ignored. CUDA logits (fedfm built with FEDFM_CUDA) take fused
// kernels that read them in their own dtype and keep no float32 copy for
// backward; elsewhere it is torch's cross_entropy over float32 logits.
torch::Tensor CausalLmLoss(const torch::Tensor& logits, const torch::Tensor& labels);

// labels[b, t] = tokens[b, t + 1] where loss_mask[b, t + 1] is nonzero, else
// kLossIgnoreIndex; the last column is kLossIgnoreIndex. loss_mask may be undefined
// (every target counts). [B, T] int64 on tokens' device.
torch::Tensor NextTokenLabels(const torch::Tensor& tokens, const torch::Tensor& loss_mask = {});

// Mean next-token loss of a batch: CausalLmLoss(logits, NextTokenLabels(tokens, loss_mask)).
torch::Tensor NextTokenLoss(const torch::Tensor& logits, const torch::Tensor& tokens,
                            const torch::Tensor& loss_mask = {});

// hidden [B, T, D], attention_mask [B, T] (right padding; undefined = all
// real) -> [B, D].
torch::Tensor PoolHidden(const torch::Tensor& hidden, const torch::Tensor& attention_mask, Pooling pooling);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_TRANSFORMER_H_
