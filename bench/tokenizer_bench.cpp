// Tokenizer speed: loading a tokenizer.json, encoding and decoding a text file, and training the BPE
// tokenizer used for random models. bench/run.sh times Hugging Face tokenizers on the same files in
// the same run (bench/tokenizer_reference_bench.js) and reports the ratios.
//
//   bench_tokenizer --tokenizer=TOKENIZER.json --text=TEXT_FILE [--benchmark_* flags]
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "io/mapped_file.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

namespace dt {
namespace {

constexpr int64_t kTrainedVocabSize = 4096;

struct Inputs {
  std::string tokenizer_path;
  std::string text_path;
};

// The flags Google Benchmark left in argv (it removes its own --benchmark_* flags).
Inputs parse_inputs(int argc, char** argv) {
  Inputs inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--tokenizer="))
      inputs.tokenizer_path = arg.substr(arg.find('=') + 1);
    else if (arg.starts_with("--text="))
      inputs.text_path = arg.substr(arg.find('=') + 1);
    else
      fail("bench_tokenizer: unknown argument '{}' (expected --tokenizer=FILE, --text=FILE or --benchmark_* flags)", arg);
  }
  if (inputs.tokenizer_path.empty() || inputs.text_path.empty())
    fail("usage: bench_tokenizer --tokenizer=TOKENIZER.json --text=TEXT_FILE [--benchmark_* flags]");
  return inputs;
}

void register_benchmarks(const Inputs& inputs) {
  benchmark::RegisterBenchmark("load", [path = inputs.tokenizer_path](benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(Tokenizer::load(path));
  })->Unit(benchmark::kMillisecond)->UseRealTime();

  // Loaded once here, outside the timed loops.
  auto tokenizer = std::make_shared<const Tokenizer>(Tokenizer::load(inputs.tokenizer_path));
  auto text = std::make_shared<const std::string>(read_text_file(inputs.text_path));
  auto ids = std::make_shared<const std::vector<int32_t>>(tokenizer->encode(*text));

  benchmark::RegisterBenchmark("encode", [tokenizer, text](benchmark::State& state) {
    size_t tokens = 0;
    for (auto _ : state) tokens = tokenizer->encode(*text).size();
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text->size()));
    state.counters["tokens"] = static_cast<double>(tokens);
  })->Unit(benchmark::kMillisecond)->UseRealTime();

  benchmark::RegisterBenchmark("decode", [tokenizer, ids](benchmark::State& state) {
    size_t bytes = 0;
    for (auto _ : state) bytes = tokenizer->decode(*ids).size();
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
    state.counters["tokens"] = static_cast<double>(ids->size());
  })->Unit(benchmark::kMillisecond)->UseRealTime();

  benchmark::RegisterBenchmark(fmt::format("train_bpe/{}", kTrainedVocabSize).c_str(), [](benchmark::State& state) {
    const std::string& corpus = builtin_tokenizer_corpus();
    for (auto _ : state) benchmark::DoNotOptimize(train_bpe_tokenizer(corpus, kTrainedVocabSize));
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * corpus.size()));
  })->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace
}  // namespace dt

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  try {
    dt::register_benchmarks(dt::parse_inputs(argc, argv));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
