// Server optimizers: how the coordinator turns a round's pseudo-gradient into
// the next global state (Reddi et al. 2021, "Adaptive Federated Optimization",
// Algorithm 2). The pseudo-gradient Δ is the (coverage-aware, weighted) mean of
// the clients' deltas, new minus old, so the server moves *along* it:
//
//   fedavg      x += η Δ
//   fedavgm     m  = μ m + Δ;                 x += η m          (Hsu et al. 2019)
//   fedadagrad  m  = β1 m + (1-β1) Δ;  v += Δ²;                       x += η m / (√v + τ)
//   fedadam     m  = β1 m + (1-β1) Δ;  v  = β2 v + (1-β2) Δ²;         x += η m / (√v + τ)
//   fedyogi     m  = β1 m + (1-β1) Δ;  v -= (1-β2) Δ² sign(v - Δ²);   x += η m / (√v + τ)
//
// with η = server_lr, μ = momentum, per coordinate. As in the paper there is no
// bias correction; m starts at 0 and v at τ² (the paper asks v_{-1} >= τ²).
// Coordinates that no client covered this round arrive with Δ = 0 and are
// stepped like any other (their momentum keeps acting), which is what the
// algorithm prescribes for a zero pseudo-gradient.
//
// Arithmetic is double per coordinate; x, m and v are stored as float32 and
// the order of operations is fixed, so the same inputs always give the same
// bits, and a saved State() resumes exactly.
//
// State is created lazily per tensor on the first Step() that sees it, so
// tensors may join the global state across rounds (progressive partial-layer
// training). Not thread-safe.
#ifndef FEDFM_AGGREGATION_SERVER_OPTIMIZER_H_
#define FEDFM_AGGREGATION_SERVER_OPTIMIZER_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocols/config/options.h"
#include "protocols/tensor.h"

namespace fedfm::aggregation {

class ServerOptimizer {
 public:
  virtual ~ServerOptimizer() = default;

  // "fedavg" | "fedavgm" | "fedadam" | "fedyogi" | "fedadagrad".
  virtual const char* name() const = 0;

  // Returns the next global state: `global` moved by `pseudo_gradient`, and
  // advances the optimizer state. `pseudo_gradient` must hold exactly the
  // tensors of `global` (any order), as F32 of the same shapes; `global` may
  // be F32, BF16, F16 or F64 and keeps its dtypes. InvalidArgument naming the
  // tensor otherwise (or if stored state disagrees with the global's shape);
  // the optimizer state is then left untouched.
  virtual absl::StatusOr<protocols::TensorMap> Step(const protocols::TensorMap& global,
                                                    const protocols::TensorMap& pseudo_gradient) = 0;

  // The state to persist with the model version so that a restarted
  // coordinator resumes bit-identically: "step" (I64 [1], steps taken) and,
  // per tensor X, "m/X" and/or "v/X" (F32, X's shape) as the algorithm needs.
  virtual protocols::TensorMap State() const = 0;

  // Replaces the state with one produced by State() of the same algorithm.
  // InvalidArgument naming the key if a key does not belong to this
  // algorithm, or a tensor has the wrong dtype; shapes are checked against
  // the global state at the next Step().
  virtual absl::Status LoadState(const protocols::TensorMap& state) = 0;

  // Steps taken (restored by LoadState).
  virtual int64_t steps() const = 0;
};

// InvalidArgument naming the key for an unknown algorithm or a value out of
// range (server_lr > 0; momentum, beta1, beta2 in [0, 1]; tau > 0).
absl::StatusOr<std::unique_ptr<ServerOptimizer>> MakeServerOptimizer(const protocols::AggregationOptions& options);

}  // namespace fedfm::aggregation

#endif  // FEDFM_AGGREGATION_SERVER_OPTIMIZER_H_
