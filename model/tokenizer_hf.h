// Hugging Face tokenizer.json with a byte-level BPE model.
#ifndef FEDFM_MODEL_TOKENIZER_HF_H_
#define FEDFM_MODEL_TOKENIZER_HF_H_

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"

namespace fedfm::model {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::filesystem::path& path);

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_TOKENIZER_HF_H_
