// Update: what one client sends back from one round, in either of the two
// forms every trainer produces. Lives at the bottom layer because the client
// (trainers), the aggregation algorithms, the coordinator and the wire all
// speak it.
#ifndef FEDFM_PROTOCOLS_UPDATE_H_
#define FEDFM_PROTOCOLS_UPDATE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "protocols/tensor.h"

namespace fedfm::protocols {

// The public part of the global trainable state one tensor of an update
// touches. For LoRA tensors of a client with rank r_i < r_max, only the
// leading `rank` slices along `rank_dim` are covered (lora_A: [r, in] -> dim 0;
// lora_B: [out, r] -> dim 1). rank_dim = -1 covers the whole tensor.
struct TensorCoverage {
  std::string name;
  int rank_dim = -1;
  int64_t rank = 0;

  bool operator==(const TensorCoverage&) const = default;
};

// Coverage is public: the server may normalise each coordinate by the total
// weight of the clients that covered it without seeing any client's values.
struct Coverage {
  std::vector<TensorCoverage> tensors;

  // Coverage of every tensor of `state`, whole.
  static Coverage Full(const TensorMap& state);
  const TensorCoverage* Find(const std::string& name) const;
  bool operator==(const Coverage&) const = default;
};

enum class UpdateKind {
  kDense,        // `delta`: new minus old values over `coverage`
  kSeedScalars,  // `seed_scalars`: K accumulated projected gradients for the round's seed pool
};

struct Update {
  std::string client_id;
  uint64_t num_examples = 0;
  UpdateKind kind = UpdateKind::kDense;
  // kDense: exactly the covered tensors, each at its full global shape, with
  // zeros outside the covered rank slices.
  TensorMap delta;
  Coverage coverage;
  // kSeedScalars: one value per seed of the round's pool (fixed public length K).
  std::vector<float> seed_scalars;
  // Train metrics ("train_loss", "eval_loss", "steps", ...), peak memory.
  std::map<std::string, double> metrics;
  uint64_t peak_memory_bytes = 0;
};

// InvalidArgument naming the tensor if `update` disagrees with `global`
// (unknown tensor, wrong shape or dtype, coverage out of range, values
// outside the covered slices, non-finite values) or carries no examples.
absl::Status ValidateDenseUpdate(const Update& update, const TensorMap& global);

// Calls fn(offset) for every flat element index of `t` (row-major) inside
// the coverage `c`, in increasing order.
template <typename Fn>
void ForEachCovered(const Tensor& t, const TensorCoverage& c, Fn&& fn);

// ---------------------------------------------------------------------------

template <typename Fn>
void ForEachCovered(const Tensor& t, const TensorCoverage& c, Fn&& fn) {
  const Shape& shape = t.shape();
  if (c.rank_dim < 0) {
    for (int64_t i = 0; i < t.numel(); ++i) fn(i);
    return;
  }
  // View the tensor as [outer, dim, inner]; covered: dim index < rank.
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < c.rank_dim; ++d) outer *= shape[d];
  for (size_t d = c.rank_dim + 1; d < shape.size(); ++d) inner *= shape[d];
  const int64_t dim = shape[c.rank_dim];
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t r = 0; r < c.rank; ++r) {
      int64_t base = (o * dim + r) * inner;
      for (int64_t i = 0; i < inner; ++i) fn(base + i);
    }
  }
}

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_UPDATE_H_
