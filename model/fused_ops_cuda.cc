// Built when FEDFM_CUDA is ON: the fused kernels as autograd functions,
// launched on the inputs' device and current torch stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>

#include "model/internal/cuda_kernels.h"
#include "model/internal/fused_ops.h"
#include "model/internal/tangent.h"

namespace fedfm::model::internal {
namespace {

std::optional<cuda::ElementType> ElementTypeOf(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat:
      return cuda::ElementType::kFloat32;
    case torch::kBFloat16:
      return cuda::ElementType::kBFloat16;
    case torch::kHalf:
      return cuda::ElementType::kFloat16;
    default:
      return std::nullopt;
  }
}

void Check(int error, const char* what) {
  TORCH_CHECK(error == 0, what, ": CUDA launch failed: ", cuda::CudaErrorName(error));
}

void* StreamOf(const torch::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

class FusedCrossEntropy : public torch::autograd::Function<FusedCrossEntropy> {
 public:
  // logits [n, v] contiguous, labels [n] int64 contiguous, same device.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& labels, int64_t ignore_index) {
    const c10::cuda::CUDAGuard guard(logits.device());
    const int64_t n = logits.size(0), v = logits.size(1);
    auto f32 = logits.options().dtype(torch::kFloat);
    torch::Tensor lse = torch::empty({n}, f32);
    torch::Tensor row_loss = torch::empty({n}, f32);
    Check(cuda::LaunchCrossEntropyForward(*ElementTypeOf(logits), logits.data_ptr(), n, v,
                                          labels.data_ptr<int64_t>(), ignore_index, lse.data_ptr<float>(),
                                          row_loss.data_ptr<float>(), StreamOf(logits)),
          "fused cross-entropy forward");
    torch::Tensor count = labels.ne(ignore_index).sum().to(torch::kFloat);
    ctx->save_for_backward({logits, labels, lse, count});
    ctx->saved_data["ignore_index"] = ignore_index;
    return row_loss.sum() / count;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& logits = saved[0];
    const c10::cuda::CUDAGuard guard(logits.device());
    const torch::Tensor grad_loss = grads[0].to(torch::kFloat).contiguous();
    torch::Tensor grad_logits = torch::empty_like(logits, torch::MemoryFormat::Contiguous);
    Check(cuda::LaunchCrossEntropyBackward(*ElementTypeOf(logits), logits.data_ptr(), logits.size(0), logits.size(1),
                                           saved[1].data_ptr<int64_t>(), ctx->saved_data["ignore_index"].toInt(),
                                           saved[2].data_ptr<float>(), grad_loss.data_ptr<float>(),
                                           saved[3].data_ptr<float>(), grad_logits.data_ptr(), StreamOf(logits)),
          "fused cross-entropy backward");
    return {grad_logits, torch::Tensor(), torch::Tensor()};
  }
};

class FusedRmsNormFunction : public torch::autograd::Function<FusedRmsNormFunction> {
 public:
  // x2 [n, d] contiguous; w [d] contiguous, x2's dtype.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x2, const torch::Tensor& w,
                               double eps) {
    const c10::cuda::CUDAGuard guard(x2.device());
    torch::Tensor y = torch::empty_like(x2);
    torch::Tensor rstd = torch::empty({x2.size(0)}, x2.options().dtype(torch::kFloat));
    Check(cuda::LaunchRmsNormForward(*ElementTypeOf(x2), x2.data_ptr(), w.data_ptr(), x2.size(0), x2.size(1),
                                     static_cast<float>(eps), y.data_ptr(), rstd.data_ptr<float>(), StreamOf(x2)),
          "fused RMSNorm forward");
    ctx->save_for_backward({x2, w, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x2 = saved[0], &w = saved[1], &rstd = saved[2];
    const c10::cuda::CUDAGuard guard(x2.device());
    const torch::Tensor dy = grads[0].to(x2.scalar_type()).contiguous();
    torch::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      dx = torch::empty_like(x2);
      Check(cuda::LaunchRmsNormBackward(*ElementTypeOf(x2), dy.data_ptr(), x2.data_ptr(), w.data_ptr(),
                                        rstd.data_ptr<float>(), x2.size(0), x2.size(1), dx.data_ptr(),
                                        StreamOf(x2)),
            "fused RMSNorm backward");
    }
    if (ctx->needs_input_grad(1)) {
      // dw[j] = sum over rows of dy * T(x * r), as the ATen expression's product rule gives.
      const torch::Tensor normed = (x2.to(torch::kFloat) * rstd.unsqueeze(1)).to(x2.scalar_type());
      dw = (dy.to(torch::kFloat) * normed.to(torch::kFloat)).sum(0).to(w.scalar_type());
    }
    return {dx, dw, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor FusedRmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  if (!x.is_cuda() || !ElementTypeOf(x).has_value() || w.scalar_type() != x.scalar_type() || x.dim() < 1 ||
      w.dim() != 1 || w.size(0) != x.size(-1) || x.numel() == 0 || w.device() != x.device() || HasTangent(x) ||
      HasTangent(w)) {
    return {};
  }
  const int64_t d = x.size(-1);
  return FusedRmsNormFunction::apply(x.reshape({-1, d}).contiguous(), w.contiguous(), eps).view(x.sizes());
}

torch::Tensor FusedCrossEntropyMean(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index) {
  if (!logits.is_cuda() || !ElementTypeOf(logits).has_value() || logits.dim() != 2 || logits.size(1) == 0 ||
      HasTangent(logits)) {
    return {};
  }
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == logits.size(0), "FusedCrossEntropyMean: labels ",
              labels.sizes(), " do not match logits ", logits.sizes());
  return FusedCrossEntropy::apply(logits.contiguous(), labels.to(logits.device(), torch::kLong).contiguous(),
                                  ignore_index);
}

}  // namespace fedfm::model::internal
