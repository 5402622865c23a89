// Byzantine-robust combination rules for plaintext rounds (the building
// blocks of the robust aggregators of aggregation/aggregator.h):
//   - coordinate-wise median (Yin et al. 2018),
//   - coordinate-wise trimmed mean, trimming floor(β·n) values on each side
//     (Yin et al. 2018),
//   - Krum / multi-Krum (Blanchard et al. 2017): score each update by the sum of
//     squared distances to its n - f - 2 nearest others; keep the m best.
// They ignore num_examples on purpose: a Byzantine client may lie about it.
// All need every update at once (O(clients × model) in the aggregator).
#ifndef FEDFM_AGGREGATION_ROBUST_H_
#define FEDFM_AGGREGATION_ROBUST_H_

#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace fedfm::aggregation {

// Median of `values` (reordered in place; non-empty): the middle value, or the
// mean of the two middle values (in double) for an even count.
double Median(std::span<float> values);

// Mean of `values` (reordered in place; non-empty) after dropping
// floor(trim_fraction · n) smallest and as many largest; trim_fraction in
// [0, 0.5). Summed in sorted order, in double.
double TrimmedMean(std::span<float> values, double trim_fraction);

// Indices of the `m` updates with the best Krum scores, best first (ties: the
// smaller index). `squared_distances` is the symmetric n×n matrix of squared
// L2 distances, row-major. FailedPrecondition unless n >= 2f + 3 (Krum's
// requirement n > 2f + 2) and 1 <= m <= n.
absl::StatusOr<std::vector<int>> KrumSelect(std::span<const double> squared_distances, int n, int f, int m);

}  // namespace fedfm::aggregation

#endif  // FEDFM_AGGREGATION_ROBUST_H_
