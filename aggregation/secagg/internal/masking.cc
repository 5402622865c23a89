#include "aggregation/secagg/internal/masking.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace fedfm::secagg::internal {
namespace {

// Words per chunk: 64 KiB of `acc` stays in L2 while every term passes over it.
constexpr size_t kChunkWords = 16384;

absl::Status ApplyRange(std::span<const MaskTerm> terms, std::span<uint32_t> acc,
                        uint64_t word_offset) {
  std::vector<MaskPrg> prgs;
  prgs.reserve(terms.size());
  for (const MaskTerm& term : terms) {
    absl::StatusOr<MaskPrg> prg = MaskPrg::Create(term.seed, word_offset);
    if (!prg.ok()) return prg.status();
    prgs.push_back(*std::move(prg));
  }
  for (size_t begin = 0; begin < acc.size(); begin += kChunkWords) {
    std::span<uint32_t> chunk = acc.subspan(begin, std::min(kChunkWords, acc.size() - begin));
    for (size_t j = 0; j < terms.size(); ++j) {
      absl::Status status = prgs[j].Accumulate(chunk, terms[j].sign);
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyMasks(std::span<const MaskTerm> terms, std::span<uint32_t> acc,
                        int num_threads) {
  if (terms.empty() || acc.empty()) return absl::OkStatus();
  const size_t chunks = (acc.size() + kChunkWords - 1) / kChunkWords;
  const size_t threads = std::clamp<size_t>(num_threads, 1, chunks);
  if (threads == 1) return ApplyRange(terms, acc, 0);

  // Contiguous ranges of whole chunks (multiples of 4 words, as PRG seeking needs).
  std::vector<absl::Status> statuses(threads);
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (size_t t = 0; t < threads; ++t) {
    const size_t begin = std::min(acc.size(), chunks * t / threads * kChunkWords);
    const size_t end = std::min(acc.size(), chunks * (t + 1) / threads * kChunkWords);
    workers.emplace_back([&, t, begin, end] {
      statuses[t] = ApplyRange(terms, acc.subspan(begin, end - begin), begin);
    });
  }
  for (std::thread& w : workers) w.join();
  for (const absl::Status& s : statuses) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace fedfm::secagg::internal
