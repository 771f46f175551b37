#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "test_util.h"

namespace dt {
namespace {

namespace fs = std::filesystem;

template <typename T>
Tensor tensor_of(DType dtype, Shape shape, const std::vector<T>& values) {
  Tensor tensor = Tensor::zeros(dtype, std::move(shape));
  EXPECT_EQ(tensor.nbytes(), values.size() * sizeof(T));
  std::memcpy(tensor.mutable_data(), values.data(), tensor.nbytes());
  return tensor;
}

std::vector<uint16_t> random_bits16(size_t count, uint32_t seed) {
  std::mt19937 generator(seed);
  std::vector<uint16_t> bits(count);
  for (auto& value : bits) value = uint16_t(generator());
  return bits;
}

// Tensors of every kind the writer must keep bit for bit, including NaN payloads and -0.
std::vector<NamedTensor> sample_tensors() {
  const std::vector<uint32_t> f32_bits = {0x3f800000u, 0x80000000u, 0x7fa00001u, 0xffc00123u,
                                          0x00000001u, 0x7f800000u, 0xc2f6e979u, 0x3eaaaaabu};
  return {
      {"layers.0.weight", tensor_of(DType::F32, {2, 4}, f32_bits)},
      {"layers.0.bf16", tensor_of(DType::BF16, {3, 5}, random_bits16(15, 1))},
      {"layers.1.f16", tensor_of(DType::F16, {7}, random_bits16(7, 2))},
      {"ids", tensor_of(DType::I64, {3}, std::vector<int64_t>{-1, 0, int64_t(1) << 40})},
      {"bytes", tensor_of(DType::U8, {5}, std::vector<uint8_t>{0, 1, 127, 128, 255})},
      {"empty", Tensor::zeros(DType::F32, {0, 3})},
      {"scalar", tensor_of(DType::BF16, {}, std::vector<uint16_t>{0x4049})},
  };
}

void expect_same_tensor(const Tensor& actual, const Tensor& expected, const std::string& name) {
  ASSERT_EQ(actual.dtype(), expected.dtype()) << name;
  ASSERT_EQ(actual.shape(), expected.shape()) << name;
  ASSERT_EQ(actual.nbytes(), expected.nbytes()) << name;
  EXPECT_EQ(std::memcmp(actual.data(), expected.data(), expected.nbytes()), 0) << name;
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(OutputDirectory, CreatesParentsAndNamesAFileInTheWay) {
  const fs::path nested = test::temp_dir() / "a" / "b";
  create_output_directory(nested);
  EXPECT_TRUE(fs::is_directory(nested));
  create_output_directory(nested);  // already there: fine
  const fs::path file = test::temp_dir() / "file";
  std::ofstream(file) << "x";
  EXPECT_EQ(error_of([&] { create_output_directory(file); }),
            file.string() + ": exists and is not a directory (expected a directory to write into)");
}

TEST(JsonFile, ParsesOrNamesThePathAndTheProblem) {
  const fs::path good = test::temp_dir() / "good.json", bad = test::temp_dir() / "bad.json";
  std::ofstream(good) << R"({"a": [1, 2]})";
  std::ofstream(bad) << R"({"a": )";
  EXPECT_EQ(read_json_file(good)["a"][1], 2);
  EXPECT_EQ(error_of([&] { read_json_file(bad); }).rfind(bad.string() + ": not valid JSON (", 0), 0u);
  const fs::path absent = test::temp_dir() / "absent.json";
  EXPECT_EQ(error_of([&] { read_json_file(absent); }), absent.string() + ": cannot open for reading");
}

TEST(Safetensors, RoundTripIsBitExactAndZeroCopy) {
  const auto tensors = sample_tensors();
  const fs::path path = test::temp_dir() / "sample.safetensors";
  write_safetensors(path, tensors, {{"format", "pt"}, {"purpose", "test"}});
  EXPECT_EQ(read_text_file(path), serialize_safetensors(tensors, {{"format", "pt"}, {"purpose", "test"}}));

  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"purpose", "test"}}));
  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const Tensor loaded = file.get(name);
    expect_same_tensor(loaded, tensor, name);
    EXPECT_FALSE(loaded.owns_data()) << name << " should be a view into the mapped file";
    ASSERT_NE(file.find(name), nullptr);
    EXPECT_EQ(file.find(name)->end - file.find(name)->begin, tensor.nbytes());
  }
  EXPECT_EQ(file.find("missing"), nullptr);
  EXPECT_NE(error_of([&] { file.get("missing"); }).find(path.string() + ": no tensor named 'missing'"),
            std::string::npos);
}

TEST(Safetensors, HeaderIsPaddedOrderedAndAligned) {
  const auto tensors = sample_tensors();
  const std::string bytes = serialize_safetensors(tensors, {{"format", "pt"}});
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  EXPECT_EQ(header_length % 8, 0u);
  const std::string header = bytes.substr(8, header_length);
  const size_t json_end = header.find_last_not_of(' ') + 1;
  EXPECT_LT(header.size() - json_end, 8u);  // only the padding is spaces
  const auto parsed = nlohmann::ordered_json::parse(header);

  std::vector<std::string> keys;
  for (const auto& item : parsed.items()) keys.push_back(item.key());
  // __metadata__ first, then descending alignment (I64, F32, the 2-byte ones, U8), names within.
  const std::vector<std::string> expected_order = {"__metadata__", "ids", "empty", "layers.0.weight", "layers.0.bf16",
                                                   "layers.1.f16", "scalar", "bytes"};
  EXPECT_EQ(keys, expected_order);
  uint64_t offset = 0;
  for (size_t i = 1; i < keys.size(); ++i) {
    const auto& entry = parsed[keys[i]];
    const auto begin = entry["data_offsets"][0].get<uint64_t>(), end = entry["data_offsets"][1].get<uint64_t>();
    EXPECT_EQ(begin, offset) << keys[i];
    const auto dtype = *parse_dtype(entry["dtype"].get<std::string>());
    EXPECT_EQ((8 + header_length + begin) % uint64_t(std::max(1, dtype_bits(dtype) / 8)), 0u) << keys[i];
    offset = end;
  }
  EXPECT_EQ(8 + header_length + offset, bytes.size());
  // No metadata: no __metadata__ key at all, and a header still padded to 8.
  const std::string bare = serialize_safetensors({tensors[0]});
  EXPECT_EQ(bare.find("__metadata__"), std::string::npos);
  EXPECT_EQ((bare.size() - tensors[0].tensor.nbytes()) % 8, 0u);
}

TEST(Safetensors, GetAsDtypeConvertsOnlyWhenNeeded) {
  const fs::path path = test::temp_dir() / "convert.safetensors";
  const std::vector<float> values = {1.0f, -2.5f, 3.140625f};
  write_safetensors(path, {{"w", Tensor::from_f32(DType::BF16, {3}, values)},
                           {"i", tensor_of(DType::I64, {1}, std::vector<int64_t>{4})}});
  const SafetensorsFile file = SafetensorsFile::open(path);
  const Tensor same = file.get("w", DType::BF16);
  EXPECT_FALSE(same.owns_data());
  const Tensor widened = file.get("w", DType::F32);
  EXPECT_EQ(widened.dtype(), DType::F32);
  EXPECT_EQ(widened.to_f32_vector(), values);  // exactly representable in BF16
  EXPECT_NE(error_of([&] { file.get("i", DType::F32); }).find("tensor 'i' is I64, cannot convert it to F32"),
            std::string::npos);
}

TEST(Safetensors, WriterRejectsAmbiguousInput) {
  const Tensor one = Tensor::zeros(DType::F32, {1});
  EXPECT_NE(error_of([&] { serialize_safetensors({{"a", one}, {"a", one}}); }).find("tensor 'a' twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] { serialize_safetensors({{"__metadata__", one}}); }).find("reserved"), std::string::npos);
  EXPECT_NE(error_of([&] { serialize_safetensors({{"a", Tensor()}}); }).find("holds no data"), std::string::npos);
  EXPECT_NE(error_of([&] { serialize_safetensors({{"a\xff", one}}); }).find("cannot write safetensors header"),
            std::string::npos);
}

TEST(Checkpoint, ThreeShardsRoundTripWithHuggingFaceIndex) {
  const fs::path directory = test::temp_dir() / "model";
  std::vector<NamedTensor> tensors = sample_tensors();
  tensors.push_back({"lm_head.weight", Tensor::from_f32(DType::F32, {4, 4}, std::vector<float>(16, 0.5f))});
  write_checkpoint(directory, tensors, 3);

  const char* shard_names[] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                               "model-00003-of-00003.safetensors"};
  for (const char* shard : shard_names) EXPECT_TRUE(fs::exists(directory / shard)) << shard;
  EXPECT_FALSE(fs::exists(directory / "model.safetensors"));

  const Checkpoint checkpoint = Checkpoint::open(directory);
  EXPECT_EQ(checkpoint.files().size(), 3u);
  std::vector<std::string> expected_names;
  uint64_t total_size = 0;
  std::string previous_shard;
  for (const auto& [name, tensor] : tensors) {
    expected_names.push_back(name);
    total_size += tensor.nbytes();
    expect_same_tensor(checkpoint.get(name), tensor, name);
    EXPECT_EQ(checkpoint.info(name).dtype, tensor.dtype());
    // Shards take contiguous runs of the given order.
    const std::string shard = checkpoint.file_of(name).filename().string();
    EXPECT_GE(shard, previous_shard) << name;
    previous_shard = shard;
  }
  for (const auto& file : checkpoint.files())
    EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  std::sort(expected_names.begin(), expected_names.end());
  EXPECT_EQ(checkpoint.names(), expected_names);
  EXPECT_TRUE(checkpoint.contains("ids"));
  EXPECT_FALSE(checkpoint.contains("nope"));
  EXPECT_NE(error_of([&] { checkpoint.get("nope"); }).find(directory.string() + ": checkpoint has no tensor named 'nope'"),
            std::string::npos);

  const fs::path index_path = directory / "model.safetensors.index.json";
  const std::string index_text = read_text_file(index_path);
  const auto index = nlohmann::json::parse(index_text);
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total_size);
  EXPECT_EQ(index["weight_map"].size(), tensors.size());
  EXPECT_EQ(index["weight_map"]["ids"], checkpoint.file_of("ids").filename().string());
  // Byte for byte what transformers writes.
  const auto python = test::run_command(
      "/usr/bin/python3 -c \"import json,sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), indent=2, "
      "sort_keys=True) + '\\n')\" " + index_path.string());
  ASSERT_EQ(python.exit_code, 0) << python.err;
  EXPECT_EQ(index_text, python.out);

  // The index file itself also opens the checkpoint.
  EXPECT_EQ(Checkpoint::open(index_path).names(), expected_names);
}

TEST(Checkpoint, ShardsAreBalancedByBytesWithAtLeastOneTensorEach) {
  const fs::path directory = test::temp_dir();
  std::vector<NamedTensor> tensors;
  for (int i = 0; i < 6; ++i) tensors.push_back({fmt::format("t{}", i), Tensor::zeros(DType::F32, {10})});
  write_checkpoint(directory, tensors, 3);
  const Checkpoint balanced = Checkpoint::open(directory);
  for (const auto& file : balanced.files()) EXPECT_EQ(file.tensors().size(), 2u) << file.path();

  // One huge tensor first: the remaining shards still each get a tensor.
  const fs::path skewed_directory = test::temp_dir("skewed");
  tensors[0].tensor = Tensor::zeros(DType::F32, {1000});
  write_checkpoint(skewed_directory, tensors, 4);
  const Checkpoint skewed = Checkpoint::open(skewed_directory);
  ASSERT_EQ(skewed.files().size(), 4u);
  EXPECT_EQ(skewed.file_of("t0").filename(), "model-00001-of-00004.safetensors");
  EXPECT_EQ(skewed.file_of("t1").filename(), "model-00002-of-00004.safetensors");
  for (const auto& file : skewed.files()) EXPECT_FALSE(file.tensors().empty()) << file.path();

  // Empty tensors only (total size 0) still spread over every shard.
  const fs::path empty_directory = test::temp_dir("empty");
  write_checkpoint(empty_directory, {{"a", Tensor::zeros(DType::F32, {0})}, {"b", Tensor::zeros(DType::U8, {0})}}, 2);
  EXPECT_EQ(Checkpoint::open(empty_directory).files().size(), 2u);
}

TEST(Checkpoint, SingleFileAndShardCountErrors) {
  const fs::path directory = test::temp_dir();
  const auto tensors = sample_tensors();
  write_checkpoint(directory, tensors, 3);
  // Rewriting as one file removes the index that would otherwise still select the old shards.
  write_checkpoint(directory, {tensors[0]}, 1);
  EXPECT_FALSE(fs::exists(directory / "model.safetensors.index.json"));
  const Checkpoint single = Checkpoint::open(directory);
  EXPECT_EQ(single.names(), std::vector<std::string>{tensors[0].name});
  EXPECT_EQ(single.file_of(tensors[0].name), directory / "model.safetensors");
  EXPECT_EQ(Checkpoint::open(directory / "model.safetensors").names(), single.names());

  EXPECT_NE(error_of([&] { write_checkpoint(directory, tensors, 0); }).find("at least 1"), std::string::npos);
  EXPECT_NE(error_of([&] { write_checkpoint(directory, {tensors[0], tensors[1]}, 3); })
                .find("cannot split 2 tensors into 3 shards"),
            std::string::npos);
  EXPECT_NE(error_of([&] { write_checkpoint(directory, {tensors[0], tensors[1], tensors[0]}, 2); })
                .find("twice into one checkpoint"),
            std::string::npos);
  EXPECT_NE(error_of([&] { write_checkpoint(directory / "model.safetensors" / "sub", tensors, 1); })
                .find("model.safetensors/sub: cannot create the directory: "),
            std::string::npos);
  EXPECT_NE(error_of([&] { Checkpoint::open(directory / "absent.safetensors"); }).find("absent.safetensors: cannot open"),
            std::string::npos);
}

}  // namespace
}  // namespace dt
