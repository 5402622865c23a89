#include "model/attention.h"

#include <torch/version.h>

#include <cmath>
#include <limits>

#include "model/internal/tangent.h"
#include "protocols/check.h"

// The single build-time switch between LibTorch versions for attention.
#if TORCH_VERSION_MAJOR >= 2
#define FEDFM_HAS_FUSED_ATTENTION 1
#else
#define FEDFM_HAS_FUSED_ATTENTION 0
#endif

namespace fedfm::model {
namespace {

// [B, KV, Tk, hd] -> [B, H, Tk, hd], head h reading kv head h / group.
torch::Tensor RepeatKv(const torch::Tensor& x, int64_t heads) {
  const int64_t kv_heads = x.size(1);
  if (kv_heads == heads) return x;
  const int64_t group = heads / kv_heads;
  return x.unsqueeze(2).expand({x.size(0), kv_heads, group, x.size(2), x.size(3)}).reshape(
      {x.size(0), heads, x.size(2), x.size(3)});
}

// True where query i must not see key j: j > Tk - Tq + i. [Tq, Tk] bool.
torch::Tensor FutureMask(int64_t tq, int64_t tk, const torch::Device& device) {
  return torch::ones({tq, tk}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(tk - tq + 1);
}

}  // namespace

void CheckAttentionShapes(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention expects 4-d q, k, v; got ", q.sizes(), " ",
              k.sizes(), " ", v.sizes());
  TORCH_CHECK(k.sizes() == v.sizes(), "attention: k ", k.sizes(), " and v ", v.sizes(), " differ");
  TORCH_CHECK(q.size(0) == k.size(0) && q.size(3) == k.size(3), "attention: q ", q.sizes(), " and k ", k.sizes(),
              " disagree on batch or head dim");
  TORCH_CHECK(q.size(1) % k.size(1) == 0, "attention: ", q.size(1), " query heads are not a multiple of ", k.size(1),
              " key/value heads");
  TORCH_CHECK(k.size(2) >= q.size(2), "attention: ", k.size(2), " keys for ", q.size(2), " queries");
}

torch::Tensor CausalAttentionReference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  CheckAttentionShapes(q, k, v);
  const int64_t b = q.size(0), heads = q.size(1), tq = q.size(2), hd = q.size(3);
  const int64_t kv_heads = k.size(1), tk = k.size(2), group = heads / kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  // The `group` query heads that share a key/value head become extra query
  // rows of one matrix product: [B*KV, G*Tq, hd] x [B*KV, hd, Tk]. No copy
  // of k and v per query head, and half (a G-th of) the small products.
  torch::Tensor qg = q.reshape({b * kv_heads, group * tq, hd});
  torch::Tensor kg = k.reshape({b * kv_heads, tk, hd});
  torch::Tensor vg = v.reshape({b * kv_heads, tk, hd});
  // Additive mask (0 or -inf) fused into the product with the scale:
  // scores = mask + scale * q k^T, [B*KV, G*Tq, Tk].
  torch::Tensor mask;
  if (tq > 1) {
    mask = torch::zeros({tq, tk}, torch::TensorOptions().dtype(q.scalar_type()).device(q.device()))
               .masked_fill_(FutureMask(tq, tk, q.device()), -std::numeric_limits<float>::infinity());
    if (group > 1) mask = mask.repeat({group, 1});
  } else {
    // One query decoding against a cache sees every key.
    mask = torch::zeros({1}, torch::TensorOptions().dtype(q.scalar_type()).device(q.device()));
  }
  torch::Tensor scores = torch::baddbmm(mask, qg, kg.transpose(1, 2), /*beta=*/1.0, /*alpha=*/scale);
  torch::Tensor probs = q.scalar_type() == torch::kFloat ? torch::softmax(scores, -1)
                                                           : torch::softmax(scores, -1, torch::kFloat).to(q.scalar_type());
  return torch::bmm(probs, vg).view({b, heads, tq, hd});
}

bool FusedAttentionAvailable() { return FEDFM_HAS_FUSED_ATTENTION != 0; }

torch::Tensor CausalAttentionFused(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if FEDFM_HAS_FUSED_ATTENTION
  CheckAttentionShapes(q, k, v);
  const int64_t heads = q.size(1), tq = q.size(2), tk = k.size(2);
  torch::Tensor kr = RepeatKv(k, heads);
  torch::Tensor vr = RepeatKv(v, heads);
  if (tq == tk) {
    return at::scaled_dot_product_attention(q, kr, vr, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true);
  }
  if (tq == 1) {
    return at::scaled_dot_product_attention(q, kr, vr, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/false);
  }
  // is_causal aligns the mask top-left; a cache needs it bottom-right. A bool
  // mask here is true where attention is allowed.
  torch::Tensor allowed = FutureMask(tq, tk, q.device()).logical_not();
  return at::scaled_dot_product_attention(q, kr, vr, allowed, /*dropout_p=*/0.0, /*is_causal=*/false);
#else
  (void)q;
  (void)k;
  (void)v;
  FEDFM_CHECK_MSG(false, "CausalAttentionFused: this LibTorch has no scaled_dot_product_attention");
#endif
}

torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  // The fused kernels have no forward-mode AD formula (LibTorch 2.11 throws
  // "Trying to use forward AD with _scaled_dot_product_flash_attention_for_cpu"),
  // so inputs carrying tangents (forward-gradient steps; level 0, the only
  // one LibTorch allows at a time) take the reference path.
  if (internal::HasTangent(q) || internal::HasTangent(k) || internal::HasTangent(v)) {
    return CausalAttentionReference(q, k, v);
  }
  if (CpuAttentionSupports(q, k, v)) return CausalAttentionCpu(q, k, v);
#if FEDFM_HAS_FUSED_ATTENTION
  return CausalAttentionFused(q, k, v);
#else
  return CausalAttentionReference(q, k, v);
#endif
}

}  // namespace fedfm::model
