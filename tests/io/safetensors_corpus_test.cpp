// Every file in the malformed corpus (tests/io/data, written by make_malformed_corpus.py) must fail
// with a dt::Error that names the file and its own defect; valid_* cases must open.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>

#include "core/error.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace dt {
namespace {

namespace fs = std::filesystem;

const fs::path kDataDir = "tests/io/data";

// Case (file stem or folder name) -> a fragment of the message only that defect produces.
const std::map<std::string, std::string> kSingleFileFragments = {
    {"empty_file", "file is 0 bytes, too short for the 8-byte header length"},
    {"too_short", "file is 5 bytes, too short"},
    {"header_length_past_end", "header length 1000 runs past the end of the file"},
    {"header_length_over_limit", "header length 100000001 exceeds the limit of 100000000 bytes"},
    {"header_length_u64_max", "header length 18446744073709551615 exceeds the limit"},
    {"header_not_utf8", "header is not valid UTF-8 (byte 3 of the header)"},
    {"header_utf8_surrogate", "header is not valid UTF-8 (byte 4 of the header)"},
    {"header_not_object", "header is not a JSON object"},
    {"header_invalid_json", "header is not valid JSON: [json.exception.parse_error.101] parse error at line 1, column 7"},
    {"header_trailing_garbage", "header is not valid JSON: [json.exception.parse_error.101] parse error at line 1, column 3"},
    {"number_overflow", "header is not valid JSON: [json.exception.out_of_range.406] number overflow parsing '1e999'"},
    {"entry_not_object", "entry 'w' is number, expected an object"},
    {"entry_deeply_nested", "entry 'w' is array, expected an object"},
    {"missing_dtype", "tensor 'w': missing \"dtype\""},
    {"missing_shape", "tensor 'w': missing \"shape\""},
    {"missing_data_offsets", "tensor 'w': missing \"data_offsets\""},
    {"dtype_not_string", "\"dtype\" must be a string, got 32"},
    {"shape_not_array", "\"shape\" must be an array, got 1"},
    {"offsets_not_integers", "\"data_offsets\" must be [begin, end] with non-negative integers, got [0,\"4\"]"},
    {"offsets_three_elements", "\"data_offsets\" must be [begin, end] with non-negative integers, got [0,4,8]"},
    {"offsets_negative", "\"data_offsets\" must be [begin, end] with non-negative integers, got [-4,-4]"},
    {"unknown_dtype", "unknown dtype 'F33'"},
    {"dtype_lowercase", "unknown dtype 'f32'"},
    {"negative_dim", "shape dimension -2 is negative"},
    {"non_integer_dim", "shape dimension 1.5 is not an integer"},
    {"integral_float_dim", "shape dimension 2.0 is not an integer"},
    {"dim_too_large", "shape dimension 9223372036854775808 is too large"},
    {"shape_overflow", "shape [1099511627776, 1099511627776] has too many elements"},
    {"subbyte_partial_byte", "shape [3] of F4 does not fill whole bytes"},
    {"byte_length_mismatch", "byte range [0, 12) holds 12 bytes but shape [2, 2] of F32 needs 16"},
    {"begin_after_end", "data_offsets begin 8 is after end 4"},
    {"offsets_past_buffer", "data_offsets end 32 is past the end of the 16-byte buffer"},
    {"offsets_u64_max", "data_offsets end 18446744073709551615 is past the end of the 1-byte buffer"},
    {"overlapping_ranges", "tensor 'b' at bytes [4, 12) overlaps tensor 'a' at [0, 8)"},
    {"empty_tensor_inside_another", "tensor 'b' at bytes [4, 4) overlaps tensor 'a'"},
    {"hole_between_tensors", "leaves a gap of unused bytes [8, 12)"},
    {"hole_at_start", "leaves a gap of unused bytes [0, 4)"},
    {"duplicate_name", "duplicate key 'w' in the header (at nesting depth 1)"},
    {"duplicate_dtype_key", "duplicate key 'dtype' in the header (at nesting depth 2)"},
    {"metadata_not_object", "__metadata__ is array, expected an object mapping strings to strings"},
    {"metadata_value_not_string", "__metadata__ value of 'format' is number, expected a string"},
    {"trailing_bytes", "4 trailing bytes after the last tensor"},
    {"trailing_bytes_no_tensors", "3 trailing bytes after the last tensor"},
};

// Sharded cases: the fragment and the file the message must name (relative to the case folder; the
// folder itself when empty).
struct ShardedCase {
  std::string fragment;
  std::string named_file;
};
const std::map<std::string, ShardedCase> kShardedFragments = {
    {"missing_shard_file",
     {"shard file 'model-00002-of-00002.safetensors' (named for tensor 'b') does not exist",
      "model.safetensors.index.json"}},
    {"tensor_missing_from_shard",
     {"tensor 'd' is mapped to shard 'model-00001-of-00002.safetensors' but that file does not contain it",
      "model.safetensors.index.json"}},
    {"tensor_mapped_to_wrong_shard",
     {"tensor 'a' is mapped to shard 'model-00002-of-00002.safetensors' but that file does not contain it",
      "model.safetensors.index.json"}},
    {"tensor_not_in_weight_map", {"tensor 'c' is not listed in the weight_map", "model-00002-of-00002.safetensors"}},
    {"tensor_in_two_shards",
     {"tensor 'b' is stored in two shards, model-00001-of-00002.safetensors and model-00002-of-00002.safetensors", ""}},
    {"index_invalid_json", {"index is not valid JSON", "model.safetensors.index.json"}},
    {"index_not_object", {"index is array, expected a JSON object", "model.safetensors.index.json"}},
    {"index_missing_weight_map", {"index has no \"weight_map\"", "model.safetensors.index.json"}},
    {"weight_map_not_object", {"\"weight_map\" is array, expected an object", "model.safetensors.index.json"}},
    {"weight_map_value_not_string", {"weight_map entry 'a' is number, expected a file name", "model.safetensors.index.json"}},
    {"weight_map_path_escape",
     {"names '../model-00001-of-00002.safetensors', expected a file name in the same directory",
      "model.safetensors.index.json"}},
    {"index_duplicate_tensor", {"duplicate key 'a' in the index", "model.safetensors.index.json"}},
    {"malformed_shard", {"tensor 'c': data_offsets end 16 is past the end of the 12-byte buffer",
                         "model-00002-of-00002.safetensors"}},
    {"no_checkpoint_files", {"no model.safetensors or model.safetensors.index.json in this directory", ""}},
};

bool is_valid_case(const std::string& name) { return name.rfind("valid_", 0) == 0; }

// The dt::Error message of opening `path`, or "" when it opens.
std::string open_error(const fs::path& path) {
  try {
    Checkpoint::open(path);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

template <typename Table>
void expect_distinct_fragments(const Table& table, auto fragment_of) {
  std::set<std::string> seen;
  for (const auto& [name, expected] : table)
    EXPECT_TRUE(seen.insert(fragment_of(expected)).second) << name << " shares its fragment with another case";
}

TEST(SafetensorsCorpus, EveryMalformedFileFailsWithItsOwnMessage) {
  expect_distinct_fragments(kSingleFileFragments, [](const std::string& fragment) { return fragment; });
  const fs::path folder = test::source_dir() / kDataDir / "safetensors";
  std::set<std::string> checked;
  for (const auto& file : fs::directory_iterator(folder)) {
    const std::string name = file.path().stem().string();
    ASSERT_EQ(file.path().extension(), ".safetensors") << file.path();
    const std::string message = open_error(file.path());
    if (is_valid_case(name)) {
      EXPECT_EQ(message, "") << name << " should open";
      continue;
    }
    const auto expected = kSingleFileFragments.find(name);
    ASSERT_NE(expected, kSingleFileFragments.end()) << name << " has no expected message in the table";
    EXPECT_NE(message.find(expected->second), std::string::npos) << name << ": got '" << message << "'";
    EXPECT_EQ(message.rfind(file.path().string() + ": ", 0), 0u) << name << " does not name its file: " << message;
    checked.insert(name);
  }
  for (const auto& [name, fragment] : kSingleFileFragments) EXPECT_TRUE(checked.count(name)) << name << " is missing";
}

TEST(SafetensorsCorpus, EveryMalformedShardedCheckpointFailsWithItsOwnMessage) {
  expect_distinct_fragments(kShardedFragments, [](const ShardedCase& expected) { return expected.fragment; });
  const fs::path folder = test::source_dir() / kDataDir / "sharded";
  std::set<std::string> checked;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    const std::string message = open_error(entry.path());
    if (is_valid_case(name)) {
      EXPECT_EQ(message, "") << name << " should open";
      continue;
    }
    const auto expected = kShardedFragments.find(name);
    ASSERT_NE(expected, kShardedFragments.end()) << name << " has no expected message in the table";
    EXPECT_NE(message.find(expected->second.fragment), std::string::npos) << name << ": got '" << message << "'";
    const fs::path named = expected->second.named_file.empty() ? entry.path() : entry.path() / expected->second.named_file;
    EXPECT_EQ(message.rfind(named.string() + ": ", 0), 0u) << name << " does not name " << named << ": " << message;
    checked.insert(name);
  }
  for (const auto& [name, fragment] : kShardedFragments) EXPECT_TRUE(checked.count(name)) << name << " is missing";
}

TEST(SafetensorsCorpus, ValidFilesReadAsWritten) {
  const fs::path folder = test::source_dir() / kDataDir / "safetensors";
  const SafetensorsFile mixed = SafetensorsFile::open(folder / "valid_mixed.safetensors");
  EXPECT_EQ(mixed.metadata().at("note"), "mixed dtypes");
  EXPECT_EQ(mixed.get("a.f32").to_f32_vector(), (std::vector<float>{1.5f, -2.0f, 0.25f, 8.0f}));
  EXPECT_EQ(*static_cast<const int64_t*>(mixed.get("b.i64").data()), -7);
  EXPECT_EQ(mixed.get("c.bf16").to_f32_vector(), (std::vector<float>{1.0f, 2.0f, -1.5f}));
  EXPECT_EQ(mixed.get("d.f16").to_f32_vector(), (std::vector<float>{1.0f}));
  EXPECT_EQ(mixed.get("f.empty").shape(), (Shape{0, 4}));

  // Without header padding the F32 bytes sit at an odd offset: the reader copies them into
  // aligned memory instead of handing out a misaligned view.
  const fs::path unpadded_path = folder / "valid_unpadded.safetensors";
  const std::string unpadded_bytes = read_text_file(unpadded_path);
  uint64_t header_length = 0;
  std::memcpy(&header_length, unpadded_bytes.data(), 8);
  ASSERT_NE((8 + header_length) % alignof(float), 0u) << "the fixture should put its F32 data off alignment";
  const SafetensorsFile unpadded = SafetensorsFile::open(unpadded_path);
  EXPECT_TRUE(unpadded.get("w").owns_data());
  EXPECT_FALSE(unpadded.get("x").owns_data());  // U8 is always aligned: a view
  EXPECT_EQ(reinterpret_cast<uintptr_t>(unpadded.get("w").data()) % alignof(float), 0u);
  EXPECT_EQ(unpadded.get("w").to_f32_vector(), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(*static_cast<const uint8_t*>(unpadded.get("x").data()), 5);

  const Checkpoint sharded = Checkpoint::open(test::source_dir() / kDataDir / "sharded" / "valid_sharded");
  EXPECT_EQ(sharded.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(sharded.file_of("c").filename(), "model-00002-of-00002.safetensors");
  EXPECT_EQ(sharded.get("c").to_f32_vector(), (std::vector<float>{4.0f, 5.0f, 6.0f}));
}

TEST(SafetensorsCorpus, CommittedCorpusMatchesTheGeneratorScript) {
  const fs::path regenerated = test::temp_dir();
  const auto result = test::run_command("/usr/bin/python3 " + (test::source_dir() / kDataDir / "make_malformed_corpus.py").string() +
                                        " " + regenerated.string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* kind : {"safetensors", "sharded"}) {
    const auto result_diff = test::run_command("diff -r " + (test::source_dir() / kDataDir / kind).string() + " " +
                                               (regenerated / kind).string());
    EXPECT_EQ(result_diff.exit_code, 0) << "rerun tests/io/data/make_malformed_corpus.py:\n" << result_diff.out;
  }
}

}  // namespace
}  // namespace dt
