// The one training loop of the backprop trainers (LoraTrainer,
// PartialLayerTrainer): what they share, so that neither copies a loop.
//
// One call of TrainPeft:
//   1. the trained part of the global state: the coverage of `request`
//      (peft::TrainedCoverage), which must lie inside task.coverage when the
//      task names one;
//   2. peft::StateForward over the shared frozen model: trained slices in one
//      flat float32 buffer, everything else frozen, no autograd graph below
//      the lowest trained block;
//   3. task.local_steps optimizer steps, each over task.grad_accumulation
//      micro-batches of task.batch_size examples (shuffled epochs of
//      data.train from the trainer's seed and task.round_seed):
//        loss     next-token cross-entropy (classification: cross-entropy of
//                 the head on pooled hidden states), averaged over micro-batches
//        FedProx  + mu/2 ||theta - theta_round_start||^2 (its gradient
//                 mu (theta - theta_0) added to the trained tensors' gradient)
//        clip     global L2 norm of that gradient at task.grad_clip
//        step     AdamW (decoupled weight decay, betas 0.9 / 0.999, eps 1e-8)
//                 or SGD (weight decay added to the gradient). AdamW starts
//                 from zero moments, or from the state's moments of the
//                 trained slices when it carries them (protocols/
//                 optimizer_state.h), bias-corrected over optimizer.step
//                 plus this round's steps
//      bf16 autocast on CUDA when train.bf16_autocast;
//   4. the update: kDense, delta = new - old over the coverage (with carried
//      moments: also their change over the same slices, and local_steps for
//      optimizer.step), num_examples = sequences processed (steps x
//      accumulation x batch), metrics.
// Task fields left at 0 (steps, batch size, seq_len, learning rate) fall back
// to `options.train` (seq_len 0: each batch as long as its longest example).
//
// Update metrics: train_loss (mean over the round), train_loss_first and
// train_loss_last (first / last step), steps, tokens (real tokens seen),
// tokens_per_s, train_seconds, trainable_parameters, peak_memory_bytes
// (-1 unknown; also Update::peak_memory_bytes, 0 when unknown), grad_norm_last.
//
// Threads: each call builds its own adapter tensors, optimizer state and
// generators; nothing is global. Any number of calls may run at once on
// different threads over one shared const Model.
#ifndef FEDFM_CLIENT_TRAIN_LOOP_H_
#define FEDFM_CLIENT_TRAIN_LOOP_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "client/trainer.h"
#include "peft/state.h"
#include "protocols/config/options.h"
#include "protocols/task.h"
#include "protocols/update.h"

namespace fedfm::model {
class Model;
}

namespace fedfm::client {

// Reported after every optimizer step, from the training thread.
struct TrainProgress {
  int step = 0;          // 1-based
  int steps = 0;
  double loss = 0;       // this step's mean loss (without the FedProx term)
  double grad_norm = 0;  // before clipping
  int64_t tokens = 0;    // real tokens so far
  double elapsed_s = 0;  // since the first step started
};

// What a PEFT trainer is configured with besides its task.
struct PeftTrainerOptions {
  // optimizer ("adamw" | "sgd"), bf16_autocast; defaults for task fields left 0.
  protocols::TrainOptions train;
  // alpha, dropout, rslora, freeze_a. The rank and targets are the state's.
  peft::LoraSpec lora;
  // k for partial-layer tasks that leave top_blocks 0 (TopBlocksForRound of task.round).
  protocols::PartialOptions partial;
  // Mean-pool the final hidden states for a classification head (else the last real token).
  bool mean_pooling = false;
  int eval_batch_size = 16;
  std::function<void(const TrainProgress&)> on_step;
};

// Trains `request`'s part of `state` for one task (see the file comment).
// InvalidArgument: a state that does not fit the model, a coverage outside
// task.coverage, empty training data, bad hyperparameters, a classification
// task without a head of data.num_labels classes; ResourceExhausted: out of
// memory; Internal: any other LibTorch failure.
absl::StatusOr<protocols::Update> TrainPeft(const std::shared_ptr<const model::Model>& model,
                                            const PeftTrainerOptions& options, uint64_t seed,
                                            const protocols::Task& task, const peft::TrainRequest& request,
                                            const TrainableState& state, const Dataset& data);

// Evaluates `state` on data.eval (in order, batches of
// options.eval_batch_size, examples cut to task.seq_len when set): eval_loss
// (mean nats per target token; classification: per example),
// eval_accuracy (classification), eval_tokens; num_examples.
absl::StatusOr<protocols::EvalReport> EvaluatePeft(const std::shared_ptr<const model::Model>& model,
                                                   const PeftTrainerOptions& options, const protocols::Task& task,
                                                   const TrainableState& state, const Dataset& data);

// Whether every tensor of `inner` is covered by `outer` at least as far
// (same name; outer whole, or the same rank_dim with a rank >= inner's).
// Otherwise false with the first offending tensor in *why.
bool CoverageWithin(const protocols::Coverage& inner, const protocols::Coverage& outer, std::string* why);

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_TRAIN_LOOP_H_
