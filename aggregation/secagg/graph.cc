#include "aggregation/secagg/graph.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "protocols/check.h"

namespace fedfm::secagg {
namespace {

// Uniform draws below a bound from a keyed AES-CTR stream, buffered.
class UniformDraws {
 public:
  explicit UniformDraws(std::unique_ptr<RandomSource> stream) : stream_(std::move(stream)) {}

  absl::StatusOr<uint64_t> Below(uint64_t bound) {
    FEDFM_CHECK(bound > 0);
    // Reject the top partial copy of [0, bound) to stay unbiased.
    const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                           std::numeric_limits<uint64_t>::max() % bound;
    while (true) {
      absl::StatusOr<uint64_t> w = Next();
      if (!w.ok()) return w.status();
      if (*w < limit) return *w % bound;
    }
  }

 private:
  absl::StatusOr<uint64_t> Next() {
    if (pos_ == buffer_.size()) {
      absl::Status status = stream_->Fill(buffer_);
      if (!status.ok()) return status;
      pos_ = 0;
    }
    uint64_t v = 0;
    for (int b = 0; b < 8; ++b) v |= uint64_t{buffer_[pos_ + b]} << (8 * b);
    pos_ += 8;
    return v;
  }

  std::unique_ptr<RandomSource> stream_;
  std::array<uint8_t, 4096> buffer_{};
  size_t pos_ = buffer_.size();
};

}  // namespace

int DefaultNumNeighbors(int num_clients) {
  if (num_clients < 2) return 0;
  int k = static_cast<int>(std::ceil(3.0 * std::log2(static_cast<double>(num_clients)) - 1e-9));
  if (k % 2 != 0) ++k;
  return std::min(k, num_clients - 1);
}

absl::StatusOr<int> ThresholdFromFraction(double fraction, int num_neighbors) {
  if (!(fraction > 0.0 && fraction <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg threshold must be a fraction of k in (0, 1], got ", fraction));
  }
  if (num_neighbors < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg threshold needs k >= 1 neighbours, got ", num_neighbors));
  }
  // A small tolerance so that 0.5 * 20 stays 10 whatever the rounding.
  int t = static_cast<int>(std::ceil(fraction * num_neighbors - 1e-9));
  return std::clamp(t, 1, num_neighbors);
}

absl::StatusOr<CommunicationGraph> CommunicationGraph::Create(int num_clients, int num_neighbors,
                                                              const Key& seed) {
  const int n = num_clients;
  const int k = num_neighbors;
  if (n < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg graph needs at least 2 clients, got ", n));
  }
  if (k < 1 || k > n - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg graph: k = ", k, " neighbours must be in 1..", n - 1, " for n = ", n,
                     " clients"));
  }
  if (k % 2 == 1 && n % 2 == 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "secagg graph: no ", k, "-regular graph on ", n, " clients (k and n both odd); use k = ",
        k - 1, " or ", k + 1));
  }

  static constexpr char kSalt[] = "fedfm-secagg-v1/graph";
  absl::StatusOr<Key> stream_key =
      HkdfSha256Key(seed, ByteSpan(reinterpret_cast<const uint8_t*>(kSalt), sizeof(kSalt) - 1), {});
  if (!stream_key.ok()) return stream_key.status();
  UniformDraws draws(NewSeededRandom(*stream_key));

  // ring[i] = the client at ring position i.
  std::vector<uint32_t> ring(n);
  for (int i = 0; i < n; ++i) ring[i] = static_cast<uint32_t>(i);
  for (int i = n - 1; i > 0; --i) {
    absl::StatusOr<uint64_t> j = draws.Below(static_cast<uint64_t>(i) + 1);
    if (!j.ok()) return j.status();
    std::swap(ring[i], ring[*j]);
  }

  std::vector<uint32_t> adjacency(static_cast<size_t>(n) * k);
  for (int i = 0; i < n; ++i) {
    uint32_t* row = adjacency.data() + static_cast<size_t>(ring[i]) * k;
    int m = 0;
    for (int d = 1; d <= k / 2; ++d) {
      row[m++] = ring[(i + d) % n];
      row[m++] = ring[(i - d + n) % n];
    }
    if (k % 2 == 1) row[m++] = ring[(i + n / 2) % n];
    FEDFM_CHECK(m == k);
    std::sort(row, row + k);
  }
  return CommunicationGraph(n, k, std::move(adjacency));
}

std::span<const uint32_t> CommunicationGraph::Neighbors(uint32_t client) const {
  FEDFM_CHECK(client < static_cast<uint32_t>(num_clients_));
  return std::span<const uint32_t>(adjacency_.data() + static_cast<size_t>(client) * degree_,
                                   degree_);
}

bool CommunicationGraph::AreNeighbors(uint32_t a, uint32_t b) const {
  if (a >= static_cast<uint32_t>(num_clients_) || b >= static_cast<uint32_t>(num_clients_)) {
    return false;
  }
  std::span<const uint32_t> row = Neighbors(a);
  return std::binary_search(row.begin(), row.end(), b);
}

}  // namespace fedfm::secagg
