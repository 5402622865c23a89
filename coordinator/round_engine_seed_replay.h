// SeedPoolReplay: the round engine's aggregation::SeedReplay, over the
// zeroth-order module's torch-free seed-pool replay
// (zeroth_order::SeedPoolDelta). It lives here because aggregation/ and
// zeroth_order/ share a layer and never include each other.
//
// Apply(seeds, weights, delta) writes, for every tensor i of the state it was
// built for, delta_i = -learning_rate * sum_k weights[k] * z(seeds[k], i):
// the dense change that the clients' weighted-mean seed scalars stand for,
// with z regenerated bit-exactly as the clients' ZerothOrderTrainer drew it
// (tensor i = the tensor's position in the global TensorMap).
#ifndef FEDFM_COORDINATOR_ROUND_ENGINE_SEED_REPLAY_H_
#define FEDFM_COORDINATOR_ROUND_ENGINE_SEED_REPLAY_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/aggregator.h"
#include "protocols/config/options.h"
#include "protocols/tensor.h"
#include "zeroth_order/noise_stream.h"

namespace fedfm::coordinator {

// Thread-compatible (one round's aggregator calls it).
class SeedPoolReplay final : public aggregation::SeedReplay {
 public:
  // `like`: tensors with the names, order, shapes and dtypes (F32 or BF16) of
  // the global trainable state; only those are read. Optimizer-state tensors
  // (protocols/optimizer_state.h) are left out: zeroth order never perturbs them.
  SeedPoolReplay(protocols::TensorMap like, double learning_rate, zeroth_order::NoiseKind kind,
                 int num_threads = 1);

  // From the run config: zeroth_order.learning_rate and zeroth_order.noise
  // ("gaussian" | "rademacher"; InvalidArgument naming the key otherwise).
  static absl::StatusOr<std::unique_ptr<SeedPoolReplay>> FromConfig(const protocols::RunConfig& config,
                                                                    protocols::TensorMap like, int num_threads = 1);

  absl::Status Apply(const std::vector<uint64_t>& seeds, const std::vector<float>& weights,
                     protocols::TensorMap& delta) override;

 private:
  protocols::TensorMap like_;
  double learning_rate_;
  zeroth_order::NoiseKind kind_;
  int num_threads_;
};

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_ROUND_ENGINE_SEED_REPLAY_H_
