// The zeroth-order benchmark (`fedfm bench zo`) behind a torch-free
// interface: a real ZerothOrderTrainer round on random token windows, timed
// per step, against a forward pass of the same batch, with peak memory and
// the bytes a client uploads per round.
#ifndef FEDFM_CLIENT_ZEROTH_ORDER_TRAINER_BENCH_H_
#define FEDFM_CLIENT_ZEROTH_ORDER_TRAINER_BENCH_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protocols/config/options.h"

namespace fedfm::client {

struct ZoBenchRequest {
  // A checkpoint (llama2.c .bin or HF directory), or, when random_config is
  // set, random weights of a named shape (ZoBenchConfigNames()).
  std::filesystem::path model = "assets/stories260K/stories260K.bin";
  std::string random_config;
  int batch = 16;
  int seq_len = 128;
  int steps = 10;              // timed
  int warmup = 2;              // untimed, before (at least 1 step)
  int seed_pool = 1024;        // K; 0 = dense updates
  int rank = 4;                // LoRA rank of the trained adapter
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  // epsilon, learning_rate, perturbations, noise, estimator (weight_decay must
  // be 0 with a seed pool); seed_pool above wins over zo.seed_pool.
  protocols::ZerothOrderOptions zo;
  std::string dtype = "f32";   // "f32" | "bf16" (the frozen base; the adapter trains in float32)
  std::string device = "cpu";  // "cpu" | "cuda[:N]"
  bool bf16_autocast = true;   // CUDA only
  uint64_t seed = 0;           // token ids, adapter init, random weights
};

struct ZoBenchResult {
  std::string model;               // path or "random:<name>"
  int64_t model_parameters = 0;
  int64_t trainable_parameters = 0;
  int threads = 0;                 // LibTorch intra-op threads
  // One loss evaluation of the batch through the adapter (what a ZO step
  // does 2P times), and a plain inference forward + loss of the base model:
  // median and minimum over `steps` calls timed before and `steps` after the
  // zeroth-order round (so that a change of machine load affects both).
  double forward_ms = 0;
  double forward_ms_min = 0;
  double base_forward_ms = 0;
  double base_forward_ms_min = 0;
  double step_ms = 0;              // mean over the timed steps
  double step_ms_median = 0;
  double step_ms_min = 0;
  double step_over_forward = 0;      // median step / median forward (target <= 2.1 at P = 1)
  double step_over_forward_min = 0;  // fastest step / fastest forward: the least load-sensitive ratio
  double step_over_base_forward = 0; // median step / median base forward
  // CPU only: median process CPU time (all threads) of a step and of a
  // forward, and their ratio: on a shared machine the CPU a step consumes is
  // steadier than the wall time it waits for.
  double step_cpu_ms = 0;
  double forward_cpu_ms = 0;
  double step_over_forward_cpu = 0;
  // Peak memory over the zeroth-order round and over as many forward passes
  // as it makes. CUDA: bytes allocated through LibTorch at the peak (weights
  // included). CPU: the resident-set growth above the start (from a trimmed
  // heap); *_total_bytes add the weights' bytes. -1 unknown.
  int64_t forward_peak_bytes = -1;
  int64_t step_peak_bytes = -1;
  int64_t weight_bytes = 0;
  int64_t forward_peak_total_bytes = -1;
  int64_t step_peak_total_bytes = -1;
  double peak_ratio = 0;           // step / forward totals (target <= 1.1)
  // Upload of one round: seed_scalar_bytes = 4 K (the payload),
  // upload_header_bytes the serialized UploadHeader (binding, kind,
  // examples, metrics, seed scalars, MAC), upload_bytes the whole upload
  // stream (header chunk, no data, MAC chunk); dense_update_bytes is the
  // encoded dense delta of the same adapter (tensor codec, fp32) for comparison.
  int64_t seed_scalar_bytes = 0;
  int64_t upload_header_bytes = 0;
  int64_t upload_header_bytes_without_metrics = 0;
  int64_t upload_bytes = 0;
  int64_t dense_update_bytes = 0;
  double final_loss = 0;
};

// Random windows of batch x seq_len tokens (one batch, so every step and the
// forward baseline see the same examples), one trainer call of warmup +
// steps steps. InvalidArgument for bad sizes, an unknown config name or a
// model that does not fit; FailedPrecondition without CUDA for a cuda device.
absl::StatusOr<ZoBenchResult> BenchZerothOrder(const ZoBenchRequest& request);

// Shapes for random_config: "stories260k", "stories15m", "qwen2.5-0.5b",
// "llama-3.2-1b", "llama-3.2-3b" (the published configs' dimensions).
std::vector<std::string> ZoBenchConfigNames();

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_ZEROTH_ORDER_TRAINER_BENCH_H_
