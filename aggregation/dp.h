// Client-level differential privacy for federated rounds (DP-FedAvg,
// McMahan et al. 2018): every client's whole update is clipped to L2 norm C,
// and Gaussian noise N(0, σ²C²) is added to the *sum* of the clipped updates,
// either
//   - central:     by the server, after summing (see MakeAggregator's
//                  RoundContext::dp; the server then sees clipped updates), or
//   - distributed: by each of n clients, N(0, σ²C²/n) on its own clipped update
//                  before secure aggregation, so that the unmasked sum carries
//                  N(0, σ²C²) and the server never sees a noiseless value
//                  (AddDistributedNoise below).
// Under DP every client weighs the same (weight 1, not num_examples): a weight
// would multiply one client's sensitivity. σ = dp.noise_multiplier, C =
// dp.clip_norm. Privacy is accounted per round by the RDP accountant
// (aggregation/rdp_accountant.h) with sampling rate q = clients_per_round /
// population.
//
// Randomness: noise comes from GaussianStream, a counter-based generator with
// an explicit seed (no global RNG); the same seed gives the same draws on every
// run. Caveat for deployments: this is a reproducible research generator, not
// a cryptographic one, and floating-point Gaussian sampling has known
// side channels (Mironov 2012). The seed of central noise must stay secret
// from clients, and of distributed noise from the server.
#ifndef FEDFM_AGGREGATION_DP_H_
#define FEDFM_AGGREGATION_DP_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocols/config/options.h"
#include "protocols/update.h"

namespace fedfm::aggregation {

// Standard normal draws addressed by index: At(i) is a pure function of
// (seed, i), so coordinates can be noised in any order or in parallel with
// identical results. Box-Muller over two 53-bit uniforms from a SplitMix64
// hash of (seed, i).
class GaussianStream {
 public:
  explicit GaussianStream(uint64_t seed) : seed_(seed) {}
  double At(uint64_t index) const;

 private:
  uint64_t seed_;
};

// L2 norm of an update: over every value of a dense update's delta tensors
// (zeros outside the coverage add nothing) or over the seed scalars.
// Accumulated in double in the update's own tensor and element order.
double UpdateL2Norm(const protocols::Update& update);

// Scales `update` in place so that its L2 norm is at most `clip_norm` (> 0):
// factor min(1, clip_norm / norm), applied in double and rounded to float.
// Returns the norm before clipping.
double ClipUpdate(protocols::Update& update, double clip_norm);

// Distributed DP, client side, before secure aggregation: clips `update` to
// dp.clip_norm and adds N(0, σ²C²/num_clients) to every covered coordinate
// (every seed scalar for a seed-scalar update), drawn from GaussianStream(seed)
// indexed by the coordinate's position in the update (tensors in the update's
// order, covered elements row-major). `seed` must differ per client and round
// and stay secret from the server, e.g. f(client secret, round).
// `num_clients` is the n among which the noise is split: pass the smallest
// number of clients expected to survive into the sum for every coordinate
// (the SecAgg threshold, and for heterogeneous coverage the smallest coverage
// class), since each missing client removes 1/n of the variance.
// Returns the norm before clipping. InvalidArgument for bad options
// (clip_norm <= 0, noise_multiplier < 0, num_clients < 1) or a delta tensor
// without coverage.
absl::StatusOr<double> ClipAndAddDistributedNoise(protocols::Update& update, const protocols::DpOptions& dp,
                                                  int num_clients, uint64_t seed);

}  // namespace fedfm::aggregation

#endif  // FEDFM_AGGREGATION_DP_H_
