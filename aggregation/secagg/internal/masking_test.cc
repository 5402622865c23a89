#include "aggregation/secagg/internal/masking.h"

#include <gtest/gtest.h>

#include <vector>

namespace fedfm::secagg::internal {
namespace {

// The chunked, threaded mask application against the plain reference: expand
// every term in full and add or subtract it word by word.
TEST(SecAggMaskingTest, ChunkedAndThreadedEqualsPlainReference) {
  auto rng = NewSeededRandom(Key{7, 7, 7});
  std::vector<MaskTerm> terms;
  for (int j = 0; j < 5; ++j) {
    absl::StatusOr<Key> seed = rng->NewKey();
    ASSERT_TRUE(seed.ok());
    terms.push_back({*seed, j % 2 == 0 ? +1 : -1});
  }
  // Not a multiple of 4 nor of the 16384-word chunk: ranges end mid-block.
  const size_t n = 3 * 16384 + 4001;
  std::vector<uint32_t> start(n);
  for (size_t i = 0; i < n; ++i) start[i] = static_cast<uint32_t>(i * 2246822519u + 3);

  std::vector<uint32_t> reference = start;
  std::vector<uint32_t> stream(n);
  for (const MaskTerm& term : terms) {
    absl::StatusOr<MaskPrg> prg = MaskPrg::Create(term.seed);
    ASSERT_TRUE(prg.ok());
    ASSERT_TRUE(prg->Generate(stream).ok());
    for (size_t i = 0; i < n; ++i) reference[i] += term.sign > 0 ? stream[i] : -stream[i];
  }

  for (int threads : {1, 2, 3, 8}) {
    std::vector<uint32_t> acc = start;
    ASSERT_TRUE(ApplyMasks(terms, acc, threads).ok());
    EXPECT_EQ(acc, reference) << threads << " threads";
  }
  // Applying the negated terms restores the start.
  std::vector<MaskTerm> negated = terms;
  for (MaskTerm& t : negated) t.sign = -t.sign;
  ASSERT_TRUE(ApplyMasks(negated, reference, 2).ok());
  EXPECT_EQ(reference, start);
}

}  // namespace
}  // namespace fedfm::secagg::internal
