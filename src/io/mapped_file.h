#pragma once
// Read-only memory-mapped file. Tensors viewing its bytes hold a shared_ptr to it.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <ostream>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace dt {

class MappedFile {
 public:
  // Maps the whole file; fails naming the path when it cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string; fails naming the path.
std::string read_text_file(const std::filesystem::path& path);
// Reads and parses a JSON file; fails naming the path when it cannot be read or parsed.
nlohmann::json read_json_file(const std::filesystem::path& path);
// Creates `path` and its parents where missing; fails naming the path and the reason (a file in
// the way, no permission) instead of letting std::filesystem's terse exception through.
void create_output_directory(const std::filesystem::path& path);
// Writes `contents` to `path` atomically: a temporary file in the same folder, then rename.
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);
// The same, streaming: `write` fills the temporary file's stream.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);

}  // namespace dt
