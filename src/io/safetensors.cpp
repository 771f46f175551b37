#include "io/safetensors.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "core/error.h"

namespace dt {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderLength = 100'000'000;
constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::string_view kSingleFileName = "model.safetensors";
constexpr std::string_view kIndexFileName = "model.safetensors.index.json";

uint64_t read_u64_le(const uint8_t* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

std::string u64_le_bytes(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((value >> (8 * i)) & 0xffu);
  return bytes;
}

// Offset of the first byte that does not start a well-formed UTF-8 sequence (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or nullopt when all of `text` is UTF-8.
std::optional<size_t> first_invalid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = uint8_t(text[i]);
    size_t length = 1;
    uint8_t second_low = 0x80, second_high = 0xbf;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead == 0xe0) second_low = 0xa0;
      if (lead == 0xed) second_high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead == 0xf0) second_low = 0x90;
      if (lead == 0xf4) second_high = 0x8f;
    } else {
      return i;
    }
    if (i + length > text.size()) return i;
    const auto second = uint8_t(text[i + 1]);
    if (second < second_low || second > second_high) return i;
    for (size_t k = 2; k < length; ++k)
      if ((uint8_t(text[i + k]) & 0xc0u) != 0x80u) return i;
    i += length;
  }
  return std::nullopt;
}

// nlohmann keeps the last of duplicate keys silently; a duplicate tensor name (or dtype, or shard
// mapping) is ambiguous, so every object is checked for repeated keys while parsing.
json parse_json_rejecting_duplicates(std::string_view text, const std::string& source, std::string_view what) {
  std::vector<std::set<std::string>> open_objects;
  const json::parser_callback_t on_event = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second)
        fail("{}: duplicate key '{}' in the {} (at nesting depth {})", source, key, what, open_objects.size());
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& error) {  // parse_error, or out_of_range for a number like 1e999
    fail("{}: {} is not valid JSON: {}", source, what, error.what());
  }
}

// A short rendering of a JSON value for error messages; structured values are only dumped when
// small and flat, since dumping recurses and a hostile header can nest millions of levels deep.
std::string shortened(std::string text) {
  constexpr size_t kMaxShown = 80;
  if (text.size() > kMaxShown) text = text.substr(0, kMaxShown) + "...";
  return text;
}

std::string describe(const json& value) {
  const bool flat_array = value.is_array() && value.size() <= 8 &&
                          std::none_of(value.begin(), value.end(), [](const json& item) { return item.is_structured(); });
  if (value.is_structured() && !flat_array) return fmt::format("{} of {} elements", value.type_name(), value.size());
  return shortened(value.dump(-1, ' ', false, json::error_handler_t::replace));
}

// The value of a JSON integer >= 0 ("-0" included), or nullopt for anything else.
std::optional<uint64_t> non_negative_integer(const json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() == 0) return 0;
  return std::nullopt;
}

const json& required_field(const json& entry, const char* field, const std::string& name, const std::string& source) {
  const auto found = entry.find(field);
  if (found == entry.end()) fail("{}: tensor '{}': missing \"{}\"", source, name, field);
  return *found;
}

DType parse_entry_dtype(const json& entry, const std::string& name, const std::string& source) {
  const json& value = required_field(entry, "dtype", name, source);
  if (!value.is_string()) fail("{}: tensor '{}': \"dtype\" must be a string, got {}", source, name, describe(value));
  const auto& text = value.get_ref<const std::string&>();
  const auto dtype = parse_dtype(text);
  if (!dtype) fail("{}: tensor '{}': unknown dtype '{}'", source, name, shortened(text));
  return *dtype;
}

Shape parse_entry_shape(const json& entry, const std::string& name, const std::string& source) {
  const json& value = required_field(entry, "shape", name, source);
  if (!value.is_array()) fail("{}: tensor '{}': \"shape\" must be an array, got {}", source, name, describe(value));
  Shape shape;
  for (const json& dim : value) {
    if (!dim.is_number_integer())
      fail("{}: tensor '{}': shape dimension {} is not an integer", source, name, describe(dim));
    const auto size = non_negative_integer(dim);
    if (!size) fail("{}: tensor '{}': shape dimension {} is negative", source, name, describe(dim));
    if (*size > uint64_t(std::numeric_limits<int64_t>::max()))
      fail("{}: tensor '{}': shape dimension {} is too large", source, name, *size);
    shape.push_back(int64_t(*size));
  }
  return shape;
}

std::pair<uint64_t, uint64_t> parse_entry_offsets(const json& entry, const std::string& name,
                                                  const std::string& source) {
  const json& value = required_field(entry, "data_offsets", name, source);
  const auto begin = value.is_array() && value.size() == 2 ? non_negative_integer(value[0]) : std::nullopt;
  const auto end = value.is_array() && value.size() == 2 ? non_negative_integer(value[1]) : std::nullopt;
  if (!begin || !end)
    fail("{}: tensor '{}': \"data_offsets\" must be [begin, end] with non-negative integers, got {}", source, name,
         describe(value));
  if (*begin > *end) fail("{}: tensor '{}': data_offsets begin {} is after end {}", source, name, *begin, *end);
  return {*begin, *end};
}

uint64_t entry_byte_length(DType dtype, const Shape& shape, const std::string& name, const std::string& source) {
  uint64_t numel = 0;
  try {
    numel = shape_numel(shape);
  } catch (const Error& error) {
    fail("{}: tensor '{}': {}", source, name, error.what());
  }
  const auto bytes = dtype_byte_length(dtype, numel);
  if (!bytes)
    fail("{}: tensor '{}': shape {} of {} does not fill whole bytes or is too large", source, name,
         shape_string(shape), dtype_name(dtype));
  return *bytes;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& source) {
  if (!value.is_object())
    fail("{}: __metadata__ is {}, expected an object mapping strings to strings", source, value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string())
      fail("{}: __metadata__ value of '{}' is {}, expected a string", source, key, item.type_name());
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

// The tensors, sorted by offset, must tile the byte buffer exactly: no overlaps, holes or tail.
void check_tiling(const std::vector<TensorInfo>& sorted, uint64_t buffer_size, const std::string& source) {
  uint64_t cursor = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& tensor : sorted) {
    if (tensor.begin < cursor)
      fail("{}: tensor '{}' at bytes [{}, {}) overlaps tensor '{}' at [{}, {})", source, tensor.name, tensor.begin,
           tensor.end, previous->name, previous->begin, previous->end);
    if (tensor.begin > cursor)
      fail("{}: tensor '{}' starts at byte {}, which leaves a gap of unused bytes [{}, {})", source, tensor.name,
           tensor.begin, cursor, tensor.begin);
    cursor = tensor.end;
    previous = &tensor;
  }
  if (cursor != buffer_size)
    fail("{}: {} trailing bytes after the last tensor (tensors end at byte {} of a {}-byte buffer)", source,
         buffer_size - cursor, cursor, buffer_size);
}

size_t element_alignment(DType dtype) { return size_t(std::max(1, dtype_bits(dtype) / 8)); }

// Header and writing order of a safetensors file; the tensor bytes are appended in that order.
struct Layout {
  std::string prefix_and_header;
  std::vector<const NamedTensor*> order;
};

Layout plan_layout(const std::vector<NamedTensor>& tensors, const std::map<std::string, std::string>& metadata) {
  Layout layout;
  std::set<std::string_view> names;
  for (const NamedTensor& named : tensors) {
    if (named.name == kMetadataKey) fail("cannot write a tensor named '{}': the name is reserved", kMetadataKey);
    if (!names.insert(named.name).second) fail("cannot write tensor '{}' twice into one safetensors file", named.name);
    if (named.tensor.empty()) fail("cannot write tensor '{}': it holds no data", named.name);
    layout.order.push_back(&named);
  }
  // Largest alignment first keeps every tensor aligned to its element size in an 8-aligned buffer.
  std::sort(layout.order.begin(), layout.order.end(), [](const NamedTensor* left, const NamedTensor* right) {
    const size_t left_alignment = element_alignment(left->tensor.dtype());
    const size_t right_alignment = element_alignment(right->tensor.dtype());
    if (left_alignment != right_alignment) return left_alignment > right_alignment;
    return left->name < right->name;
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;
  uint64_t offset = 0;
  for (const NamedTensor* named : layout.order) {
    const uint64_t end = offset + named->tensor.nbytes();
    header[named->name] = {{"dtype", dtype_name(named->tensor.dtype())},
                           {"shape", named->tensor.shape()},
                           {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& error) {
    fail("cannot write safetensors header: {}", error.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // data then starts 8-byte aligned
  layout.prefix_and_header = u64_le_bytes(text.size()) + text;
  return layout;
}

std::string shard_file_name(int index, int count) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

// Shard index of each tensor: contiguous runs in the given order, cut when the running byte count
// reaches the next multiple of total/shards, with at least one tensor per shard.
std::vector<int> assign_shards(const std::vector<NamedTensor>& tensors, int shards) {
  unsigned __int128 total = 0;
  for (const NamedTensor& named : tensors) total += named.tensor.nbytes();
  std::vector<int> assignment(tensors.size());
  unsigned __int128 cumulative = 0;
  int shard = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    assignment[i] = shard;
    cumulative += tensors[i].tensor.nbytes();
    const size_t tensors_left = tensors.size() - i - 1;
    const auto shards_left = size_t(shards - 1 - shard);
    const bool reached_share = cumulative * unsigned(shards) >= total * unsigned(shard + 1);
    if (shards_left > 0 && (tensors_left == shards_left || reached_share)) ++shard;
  }
  return assignment;
}

}  // namespace

ParsedSafetensors parse_safetensors(const uint8_t* data, size_t size, const std::string& source_name) {
  const std::string& source = source_name;
  if (size < 8) fail("{}: file is {} bytes, too short for the 8-byte header length", source, size);
  const uint64_t header_length = read_u64_le(data);
  if (header_length > kMaxHeaderLength)
    fail("{}: header length {} exceeds the limit of {} bytes", source, header_length, kMaxHeaderLength);
  if (header_length > size - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes after the length)", source, header_length,
         size - 8);
  const std::string_view header(reinterpret_cast<const char*>(data + 8), size_t(header_length));
  if (const auto bad = first_invalid_utf8(header))
    fail("{}: header is not valid UTF-8 (byte {} of the header)", source, *bad);
  if (header.empty() || header.front() != '{') fail("{}: header is not a JSON object (it must start with '{{')", source);
  const json parsed = parse_json_rejecting_duplicates(header, source, "header");

  ParsedSafetensors result;
  result.buffer_offset = 8 + header_length;
  const uint64_t buffer_size = size - result.buffer_offset;
  for (const auto& [name, entry] : parsed.items()) {
    if (name == kMetadataKey) {
      result.metadata = parse_metadata(entry, source);
      continue;
    }
    if (!entry.is_object()) fail("{}: entry '{}' is {}, expected an object", source, name, entry.type_name());
    TensorInfo info;
    info.name = name;
    info.dtype = parse_entry_dtype(entry, name, source);
    info.shape = parse_entry_shape(entry, name, source);
    std::tie(info.begin, info.end) = parse_entry_offsets(entry, name, source);
    const uint64_t expected = entry_byte_length(info.dtype, info.shape, name, source);
    if (info.end - info.begin != expected)
      fail("{}: tensor '{}': byte range [{}, {}) holds {} bytes but shape {} of {} needs {}", source, name,
           info.begin, info.end, info.end - info.begin, shape_string(info.shape), dtype_name(info.dtype), expected);
    if (info.end > buffer_size)
      fail("{}: tensor '{}': data_offsets end {} is past the end of the {}-byte buffer", source, name, info.end,
           buffer_size);
    result.tensors.push_back(std::move(info));
  }
  std::sort(result.tensors.begin(), result.tensors.end(), [](const TensorInfo& left, const TensorInfo& right) {
    return std::tie(left.begin, left.end, left.name) < std::tie(right.begin, right.end, right.name);
  });
  check_tiling(result.tensors, buffer_size, source);
  return result;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile file;
  file.file_ = MappedFile::open(path);
  file.parsed_ = parse_safetensors(file.file_->data(), file.file_->size(), path.string());
  for (size_t i = 0; i < file.parsed_.tensors.size(); ++i) file.index_.emplace(file.parsed_.tensors[i].name, i);
  return file;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  const auto found = index_.find(name);
  return found == index_.end() ? nullptr : &parsed_.tensors[found->second];
}

Tensor SafetensorsFile::get(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (!info) fail("{}: no tensor named '{}'", path().string(), name);
  const uint8_t* bytes = file_->data() + parsed_.buffer_offset + info->begin;
  if (reinterpret_cast<uintptr_t>(bytes) % element_alignment(info->dtype) == 0)
    return Tensor::view(info->dtype, info->shape, bytes, file_);
  Tensor copy = Tensor::zeros(info->dtype, info->shape);
  std::memcpy(copy.mutable_data(), bytes, copy.nbytes());
  return copy;
}

Tensor SafetensorsFile::get(const std::string& name, DType dtype) const {
  Tensor stored = get(name);
  if (stored.dtype() == dtype) return stored;
  if (!is_float_storage(stored.dtype()) || !is_float_storage(dtype))
    fail("{}: tensor '{}' is {}, cannot convert it to {}", path().string(), name, dtype_name(stored.dtype()),
         dtype_name(dtype));
  return stored.to(dtype);
}

Checkpoint Checkpoint::open(const std::filesystem::path& path) {
  Checkpoint checkpoint;
  checkpoint.path_ = path;
  std::filesystem::path index_path;
  std::error_code ignored;  // an unreadable path shows up as the open failure below
  if (std::filesystem::is_directory(path, ignored)) {
    if (std::filesystem::exists(path / kIndexFileName, ignored)) {
      index_path = path / kIndexFileName;
    } else if (std::filesystem::exists(path / kSingleFileName, ignored)) {
      checkpoint.files_.push_back(SafetensorsFile::open(path / kSingleFileName));
    } else {
      fail("{}: no {} or {} in this directory", path.string(), kSingleFileName, kIndexFileName);
    }
  } else if (path.filename().string().ends_with(".index.json")) {
    index_path = path;
  } else {
    checkpoint.files_.push_back(SafetensorsFile::open(path));
  }

  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name
  std::map<std::string, size_t> shard_files;      // shard file name -> index into files_
  if (!index_path.empty()) {
    const std::string source = index_path.string();
    const json index = parse_json_rejecting_duplicates(read_text_file(index_path), source, "index");
    if (!index.is_object()) fail("{}: index is {}, expected a JSON object", source, index.type_name());
    const auto map_entry = index.find("weight_map");
    if (map_entry == index.end()) fail("{}: index has no \"weight_map\"", source);
    if (!map_entry->is_object()) fail("{}: \"weight_map\" is {}, expected an object", source, map_entry->type_name());
    for (const auto& [name, shard] : map_entry->items()) {
      if (!shard.is_string()) fail("{}: weight_map entry '{}' is {}, expected a file name", source, name, shard.type_name());
      const auto& shard_name = shard.get_ref<const std::string&>();
      if (shard_name.empty() || shard_name.find('/') != std::string::npos || shard_name == "." || shard_name == "..")
        fail("{}: weight_map entry '{}' names '{}', expected a file name in the same directory", source, name,
             shard_name);
      weight_map.emplace(name, shard_name);
      if (shard_files.count(shard_name)) continue;
      const auto shard_path = index_path.parent_path() / shard_name;
      if (!std::filesystem::is_regular_file(shard_path, ignored))
        fail("{}: shard file '{}' (named for tensor '{}') does not exist", source, shard_name, name);
      shard_files.emplace(shard_name, checkpoint.files_.size());
      checkpoint.files_.push_back(SafetensorsFile::open(shard_path));
    }
  }

  for (size_t i = 0; i < checkpoint.files_.size(); ++i) {
    for (const TensorInfo& tensor : checkpoint.files_[i].tensors()) {
      const auto [existing, inserted] = checkpoint.location_.emplace(tensor.name, i);
      if (!inserted)
        fail("{}: tensor '{}' is stored in two shards, {} and {}", path.string(), tensor.name,
             checkpoint.files_[existing->second].path().filename().string(),
             checkpoint.files_[i].path().filename().string());
    }
  }
  if (!index_path.empty()) {
    for (const auto& [name, shard_name] : weight_map) {
      const auto found = checkpoint.location_.find(name);
      if (found == checkpoint.location_.end() || found->second != shard_files.at(shard_name))
        fail("{}: tensor '{}' is mapped to shard '{}' but that file does not contain it", index_path.string(), name,
             shard_name);
    }
    for (const auto& [name, file_index] : checkpoint.location_)
      if (!weight_map.count(name))
        fail("{}: tensor '{}' is not listed in the weight_map of {}", checkpoint.files_[file_index].path().string(),
             name, index_path.string());
  }
  return checkpoint;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> result;
  result.reserve(location_.size());
  for (const auto& entry : location_) result.push_back(entry.first);
  return result;
}

const SafetensorsFile& Checkpoint::file_holding(const std::string& name) const {
  const auto found = location_.find(name);
  if (found == location_.end()) fail("{}: checkpoint has no tensor named '{}'", path_.string(), name);
  return files_[found->second];
}

const TensorInfo& Checkpoint::info(const std::string& name) const { return *file_holding(name).find(name); }

Tensor Checkpoint::get(const std::string& name) const { return file_holding(name).get(name); }

Tensor Checkpoint::get(const std::string& name, DType dtype) const { return file_holding(name).get(name, dtype); }

const std::filesystem::path& Checkpoint::file_of(const std::string& name) const { return file_holding(name).path(); }

std::string serialize_safetensors(const std::vector<NamedTensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  const Layout layout = plan_layout(tensors, metadata);
  std::string bytes = layout.prefix_and_header;
  for (const NamedTensor* named : layout.order)
    bytes.append(static_cast<const char*>(named->tensor.data()), named->tensor.nbytes());
  return bytes;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const Layout layout = plan_layout(tensors, metadata);
  write_file_atomic(path, [&](std::ostream& stream) {
    stream.write(layout.prefix_and_header.data(), std::streamsize(layout.prefix_and_header.size()));
    for (const NamedTensor* named : layout.order)
      stream.write(static_cast<const char*>(named->tensor.data()), std::streamsize(named->tensor.nbytes()));
  });
}

void write_checkpoint(const std::filesystem::path& directory, const std::vector<NamedTensor>& tensors, int shards,
                      const std::map<std::string, std::string>& metadata) {
  if (shards < 1) fail("{}: cannot write a checkpoint in {} shards, expected at least 1", directory.string(), shards);
  create_output_directory(directory);
  std::error_code error;
  if (shards == 1) {
    write_safetensors(directory / kSingleFileName, tensors, metadata);
    std::filesystem::remove(directory / kIndexFileName, error);
    if (error) fail("{}: cannot remove the stale index: {}", (directory / kIndexFileName).string(), error.message());
    return;
  }
  if (size_t(shards) > tensors.size())
    fail("{}: cannot split {} tensors into {} shards", directory.string(), tensors.size(), shards);
  const std::vector<int> assignment = assign_shards(tensors, shards);
  std::vector<std::vector<NamedTensor>> shard_tensors(static_cast<size_t>(shards));
  json weight_map = json::object();
  uint64_t total_size = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (weight_map.contains(tensors[i].name))
      fail("{}: cannot write tensor '{}' twice into one checkpoint", directory.string(), tensors[i].name);
    shard_tensors[size_t(assignment[i])].push_back(tensors[i]);
    weight_map[tensors[i].name] = shard_file_name(assignment[i], shards);
    total_size += tensors[i].tensor.nbytes();
  }
  for (int shard = 0; shard < shards; ++shard)
    write_safetensors(directory / shard_file_name(shard, shards), shard_tensors[size_t(shard)], metadata);
  const json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  // As transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
  write_file_atomic(directory / kIndexFileName, index.dump(2, ' ', true) + "\n");
}

}  // namespace dt
