// Loads checkpoints (formats in checkpoint.h) into a frozen, shareable Model.
//
// RoPE convention: the internal one is Hugging Face's (rotate halves of each
// head, RopeStyle::kHalves). llama2.c checkpoints rotate adjacent pairs, so
// their wq and wk rows are permuted at load (within each head, even rows then
// odd rows: the permutation of HF's convert_llama_weights_to_hf.py). An
// adapter trained on either format therefore lives in HF coordinates.
#ifndef FEDFM_MODEL_LOADER_H_
#define FEDFM_MODEL_LOADER_H_

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/checkpoint.h"
#include "model/transformer.h"
#include "protocols/config/options.h"

namespace fedfm::model {

// Reads the checkpoint at `path` (a llama2.c .bin file or an HF directory),
// converting weights to `options.dtype` on `options.device`. Errors name the
// file and what is wrong: NotFound for missing files; InvalidArgument for a
// bad header or config, a truncated file, a tensor of the wrong shape (both
// shapes named) or dtype, a missing or unexpected tensor; Unimplemented for
// unsupported architectures and config features.
absl::StatusOr<std::shared_ptr<const Model>> LoadModel(const std::filesystem::path& path,
                                                       const ModelOptions& options = {});

// Where and how to hold the weights, from the spelled-out choices of the
// command line: dtype "f32" | "fp32" | "float32" | "bf16" | "bfloat16",
// device "cpu" | "cuda" | "cuda:N". InvalidArgument names a bad value;
// FailedPrecondition when CUDA is asked for and this LibTorch build or
// machine has none.
absl::StatusOr<ModelOptions> ParseModelOptions(const std::string& dtype, const std::string& device);
// The same from a run config's [model] section (errors name model.device).
absl::StatusOr<ModelOptions> ModelOptionsFromConfig(const protocols::ModelOptions& model);

// Rows of a q/k projection weight (or bias) [heads * hd, ...] reordered
// between rotary conventions. ToHalves: adjacent pairs -> halves (the
// llama2.c-to-HF permutation); FromHalves is its inverse.
torch::Tensor PermuteRopeRowsToHalves(const torch::Tensor& weight, int64_t heads);
torch::Tensor PermuteRopeRowsFromHalves(const torch::Tensor& weight, int64_t heads);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_LOADER_H_
