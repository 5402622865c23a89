// Whole model tasks behind a torch-free interface, for the `fedfm model` and
// `fedfm bench model` commands: describe a checkpoint, generate text, score
// a text file, time forward passes. Each loads what it needs, runs, and
// reports through a Status; LibTorch errors become Internal / InvalidArgument
// statuses here, never exceptions.
#ifndef FEDFM_MODEL_TASKS_H_
#define FEDFM_MODEL_TASKS_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/checkpoint.h"
#include "model/tokenizer.h"

namespace fedfm::model {

class Model;            // model/transformer.h
struct ForwardOptions;  // model/transformer.h

// Where and in which precision to run: dtype "f32" or "bf16", device "cpu"
// or "cuda" (InvalidArgument otherwise, or when CUDA is not available).
struct RunTarget {
  std::string dtype = "f32";
  std::string device = "cpu";
};

struct ModelSummary {
  CheckpointInfo checkpoint;
  int64_t num_parameters = 0;
};
// Reads the checkpoint's header / config only (no weights).
absl::StatusOr<ModelSummary> DescribeModel(const std::filesystem::path& path);

struct GenerateRequest {
  std::filesystem::path model;
  std::filesystem::path tokenizer;
  std::string prompt;        // may be empty: generation starts from BOS
  int64_t max_tokens = 256;  // new tokens
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;
  uint64_t seed = 0;
  RunTarget target;
};
// Streams the prompt and then the generated text through `emit` as it is
// produced. Stops at EOS (or BOS, which starts a new document), at
// max_tokens, or at the model's context length.
absl::Status GenerateText(const GenerateRequest& request, const std::function<void(const std::string&)>& emit);

struct EvalRequest {
  std::filesystem::path model;
  std::filesystem::path tokenizer;
  std::filesystem::path text;  // documents separated by "<|endoftext|>" (or one document)
  int64_t max_tokens = 0;      // score at most this many tokens; 0 = all
  int64_t seq_len = 256;       // window length (capped at the model's max_seq_len)
  int64_t batch_size = 8;
  RunTarget target;
};
struct EvalResult {
  double mean_loss = 0;   // nats per scored token
  double perplexity = 0;  // exp(mean_loss)
  int64_t tokens = 0;     // tokens scored
  int64_t documents = 0;
  int64_t seq_len = 0;    // window length used
  double seconds = 0;
};
// Sets the forward options evaluation runs with, once the model is loaded
// (e.g. a LoRA adapter's hook); returns what must stay alive while *options
// are in use.
using EvalForwardSetup =
    std::function<absl::StatusOr<std::shared_ptr<void>>(const std::shared_ptr<const Model>&, ForwardOptions*)>;
// Each document is encoded with BOS (when the tokenizer has one) and they are
// concatenated; every token but the first is scored in windows of seq_len.
// InvalidArgument when the tokenizer has more ids than the model's vocabulary.
absl::StatusOr<EvalResult> EvaluateText(const EvalRequest& request, const EvalForwardSetup& setup = {});

// The token stream EvaluateText scores: documents separated by
// "<|endoftext|>" (surrounding whitespace dropped), each encoded with BOS,
// EOS between them when the tokenizer has no BOS; at most max_tokens + 1
// ids when max_tokens > 0. Adds the documents read to *documents.
std::vector<int32_t> DocumentTokenIds(const Tokenizer& tok, const std::string& text, int64_t max_tokens,
                                      int64_t* documents);

struct BenchRequest {
  std::filesystem::path model;
  int64_t batch = 16;
  int64_t seq_len = 128;
  int64_t iters = 10;
  int64_t warmup = 2;  // untimed iterations per phase (at least one, which measures memory)
  uint64_t seed = 0;  // token ids
  RunTarget target;
};
struct BenchPhase {
  double ms_per_iter = 0;      // wall clock
  double cpu_ms_per_iter = 0;  // process CPU time, all threads (steadier on a shared machine)
  double tokens_per_s = 0;
  // One iteration's peak memory above the live memory before it (the model's
  // weights excluded): CPU, resident set size; CUDA, bytes allocated through
  // LibTorch's caching allocator. -1: unknown.
  int64_t peak_memory_bytes = -1;
};
struct BenchResult {
  ModelSummary model;
  int64_t threads = 0;  // LibTorch intra-op threads
  int64_t cores = 0;    // std::thread::hardware_concurrency
  std::string torch_version;
  bool fused_attention = false;
  // Inference forward (logits); forward + mean next-token loss with grad mode
  // on and nothing trainable (a zeroth-order step's forward); forward + loss
  // + backward with every block trainable (the upper bound of partial-layer
  // training), gradients discarded.
  BenchPhase forward, forward_loss, train_step;
};
absl::StatusOr<BenchResult> BenchForward(const BenchRequest& request);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_TASKS_H_
