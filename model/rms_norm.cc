#include "model/rms_norm.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "model/internal/tangent.h"

namespace fedfm::model {
namespace {

using internal::HasTangent;

constexpr int64_t kRowsPerTask = 64;

// x2 [N, D] dense, w [D] dense. Saves x2, w and r = 1 / rms per row [N].
class RmsNormCpuFunction : public torch::autograd::Function<RmsNormCpuFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x2,
                               const torch::Tensor& w, double eps) {
    const int64_t n = x2.size(0), d = x2.size(1);
    torch::Tensor y = torch::empty_like(x2), r = torch::empty({n}, x2.options());
    const float* xp = x2.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    float* rp = r.data_ptr<float>();
    at::parallel_for(0, n, kRowsPerTask, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float* xi = xp + i * d;
        float* yi = yp + i * d;
        float ss = 0;
        for (int64_t j = 0; j < d; ++j) ss += xi[j] * xi[j];
        const float ri = 1.0f / std::sqrt(ss / static_cast<float>(d) + static_cast<float>(eps));
        rp[i] = ri;
        for (int64_t j = 0; j < d; ++j) yi[j] = xi[j] * ri * wp[j];
      }
    });
    ctx->save_for_backward({x2, w, r});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &x2 = saved[0], &w = saved[1], &r = saved[2];
    const torch::Tensor dy = grads[0].contiguous();
    const int64_t n = x2.size(0), d = x2.size(1);
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      // g = dy w;  dx = r g - x r^3 (g . x) / D
      dx = torch::empty_like(x2);
      const float* xp = x2.data_ptr<float>();
      const float* wp = w.data_ptr<float>();
      const float* rp = r.data_ptr<float>();
      const float* gp = dy.data_ptr<float>();
      float* dxp = dx.data_ptr<float>();
      at::parallel_for(0, n, kRowsPerTask, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const float* xi = xp + i * d;
          const float* gi = gp + i * d;
          float* dxi = dxp + i * d;
          float dot = 0;
          for (int64_t j = 0; j < d; ++j) dot += gi[j] * wp[j] * xi[j];
          const float ri = rp[i];
          const float c = ri * ri * ri * dot / static_cast<float>(d);
          for (int64_t j = 0; j < d; ++j) dxi[j] = ri * gi[j] * wp[j] - c * xi[j];
        }
      });
    }
    if (ctx->needs_input_grad(1)) dw = (dy * x2 * r.unsqueeze(1)).sum(0);
    return {dx, dw, torch::Tensor()};
  }
};

}  // namespace

bool CpuRmsNormSupports(const torch::Tensor& x, const torch::Tensor& w) {
  return x.device().is_cpu() && w.device().is_cpu() && x.scalar_type() == torch::kFloat &&
         w.scalar_type() == torch::kFloat && x.dim() >= 1 && x.numel() > 0 && !HasTangent(x) && !HasTangent(w);
}

torch::Tensor RmsNormCpu(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  TORCH_CHECK(CpuRmsNormSupports(x, w), "RmsNormCpu: needs non-empty float32 CPU tensors without tangents; got x ",
              x.sizes(), " ", x.scalar_type(), ", w ", w.sizes(), " ", w.scalar_type());
  const int64_t d = x.size(-1);
  TORCH_CHECK(w.dim() == 1 && w.size(0) == d, "RmsNormCpu: weight ", w.sizes(), " does not fit x ", x.sizes());
  return RmsNormCpuFunction::apply(x.reshape({-1, d}).contiguous(), w.contiguous(), eps).view(x.sizes());
}

torch::Tensor RmsNormReference(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  if (x.scalar_type() == torch::kFloat) {
    torch::Tensor inv_rms = x.square().mean(-1, /*keepdim=*/true).add_(eps).rsqrt_();
    return x * inv_rms * w;
  }
  torch::Tensor xf = x.to(torch::kFloat);
  torch::Tensor inv_rms = xf.square().mean(-1, /*keepdim=*/true).add_(eps).rsqrt_();
  return (xf * inv_rms).to(x.scalar_type()) * w;
}

}  // namespace fedfm::model
