// ModelConfig: the shape of a Llama-family decoder (Llama 2/3, Qwen2, the
// llama2.c TinyStories models), and the names of its tensors. Torch-free, so
// that callers that only describe or inspect a model need not include LibTorch.
//
// Tensor names are Hugging Face's, for every checkpoint format:
//   model.embed_tokens.weight                          [V, D]
//   model.layers.{i}.input_layernorm.weight            [D]
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight   [H*hd, D] [KV*hd, D] [KV*hd, D] [D, H*hd]
//   model.layers.{i}.self_attn.{q,k,v}_proj.bias       (qkv_bias, Qwen2)
//   model.layers.{i}.post_attention_layernorm.weight   [D]
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight    [F, D] [F, D] [D, F]
//   model.norm.weight                                  [D]
//   lm_head.weight                                     [V, D] (untied heads only)
// D = dim, F = hidden_dim, H = n_heads, KV = n_kv_heads, hd = head_dim, V = vocab.
#ifndef FEDFM_MODEL_CONFIG_H_
#define FEDFM_MODEL_CONFIG_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace fedfm::model {

// How rotary embeddings pair the dimensions of a head.
enum class RopeStyle {
  // Hugging Face: dimension i rotates with i + hd/2 (the two halves of a
  // head). The internal convention of every loader.
  kHalves,
  // llama2.c / Meta's original code: dimensions 2i and 2i+1 rotate together.
  // Loaders permute llama2.c's wq/wk rows to kHalves; this style remains for
  // models built directly from unpermuted weights.
  kAdjacentPairs,
};

// Rotary frequency scaling (Hugging Face "rope_scaling").
enum class RopeScalingType { kNone, kLinear, kLlama3 };
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // kLlama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  // "LlamaForCausalLM" or "Qwen2ForCausalLM" (llama2.c checkpoints are Llama).
  std::string architecture = "LlamaForCausalLM";
  int64_t dim = 0;         // D, the residual width
  int64_t hidden_dim = 0;  // F, the SwiGLU width
  int64_t n_layers = 0;
  int64_t n_heads = 0;     // H, query heads
  int64_t n_kv_heads = 0;  // KV, key/value heads (grouped-query attention); divides H
  int64_t head_dim = 0;    // hd; 0 means dim / n_heads
  int64_t vocab_size = 0;
  int64_t max_seq_len = 0;  // positions with precomputed rotary tables
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool tied_head = true;   // the output head is the token embedding
  bool qkv_bias = false;   // biases on q/k/v projections (Qwen2)
  bool o_bias = false;     // bias on o_proj (Llama attention_bias = true)
  bool mlp_bias = false;   // biases on gate/up/down (Llama mlp_bias = true)
  RopeStyle rope_style = RopeStyle::kHalves;
  RopeScaling rope_scaling;

  int64_t HeadDim() const { return head_dim > 0 ? head_dim : (n_heads > 0 ? dim / n_heads : 0); }
  // InvalidArgument naming the first field that is out of range or
  // inconsistent (e.g. n_heads not divisible by n_kv_heads).
  absl::Status Validate() const;
  // Parameters of the model this config describes (a tied head counted once).
  int64_t NumParameters() const;
};

// The seven linear projections of a block, in the order of their HF names.
enum class Projection { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumProjections = 7;
inline constexpr std::array<Projection, kNumProjections> kAllProjections = {
    Projection::kQ, Projection::kK, Projection::kV, Projection::kO,
    Projection::kGate, Projection::kUp, Projection::kDown};

// "q_proj", "k_proj", ..., "down_proj" (PEFT's target_modules spelling).
const char* ProjectionName(Projection projection);
// Inverse of ProjectionName; false if `name` is none of the seven.
bool ProjectionFromName(const std::string& name, Projection* projection);
// "model.layers.{layer}.self_attn.q_proj" / "model.layers.{layer}.mlp.up_proj".
std::string ProjectionModulePath(int layer, Projection projection);
// {out_features, in_features} of a projection's weight under `config`.
std::array<int64_t, 2> ProjectionShape(const ModelConfig& config, Projection projection);
bool ProjectionHasBias(const ModelConfig& config, Projection projection);

// One tensor a model of some config holds: HF name and shape.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
// Every tensor of a model of `config`, in checkpoint order: the embedding;
// per block input_layernorm, q/k/v/o (weight, then bias where present),
// post_attention_layernorm, gate/up/down; model.norm; lm_head when untied.
std::vector<TensorSpec> TensorSpecs(const ModelConfig& config);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_CONFIG_H_
