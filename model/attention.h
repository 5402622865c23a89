// Causal grouped-query attention. The one place that chooses, at build time
// from the linked LibTorch's TORCH_VERSION_MAJOR, between LibTorch's fused
// at::scaled_dot_product_attention (2.x) and a plain reference (1.13); float32
// on the CPU takes our own fused kernels on every version.
//
// Shapes: B = batch, H = query heads, KV = key/value heads (H % KV == 0),
//         Tq = new queries, Tk = keys (Tk >= Tq), hd = head dim.
//   q: [B, H, Tq, hd]   k, v: [B, KV, Tk, hd]   ->   [B, H, Tq, hd]
// Query head h reads key/value head h / (H / KV) (Hugging Face's repeat_kv).
// Query i sits at absolute position Tk - Tq + i and attends to keys
// 0 .. Tk - Tq + i (so Tq < Tk is decoding with a KV cache). Scale 1/sqrt(hd).
// Softmax is computed in float32 for reduced-precision inputs. Differentiable;
// thread-safe (no state).
#ifndef FEDFM_MODEL_ATTENTION_H_
#define FEDFM_MODEL_ATTENTION_H_

#include <torch/torch.h>

namespace fedfm::model {

// The path Forward uses: CausalAttentionCpu for float32 CPU inputs, else the
// fused SDPA where the linked LibTorch has it, else the reference. Inputs
// carrying forward-mode AD tangents, which the fused kernels lack, always
// take the reference.
torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// Plain matmul / mask / softmax / matmul.
torch::Tensor CausalAttentionReference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// Throws c10::Error naming the shapes unless q [B, H, Tq, hd], k and v
// [B, Hkv, Tk, hd] fit causal attention (H a multiple of Hkv, Tk >= Tq).
void CheckAttentionShapes(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// True when CausalAttentionCpu takes these inputs: float32, all on the CPU.
bool CpuAttentionSupports(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
// Fused CPU kernels (attention_cpu.cc), forward and backward, parallel over
// (batch, key/value head): no [B, H, Tq, Tk] scores or probabilities are
// stored; backward recomputes them from a saved log-sum-exp per query row.
// Results equal CausalAttentionReference's up to float rounding. Reverse-mode
// autograd only (no forward-mode tangents, no double backward). The output is
// a [B, H, Tq, hd] view of [B, Tq, H, hd] storage. Throws c10::Error unless
// CpuAttentionSupports(q, k, v).
torch::Tensor CausalAttentionCpu(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// True when this build links a LibTorch with at::scaled_dot_product_attention.
bool FusedAttentionAvailable();
// The fused path; FEDFM_CHECK-fails when !FusedAttentionAvailable().
torch::Tensor CausalAttentionFused(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_ATTENTION_H_
