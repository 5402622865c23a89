// Client optimizer state carried in the global state
// (train.optimizer_state = "global").
//
// With it, the global state holds, after the model's trainable tensors,
// AdamW's moments of every one of them and the number of steps they have
// seen, under torch.optim.AdamW's state names:
//   optimizer.exp_avg.{name}     m, the shape of tensor {name}
//   optimizer.exp_avg_sq.{name}  v, the shape of tensor {name}
//   optimizer.step               [1], the steps behind m and v (bias correction)
// A backprop client starts AdamW from the moments of the slices it trains
// and returns their change with its delta (over the same slices), and
// local_steps for optimizer.step. FedAvg at server_lr 1 then makes each
// moment the examples-weighted mean of its clients' moments, as it does for
// the adapters, so every round continues one optimizer instead of restarting
// from zero moments. The names keep the tensor's "layers.{i}." and
// ".lora_A"/".lora_B", so the block and rank-slice conventions of coverage
// (peft/state.h, coordinator DefaultCoverage) apply to a moment as to its
// tensor; optimizer.step counts as a head (every backprop method trains it).
//
// Nothing else reads these tensors: the forward, zeroth-order perturbations
// and their seed replay, adapter export and merging see the state without
// them (WithoutOptimizerState).
#ifndef FEDFM_PROTOCOLS_OPTIMIZER_STATE_H_
#define FEDFM_PROTOCOLS_OPTIMIZER_STATE_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "protocols/tensor.h"
#include "protocols/update.h"

namespace fedfm::protocols {

inline constexpr char kOptimizerStatePrefix[] = "optimizer.";
inline constexpr char kExpAvgPrefix[] = "optimizer.exp_avg.";
inline constexpr char kExpAvgSqPrefix[] = "optimizer.exp_avg_sq.";
inline constexpr char kOptimizerStepName[] = "optimizer.step";

// Whether `name` is an optimizer-state tensor (starts with "optimizer.").
bool IsOptimizerState(std::string_view name);
// Whether `state` holds any optimizer-state tensor.
bool HasOptimizerState(const TensorMap& state);
// `state` without its optimizer-state tensors (the tensors are shared, not copied).
TensorMap WithoutOptimizerState(const TensorMap& state);

// `state` followed by zero moments (F32) of each of its tensors and
// optimizer.step = 0. InvalidArgument if it already holds optimizer state or
// a tensor is not floating point.
absl::StatusOr<TensorMap> WithZeroOptimizerState(const TensorMap& state);

// `coverage` (of model tensors of `state`) plus the same slices of their
// moments and optimizer.step whole: what a client that trained `coverage`
// with carried moments changed. InvalidArgument naming a covered tensor whose
// moments `state` lacks.
absl::StatusOr<Coverage> WithOptimizerStateCoverage(const TensorMap& state, const Coverage& coverage);

// The value of optimizer.step: InvalidArgument when it is missing, not a
// one-element float tensor, or not a finite value >= 0.
absl::StatusOr<double> OptimizerStep(const TensorMap& state);

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_OPTIMIZER_STATE_H_
