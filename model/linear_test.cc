#include "model/linear.h"

#include <vector>

#include "gtest/gtest.h"
#include "model/internal/cpu_gemm.h"
#include "model/testing/tensors.h"

namespace fedfm::model {
namespace {

using test_util::ExpectClose;
using test_util::Random;

// Forward and every gradient of CpuLinear against torch::linear for a random
// upstream gradient; `w_grad` / `with_bias` choose what trains.
void ExpectMatchesTorch(std::vector<int64_t> x_shape, int64_t out, bool w_grad, bool with_bias, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "x " << at::IntArrayRef(x_shape) << " out " << out << " w_grad " << w_grad
                                  << " bias " << with_bias);
  const int64_t in = x_shape.back();
  const torch::Tensor x0 = Random(x_shape, seed), w0 = Random({out, in}, seed + 1);
  const torch::Tensor b0 = with_bias ? Random({out}, seed + 2) : torch::Tensor();
  std::vector<int64_t> y_shape = x_shape;
  y_shape.back() = out;
  const torch::Tensor upstream = Random(y_shape, seed + 3);
  auto run = [&](bool ours) {
    torch::Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(w_grad);
    torch::Tensor b = with_bias ? b0.clone().requires_grad_(w_grad) : torch::Tensor();
    torch::Tensor y = ours ? CpuLinear(x, w, b) : torch::linear(x, w, b);
    (y * upstream).sum().backward();
    return std::vector<torch::Tensor>{y.detach(), x.grad(), w.grad(), with_bias ? b.grad() : torch::Tensor()};
  };
  const std::vector<torch::Tensor> got = run(true), want = run(false);
  ExpectClose(got[0], want[0], 1e-5);
  ExpectClose(got[1], want[1], 1e-5);
  if (w_grad) {
    ExpectClose(got[2], want[2], 1e-5);
    if (with_bias) ExpectClose(got[3], want[3], 1e-5);
  } else {
    EXPECT_FALSE(got[2].defined());
  }
}

TEST(ModelLinearTest, CpuPathMatchesTorchLinearForwardAndGradients) {
  if (!internal::CpuSgemmAvailable()) GTEST_SKIP() << "this process has no oneDNN sgemm";
  ExpectMatchesTorch({4, 33, 64}, 172, /*w_grad=*/false, /*with_bias=*/false, 1);
  ExpectMatchesTorch({4, 33, 172}, 64, /*w_grad=*/true, /*with_bias=*/false, 5);
  ExpectMatchesTorch({7, 24}, 10, /*w_grad=*/true, /*with_bias=*/true, 9);
  ExpectMatchesTorch({2, 3, 5, 16}, 1, /*w_grad=*/false, /*with_bias=*/true, 13);
}

TEST(ModelLinearTest, CpuPathTakesStridedInputs) {
  if (!internal::CpuSgemmAvailable()) GTEST_SKIP() << "this process has no oneDNN sgemm";
  // A column slice (row stride 40) and a transposed weight.
  torch::Tensor x = Random({6, 40}, 21).narrow(1, 3, 16), w = Random({16, 12}, 22).t();
  ExpectClose(CpuLinear(x, w), torch::linear(x, w), 1e-5);
}

TEST(ModelLinearTest, LinearFallsBackWhereTheCpuPathDoesNot) {
  torch::Tensor x = Random({3, 8}, 31), w = Random({5, 8}, 32);
  EXPECT_FALSE(CpuLinearSupports(x.to(torch::kDouble), w.to(torch::kDouble)));
  ExpectClose(Linear(x.to(torch::kDouble), w.to(torch::kDouble)).to(torch::kFloat), torch::linear(x, w), 1e-5);
  EXPECT_FALSE(CpuLinearSupports(x.to(torch::kBFloat16), w.to(torch::kBFloat16)));
  EXPECT_FALSE(CpuLinearSupports(torch::empty({0, 8}), w));
  EXPECT_EQ(Linear(torch::empty({0, 8}), w).sizes(), (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(CpuLinearSupports(x, w), internal::CpuSgemmAvailable());
  EXPECT_THROW(CpuLinear(x, Random({5, 7}, 33)), c10::Error);
}

}  // namespace
}  // namespace fedfm::model
