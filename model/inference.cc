#include "model/inference.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "protocols/check.h"

namespace fedfm::model {
namespace {

// Picks the next token from last-position logits [V] (float32, CPU).
int32_t Sample(const torch::Tensor& logits, const SamplingOptions& options, std::mt19937_64& rng) {
  if (options.temperature <= 0) return static_cast<int32_t>(logits.argmax().item<int64_t>());
  torch::Tensor probs = torch::softmax(logits / options.temperature, -1).contiguous();
  const float* p = probs.data_ptr<float>();
  const int64_t n = probs.numel();
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  // Highest probability first; ties by id, so the choice is deterministic.
  std::stable_sort(order.begin(), order.end(), [p](int64_t a, int64_t b) { return p[a] > p[b]; });
  double kept = 0;
  int64_t keep = 0;
  while (keep < n && (keep == 0 || kept < options.top_p)) kept += p[order[keep++]];
  double u = std::uniform_real_distribution<double>(0.0, kept)(rng);
  for (int64_t i = 0; i < keep; ++i) {
    u -= p[order[i]];
    if (u <= 0) return static_cast<int32_t>(order[i]);
  }
  return static_cast<int32_t>(order[keep - 1]);
}

torch::Tensor Ids(const std::vector<int32_t>& ids, int64_t begin, int64_t count) {
  std::vector<int64_t> wide(ids.begin() + begin, ids.begin() + begin + count);
  return torch::tensor(wide, torch::kLong).view({1, count});
}

}  // namespace

std::vector<int32_t> Generate(const Model& model, const std::vector<int32_t>& prompt, const SamplingOptions& options,
                              const std::function<bool(int32_t)>& on_token, const ForwardOptions& forward) {
  TORCH_CHECK(!prompt.empty(), "Generate: empty prompt");
  const int64_t max_len = model.config().max_seq_len;
  TORCH_CHECK(static_cast<int64_t>(prompt.size()) <= max_len, "Generate: prompt of ", prompt.size(),
              " tokens exceeds max_seq_len ", max_len);
  c10::InferenceMode inference;
  std::mt19937_64 rng(options.seed);
  const int64_t capacity = std::min<int64_t>(max_len, static_cast<int64_t>(prompt.size()) + options.max_new_tokens);
  KvCache cache = model.NewKvCache(1, std::max<int64_t>(capacity, static_cast<int64_t>(prompt.size())));
  ForwardOptions step = forward;
  step.kv_cache = &cache;
  step.compute_logits = true;
  torch::Tensor input = Ids(prompt, 0, static_cast<int64_t>(prompt.size()));
  std::vector<int32_t> out;
  while (static_cast<int64_t>(out.size()) < options.max_new_tokens && cache.length < cache.capacity()) {
    torch::Tensor logits = model.Forward(input, step).logits;  // [1, T, V]
    torch::Tensor last = logits[0][logits.size(1) - 1].to(torch::kCPU, torch::kFloat);
    const int32_t next = Sample(last, options, rng);
    out.push_back(next);
    if (on_token && !on_token(next)) break;
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), next) != options.stop_tokens.end()) break;
    input = torch::full({1, 1}, static_cast<int64_t>(next), torch::kLong);
  }
  return out;
}

LossStats EvaluateNextTokenLoss(const Model& model, const std::vector<int32_t>& ids, int64_t seq_len,
                                int64_t batch_size, const ForwardOptions& forward) {
  TORCH_CHECK(seq_len > 0 && seq_len <= model.config().max_seq_len, "EvaluateNextTokenLoss: seq_len ", seq_len,
              " outside 1..", model.config().max_seq_len);
  TORCH_CHECK(batch_size > 0, "EvaluateNextTokenLoss: batch_size ", batch_size);
  c10::InferenceMode inference;
  LossStats stats;
  const int64_t targets = static_cast<int64_t>(ids.size()) - 1;
  if (targets <= 0) return stats;
  const int64_t windows = (targets + seq_len - 1) / seq_len;
  for (int64_t first = 0; first < windows; first += batch_size) {
    const int64_t rows = std::min(batch_size, windows - first);
    // Window w holds inputs ids[w*T .. w*T+T) and targets ids[w*T+1 .. w*T+T];
    // the last window is padded (pad inputs 0, labels ignored).
    torch::Tensor tokens = torch::zeros({rows, seq_len}, torch::kLong);
    torch::Tensor labels = torch::full({rows, seq_len}, kLossIgnoreIndex, torch::kLong);
    auto tok = tokens.accessor<int64_t, 2>();
    auto lab = labels.accessor<int64_t, 2>();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t start = (first + r) * seq_len;
      const int64_t n = std::min(seq_len, targets - start);
      for (int64_t i = 0; i < n; ++i) {
        tok[r][i] = ids[start + i];
        lab[r][i] = ids[start + i + 1];
      }
    }
    // Shorten the batch to its longest row (only the last window is short).
    const int64_t width = std::min(seq_len, targets - first * seq_len);
    torch::Tensor logits = model.Forward(tokens.narrow(1, 0, width), forward).logits;
    torch::Tensor lab_used = labels.narrow(1, 0, logits.size(1)).to(logits.device());
    const int64_t counted = lab_used.ne(kLossIgnoreIndex).sum().item<int64_t>();
    if (counted == 0) continue;
    const double mean = CausalLmLoss(logits, lab_used).item<double>();
    stats.sum_nats += mean * static_cast<double>(counted);
    stats.tokens += counted;
  }
  return stats;
}

}  // namespace fedfm::model
