#include "protocols/safetensors.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

namespace fedfm::protocols {
namespace {

using nlohmann::json;

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin;
  uint64_t end;
};

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError(what); }

absl::StatusOr<Entry> ParseEntry(const std::string& name, const json& value, uint64_t data_start,
                                 uint64_t data_size) {
  auto bad = [&](const std::string& what) {
    return Bad(absl::StrCat("safetensors tensor \"", name, "\": ", what));
  };
  if (!value.is_object()) return bad("header entry is not an object");
  for (const auto& [key, _] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return bad(absl::StrCat("unexpected header key \"", key, "\""));
    }
  }
  auto dtype_it = value.find("dtype");
  if (dtype_it == value.end() || !dtype_it->is_string()) return bad("missing or non-string \"dtype\"");
  auto dtype = DTypeFromName(dtype_it->get<std::string>());
  if (!dtype.ok()) return bad(std::string(dtype.status().message()));
  auto shape_it = value.find("shape");
  if (shape_it == value.end() || !shape_it->is_array()) return bad("missing or non-array \"shape\"");
  if (shape_it->size() > 16) return bad(absl::StrCat("rank ", shape_it->size(), " is too large"));
  Shape shape;
  for (const json& d : *shape_it) {
    if (!d.is_number_unsigned()) return bad("shape holds a value that is not a non-negative integer");
    shape.push_back(static_cast<int64_t>(std::min<uint64_t>(d.get<uint64_t>(), INT64_MAX)));
  }
  auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
    return bad("\"data_offsets\" must be two non-negative integers");
  }
  uint64_t begin = (*offsets_it)[0].get<uint64_t>();
  uint64_t end = (*offsets_it)[1].get<uint64_t>();
  if (end < begin) return bad(absl::StrCat("data_offsets [", begin, ", ", end, "] are reversed"));
  if (end > data_size) {
    return bad(absl::StrCat("data_offsets [", begin, ", ", end, "] (file offset ", data_start + begin,
                            ") run past the end of the file (data section holds ", data_size,
                            " bytes)"));
  }
  int64_t numel = NumElements(shape);
  if (numel < 0 || static_cast<uint64_t>(numel) > data_size ||
      static_cast<uint64_t>(numel) * DTypeSize(*dtype) != end - begin) {
    return bad(absl::StrCat("shape ", ShapeString(shape), " of ", DTypeName(*dtype), " does not fit ",
                            end - begin, " bytes at file offset ", data_start + begin));
  }
  return Entry{name, *dtype, std::move(shape), begin, end};
}

}  // namespace

absl::StatusOr<Safetensors> ParseSafetensors(std::span<const std::byte> bytes,
                                             std::shared_ptr<const void> owner) {
  if (bytes.size() < 8) {
    return Bad(absl::StrCat("safetensors: file of ", bytes.size(), " bytes is shorter than its 8-byte header length"));
  }
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Bad(absl::StrCat("safetensors: header length ", header_len, " at offset 0 exceeds the limit of ",
                            kMaxSafetensorsHeaderBytes));
  }
  if (header_len > bytes.size() - 8) {
    return Bad(absl::StrCat("safetensors: header length ", header_len, " at offset 0 runs past the end of the ",
                            bytes.size(), "-byte file"));
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  json header = json::parse(header_begin, header_begin + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return Bad("safetensors: header at offset 8 is not valid JSON");
  if (!header.is_object()) return Bad("safetensors: header at offset 8 is not a JSON object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = bytes.size() - data_start;
  Safetensors out;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return Bad("safetensors: \"__metadata__\" is not an object");
      for (const auto& [key, v] : value.items()) {
        if (!v.is_string()) return Bad(absl::StrCat("safetensors: metadata \"", key, "\" is not a string"));
        out.metadata[key] = v.get<std::string>();
      }
      continue;
    }
    FEDFM_ASSIGN_OR_RETURN(Entry entry, ParseEntry(name, value, data_start, data_size));
    entries.push_back(std::move(entry));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < entries.size(); ++i) {
    const Entry& prev = entries[i - 1];
    const Entry& cur = entries[i];
    if (cur.begin < prev.end) {
      return Bad(absl::StrCat("safetensors tensor \"", cur.name, "\": bytes at file offset ", data_start + cur.begin,
                              " overlap tensor \"", prev.name, "\" (which ends at ", data_start + prev.end, ")"));
    }
  }
  for (Entry& e : entries) {
    Tensor t = Tensor::View(e.dtype, std::move(e.shape), owner,
                            bytes.subspan(data_start + e.begin, e.end - e.begin));
    FEDFM_RETURN_IF_ERROR(out.tensors.Insert(e.name, std::move(t)));
  }
  return out;
}

absl::StatusOr<Safetensors> ReadSafetensors(const std::filesystem::path& path) {
  FEDFM_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::Open(path));
  auto parsed = ParseSafetensors(file->bytes(), file);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(), absl::StrCat(path.string(), ": ", parsed.status().message()));
  }
  return parsed;
}

std::vector<std::byte> SerializeSafetensors(const TensorMap& tensors,
                                            const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    json shape = json::array();
    for (int64_t d : t.shape()) shape.push_back(d);
    header[name] = {{"dtype", DTypeName(t.dtype())}, {"shape", shape}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // data section 8-byte aligned
  std::vector<std::byte> out(8 + text.size() + offset);
  uint64_t header_len = text.size();
  std::memcpy(out.data(), &header_len, 8);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* p = out.data() + 8 + text.size();
  for (const auto& [name, t] : tensors) {
    if (t.nbytes() > 0) std::memcpy(p, t.bytes().data(), t.nbytes());
    p += t.nbytes();
  }
  return out;
}

absl::Status WriteSafetensors(const std::filesystem::path& path, const TensorMap& tensors,
                              const std::map<std::string, std::string>& metadata) {
  return WriteFileAtomic(path, SerializeSafetensors(tensors, metadata));
}

}  // namespace fedfm::protocols
