#include "aggregation/robust.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"

namespace fedfm::aggregation {

double Median(std::span<float> values) {
  FEDFM_CHECK(!values.empty());
  const size_t n = values.size();
  const size_t mid = n / 2;
  std::nth_element(values.begin(), values.begin() + mid, values.end());
  const double upper = values[mid];
  if (n % 2 == 1) return upper;
  const double lower = *std::max_element(values.begin(), values.begin() + mid);
  return 0.5 * (lower + upper);
}

double TrimmedMean(std::span<float> values, double trim_fraction) {
  FEDFM_CHECK(!values.empty() && trim_fraction >= 0 && trim_fraction < 0.5);
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  const auto k = static_cast<size_t>(std::floor(trim_fraction * static_cast<double>(n)));
  double sum = 0.0;
  for (size_t i = k; i < n - k; ++i) sum += values[i];
  return sum / static_cast<double>(n - 2 * k);
}

absl::StatusOr<std::vector<int>> KrumSelect(std::span<const double> squared_distances, int n, int f, int m) {
  FEDFM_CHECK(n >= 0 && f >= 0 && squared_distances.size() == static_cast<size_t>(n) * n);
  if (n < 2 * f + 3) {
    return absl::FailedPreconditionError(
        absl::StrCat("Krum with f = ", f, " Byzantine clients needs at least 2f + 3 = ", 2 * f + 3,
                     " updates, got ", n));
  }
  if (m < 1 || m > n) {
    return absl::FailedPreconditionError(absl::StrCat("multi-Krum must select 1..", n, " updates, got m = ", m));
  }
  const int neighbors = n - f - 2;
  std::vector<double> scores(n);
  std::vector<double> row;
  for (int i = 0; i < n; ++i) {
    row.clear();
    for (int j = 0; j < n; ++j) {
      if (j != i) row.push_back(squared_distances[static_cast<size_t>(i) * n + j]);
    }
    std::sort(row.begin(), row.end());
    double s = 0.0;
    for (int k = 0; k < neighbors; ++k) s += row[k];
    scores[i] = s;
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] < scores[b]; });
  order.resize(m);
  return order;
}

}  // namespace fedfm::aggregation
