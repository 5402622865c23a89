#include "model/rms_norm.h"

#include <vector>

#include "gtest/gtest.h"
#include "model/testing/tensors.h"

namespace fedfm::model {
namespace {

using test_util::ExpectClose;
using test_util::Random;

// Forward and gradients of RmsNormCpu against the reference for a random
// upstream gradient; x arrives as a strided view when `strided`.
void ExpectMatchesReference(std::vector<int64_t> shape, bool w_grad, bool strided, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "x " << at::IntArrayRef(shape) << " w_grad " << w_grad << " strided " << strided);
  const int64_t d = shape.back();
  std::vector<int64_t> wide = shape;
  wide.back() = 2 * d;
  const torch::Tensor x0 = strided ? Random(wide, seed).narrow(-1, 1, d) : 3 * Random(shape, seed);
  const torch::Tensor w0 = 1 + 0.1 * Random({d}, seed + 1), upstream = Random(shape, seed + 2);
  auto run = [&](bool ours) {
    torch::Tensor x = x0.detach().clone().requires_grad_(), w = w0.clone().requires_grad_(w_grad);
    torch::Tensor y = ours ? RmsNormCpu(x, w, 1e-5) : RmsNormReference(x, w, 1e-5);
    (y * upstream).sum().backward();
    return std::vector<torch::Tensor>{y.detach(), x.grad(), w.grad()};
  };
  const std::vector<torch::Tensor> got = run(true), want = run(false);
  ExpectClose(got[0], want[0], 1e-5);
  ExpectClose(got[1], want[1], 1e-5);
  if (w_grad) {
    ExpectClose(got[2], want[2], 1e-5);
  } else {
    EXPECT_FALSE(got[2].defined());
  }
}

TEST(ModelRmsNormTest, CpuKernelMatchesReferenceForwardAndGradients) {
  ExpectMatchesReference({16, 33, 64}, /*w_grad=*/false, /*strided=*/false, 1);
  ExpectMatchesReference({3, 130, 24}, /*w_grad=*/true, /*strided=*/false, 5);
  ExpectMatchesReference({200, 7}, /*w_grad=*/true, /*strided=*/true, 9);
  ExpectMatchesReference({5}, /*w_grad=*/false, /*strided=*/false, 13);
}

TEST(ModelRmsNormTest, SupportsOnlyFloatOnCpu) {
  const torch::Tensor x = Random({4, 8}, 21), w = Random({8}, 22);
  EXPECT_TRUE(CpuRmsNormSupports(x, w));
  EXPECT_FALSE(CpuRmsNormSupports(x.to(torch::kBFloat16), w.to(torch::kBFloat16)));
  EXPECT_FALSE(CpuRmsNormSupports(x.to(torch::kDouble), w.to(torch::kDouble)));
  EXPECT_THROW(RmsNormCpu(x.to(torch::kDouble), w.to(torch::kDouble), 1e-5), c10::Error);
  EXPECT_THROW(RmsNormCpu(x, Random({7}, 23), 1e-5), c10::Error);
}

}  // namespace
}  // namespace fedfm::model
