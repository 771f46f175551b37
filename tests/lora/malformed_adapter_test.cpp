// A corpus of malformed adapters, each built from a valid one with a single defect and rejected
// with its own message; and several defects at once all reported.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include <fmt/ranges.h>

#include "lora_fixtures.h"
#include "test_util.h"

namespace dt {
namespace {

const std::string kMultimodal = "base_model.model.model.language_model.layers.";

struct Defect {
  std::string name;
  std::function<void(const std::filesystem::path&)> plant;
  std::string message;  // a fragment of the expected error
};

void set_config(const std::filesystem::path& dir, const std::string& key, nlohmann::json value) {
  test::edit_adapter_config(dir, [&](nlohmann::json& json) { json[key] = value; });
}

void edit_tensors(const std::filesystem::path& dir, const std::function<void(std::vector<NamedTensor>&)>& edit) {
  test::edit_adapter_tensors(dir, edit);
}

void remove_tensor(std::vector<NamedTensor>& tensors, const std::string& name) {
  std::erase_if(tensors, [&](const NamedTensor& tensor) { return tensor.name == name; });
}

void rename_tensor(std::vector<NamedTensor>& tensors, const std::string& from, const std::string& to) {
  test::find_tensor(tensors, from).name = to;
}

Tensor zeros(Shape shape) { return Tensor::zeros(DType::F32, std::move(shape)); }

std::vector<Defect> defects() {
  const std::string q = kMultimodal + "3.self_attn.q_proj";
  const std::string up = kMultimodal + "1.mlp.up_proj";
  return {
      {"peft_type", [](auto& dir) { set_config(dir, "peft_type", "LOHA"); }, "peft_type is \"LOHA\"; only \"LORA\""},
      {"no_peft_type", [](auto& dir) { test::edit_adapter_config(dir, [](auto& json) { json.erase("peft_type"); }); },
       "peft_type is missing"},
      {"use_dora", [](auto& dir) { set_config(dir, "use_dora", true); }, "use_dora is true; DoRA"},
      {"bias_all", [](auto& dir) { set_config(dir, "bias", "all"); }, "bias is \"all\"; only \"none\""},
      {"lora_bias", [](auto& dir) { set_config(dir, "lora_bias", true); }, "lora_bias is true"},
      {"lora_b_bias_tensor",
       [q](auto& dir) { edit_tensors(dir, [&](auto& tensors) { tensors.push_back({q + ".lora_B.bias", zeros({256})}); }); },
       "lora_B.bias"},
      {"modules_to_save", [](auto& dir) { set_config(dir, "modules_to_save", {"lm_head"}); },
       "modules_to_save is [\"lm_head\"]"},
      {"fan_in_fan_out", [](auto& dir) { set_config(dir, "fan_in_fan_out", true); }, "fan_in_fan_out is true"},
      {"a_without_b", [q](auto& dir) { edit_tensors(dir, [&](auto& tensors) { remove_tensor(tensors, q + ".lora_B.weight"); }); },
       "self_attn.q_proj: lora_A is present but lora_B is missing"},
      {"b_without_a", [up](auto& dir) { edit_tensors(dir, [&](auto& tensors) { remove_tensor(tensors, up + ".lora_A.weight"); }); },
       "mlp.up_proj: lora_B is present but lora_A is missing"},
      {"rank_mismatch_a_b",
       [q](auto& dir) { edit_tensors(dir, [&](auto& tensors) { test::find_tensor(tensors, q + ".lora_B.weight").tensor = zeros({256, 5}); }); },
       "lora_A has rank 4 (shape [4, 64]) but lora_B has rank 5"},
      {"rank_not_configured",
       [up](auto& dir) {
         edit_tensors(dir, [&](auto& tensors) {
           test::find_tensor(tensors, up + ".lora_A.weight").tensor = zeros({2, 64});
           test::find_tensor(tensors, up + ".lora_B.weight").tensor = zeros({128, 2});
         });
       },
       "mlp.up_proj: rank 2 does not match the configured rank 4"},
      {"rank_pattern_disagrees", [](auto& dir) { set_config(dir, "rank_pattern", {{"q_proj", 8}}); },
       "self_attn.q_proj: rank 4 does not match the configured rank 8"},
      {"shape_in",
       [q](auto& dir) { edit_tensors(dir, [&](auto& tensors) { test::find_tensor(tensors, q + ".lora_A.weight").tensor = zeros({4, 65}); }); },
       "lora_A shape [4, 65] does not match the model: expected [4, 64]"},
      {"shape_out",
       [q](auto& dir) { edit_tensors(dir, [&](auto& tensors) { test::find_tensor(tensors, q + ".lora_B.weight").tensor = zeros({128, 4}); }); },
       "lora_B shape [128, 4] does not match the model: expected [256, 4]"},
      {"three_dims",
       [q](auto& dir) { edit_tensors(dir, [&](auto& tensors) { test::find_tensor(tensors, q + ".lora_A.weight").tensor = zeros({4, 64, 1}); }); },
       "shape [4, 64, 1] must have 2 dimensions"},
      {"layer_out_of_range",
       [up](auto& dir) {
         edit_tensors(dir, [&](auto& tensors) {
           rename_tensor(tensors, up + ".lora_A.weight", kMultimodal + "9.mlp.up_proj.lora_A.weight");
         });
       },
       "layer 9 is out of range (the model has 4 layers)"},
      {"kind_absent_from_layer",
       [q](auto& dir) {
         edit_tensors(dir, [&](auto& tensors) {
           tensors.push_back({kMultimodal + "0.self_attn.q_proj.lora_A.weight", zeros({4, 64})});
           tensors.push_back({kMultimodal + "0.self_attn.q_proj.lora_B.weight", zeros({256, 4})});
         });
       },
       "layer 0 is a linear_attention layer and has no q_proj"},
      {"unknown_module",
       [](auto& dir) {
         edit_tensors(dir, [&](auto& tensors) { tensors.push_back({kMultimodal + "3.self_attn.qkv_proj.lora_A.weight", zeros({4, 64})}); });
       },
       "unknown module \"self_attn.qkv_proj\""},
      {"unknown_key",
       [](auto& dir) { edit_tensors(dir, [&](auto& tensors) { tensors.push_back({"base_model.model.lm_head.lora_A.weight", zeros({4, 64})}); }); },
       "base_model.model.lm_head.lora_A.weight: unknown key"},
      {"adapter_name_in_key",
       [q](auto& dir) { edit_tensors(dir, [&](auto& tensors) { rename_tensor(tensors, q + ".lora_A.weight", q + ".lora_A.default.weight"); }); },
       "lora_A.default.weight: unknown key"},
      {"non_finite",
       [q](auto& dir) {
         edit_tensors(dir, [&](auto& tensors) {
           Tensor& tensor = test::find_tensor(tensors, q + ".lora_B.weight").tensor;
           tensor.f32()[5] = std::numeric_limits<float>::quiet_NaN();
         });
       },
       "q_proj.lora_B.weight: non-finite value nan at element 5"},
      {"infinite",
       [q](auto& dir) {
         edit_tensors(dir, [&](auto& tensors) { test::find_tensor(tensors, q + ".lora_A.weight").tensor.f32()[0] = -INFINITY; });
       },
       "non-finite value -inf at element 0"},
      {"integer_dtype",
       [q](auto& dir) {
         edit_tensors(dir, [&](auto& tensors) { test::find_tensor(tensors, q + ".lora_A.weight").tensor = Tensor::zeros(DType::I32, {4, 64}); });
       },
       "dtype I32; expected F32, BF16 or F16"},
      {"alpha_zero", [](auto& dir) { set_config(dir, "lora_alpha", 0); }, "lora_alpha must be a finite positive number, got 0"},
      {"alpha_negative", [](auto& dir) { set_config(dir, "lora_alpha", -2.5); }, "lora_alpha must be a finite positive number"},
      {"alpha_string", [](auto& dir) { set_config(dir, "lora_alpha", "16"); }, "lora_alpha must be a finite positive number, got \"16\""},
      {"r_zero", [](auto& dir) { set_config(dir, "r", 0); }, "r must be a positive integer, got 0"},
      {"r_fraction", [](auto& dir) { set_config(dir, "r", 2.5); }, "r must be a positive integer, got 2.5"},
      {"no_target_modules", [](auto& dir) { test::edit_adapter_config(dir, [](auto& json) { json.erase("target_modules"); }); },
       "target_modules is missing"},
      {"module_not_targeted", [](auto& dir) { set_config(dir, "target_modules", {"q_proj", "k_proj"}); },
       "mlp.up_proj: the config does not target this module (target_modules [q_proj, k_proj])"},
      {"layer_not_transformed", [](auto& dir) { set_config(dir, "layers_to_transform", {0, 1, 2}); },
       "layers.3.self_attn.q_proj: the config does not target this module"},
      {"regex_target_misses", [](auto& dir) { set_config(dir, "target_modules", ".*\\.mlp\\..*"); },
       "the config does not target this module (target_modules \".*\\.mlp\\..*\" (full match))"},
      {"invalid_regex", [](auto& dir) { set_config(dir, "target_modules", "(q_proj"); }, "invalid regular expression \"(q_proj\""},
      {"layers_with_string_target",
       [](auto& dir) {
         set_config(dir, "target_modules", "all-linear");
         set_config(dir, "layers_to_transform", {1});
       },
       "layers_to_transform cannot be used when target_modules is a string"},
      {"rank_pattern_value", [](auto& dir) { set_config(dir, "rank_pattern", {{"q_proj", -1}}); },
       "rank_pattern[\"q_proj\"] must be a positive integer"},
      {"alpha_pattern_value", [](auto& dir) { set_config(dir, "alpha_pattern", {{"q_proj", 0}}); },
       "alpha_pattern[\"q_proj\"] must be a finite positive number"},
      {"mixed_namespaces",
       [up](auto& dir) {
         edit_tensors(dir, [&](auto& tensors) {
           for (const char* factor : {".lora_A.weight", ".lora_B.weight"})
             rename_tensor(tensors, up + factor, std::string("base_model.model.model.layers.1.mlp.up_proj") + factor);
         });
       },
       "keys mix two namespaces"},
      {"missing_config", [](auto& dir) { std::filesystem::remove(dir / kAdapterConfigFile); }, "adapter_config.json: missing file"},
      {"missing_weights",
       [](auto& dir) {
         std::filesystem::rename(dir / kAdapterWeightsFile, dir / "adapter_model.bin");
       },
       "adapter_model.safetensors: missing file (adapter_model.bin found"},
      {"missing_directory", [](auto& dir) { std::filesystem::remove_all(dir); }, "adapter directory not found"},
      {"invalid_json", [](auto& dir) { write_file_atomic(dir / kAdapterConfigFile, "{\"peft_type\": \"LORA\","); },
       "adapter_config.json: invalid JSON"},
      {"empty_weights", [](auto& dir) { edit_tensors(dir, [](auto& tensors) { tensors.clear(); }); }, "holds no LoRA tensors"},
      {"byte_length",
       [](auto& dir) {
         // One F32 [2, 4] tensor given 28 bytes instead of 32.
         const std::string header =
             R"({"base_model.model.model.language_model.layers.3.self_attn.q_proj.lora_A.weight":{"dtype":"F32","shape":[2,4],"data_offsets":[0,28]}})";
         std::string bytes(8, '\0');
         const uint64_t length = header.size();
         std::memcpy(bytes.data(), &length, 8);
         bytes += header + std::string(28, '\0');
         write_file_atomic(dir / kAdapterWeightsFile, bytes);
       },
       "holds 28 bytes but shape [2, 4] of F32 needs 32"},
  };
}

class MalformedAdapter : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = test::tiny_config();
    valid_ = test::random_adapter(config_, 4, 8);
  }
  std::filesystem::path write_valid(const std::string& label) {
    const auto dir = test::temp_dir(label) / "adapter";
    save_adapter(*valid_, dir, StackPrefix::Multimodal);
    return dir;
  }
  ModelConfig config_;
  std::optional<LoraAdapter> valid_;
};

TEST_F(MalformedAdapter, TheValidBaselineLoads) {
  const AdapterCheck check = check_adapter(write_valid("baseline"), config_);
  EXPECT_TRUE(check.adapter.has_value());
  EXPECT_TRUE(check.errors.empty());
}

TEST_F(MalformedAdapter, EachDefectIsRejectedWithItsOwnMessage) {
  for (const Defect& defect : defects()) {
    SCOPED_TRACE(defect.name);
    const auto dir = write_valid(defect.name);
    defect.plant(dir);
    const AdapterCheck check = check_adapter(dir, config_);
    EXPECT_FALSE(check.adapter.has_value());
    ASSERT_FALSE(check.errors.empty());
    const bool found = std::any_of(check.errors.begin(), check.errors.end(), [&](const std::string& error) {
      return error.find(defect.message) != std::string::npos;
    });
    EXPECT_TRUE(found) << "expected \"" << defect.message << "\" in:\n" << fmt::format("{}", fmt::join(check.errors, "\n"));
    try {
      load_adapter(dir, config_);
      ADD_FAILURE() << "load_adapter accepted the adapter";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(defect.message), std::string::npos) << error.what();
    }
  }
}

TEST_F(MalformedAdapter, EveryErrorIsReported) {
  const auto dir = write_valid("several");
  set_config(dir, "use_dora", true);
  set_config(dir, "lora_alpha", -1);
  edit_tensors(dir, [](auto& tensors) {
    remove_tensor(tensors, kMultimodal + "3.self_attn.q_proj.lora_B.weight");
    test::find_tensor(tensors, kMultimodal + "1.mlp.up_proj.lora_A.weight").tensor = zeros({4, 63});
    tensors.push_back({kMultimodal + "2.self_attn.v_proj.lora_A.weight", zeros({4, 64})});
  });
  const AdapterCheck check = check_adapter(dir, config_);
  EXPECT_EQ(check.errors.size(), 5u) << fmt::format("{}", fmt::join(check.errors, "\n"));
}

}  // namespace
}  // namespace dt
