// Shared seed pools (FedKSeed-style). Each round the coordinator hands every
// zeroth-order client the same K seeds; each perturbation of a client's steps
// uses one of them, and the client uploads only the K accumulated projected
// gradients (a kSeedScalars Update, a few hundred bytes). The coordinator
// rebuilds the dense aggregate by regenerating each z_k once. Torch-free.
//
// What is exact (docs/zeroth_order_noise.md, "Seed pools"): z_k does not
// depend on theta, so a client's total change is the linear combination
// -eta * sum_k s_k z_k of its per-slot sums s_k, however its steps were
// ordered and whatever parameters they saw; replaying the weighted mean of
// the clients' s_k is exactly (in real arithmetic) FedAvg of the clients'
// dense deltas. What differs: float rounding (client in place, server once),
// the client's perturb/restore drift, and the float32 wire format of s_k.
#ifndef FEDFM_ZEROTH_ORDER_SEED_POOL_H_
#define FEDFM_ZEROTH_ORDER_SEED_POOL_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocols/tensor.h"
#include "protocols/update.h"
#include "zeroth_order/noise_stream.h"

namespace fedfm::zeroth_order {

// Immutable list of K seeds. Cheap to copy for small K.
class SeedPool {
 public:
  // The pool of round `round` of the run: seed_k = DeriveSeed(run_seed,
  // round, k, kPurposeSeedPool), k < size. Deterministic: every party that
  // knows (run seed, round, K) derives the same pool. size must be >= 1.
  static SeedPool ForRound(uint64_t run_seed, uint64_t round, int size);

  explicit SeedPool(std::vector<uint64_t> seeds);

  int size() const { return static_cast<int>(seeds_.size()); }
  uint64_t seed(int slot) const;
  const std::vector<uint64_t>& seeds() const { return seeds_; }

  // The slot used by perturbation `perturbation` of a step with seed
  // `step_seed`: x = lo32(DeriveSeed(step_seed, perturbation, 0,
  // kPurposePoolPick)), slot = (x * K) >> 32 (bias below K / 2^32).
  int Pick(uint64_t step_seed, uint32_t perturbation) const;

 private:
  std::vector<uint64_t> seeds_;
};

// Client side: the per-slot sums s_k of a round. A perturbation with
// projected gradient g in a step of P perturbations adds g / P to its slot,
// so that the client's parameter change is -eta * sum_k s_k z_k.
class SeedScalarAccumulator {
 public:
  explicit SeedScalarAccumulator(int pool_size);

  // FEDFM_CHECKs 0 <= slot < pool_size.
  void Add(int slot, double value);
  const std::vector<double>& sums() const { return sums_; }

  // A kSeedScalars Update carrying the sums (as float32, the wire format).
  protocols::Update ToUpdate(std::string client_id, uint64_t num_examples) const;

 private:
  std::vector<double> sums_;
};

// Server side: a_k = sum_c n_c s_{c,k} / sum_c n_c over the kSeedScalars
// updates, weighted by num_examples and summed in client_id order (arrival
// order never matters). InvalidArgument naming the client for a wrong kind,
// a length other than pool_size, non-finite scalars, zero examples, or a
// duplicate client id; FailedPrecondition if `updates` is empty.
absl::StatusOr<std::vector<double>> AverageSeedScalars(std::span<const protocols::Update> updates,
                                                       int pool_size);

// Dense change of a seed-pool round: delta_i = -learning_rate * sum_k
// coefficients[k] * z(pool.seed(k), i, kind) for every tensor i of `global`
// (i = insertion position), as F32 tensors of the same names and shapes.
// Each z_k is regenerated once per element; the sum over k is accumulated in
// double in slot order and rounded to float once. InvalidArgument if
// coefficients.size() != pool.size() or a tensor is not F32/BF16.
// num_threads splits elements; the result does not depend on it.
absl::StatusOr<protocols::TensorMap> SeedPoolDelta(const protocols::TensorMap& global,
                                                   const SeedPool& pool,
                                                   std::span<const double> coefficients,
                                                   double learning_rate, NoiseKind kind,
                                                   int num_threads = 1);

// The same change applied in place: theta = fl(theta + delta) (bf16: rounded
// once to bf16 per element, not once per slot).
absl::Status ApplySeedPoolUpdate(protocols::TensorMap& state, const SeedPool& pool,
                                 std::span<const double> coefficients, double learning_rate,
                                 NoiseKind kind, int num_threads = 1);

}  // namespace fedfm::zeroth_order

#endif  // FEDFM_ZEROTH_ORDER_SEED_POOL_H_
