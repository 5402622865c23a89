// Inference on a Model: token generation (greedy or sampled, with a KV cache)
// and next-token loss over long token streams. Both run under
// c10::InferenceMode and only read the shared Model, so several threads may
// call them at once.
#ifndef FEDFM_MODEL_INFERENCE_H_
#define FEDFM_MODEL_INFERENCE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "model/transformer.h"

namespace fedfm::model {

struct SamplingOptions {
  int64_t max_new_tokens = 256;
  // 0: greedy (argmax). Otherwise softmax(logits / temperature), restricted
  // to the smallest set of tokens whose probability reaches top_p.
  double temperature = 0.0;
  double top_p = 1.0;
  uint64_t seed = 0;  // the sampler's own generator; no global RNG
  // Generation stops after emitting any of these (the stop token is returned).
  std::vector<int32_t> stop_tokens;
};

// Continues `prompt` (non-empty) and returns the new tokens. Stops at a stop
// token, after max_new_tokens, or when the model's context (max_seq_len) is
// full. `on_token`, when set, sees each new token as it is chosen and may
// return false to stop early. Throws c10::Error on invalid ids.
std::vector<int32_t> Generate(const Model& model, const std::vector<int32_t>& prompt, const SamplingOptions& options,
                              const std::function<bool(int32_t)>& on_token = {}, const ForwardOptions& forward = {});

struct LossStats {
  double sum_nats = 0;     // summed next-token loss
  int64_t tokens = 0;      // targets scored
  double mean() const { return tokens > 0 ? sum_nats / static_cast<double>(tokens) : 0.0; }
};

// Scores every token of `ids` but the first given those before it, in windows
// of seq_len targets (each window's context starts at the window: no overlap
// beyond the one shared token), batch_size windows per forward pass.
// `forward` may carry a hook (an adapter under evaluation).
LossStats EvaluateNextTokenLoss(const Model& model, const std::vector<int32_t>& ids, int64_t seq_len,
                                int64_t batch_size, const ForwardOptions& forward = {});

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_INFERENCE_H_
