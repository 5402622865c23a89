// Small file helpers shared by every layer: whole-file reads, atomic writes,
// read-only mappings.
#ifndef FEDFM_PROTOCOLS_FILE_UTIL_H_
#define FEDFM_PROTOCOLS_FILE_UTIL_H_

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace fedfm::protocols {

absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path);

// Writes `contents` to a temporary file beside `path`, fsyncs it, renames it
// over `path` and fsyncs the directory, so readers see either the old or the
// new file, never half, and the new one survives a crash once this returns.
// `mode` is the new file's permission bits (before the umask): 0600 for
// secrets, which are then never readable by others, not even briefly.
absl::Status WriteFileAtomic(const std::filesystem::path& path, std::span<const std::byte> contents,
                             int mode = 0644);
absl::Status WriteFileAtomic(const std::filesystem::path& path, std::string_view contents, int mode = 0644);

// A read-only memory mapping of a whole file; unmapped when the last
// reference goes away.
class MappedFile {
 public:
  static absl::StatusOr<std::shared_ptr<const MappedFile>> Open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile(std::filesystem::path path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::filesystem::path path_;
  const std::byte* data_;
  size_t size_;
};

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_FILE_UTIL_H_
