// Helpers of model/'s tests: seeded random tensors and a tolerance check
// relative to the expected values' scale. Header-only, for tests.
#ifndef FEDFM_MODEL_TESTING_TENSORS_H_
#define FEDFM_MODEL_TESTING_TENSORS_H_

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace fedfm::model::test_util {

// Standard normal float32 values on the CPU from `seed` (no global RNG).
inline torch::Tensor Random(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat));
}

// max |got - want| < rtol * max(1, max |want|), with `want` not all zero
// (a comparison against zeros would prove nothing).
inline void ExpectClose(const torch::Tensor& got, const torch::Tensor& want, double rtol) {
  ASSERT_TRUE(got.defined());
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_GT(want.abs().max().item<double>(), 0.0);
  const double scale = std::max(1.0, want.abs().max().item<double>());
  EXPECT_LT((got - want).abs().max().item<double>(), rtol * scale);
}

}  // namespace fedfm::model::test_util

#endif  // FEDFM_MODEL_TESTING_TENSORS_H_
