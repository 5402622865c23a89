// Trainer: the one interface every training method implements (DESIGN.md):
// LoraTrainer, PartialLayerTrainer and ZerothOrderTrainer (peft/,
// zeroth_order/, model/) and, for tests and benchmarks, FakeTrainer
// (client/testing/fake_trainer.h). The client runtime (client/runtime.h)
// calls it; it never talks to the coordinator itself.
//
// Shapes: TrainableState is the global trainable state as the coordinator
// sends it (LoRA adapters at rank r_max, optional full top-k blocks, an
// optional head), a protocols::TensorMap of host tensors.
#ifndef FEDFM_CLIENT_TRAINER_H_
#define FEDFM_CLIENT_TRAINER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "model/dataset.h"
#include "protocols/task.h"
#include "protocols/tensor.h"
#include "protocols/update.h"

namespace fedfm::client {

using TrainableState = protocols::TensorMap;

// A client's private data, already tokenized (model/dataset.h).
struct Dataset {
  std::vector<model::Example> train;
  std::vector<model::Example> eval;
  int num_labels = 0;  // classification tasks; 0 for next-token prediction
};

// Not required to be thread-safe: one runtime calls one trainer at a time.
class Trainer {
 public:
  virtual ~Trainer() = default;

  // Trains one round's task from `state` (on entry: the global state of
  // task.model_version; on return: unspecified, the trainer may use it as
  // scratch, e.g. perturbing it in place) on `data.train`, and returns the
  // update: kDense with a delta (new minus old) over a coverage contained in
  // task.coverage, or kSeedScalars with one value per seed of
  // task.seed_pool; num_examples > 0; train metrics ("train_loss", ...).
  // The runtime fills in client_id. Errors: InvalidArgument for a task the
  // trainer cannot run (a method it does not implement, shapes that do not
  // fit its model); ResourceExhausted when it runs out of memory; Internal
  // for a library failure (c10::Error caught at this boundary).
  virtual absl::StatusOr<protocols::Update> Train(const protocols::Task& task, TrainableState& state,
                                                  Dataset& data) = 0;

  // Evaluates `state` on `data.eval`: "eval_loss" and, for classification,
  // "eval_accuracy", with num_examples.
  virtual absl::StatusOr<protocols::EvalReport> Evaluate(const protocols::Task& task, const TrainableState& state,
                                                          Dataset& data) = 0;
};

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_TRAINER_H_
