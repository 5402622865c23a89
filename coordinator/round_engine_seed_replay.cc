#include "coordinator/round_engine_seed_replay.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "protocols/optimizer_state.h"
#include "protocols/status_macros.h"
#include "zeroth_order/seed_pool.h"

namespace fedfm::coordinator {

SeedPoolReplay::SeedPoolReplay(protocols::TensorMap like, double learning_rate, zeroth_order::NoiseKind kind,
                               int num_threads)
    : like_(protocols::WithoutOptimizerState(like)), learning_rate_(learning_rate), kind_(kind), num_threads_(num_threads) {}

absl::StatusOr<std::unique_ptr<SeedPoolReplay>> SeedPoolReplay::FromConfig(const protocols::RunConfig& config,
                                                                           protocols::TensorMap like,
                                                                           int num_threads) {
  zeroth_order::NoiseKind kind;
  if (config.zeroth_order.noise == "gaussian") {
    kind = zeroth_order::NoiseKind::kGaussian;
  } else if (config.zeroth_order.noise == "rademacher") {
    kind = zeroth_order::NoiseKind::kRademacher;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("config key \"zeroth_order.noise\": must be \"gaussian\" or ",
                                                   "\"rademacher\", got \"", config.zeroth_order.noise, "\""));
  }
  return std::make_unique<SeedPoolReplay>(std::move(like), config.zeroth_order.learning_rate, kind, num_threads);
}

absl::Status SeedPoolReplay::Apply(const std::vector<uint64_t>& seeds, const std::vector<float>& weights,
                                   protocols::TensorMap& delta) {
  if (seeds.size() != weights.size() || seeds.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("seed replay: ", seeds.size(), " seeds and ", weights.size(), " weights"));
  }
  const std::vector<double> coefficients(weights.begin(), weights.end());
  FEDFM_ASSIGN_OR_RETURN(protocols::TensorMap d,
                         zeroth_order::SeedPoolDelta(like_, zeroth_order::SeedPool(seeds), coefficients,
                                                     learning_rate_, kind_, num_threads_));
  for (auto& [name, t] : d) delta.Set(name, std::move(t));
  return absl::OkStatus();
}

}  // namespace fedfm::coordinator
