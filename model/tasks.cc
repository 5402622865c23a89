#include "model/tasks.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <time.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "model/attention.h"
#include "model/inference.h"
#include "model/internal/device_stats.h"
#include "model/loader.h"
#include "model/runtime.h"
#include "model/tokenizer.h"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

namespace fedfm::model {
namespace internal {
namespace {

int64_t ProcStatusBytes(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      std::istringstream fields(line.substr(key.size()));
      int64_t kb = -1;
      fields >> kb;
      return kb < 0 ? -1 : kb * 1024;
    }
  }
  return -1;
}

}  // namespace

void ReleaseFreedHostMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}
int64_t CurrentRssBytes() { return ProcStatusBytes("VmRSS:"); }
int64_t PeakRssBytes() { return ProcStatusBytes("VmHWM:"); }

}  // namespace internal

namespace {

using Clock = std::chrono::steady_clock;

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}


absl::Status FromTorchError(const char* what, const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  return absl::InternalError(absl::StrCat(what, ": ", c10_error ? c10_error->what_without_backtrace() : e.what()));
}

struct Loaded {
  std::shared_ptr<const Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

absl::StatusOr<Loaded> LoadModelAndTokenizer(const std::filesystem::path& model_path,
                                             const std::filesystem::path& tokenizer_path, const RunTarget& target) {
  FEDFM_ASSIGN_OR_RETURN(ModelOptions options, ParseModelOptions(target.dtype, target.device));
  Loaded loaded;
  FEDFM_ASSIGN_OR_RETURN(loaded.model, LoadModel(model_path, options));
  FEDFM_ASSIGN_OR_RETURN(loaded.tokenizer, LoadTokenizer(tokenizer_path));
  if (loaded.tokenizer->vocab_size() > loaded.model->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer ", tokenizer_path.string(), " has ",
                                                   loaded.tokenizer->vocab_size(), " ids but model ",
                                                   model_path.string(), " only ", loaded.model->config().vocab_size));
  }
  return loaded;
}

void Synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? -1 : device.index());
}

}  // namespace

absl::StatusOr<ModelSummary> DescribeModel(const std::filesystem::path& path) {
  ModelSummary summary;
  FEDFM_ASSIGN_OR_RETURN(summary.checkpoint, ReadCheckpointInfo(path));
  summary.num_parameters = summary.checkpoint.config.NumParameters();
  return summary;
}

absl::Status GenerateText(const GenerateRequest& request, const std::function<void(const std::string&)>& emit) {
  if (request.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  if (request.temperature < 0) return absl::InvalidArgumentError("temperature must be >= 0");
  if (!(request.top_p > 0 && request.top_p <= 1)) return absl::InvalidArgumentError("top_p must be in (0, 1]");
  FEDFM_ASSIGN_OR_RETURN(Loaded loaded, LoadModelAndTokenizer(request.model, request.tokenizer, request.target));
  const Tokenizer& tok = *loaded.tokenizer;
  std::vector<int32_t> ids = tok.Encode(request.prompt, /*add_bos=*/true, /*add_eos=*/false);
  if (ids.empty()) return absl::InvalidArgumentError("empty prompt, and the tokenizer has no BOS token to start from");
  if (static_cast<int64_t>(ids.size()) > loaded.model->config().max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", ids.size(), " tokens exceeds the model's context of ",
                                                   loaded.model->config().max_seq_len));
  }
  SamplingOptions sampling;
  sampling.max_new_tokens = request.max_tokens;
  sampling.temperature = request.temperature;
  sampling.top_p = request.top_p;
  sampling.seed = request.seed;
  for (int32_t stop : {tok.eos_id(), tok.bos_id()}) {
    if (stop >= 0) sampling.stop_tokens.push_back(stop);
  }
  std::string shown = tok.Decode(ids);
  emit(shown);
  if (request.max_tokens == 0) return absl::OkStatus();
  try {
    // Decoding the whole sequence each step keeps multi-token characters and
    // the tokenizer's spacing rules right; the new text is what grew.
    Generate(*loaded.model, ids, sampling, [&](int32_t id) {
      ids.push_back(id);
      std::string text = tok.Decode(ids);
      if (text.size() > shown.size()) emit(text.substr(shown.size()));
      shown = std::move(text);
      return true;
    });
  } catch (const std::exception& e) {
    return FromTorchError("generation failed", e);
  }
  return absl::OkStatus();
}

std::vector<int32_t> DocumentTokenIds(const Tokenizer& tok, const std::string& text, int64_t max_tokens,
                                 int64_t* documents) {
  std::vector<int32_t> ids;
  const std::string separator = "<|endoftext|>";
  const char* space = " \t\r\n";
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(separator, begin);
    if (end == std::string::npos) end = text.size();
    const size_t first = text.find_first_not_of(space, begin);
    if (first != std::string::npos && first < end) {
      const size_t last = text.find_last_not_of(space, end - 1);
      std::vector<int32_t> doc = tok.Encode(text.substr(first, last + 1 - first), /*add_bos=*/true, /*add_eos=*/false);
      if (tok.bos_id() < 0 && !ids.empty() && tok.eos_id() >= 0) ids.push_back(tok.eos_id());
      ids.insert(ids.end(), doc.begin(), doc.end());
      ++*documents;
    }
    if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) break;
    begin = end + separator.size();
  }
  if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens + 1) ids.resize(static_cast<size_t>(max_tokens + 1));
  return ids;
}

absl::StatusOr<EvalResult> EvaluateText(const EvalRequest& request, const EvalForwardSetup& setup) {
  if (request.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  if (request.seq_len <= 0) return absl::InvalidArgumentError("seq_len must be positive");
  if (request.batch_size <= 0) return absl::InvalidArgumentError("batch_size must be positive");
  FEDFM_ASSIGN_OR_RETURN(Loaded loaded, LoadModelAndTokenizer(request.model, request.tokenizer, request.target));
  FEDFM_ASSIGN_OR_RETURN(std::string text, protocols::ReadFileToString(request.text));
  const Tokenizer& tok = *loaded.tokenizer;
  EvalResult result;
  std::vector<int32_t> ids = DocumentTokenIds(tok, text, request.max_tokens, &result.documents);
  if (ids.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(request.text.string(), ": fewer than two tokens to score"));
  }
  result.seq_len = std::min(request.seq_len, loaded.model->config().max_seq_len);
  const auto start = Clock::now();
  try {
    ForwardOptions forward;
    std::shared_ptr<void> keep;
    if (setup) {
      FEDFM_ASSIGN_OR_RETURN(keep, setup(loaded.model, &forward));
    }
    LossStats stats = EvaluateNextTokenLoss(*loaded.model, ids, result.seq_len, request.batch_size, forward);
    result.tokens = stats.tokens;
    result.mean_loss = stats.mean();
    result.perplexity = std::exp(result.mean_loss);
  } catch (const std::exception& e) {
    return FromTorchError("evaluation failed", e);
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

absl::StatusOr<BenchResult> BenchForward(const BenchRequest& request) {
  if (request.batch <= 0 || request.seq_len <= 0 || request.iters <= 0 || request.warmup < 0) {
    return absl::InvalidArgumentError("batch, seq_len and iters must be positive, warmup >= 0");
  }
  FEDFM_ASSIGN_OR_RETURN(ModelOptions options, ParseModelOptions(request.target.dtype, request.target.device));
  BenchResult result;
  FEDFM_ASSIGN_OR_RETURN(result.model, DescribeModel(request.model));
  FEDFM_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, LoadModel(request.model, options));
  if (request.seq_len > model->config().max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("seq_len ", request.seq_len, " exceeds the model's max_seq_len ",
                                                   model->config().max_seq_len));
  }
  result.threads = TorchThreads();
  result.cores = std::thread::hardware_concurrency();
  result.torch_version = TorchVersion();
  result.fused_attention = FusedAttentionAvailable();
  const torch::Device device = options.device;
  const int cuda_index = device.is_cuda() ? std::max<int>(0, device.index()) : 0;

  try {
    at::Generator gen = at::detail::createCPUGenerator(request.seed);
    torch::Tensor tokens =
        torch::randint(model->config().vocab_size, {request.batch, request.seq_len}, gen, torch::kLong).to(device);
    // Runs `step` once to measure its peak memory (from a trimmed heap, so
    // that memory retained by earlier phases does not hide it), then
    // warmup - 1 more untimed times, then `iters` timed times.
    auto measure = [&](const std::function<void()>& step) {
      BenchPhase phase;
      Synchronize(device);
      if (device.is_cuda()) {
        internal::ResetCudaPeakMemory(cuda_index);
        const int64_t before = internal::CudaAllocatedBytes(cuda_index);
        step();
        Synchronize(device);
        const int64_t peak = internal::CudaPeakAllocatedBytes(cuda_index);
        if (before >= 0 && peak >= 0) phase.peak_memory_bytes = peak - before;
      } else {
        internal::ReleaseFreedHostMemory();
        const bool reset = internal::ResetPeakRss();
        const int64_t rss_before = internal::CurrentRssBytes();
        step();
        const int64_t peak = internal::PeakRssBytes();
        if (reset && rss_before >= 0 && peak >= 0) phase.peak_memory_bytes = std::max<int64_t>(0, peak - rss_before);
      }
      for (int64_t i = 1; i < request.warmup; ++i) step();
      Synchronize(device);
      const auto start = Clock::now();
      const double cpu_start = ProcessCpuSeconds();
      for (int64_t i = 0; i < request.iters; ++i) step();
      Synchronize(device);
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      phase.ms_per_iter = 1000.0 * seconds / static_cast<double>(request.iters);
      phase.cpu_ms_per_iter = 1000.0 * (ProcessCpuSeconds() - cpu_start) / static_cast<double>(request.iters);
      phase.tokens_per_s = static_cast<double>(request.batch * request.seq_len * request.iters) / seconds;
      return phase;
    };
    result.forward = measure([&] {
      c10::InferenceMode inference;
      model->Forward(tokens);
    });
    result.forward_loss = measure([&] { NextTokenLoss(model->Forward(tokens).logits, tokens); });
    std::vector<BlockWeights> blocks;
    ForwardOptions trainable;
    for (int layer = 0; layer < model->config().n_layers; ++layer) {
      blocks.push_back(model->CloneBlock(layer, /*requires_grad=*/true));
    }
    for (int layer = 0; layer < model->config().n_layers; ++layer) trainable.block_overrides[layer] = &blocks[layer];
    result.train_step = measure([&] {
      NextTokenLoss(model->Forward(tokens, trainable).logits, tokens).backward();
      for (BlockWeights& w : blocks) {
        for (torch::Tensor& t : w.weight) t.mutable_grad().reset();
        for (torch::Tensor& t : w.bias) {
          if (t.defined()) t.mutable_grad().reset();
        }
        w.attn_norm.mutable_grad().reset();
        w.ffn_norm.mutable_grad().reset();
      }
    });
  } catch (const std::exception& e) {
    return FromTorchError("benchmark failed", e);
  }
  return result;
}

}  // namespace fedfm::model
