#include "protocols/update.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace fedfm::protocols {
namespace {

TensorMap Global() {
  TensorMap g;
  EXPECT_TRUE(g.Insert("a", Tensor::Zeros(DType::kF32, {4, 3})).ok());  // lora_A-like [r, in]
  EXPECT_TRUE(g.Insert("b", Tensor::Zeros(DType::kF32, {2, 4})).ok());  // lora_B-like [out, r]
  return g;
}

TEST(ForEachCoveredTest, VisitsLeadingRankSlices) {
  Tensor b = Tensor::Zeros(DType::kF32, {2, 4});
  std::vector<int64_t> seen;
  ForEachCovered(b, {"b", 1, 2}, [&](int64_t i) { seen.push_back(i); });
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 4, 5}));
  seen.clear();
  ForEachCovered(Tensor::Zeros(DType::kF32, {4, 3}), {"a", 0, 1}, [&](int64_t i) { seen.push_back(i); });
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2}));
}

TEST(ValidateDenseUpdateTest, AcceptsCoveredValuesAndRejectsTheRest) {
  TensorMap global = Global();
  Update u{.client_id = "c1", .num_examples = 3};
  Tensor b = Tensor::Zeros(DType::kF32, {2, 4});
  b.mutable_floats()[1] = 0.5f;  // inside rank 2 along dim 1
  ASSERT_TRUE(u.delta.Insert("b", b).ok());
  u.coverage.tensors.push_back({"b", 1, 2});
  EXPECT_TRUE(ValidateDenseUpdate(u, global).ok());

  Update outside = u;
  outside.delta.FindMutable("b")->mutable_floats()[3] = 1.0f;  // column 3 is not covered
  EXPECT_NE(ValidateDenseUpdate(outside, global).message().find("outside its declared coverage"),
            std::string_view::npos);

  Update nan = u;
  nan.delta.FindMutable("b")->mutable_floats()[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(ValidateDenseUpdate(nan, global).message().find("non-finite"), std::string_view::npos);

  Update shape = u;
  shape.delta.Set("b", Tensor::Zeros(DType::kF32, {4, 2}));
  EXPECT_NE(ValidateDenseUpdate(shape, global).message().find("has shape [4, 2], expected [2, 4]"),
            std::string_view::npos);

  Update unknown = u;
  unknown.coverage.tensors[0].name = "zz";
  EXPECT_FALSE(ValidateDenseUpdate(unknown, global).ok());

  Update empty = u;
  empty.num_examples = 0;
  EXPECT_FALSE(ValidateDenseUpdate(empty, global).ok());
}

TEST(ValidateDenseUpdateTest, FullCoverageFindsEachNonFiniteValue) {
  TensorMap global = Global();
  Update u{.client_id = "c1", .num_examples = 3};
  Tensor b = Tensor::Zeros(DType::kF32, {2, 4});
  for (int i = 0; i < 8; ++i) b.mutable_floats()[i] = 0.25f * static_cast<float>(i) - 1.0f;
  ASSERT_TRUE(u.delta.Insert("b", b).ok());
  u.coverage.tensors.push_back({"b", -1, 0});
  EXPECT_TRUE(ValidateDenseUpdate(u, global).ok());
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    for (int at : {0, 5, 7}) {
      Update v = u;
      v.delta.FindMutable("b")->mutable_floats()[at] = bad;
      const absl::Status s = ValidateDenseUpdate(v, global);
      EXPECT_NE(s.message().find(absl::StrCat("non-finite value at element ", at)), std::string_view::npos) << s;
    }
  }
  // The largest finite value and subnormals are fine.
  Update edge = u;
  edge.delta.FindMutable("b")->mutable_floats()[2] = std::numeric_limits<float>::max();
  edge.delta.FindMutable("b")->mutable_floats()[3] = std::numeric_limits<float>::denorm_min();
  EXPECT_TRUE(ValidateDenseUpdate(edge, global).ok());
}

}  // namespace
}  // namespace fedfm::protocols
