// Fused causal grouped-query attention for float32 CPU tensors: forward and
// backward written as loops over (batch, key/value head), never holding more
// than one row of scores at a time. See attention.h for the contract.
//
// Shapes: B = batch, H = query heads, KV = key/value heads, G = H / KV,
//         Tq = queries, Tk = keys, off = Tk - Tq, hd = head dim,
//         Tp = Tk rounded up to the vector width.
// Forward, per row i of query head h (key/value head g = h / G):
//   s_j = scale * q_i . k_j  (j <= off + i),   lse_i = log sum_j exp(s_j),
//   o_i = sum_j exp(s_j - lse_i) v_j.
// Backward recomputes p_j = exp(s_j - lse_i) from the saved lse:
//   D_i = dO_i . o_i,  ds_j = p_j (dO_i . v_j - D_i),
//   dq_i = scale sum_j ds_j k_j,  dk_j += scale ds_j q_i,  dv_j += p_j dO_i.
// One task owns one (batch, key/value head): its G query heads write disjoint
// rows of dq, and dk, dv of that head are summed inside the task, so tasks
// never share output.
#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "model/attention.h"

// The task bodies are compiled twice on x86-64 GCC/Clang, for AVX2+FMA and for
// the baseline, and picked at run time from the CPU's features; elsewhere once.
#if defined(__x86_64__) && defined(__GNUC__)
#define FEDFM_ATTENTION_X86 1
// Vectors pass between inlined helpers only, so the baseline build's
// different vector-argument ABI never crosses a call.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#else
#define FEDFM_ATTENTION_X86 0
#endif
// Helpers must be inlined into each variant to run with its ISA (GCC does not
// inline across differing targets on its own).
#if defined(__GNUC__)
#define FEDFM_ATTENTION_INLINE inline __attribute__((always_inline))
#else
#define FEDFM_ATTENTION_INLINE inline
#endif

namespace fedfm::model {
namespace {

constexpr int64_t kLanes = 8;
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));

FEDFM_ATTENTION_INLINE Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
FEDFM_ATTENTION_INLINE void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof(v)); }
FEDFM_ATTENTION_INLINE Vec Splat(float x) { return Vec{} + x; }
FEDFM_ATTENTION_INLINE float Sum(Vec v) {
  float s = 0;
  for (int64_t l = 0; l < kLanes; ++l) s += v[l];
  return s;
}
FEDFM_ATTENTION_INLINE float Max(Vec v) {
  float m = v[0];
  for (int64_t l = 1; l < kLanes; ++l) m = std::max(m, v[l]);
  return m;
}

// exp(x) for x <= 0 (softmax arguments) to ~1 ulp: x = n ln2 + r with
// |r| <= ln2 / 2, exp(r) by its degree-6 Taylor polynomial, 2^n through the
// exponent bits. Arguments below -87 give exp(-87) ~ 1.6e-38 (callers zero
// the lanes they mask).
FEDFM_ATTENTION_INLINE Vec Exp(Vec x) {
  const Vec lo = Splat(-87.0f);
  x = x < lo ? lo : x;
  const Vec round = Splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const Vec n = (x * 1.44269504088896341f + round) - round;
  const Vec r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
  Vec p = Splat(1.0f / 720);
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const IVec bits = (__builtin_convertvector(n, IVec) + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Raw views of the operands. Row strides are free; the head dim is dense.
struct Operand {
  float* data;
  int64_t s0, s1, s2;  // strides of dims 0, 1, 2 (elements); dim 3 has stride 1
  float* Row(int64_t b, int64_t h, int64_t i) const { return data + b * s0 + h * s1 + i * s2; }
};

Operand Of(const torch::Tensor& t) { return {t.data_ptr<float>(), t.stride(0), t.stride(1), t.stride(2)}; }

struct Problem {
  int64_t kv_heads, group, tq, tk, off, hd, tp;
  float scale;
};

// k or v of one (b, g) transposed into [hd, Tp], zero-padded.
FEDFM_ATTENTION_INLINE void PackTransposed(const Operand& x, int64_t b, int64_t g, const Problem& p, float* out) {
  std::fill(out, out + p.hd * p.tp, 0.0f);
  for (int64_t j = 0; j < p.tk; ++j) {
    const float* row = x.Row(b, g, j);
    for (int64_t d = 0; d < p.hd; ++d) out[d * p.tp + j] = row[d];
  }
}

// out[c] = sum_d coef[d] * panel[d, c] for vectors c < nv of a [hd, Tp]
// panel; four vectors at a time so that the sums over d run side by side
// instead of as one chain of dependent multiply-adds.
FEDFM_ATTENTION_INLINE void RowTimesPanel(const float* coef, const float* panel, const Problem& p, int64_t nv,
                                          float* out) {
  int64_t c = 0;
  for (; c + 4 <= nv; c += 4) {
    Vec a0{}, a1{}, a2{}, a3{};
    for (int64_t d = 0; d < p.hd; ++d) {
      const float* row = panel + d * p.tp + c * kLanes;
      const float x = coef[d];
      a0 += x * Load(row);
      a1 += x * Load(row + kLanes);
      a2 += x * Load(row + 2 * kLanes);
      a3 += x * Load(row + 3 * kLanes);
    }
    Store(out + c * kLanes, a0);
    Store(out + (c + 1) * kLanes, a1);
    Store(out + (c + 2) * kLanes, a2);
    Store(out + (c + 3) * kLanes, a3);
  }
  for (; c < nv; ++c) {
    Vec acc{};
    for (int64_t d = 0; d < p.hd; ++d) acc += coef[d] * Load(panel + d * p.tp + c * kLanes);
    Store(out + c * kLanes, acc);
  }
}

// sum_j a[j] b[j] over nv vectors, with four partial sums.
FEDFM_ATTENTION_INLINE float Dot(const float* a, const float* b, int64_t nv) {
  Vec a0{}, a1{}, a2{}, a3{};
  int64_t c = 0;
  for (; c + 4 <= nv; c += 4) {
    a0 += Load(a + c * kLanes) * Load(b + c * kLanes);
    a1 += Load(a + (c + 1) * kLanes) * Load(b + (c + 1) * kLanes);
    a2 += Load(a + (c + 2) * kLanes) * Load(b + (c + 2) * kLanes);
    a3 += Load(a + (c + 3) * kLanes) * Load(b + (c + 3) * kLanes);
  }
  for (; c < nv; ++c) a0 += Load(a + c * kLanes) * Load(b + c * kLanes);
  return Sum((a0 + a1) + (a2 + a3));
}

// scores[0, nv * kLanes) = scale * q . kt[:, j], lanes >= n set to -inf.
// `scaled_q` is scratch of hd floats.
FEDFM_ATTENTION_INLINE void Scores(const float* qrow, const float* kt, const Problem& p, int64_t n, int64_t nv,
                                   float* scaled_q, float* scores) {
  for (int64_t d = 0; d < p.hd; ++d) scaled_q[d] = qrow[d] * p.scale;
  RowTimesPanel(scaled_q, kt, p, nv, scores);
  for (int64_t j = n; j < nv * kLanes; ++j) scores[j] = -std::numeric_limits<float>::infinity();
}

FEDFM_ATTENTION_INLINE void ForwardBody(const Operand& q, const Operand& k, const Operand& v, const Operand& out, float* lse, int64_t b,
                 int64_t g, const Problem& p) {
  std::vector<float> buffer(2 * p.hd * p.tp + p.tp + p.hd);
  float* kt = buffer.data();
  float* vt = kt + p.hd * p.tp;
  float* s = vt + p.hd * p.tp;
  float* scaled_q = s + p.tp;
  PackTransposed(k, b, g, p, kt);
  PackTransposed(v, b, g, p, vt);
  for (int64_t hh = 0; hh < p.group; ++hh) {
    const int64_t h = g * p.group + hh;
    for (int64_t i = 0; i < p.tq; ++i) {
      const int64_t n = p.off + i + 1, nv = (n + kLanes - 1) / kLanes;
      Scores(q.Row(b, h, i), kt, p, n, nv, scaled_q, s);
      Vec mv = Load(s);
      for (int64_t c = 1; c < nv; ++c) {
        const Vec x = Load(s + c * kLanes);
        mv = x > mv ? x : mv;
      }
      const float m = Max(mv);
      Vec lv{};
      for (int64_t c = 0; c < nv; ++c) {
        const Vec e = Exp(Load(s + c * kLanes) - m);
        Store(s + c * kLanes, e);
      }
      for (int64_t j = n; j < nv * kLanes; ++j) s[j] = 0;
      for (int64_t c = 0; c < nv; ++c) lv += Load(s + c * kLanes);
      const float l = Sum(lv);
      const float inv = 1.0f / l;
      float* orow = out.Row(b, h, i);
      for (int64_t d = 0; d < p.hd; ++d) orow[d] = Dot(s, vt + d * p.tp, nv) * inv;
      lse[(b * p.kv_heads * p.group + h) * p.tq + i] = m + std::log(l);
    }
  }
}

FEDFM_ATTENTION_INLINE void BackwardBody(const Operand& q, const Operand& k, const Operand& v, const Operand& out, const float* lse,
                  const Operand& dout, const Operand& dq, const Operand& dk, const Operand& dv, int64_t b, int64_t g,
                  const Problem& p) {
  std::vector<float> buffer(4 * p.hd * p.tp + 2 * p.tp + p.hd);
  float* kt = buffer.data();
  float* vt = kt + p.hd * p.tp;
  float* dkt = vt + p.hd * p.tp;
  float* dvt = dkt + p.hd * p.tp;
  float* probs = dvt + p.hd * p.tp;
  float* ds = probs + p.tp;
  float* scaled_q = ds + p.tp;
  PackTransposed(k, b, g, p, kt);
  PackTransposed(v, b, g, p, vt);
  std::fill(dkt, dkt + 2 * p.hd * p.tp, 0.0f);
  for (int64_t hh = 0; hh < p.group; ++hh) {
    const int64_t h = g * p.group + hh;
    for (int64_t i = 0; i < p.tq; ++i) {
      const int64_t n = p.off + i + 1, nv = (n + kLanes - 1) / kLanes;
      const float* qrow = q.Row(b, h, i);
      const float* orow = out.Row(b, h, i);
      const float* dorow = dout.Row(b, h, i);
      float di = 0;
      for (int64_t d = 0; d < p.hd; ++d) di += dorow[d] * orow[d];
      const float row_lse = lse[(b * p.kv_heads * p.group + h) * p.tq + i];
      Scores(qrow, kt, p, n, nv, scaled_q, probs);
      for (int64_t c = 0; c < nv; ++c) Store(probs + c * kLanes, Exp(Load(probs + c * kLanes) - row_lse));
      for (int64_t j = n; j < nv * kLanes; ++j) probs[j] = 0;
      RowTimesPanel(dorow, vt, p, nv, ds);  // dO . v_j
      for (int64_t c = 0; c < nv; ++c) {
        Store(ds + c * kLanes, Load(probs + c * kLanes) * (Load(ds + c * kLanes) - di));
      }
      float* dqrow = dq.Row(b, h, i);
      for (int64_t d = 0; d < p.hd; ++d) {
        dqrow[d] = Dot(ds, kt + d * p.tp, nv) * p.scale;
        float* dkrow = dkt + d * p.tp;
        float* dvrow = dvt + d * p.tp;
        const float qd = scaled_q[d], dod = dorow[d];
        for (int64_t c = 0; c < nv; ++c) {
          Store(dkrow + c * kLanes, Load(dkrow + c * kLanes) + qd * Load(ds + c * kLanes));
          Store(dvrow + c * kLanes, Load(dvrow + c * kLanes) + dod * Load(probs + c * kLanes));
        }
      }
    }
  }
  for (int64_t j = 0; j < p.tk; ++j) {
    float* dkrow = dk.Row(b, g, j);
    float* dvrow = dv.Row(b, g, j);
    for (int64_t d = 0; d < p.hd; ++d) {
      dkrow[d] = dkt[d * p.tp + j];
      dvrow[d] = dvt[d * p.tp + j];
    }
  }
}

#if FEDFM_ATTENTION_X86
__attribute__((target("avx2,fma"))) void ForwardAvx2(const Operand& q, const Operand& k, const Operand& v,
                                                     const Operand& out, float* lse, int64_t b, int64_t g,
                                                     const Problem& p) {
  ForwardBody(q, k, v, out, lse, b, g, p);
}
__attribute__((target("avx2,fma"))) void BackwardAvx2(const Operand& q, const Operand& k, const Operand& v,
                                                      const Operand& out, const float* lse, const Operand& dout,
                                                      const Operand& dq, const Operand& dk, const Operand& dv,
                                                      int64_t b, int64_t g, const Problem& p) {
  BackwardBody(q, k, v, out, lse, dout, dq, dk, dv, b, g, p);
}
bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

// Flushes denormal results and operands to zero while a task runs, restoring
// the thread's mode after. Probabilities far below the row maximum times
// small output gradients land in the denormal range (< 1.2e-38), where x86
// arithmetic is tens of times slower; the flush changes results by less than
// that, and nothing outside the task sees the mode.
class FlushDenormals {
 public:
#if defined(__x86_64__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

void ForwardTask(const Operand& q, const Operand& k, const Operand& v, const Operand& out, float* lse, int64_t b,
                 int64_t g, const Problem& p) {
  FlushDenormals flush;
#if FEDFM_ATTENTION_X86
  if (HasAvx2()) return ForwardAvx2(q, k, v, out, lse, b, g, p);
#endif
  ForwardBody(q, k, v, out, lse, b, g, p);
}

void BackwardTask(const Operand& q, const Operand& k, const Operand& v, const Operand& out, const float* lse,
                  const Operand& dout, const Operand& dq, const Operand& dk, const Operand& dv, int64_t b, int64_t g,
                  const Problem& p) {
  FlushDenormals flush;
#if FEDFM_ATTENTION_X86
  if (HasAvx2()) return BackwardAvx2(q, k, v, out, lse, dout, dq, dk, dv, b, g, p);
#endif
  BackwardBody(q, k, v, out, lse, dout, dq, dk, dv, b, g, p);
}

Problem ProblemOf(const torch::Tensor& q, const torch::Tensor& k) {
  Problem p;
  p.kv_heads = k.size(1);
  p.group = q.size(1) / k.size(1);
  p.tq = q.size(2);
  p.tk = k.size(2);
  p.off = p.tk - p.tq;
  p.hd = q.size(3);
  p.tp = (p.tk + kLanes - 1) / kLanes * kLanes;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.hd)));
  return p;
}

// The head dim must be dense for Operand.
torch::Tensor DenseHeadDim(const torch::Tensor& x) { return x.stride(3) == 1 ? x : x.contiguous(); }

// [B, T, heads, hd] storage seen as [B, heads, T, hd]: the layout the
// transformer's next step (transpose + reshape to [B, T, heads * hd]) and the
// rotary embedding's backward read without a copy.
torch::Tensor EmptyHeadsSecond(const torch::Tensor& like) {
  return torch::empty({like.size(0), like.size(2), like.size(1), like.size(3)}, like.options()).transpose(1, 2);
}

class CausalAttentionCpuFunction : public torch::autograd::Function<CausalAttentionCpuFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q_in,
                               const torch::Tensor& k_in, const torch::Tensor& v_in) {
    const torch::Tensor q = DenseHeadDim(q_in), k = DenseHeadDim(k_in), v = DenseHeadDim(v_in);
    const Problem p = ProblemOf(q, k);
    const int64_t batch = q.size(0);
    torch::Tensor out = EmptyHeadsSecond(q);
    torch::Tensor lse = torch::empty({batch, q.size(1), p.tq}, q.options());
    const Operand qo = Of(q), ko = Of(k), vo = Of(v), oo = Of(out);
    float* lse_data = lse.data_ptr<float>();
    at::parallel_for(0, batch * p.kv_heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        ForwardTask(qo, ko, vo, oo, lse_data, task / p.kv_heads, task % p.kv_heads, p);
      }
    });
    ctx->save_for_backward({q, k, v, out, lse});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    const torch::Tensor dout = DenseHeadDim(grads[0].to(torch::kFloat));
    const Problem p = ProblemOf(q, k);
    const int64_t batch = q.size(0);
    torch::Tensor dq = EmptyHeadsSecond(q), dk = EmptyHeadsSecond(k), dv = EmptyHeadsSecond(v);
    const Operand qo = Of(q), ko = Of(k), vo = Of(v), oo = Of(out), doo = Of(dout);
    const Operand dqo = Of(dq), dko = Of(dk), dvo = Of(dv);
    const float* lse_data = lse.data_ptr<float>();
    at::parallel_for(0, batch * p.kv_heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        BackwardTask(qo, ko, vo, oo, lse_data, doo, dqo, dko, dvo, task / p.kv_heads, task % p.kv_heads, p);
      }
    });
    return {dq, dk, dv};
  }
};

}  // namespace

bool CpuAttentionSupports(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return q.device().is_cpu() && k.device().is_cpu() && v.device().is_cpu() && q.scalar_type() == torch::kFloat &&
         k.scalar_type() == torch::kFloat && v.scalar_type() == torch::kFloat;
}

torch::Tensor CausalAttentionCpu(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  CheckAttentionShapes(q, k, v);
  TORCH_CHECK(CpuAttentionSupports(q, k, v), "CausalAttentionCpu: needs float32 CPU tensors, got ",
              q.scalar_type(), " on ", q.device());
  return CausalAttentionCpuFunction::apply(q, k, v);
}

}  // namespace fedfm::model
