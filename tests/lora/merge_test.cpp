// Merging: the BLAS kernel against the plain-loop reference, and whole checkpoints (both
// prefixes, sharded, BF16 and F32) against W + s B A computed independently here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "lora/merge.h"
#include "model/weights.h"
#include "lora_fixtures.h"
#include "test_util.h"

namespace dt {
namespace {

// Independent expectation: plain double sums, rounded to f32, then to the stored dtype.
std::vector<float> expected_merge(const Tensor& weight, const LoraModule& module) {
  std::vector<float> base = weight.to_f32_vector();
  std::vector<float> merged(base.size());
  for (int64_t o = 0; o < module.out; ++o)
    for (int64_t i = 0; i < module.in; ++i) {
      long double delta = 0;
      for (int64_t k = 0; k < module.rank; ++k)
        delta += (long double)module.b[size_t(o * module.rank + k)] * module.a[size_t(k * module.in + i)];
      merged[size_t(o * module.in + i)] = float(base[size_t(o * module.in + i)] + double(module.scaling * delta));
    }
  return Tensor::from_f32(weight.dtype(), weight.shape(), merged).to_f32_vector();
}

// Equal up to one unit in the last place of the stored dtype (summation order may differ).
void expect_close_in_dtype(const std::vector<float>& actual, const std::vector<float>& expected, DType dtype) {
  ASSERT_EQ(actual.size(), expected.size());
  const double ulp = dtype == DType::F32 ? 0x1.0p-23 : dtype == DType::BF16 ? 0x1.0p-7 : 0x1.0p-10;
  for (size_t i = 0; i < actual.size(); ++i)
    ASSERT_LE(std::abs(actual[i] - expected[i]), ulp * std::max(std::abs(expected[i]), 1e-6f) * 1.01) << i;
}

TEST(Merge, BlasKernelMatchesReference) {
  const ModelConfig config = test::tiny_config();
  const LoraAdapter adapter = test::random_adapter(config, 3, 5);
  for (LinearKind kind : {LinearKind::AttnQ, LinearKind::MlpDown}) {
    const LoraModule& module = *adapter.find(3, kind);
    std::vector<float> values(size_t(module.out * module.in));
    for (size_t i = 0; i < values.size(); ++i) values[i] = float(std::sin(double(i))) * 0.05f;
    for (DType dtype : {DType::F32, DType::BF16}) {
      const Tensor weight = Tensor::from_f32(dtype, {module.out, module.in}, values);
      const Tensor fast = merge_module(weight, module);
      const Tensor reference = merge_module_reference(weight, module);
      EXPECT_EQ(fast.dtype(), dtype);
      EXPECT_EQ(fast.shape(), weight.shape());
      expect_close_in_dtype(fast.to_f32_vector(), reference.to_f32_vector(), dtype);
      expect_close_in_dtype(reference.to_f32_vector(), expected_merge(weight, module), dtype);
    }
  }
}

TEST(Merge, RejectsAWeightOfTheWrongShape) {
  const LoraAdapter adapter = test::random_adapter(test::tiny_config());
  EXPECT_THROW(merge_module(Tensor::zeros(DType::F32, {64, 64}), *adapter.find(3, LinearKind::AttnQ)), Error);
}

struct MergeCase {
  StackPrefix model_prefix;
  StackPrefix adapter_namespace;
  DType dtype;
  int shards;
};

TEST(Merge, CheckpointHoldsWPlusScaledBA) {
  for (const MergeCase& c : {MergeCase{StackPrefix::Multimodal, StackPrefix::Multimodal, DType::BF16, 2},
                             MergeCase{StackPrefix::TextOnly, StackPrefix::Multimodal, DType::F32, 1}}) {
    const auto root = test::temp_dir(c.shards == 2 ? "sharded" : "single");
    const auto model_dir = root / "model", adapter_dir = root / "adapter", out_dir = root / "merged";
    test::write_tiny_model(model_dir, c.model_prefix, c.dtype, c.shards);
    write_file_atomic(model_dir / "tokenizer.json", "{}");
    const ModelConfig config = load_config(model_dir);
    AdapterInitOptions options;
    options.rank = 4;
    options.alpha = 6;
    options.use_rslora = true;
    options.kinds = {LinearKind::AttnQ, LinearKind::GdnZ, LinearKind::MlpDown};
    options.layers = std::vector<int>{0, 2, 3};
    options.init = LoraInit::Random;
    const LoraAdapter adapter = init_adapter(config, options);
    save_adapter(adapter, adapter_dir, c.adapter_namespace);

    merge_checkpoint(model_dir, adapter_dir, out_dir);

    const Checkpoint base = Checkpoint::open(model_dir);
    const Checkpoint merged = Checkpoint::open(out_dir);
    EXPECT_EQ(merged.files().size(), size_t(c.shards));
    EXPECT_EQ(merged.names(), base.names());
    EXPECT_EQ(read_text_file(out_dir / "config.json"), read_text_file(model_dir / "config.json"));
    EXPECT_TRUE(std::filesystem::exists(out_dir / "tokenizer.json"));
    size_t adapted = 0;
    for (const std::string& name : base.names()) {
      const Tensor before = base.get(name), after = merged.get(name);
      ASSERT_EQ(after.dtype(), before.dtype()) << name;
      ASSERT_EQ(after.shape(), before.shape()) << name;
      const LoraModule* module = nullptr;
      for (const LoraModule* candidate : adapter.modules())
        if (lora_module_name(c.model_prefix, candidate->layer, candidate->kind) + ".weight" == name) module = candidate;
      if (module) {
        ++adapted;
        expect_close_in_dtype(after.to_f32_vector(), expected_merge(before, *module), before.dtype());
        EXPECT_NE(after.to_f32_vector(), before.to_f32_vector()) << name;
      } else {
        EXPECT_EQ(std::memcmp(after.data(), before.data(), before.nbytes()), 0) << name;
      }
    }
    EXPECT_EQ(adapted, adapter.module_count());
    // The merged model is itself a valid model.
    EXPECT_NO_THROW(load_model(out_dir));
  }
}

TEST(Merge, RefusesToOverwriteTheBaseModel) {
  const auto root = test::temp_dir();
  test::write_tiny_model(root / "model", StackPrefix::Multimodal, DType::F32, 1);
  save_adapter(test::random_adapter(test::tiny_config()), root / "adapter", StackPrefix::Multimodal);
  EXPECT_THROW(merge_checkpoint(root / "model", root / "adapter", root / "model"), Error);
}

}  // namespace
}  // namespace dt
