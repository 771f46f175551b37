// deltatune grad: the Hugging Face causal-LM loss of a JSONL file of token examples (all lines one
// batch: the CE summed over every non-ignored target, divided by their count) and its gradient
// with respect to every LoRA factor of an adapter, written to a safetensors file under the
// adapter's own keys. For checking the backward against a reference and measuring its cost.
#include <fmt/core.h>
#include <sys/resource.h>

#include <chrono>
#include <fstream>
#include <string>

#include "cli/cli.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "lora/adapter_io.h"
#include "model/backward.h"
#include "model/weights.h"
#include "train/token_examples.h"

namespace dt {
namespace {

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Resident pages backed by files now (the mapped checkpoint, once touched): peak_rss_mib minus this
// is about the peak of what the process allocated. 0 where /proc is unavailable.
double resident_file_mib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  double kib = 0;
  while (status >> key)
    if (key == "RssFile:" && status >> kib) return kib / 1024.0;
  return 0;
}

// The namespace the adapter's file uses (load_adapter accepts either and keeps one per file).
StackPrefix adapter_key_namespace(const std::filesystem::path& directory, const LoraAdapter& adapter) {
  const SafetensorsFile file = SafetensorsFile::open(directory / kAdapterWeightsFile);
  const LoraModule& first = *adapter.modules().front();
  for (StackPrefix prefix : {StackPrefix::TextOnly, StackPrefix::Multimodal})
    if (file.find(lora_tensor_name(prefix, first.layer, first.kind, LoraFactor::A))) return prefix;
  fail("{}: no key of module layer {} {} in either namespace", file.path().string(), first.layer,
       linear_module_path(first.kind));
}

Tensor f32_tensor(const std::vector<float>& values, Shape shape) {
  Tensor tensor = Tensor::zeros(DType::F32, std::move(shape));
  std::copy(values.begin(), values.end(), tensor.f32());
  return tensor;
}

}  // namespace

void register_grad(CLI::App& app) {
  struct Options {
    std::string model, adapter, data, out;
    bool recompute_activations = false, recurrent = false;
  };
  auto options = std::make_shared<Options>();
  auto* command = app.add_subcommand(
      "grad", "Write the causal-LM loss of a JSONL file of token examples and its gradient for every LoRA factor");
  command->add_option("--model", options->model, "Model directory (config.json + safetensors)")->required();
  command->add_option("--adapter", options->adapter, "PEFT LoRA adapter directory")->required();
  command->add_option("--data", options->data,
                      "JSONL, one example a line: {\"input_ids\": [...]} or {\"input_ids\": [...], \"labels\": [...]} "
                      "(labels unshifted, -100 ignored); all lines form one batch")
      ->required();
  command->add_option("--out", options->out,
                      "Output .safetensors: \"loss\" (F32 [1]) and each adapter key's gradient (F32, same shape)")
      ->required();
  command->add_flag("--recompute-activations", options->recompute_activations,
                    "Keep only each layer's input during the forward and recompute the layer before its backward");
  command->add_flag("--recurrent", options->recurrent, "Evaluate the delta rule token by token instead of chunked");
  command->callback([options] {
    const ModelWeights weights = load_model(options->model);
    const LoraAdapter adapter = load_adapter(options->adapter, weights.config);
    if (adapter.module_count() == 0) fail("{}: the adapter has no modules", options->adapter);
    const StackPrefix key_namespace = adapter_key_namespace(options->adapter, adapter);
    const std::vector<TokenExample> examples = read_token_examples(options->data, weights.config.vocab_size);
    fmt::print(stderr, "grad: loaded, peak_rss_mib {:.0f}\n", peak_rss_mib());

    // One batch: every line's gradient is scaled by 1 / (targets of the whole file).
    std::vector<PackedBatch> batches(examples.size());
    int64_t targets = 0, tokens = 0;
    for (size_t i = 0; i < examples.size(); ++i) {
      batches[i].append(examples[i].input_ids, examples[i].labels);
      targets += batches[i].target_count();
      tokens += batches[i].size();
    }
    if (targets == 0)
      fail("{}: nothing to predict (every line has one token or only -100 labels after the first)", options->data);

    BackwardOptions backward_options;
    backward_options.delta_rule = options->recurrent ? DeltaRuleMode::Recurrent : DeltaRuleMode::Chunked;
    backward_options.recompute_activations = options->recompute_activations;
    LoraGradients gradients(adapter);
    const auto start = std::chrono::steady_clock::now();
    double loss_sum = 0;
    for (const PackedBatch& batch : batches)
      loss_sum +=
          accumulate_lora_gradients(weights, adapter, batch, float(1.0 / double(targets)), gradients, backward_options)
              .sum;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double loss = loss_sum / double(targets);

    std::vector<NamedTensor> tensors;
    tensors.push_back({"loss", f32_tensor({float(loss)}, {1})});
    const std::vector<const LoraModule*> modules = adapter.modules();
    for (size_t i = 0; i < modules.size(); ++i) {
      const LoraModule& module = *modules[i];
      const LoraModuleGradient& gradient = gradients.modules()[i];
      tensors.push_back({lora_tensor_name(key_namespace, module.layer, module.kind, LoraFactor::A),
                         f32_tensor(gradient.a, {module.rank, module.in})});
      tensors.push_back({lora_tensor_name(key_namespace, module.layer, module.kind, LoraFactor::B),
                         f32_tensor(gradient.b, {module.out, module.rank})});
    }
    write_safetensors(options->out, tensors);
    fmt::print(stderr, "grad: tokens {} loss {:.6f} seconds {:.3f} peak_rss_mib {:.0f} rss_file_mib {:.0f}\n", tokens,
               loss, seconds, peak_rss_mib(), resident_file_mib());
  });
}

}  // namespace dt
