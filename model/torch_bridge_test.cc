#include "model/torch_bridge.h"

#include <ATen/CPUGeneratorImpl.h>

#include <vector>

#include "gtest/gtest.h"

namespace fedfm::model {
namespace {

using protocols::DType;

torch::Tensor Random(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat));
}

TEST(ModelBridgeTest, ToTorchViewsTheHostBytes) {
  std::vector<float> values = {1.5f, -2.0f, 3.25f, 4.0f, -5.5f, 6.0f};
  protocols::Tensor host = protocols::Tensor::FromFloats({2, 3}, values);
  torch::Tensor t = ToTorch(host);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t.scalar_type(), torch::kFloat);
  EXPECT_EQ(t.data_ptr(), static_cast<const void*>(host.bytes().data()));  // zero-copy
  EXPECT_FLOAT_EQ(t[1][2].item<float>(), 6.0f);
  // The view keeps the storage alive after the host tensor goes away.
  torch::Tensor survivor;
  {
    protocols::Tensor temp = protocols::Tensor::FromFloats({3}, std::vector<float>{7, 8, 9});
    survivor = ToTorch(temp);
  }
  EXPECT_FLOAT_EQ(survivor[2].item<float>(), 9.0f);
}

TEST(ModelBridgeTest, RoundTripsEveryDType) {
  torch::Tensor source = Random({4, 5}, 1) * 10;
  for (torch::ScalarType st : {torch::kFloat, torch::kBFloat16, torch::kHalf, torch::kChar, torch::kByte,
                               torch::kShort, torch::kInt, torch::kLong, torch::kDouble, torch::kBool}) {
    torch::Tensor t = st == torch::kBool ? source.gt(0) : source.to(st);
    auto host = FromTorchCopy(t);
    ASSERT_TRUE(host.ok()) << host.status();
    EXPECT_EQ(ToTorchDType(host->dtype()), st);
    EXPECT_EQ(host->shape(), (protocols::Shape{4, 5}));
    torch::Tensor back = ToTorch(*host);
    EXPECT_TRUE(torch::equal(back, t)) << c10::toString(st);
  }
}

TEST(ModelBridgeTest, FromTorchSharesContiguousCpuStorageAndCopiesOtherwise) {
  torch::Tensor t = Random({3, 4}, 2);
  auto view = FromTorch(t);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(static_cast<const void*>(view->bytes().data()), t.data_ptr());
  t.mul_(2);  // aliasing, by contract
  EXPECT_FLOAT_EQ(view->floats()[5], t.view({-1})[5].item<float>());

  auto snapshot = FromTorchCopy(t);
  ASSERT_TRUE(snapshot.ok());
  EXPECT_NE(static_cast<const void*>(snapshot->bytes().data()), t.data_ptr());
  const float before = snapshot->floats()[0];
  t.add_(1);
  EXPECT_FLOAT_EQ(snapshot->floats()[0], before);

  // Non-contiguous: values in row-major order of the logical shape.
  torch::Tensor transposed = Random({2, 3}, 3).t();
  auto host = FromTorch(transposed);
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->shape(), (protocols::Shape{3, 2}));
  EXPECT_TRUE(torch::equal(ToTorch(*host), transposed));

  // Tensors that require grad convert through their data.
  torch::Tensor param = Random({2}, 4).requires_grad_();
  EXPECT_TRUE(FromTorch(param).ok());
}

TEST(ModelBridgeTest, DequantizesScaledInt8) {
  std::vector<std::byte> bytes = {std::byte{10}, std::byte{0xF6}};  // 10, -10
  auto host = protocols::Tensor::FromBytes(DType::kI8, {2}, bytes, /*scale=*/0.5f);
  ASSERT_TRUE(host.ok());
  torch::Tensor t = ToTorch(*host);
  EXPECT_EQ(t.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(t[0].item<float>(), 5.0f);
  EXPECT_FLOAT_EQ(t[1].item<float>(), -5.0f);
}

TEST(ModelBridgeTest, MapsKeepOrderAndRejectUnsupported) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {{"b", Random({2}, 5)}, {"a", Random({3, 1}, 6)}};
  auto map = FromTorchMap(tensors);
  ASSERT_TRUE(map.ok());
  EXPECT_EQ(map->names(), (std::vector<std::string>{"b", "a"}));
  auto back = ToTorchMap(*map);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_TRUE(torch::equal(back[1].second, tensors[1].second));

  tensors.emplace_back("c", torch::zeros({2}, torch::kComplexFloat));
  auto bad = FromTorchMap(tensors);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("\"c\""), std::string::npos);
}

}  // namespace
}  // namespace fedfm::model
