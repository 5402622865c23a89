// Built when FEDFM_CUDA is ON: the fused cross-entropy kernels as an autograd
// function, launched on the logits' device and current torch stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>

#include "model/internal/cross_entropy_kernels.h"
#include "model/internal/fused_loss.h"

namespace fedfm::model::internal {
namespace {

std::optional<cuda::LogitType> LogitTypeOf(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat:
      return cuda::LogitType::kFloat32;
    case torch::kBFloat16:
      return cuda::LogitType::kBFloat16;
    case torch::kHalf:
      return cuda::LogitType::kFloat16;
    default:
      return std::nullopt;
  }
}

void Check(int error, const char* what) {
  TORCH_CHECK(error == 0, "fused cross-entropy ", what, ": CUDA launch failed: ",
              cuda::CrossEntropyErrorName(error));
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
    Check(cuda::LaunchCrossEntropyForward(*LogitTypeOf(logits), logits.data_ptr(), n, v,
                                          labels.data_ptr<int64_t>(), ignore_index, lse.data_ptr<float>(),
                                          row_loss.data_ptr<float>(), StreamOf(logits)),
          "forward");
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
    Check(cuda::LaunchCrossEntropyBackward(*LogitTypeOf(logits), logits.data_ptr(), logits.size(0), logits.size(1),
                                           saved[1].data_ptr<int64_t>(), ctx->saved_data["ignore_index"].toInt(),
                                           saved[2].data_ptr<float>(), grad_loss.data_ptr<float>(),
                                           saved[3].data_ptr<float>(), grad_logits.data_ptr(), StreamOf(logits)),
          "backward");
    return {grad_logits, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor FusedCrossEntropyMean(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index) {
  if (!logits.is_cuda() || !LogitTypeOf(logits).has_value() || logits.dim() != 2 || logits.size(1) == 0 ||
      logits._fw_grad(/*level=*/0).defined()) {
    return {};
  }
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == logits.size(0), "FusedCrossEntropyMean: labels ",
              labels.sizes(), " do not match logits ", logits.sizes());
  return FusedCrossEntropy::apply(logits.contiguous(), labels.to(logits.device(), torch::kLong).contiguous(),
                                  ignore_index);
}

}  // namespace fedfm::model::internal
