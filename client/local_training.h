// Local centralized fine-tuning (`fedfm train`, the baseline every federated
// result is compared with) and the training benchmark (`fedfm bench train`),
// behind a torch-free interface. Both run the real trainers (LoraTrainer,
// PartialLayerTrainer) on one process's data.
#ifndef FEDFM_CLIENT_LOCAL_TRAINING_H_
#define FEDFM_CLIENT_LOCAL_TRAINING_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/train_loop.h"
#include "protocols/config/options.h"

namespace fedfm::client {

struct LocalTrainRequest {
  // model (path, tokenizer, dtype, device), data (path, format, eval_path,
  // eval_fraction, seq_len), train, lora, partial, zeroth_order, run.seed.
  // kZerothOrder trains the adapter with ZerothOrderTrainer for one round of
  // zeroth_order.seed_pool seeds (SeedPool::ForRound(run.seed, 0, K)); its
  // seed scalars are replayed as the coordinator would (SeedPoolDelta) into
  // the saved adapter. zeroth_order.seed_pool = 0: a dense update.
  protocols::RunConfig config;
  protocols::Method method = protocols::Method::kLora;  // kLora, kPartial or kZerothOrder
  std::filesystem::path out;       // adapter (PEFT layout) and metrics.json
  int eval_max_examples = 256;     // evaluate on at most this many held-out examples; 0 = all
  std::function<void(const TrainProgress&)> on_step;
};

struct LocalTrainResult {
  std::filesystem::path out;
  int64_t train_examples = 0;
  int64_t eval_examples = 0;
  int num_labels = 0;
  int top_blocks = 0;              // partial: k
  double eval_loss_before = 0;
  double eval_loss_after = 0;
  double eval_accuracy_before = -1;  // classification only, else -1
  double eval_accuracy_after = -1;
  std::vector<double> losses;      // per optimizer step
  protocols::Update update;        // delta and train metrics
  double seconds = 0;              // whole run, loading included
  std::string metrics_json;        // the content of out/metrics.json
};

// Loads the model and tokenizer, reads and tokenizes the data
// (data.format: "shakespeare" and "text" become next-token windows of
// data.seq_len; "tsv", "csv", "spamassassin" classification with a head;
// "jsonl" prompt/response), holds out data.eval_fraction (or reads
// data.eval_path), evaluates, trains one task of train.local_steps steps,
// evaluates again, and writes the adapter (peft/adapter_io.h; with
// partial.full_weights also partial_blocks.safetensors) and metrics.json
// (config, loss curve, eval loss before / after, tokens/s, peak memory,
// times) into `out`. Errors name the file or key at fault.
absl::StatusOr<LocalTrainResult> RunLocalTraining(const LocalTrainRequest& request);

struct BenchTrainRequest {
  std::filesystem::path model = "assets/stories260K/stories260K.bin";
  protocols::Method method = protocols::Method::kLora;
  int rank = 4;
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  int top_blocks = 2;          // partial
  bool full_weights = false;   // partial
  int batch = 16;
  int seq_len = 128;
  int steps = 10;              // timed
  int warmup = 2;              // untimed, before
  std::string optimizer = "adamw";
  std::string dtype = "f32";   // "f32" | "bf16"
  std::string device = "cpu";  // "cpu" | "cuda[:N]"
  bool bf16_autocast = true;   // CUDA only
  uint64_t seed = 0;           // random token ids
};

struct BenchTrainResult {
  int64_t trainable_parameters = 0;
  int64_t model_parameters = 0;
  double ms_per_step = 0;          // mean over the timed steps
  double ms_per_step_median = 0;
  double ms_per_step_min = 0;
  double tokens_per_s = 0;         // batch * seq_len / mean step time
  int64_t peak_memory_bytes = -1;  // over warmup and timed steps; -1 unknown
  double final_loss = 0;
  int top_blocks = 0;
};
// Random token windows, one trainer call of warmup + steps steps, each
// step timed.
absl::StatusOr<BenchTrainResult> BenchTrain(const BenchTrainRequest& request);

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_LOCAL_TRAINING_H_
