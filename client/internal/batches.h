// What the LibTorch trainers (train_loop.cc, zeroth_order_trainer.cc) share:
// batches on the model's device, the loss of one batch, the shuffled batch
// order of a round, and LibTorch errors as Status. Not a public interface.
#ifndef FEDFM_CLIENT_INTERNAL_BATCHES_H_
#define FEDFM_CLIENT_INTERNAL_BATCHES_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "model/dataset.h"
#include "peft/trainable.h"

namespace fedfm::client::internal {

// model::DeriveSeed purpose of a round's batch order under its round seed.
inline constexpr uint64_t kBatchOrderPurpose = 2;

// One batch on the model's device.
struct DeviceBatch {
  torch::Tensor inputs;          // [B, T] int64
  torch::Tensor targets;         // [B, T] int64, kLossIgnoreIndex where no loss
  torch::Tensor attention_mask;  // [B, T] bool (classification)
  torch::Tensor labels;          // [B] int64 (classification)
  int64_t tokens = 0;            // real tokens
};

// Fills `out` with `batch` on `device`, reusing its tensors when the shapes
// match (a previous step's): a step loop then allocates nothing between the
// forward passes' activations, which keeps a CPU heap from fragmenting.
void ToDevice(const model::Batch& batch, const torch::Device& device, bool classification, DeviceBatch* out);

// Loss of one batch: mean over target tokens (LM) or examples
// (classification), a 0-dim float32 tensor. With count_correct (evaluation)
// also the number of scored targets and, for classification, of correct
// answers (each reads a value back from the device); training needs neither.
struct BatchLoss {
  torch::Tensor loss;
  int64_t count = 0;
  int64_t correct = 0;
};
BatchLoss Loss(const peft::StateForward& forward, const DeviceBatch& batch, bool classification,
               bool count_correct);

// Cycles through shuffled epochs of `n` examples in batches of `batch`
// (model::MakeBatchOrder of DeriveSeed(seed, epoch)).
class BatchStream {
 public:
  BatchStream(size_t n, size_t batch, uint64_t seed) : n_(n), batch_(batch), seed_(seed) {}
  const std::vector<size_t>& Next();

 private:
  size_t n_, batch_;
  uint64_t seed_;
  uint64_t epoch_ = 0;
  std::vector<std::vector<size_t>> order_;
  size_t next_ = 0;
};

// ResourceExhausted for an out-of-memory error, Internal otherwise; `what`
// says what failed.
absl::Status FromTorchError(const char* what, const c10::Error& e);

}  // namespace fedfm::client::internal

#endif  // FEDFM_CLIENT_INTERNAL_BATCHES_H_
