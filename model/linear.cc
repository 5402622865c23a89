#include "model/linear.h"

#include "model/internal/cpu_gemm.h"
#include "model/internal/tangent.h"

namespace fedfm::model {
namespace {

using internal::HasTangent;

bool IsCpuFloat(const torch::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == torch::kFloat; }

// x2 [N, in], w [out, in], both dense; returns [N, out] = x2 w^T. (LibTorch
// 1.13's Function::apply takes no undefined inputs, so the bias is added
// outside.)
class CpuLinearFunction : public torch::autograd::Function<CpuLinearFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x2,
                               const torch::Tensor& w) {
    const int64_t n = x2.size(0), in = x2.size(1), out = w.size(0);
    torch::Tensor y = torch::empty({n, out}, x2.options());
    internal::CpuSgemm(/*trans_a=*/false, /*trans_b=*/true, n, out, in, 1.0f, x2.data_ptr<float>(), in,
                       w.data_ptr<float>(), in, 0.0f, y.data_ptr<float>(), out);
    ctx->save_for_backward({x2, w});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &x2 = saved[0], &w = saved[1];
    const torch::Tensor dy = grads[0].contiguous();
    const int64_t n = x2.size(0), in = x2.size(1), out = w.size(0);
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {  // dx [N, in] = dy [N, out] w [out, in]
      dx = torch::empty({n, in}, dy.options());
      internal::CpuSgemm(false, false, n, in, out, 1.0f, dy.data_ptr<float>(), out, w.data_ptr<float>(), in, 0.0f,
                         dx.data_ptr<float>(), in);
    }
    if (ctx->needs_input_grad(1)) {  // dw [out, in] = dy^T x2
      dw = torch::empty({out, in}, dy.options());
      internal::CpuSgemm(true, false, out, in, n, 1.0f, dy.data_ptr<float>(), out, x2.data_ptr<float>(), in, 0.0f,
                         dw.data_ptr<float>(), in);
    }
    return {dx, dw};
  }
};

}  // namespace

bool CpuLinearSupports(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return internal::CpuSgemmAvailable() && x.dim() >= 1 && w.dim() == 2 && IsCpuFloat(x) && IsCpuFloat(w) &&
         (!b.defined() || (IsCpuFloat(b) && b.dim() == 1)) && x.numel() > 0 && w.numel() > 0 && !HasTangent(x) &&
         !HasTangent(w) && !HasTangent(b);
}

torch::Tensor CpuLinear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  TORCH_CHECK(CpuLinearSupports(x, w, b), "CpuLinear: needs non-empty float32 CPU tensors without tangents and ",
              "oneDNN's sgemm; got x ", x.sizes(), " ", x.scalar_type(), ", w ", w.sizes(), " ", w.scalar_type());
  const int64_t in = x.size(-1), out = w.size(0);
  TORCH_CHECK(w.size(1) == in && (!b.defined() || b.size(0) == out), "CpuLinear: x ", x.sizes(), ", w ", w.sizes(),
              b.defined() ? ", b " : "", b.defined() ? b.sizes() : at::IntArrayRef{}, " do not fit");
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  const torch::Tensor x2 = x.reshape({-1, in}).contiguous();
  torch::Tensor y = CpuLinearFunction::apply(x2, w.contiguous());
  if (b.defined()) y = y + b;
  return y.view(shape);
}

torch::Tensor Linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (CpuLinearSupports(x, w, b)) return CpuLinear(x, w, b);
  return torch::linear(x, w, b);
}

}  // namespace fedfm::model
