#pragma once
// Shared by the training tests: a tiny random model with its tokenizer (written once per process)
// and JSONL files.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/random_model.h"
#include "test_util.h"

namespace dt::test {

// The tiny preset (4 layers: 3 Gated DeltaNet, 1 attention; hidden 64) with a 320-token
// tokenizer, f32 weights.
inline const std::filesystem::path& tiny_train_model() {
  static const std::filesystem::path dir = [] {
    const auto path = temp_dir("tiny-train-model") / "model";
    RandomModelRequest request;
    request.preset = "tiny";
    request.tokenizer_vocab_size = 320;
    request.init.dtype = DType::F32;
    request.init.seed = 3;
    write_random_model(path, request);
    return path;
  }();
  return dir;
}

inline std::filesystem::path write_lines(const std::filesystem::path& path, const std::vector<std::string>& lines) {
  std::ofstream stream(path, std::ios::binary);
  for (const auto& line : lines) stream << line << "\n";
  return path;
}

}  // namespace dt::test
