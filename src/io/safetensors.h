#pragma once
// safetensors reading (memory-mapped, zero-copy, single file or sharded through
// model.safetensors.index.json) and writing (header padded to 8 bytes, __metadata__, tensors
// sorted by alignment then name). Every malformed input fails with a dt::Error naming the file.
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace dt {

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0;  // offsets relative to the byte buffer, end exclusive
  uint64_t end = 0;
};

// Parses and validates a safetensors header and byte-range layout held in memory. `source_name`
// names the file in errors. Used by the reader and by the fuzz target.
struct ParsedSafetensors {
  std::map<std::string, std::string> metadata;
  std::vector<TensorInfo> tensors;  // in file order of their offsets
  uint64_t buffer_offset = 0;       // 8 + header length
};
ParsedSafetensors parse_safetensors(const uint8_t* data, size_t size, const std::string& source_name);

// One safetensors file, mapped.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_->path(); }
  const std::map<std::string, std::string>& metadata() const { return parsed_.metadata; }
  const std::vector<TensorInfo>& tensors() const { return parsed_.tensors; }
  const TensorInfo* find(const std::string& name) const;
  // Zero-copy view of a tensor in its stored dtype (an owned copy when the bytes are not aligned
  // to the element size, as in files whose header is not padded); fails naming the file when absent.
  Tensor get(const std::string& name) const;
  // The tensor as `dtype`: the zero-copy view when the stored dtype matches, otherwise a converted
  // copy (F32, BF16 and F16 only).
  Tensor get(const std::string& name, DType dtype) const;

 private:
  std::shared_ptr<const MappedFile> file_;
  ParsedSafetensors parsed_;
  std::map<std::string, size_t> index_;
};

// A checkpoint directory: model.safetensors, or the shards named by model.safetensors.index.json.
class Checkpoint {
 public:
  // `path` is a directory (its model.safetensors.index.json when present, else model.safetensors),
  // an index file, or a single .safetensors file. Every shard named by the index is opened; each
  // tensor must be in exactly one shard, the one the weight_map names.
  static Checkpoint open(const std::filesystem::path& path);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return location_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  Tensor get(const std::string& name) const;
  Tensor get(const std::string& name, DType dtype) const;  // as SafetensorsFile::get(name, dtype)
  // The file holding `name` (for error messages).
  const std::filesystem::path& file_of(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  const SafetensorsFile& file_holding(const std::string& name) const;

  std::filesystem::path path_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> location_;  // tensor name -> index into files_
};

// A named tensor to write.
struct NamedTensor {
  std::string name;
  Tensor tensor;
};

// Serialises tensors (sorted by descending alignment, then name) with `metadata`.
std::string serialize_safetensors(const std::vector<NamedTensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});
// Writes a safetensors file atomically.
void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes a checkpoint into `directory`: model.safetensors when `shards` is 1, otherwise
// model-0000i-of-0000N.safetensors plus model.safetensors.index.json (tensors assigned in order,
// balanced by bytes, at least one per shard; indent 2, sorted keys). Tensors keep the order given.
// Writing a single file removes a stale model.safetensors.index.json, which would otherwise win.
void write_checkpoint(const std::filesystem::path& directory, const std::vector<NamedTensor>& tensors,
                      int shards, const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace dt
