#include "model/tokenizer.h"

#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/tokenizer_hf.h"

namespace fedfm::model {

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::filesystem::path& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) return LoadHfTokenizer(path / "tokenizer.json");
  const std::string extension = path.extension().string();
  if (extension == ".bin") return LoadLlama2Tokenizer(path);
  if (extension == ".json") return LoadHfTokenizer(path);
  return absl::InvalidArgumentError(absl::StrCat(
      "tokenizer ", path.string(),
      ": unknown format; expected a llama2.c *.bin, a Hugging Face *.json or a directory "
      "holding tokenizer.json"));
}

}  // namespace fedfm::model
