#include "model/tokenizer_hf.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace fedfm::model {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::filesystem::path& path) {
  return absl::UnimplementedError(
      absl::StrCat("tokenizer ", path.string(), ": Hugging Face tokenizer.json is not supported yet"));
}

}  // namespace fedfm::model
