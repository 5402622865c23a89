#include "client/internal/batches.h"

#include "absl/strings/str_cat.h"
#include "client/internal/torch_compat.h"
#include "model/dataset_rng.h"
#include "model/transformer.h"

namespace fedfm::client::internal {

void ToDevice(const model::Batch& batch, const torch::Device& device, bool classification, DeviceBatch* out) {
  const int64_t b = batch.batch_size, t = batch.seq_len;
  auto fill = [&](const std::vector<int32_t>& v, std::vector<int64_t> shape, torch::Tensor* dst) {
    const torch::Tensor src = torch::from_blob(const_cast<int32_t*>(v.data()), shape, torch::kInt);
    if (dst->defined() && dst->sizes() == src.sizes()) {
      dst->copy_(src);
    } else {
      *dst = src.to(device, torch::kLong);
    }
  };
  fill(batch.inputs, {b, t}, &out->inputs);
  out->tokens = 0;
  for (int32_t n : batch.lengths) out->tokens += n;
  if (classification) {
    torch::Tensor lengths;
    fill(batch.lengths, {b}, &lengths);
    out->attention_mask =
        torch::arange(t, torch::TensorOptions().dtype(torch::kLong).device(device)).unsqueeze(0).lt(lengths.unsqueeze(1));
    fill(batch.labels, {b}, &out->labels);
  } else {
    fill(batch.targets, {b, t}, &out->targets);
  }
}

BatchLoss Loss(const peft::StateForward& forward, const DeviceBatch& batch, bool classification,
               bool count_correct) {
  model::ForwardOptions options = forward.forward_options();
  BatchLoss out;
  if (classification) {
    options.compute_logits = false;
    options.attention_mask = batch.attention_mask;
    const torch::Tensor logits = forward.model().Forward(batch.inputs, options).class_logits.to(torch::kFloat);
    out.loss = torch::nn::functional::cross_entropy(logits, batch.labels);
    out.count = batch.labels.size(0);
    if (count_correct) out.correct = logits.argmax(1).eq(batch.labels).sum().item<int64_t>();
    return out;
  }
  options.classification_head = nullptr;
  const torch::Tensor logits = forward.model().Forward(batch.inputs, options).logits;
  out.loss = model::CausalLmLoss(logits, batch.targets);
  if (count_correct) out.count = batch.targets.ne(model::kLossIgnoreIndex).sum().item<int64_t>();
  return out;
}

const std::vector<size_t>& BatchStream::Next() {
  if (next_ >= order_.size()) {
    order_ = model::MakeBatchOrder(n_, batch_, model::DeriveSeed(seed_, epoch_++), /*drop_last=*/n_ >= batch_);
    next_ = 0;
  }
  return order_[next_++];
}

absl::Status FromTorchError(const char* what, const c10::Error& e) {
  if (IsOutOfMemory(e)) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": out of memory: ", e.what_without_backtrace()));
  }
  return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
}

}  // namespace fedfm::client::internal
