#pragma once
// The options that shape a new adapter, shared by init-adapter and train: --rank, --alpha,
// --targets, --layers and --rslora.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "lora/init.h"

namespace dt {

// What the command line gives as text, turned into kinds and layers once the model is known.
struct AdapterShapeText {
  std::string targets = "all-linear";
  std::string layers;  // empty: every layer
};

// Registers the five options into `adapter` (rank, alpha, use_rslora) and `text`. With
// `required`, --rank and --alpha must be given; otherwise the help shows their defaults.
void add_adapter_shape_options(CLI::App& command, AdapterInitOptions& adapter, AdapterShapeText& text,
                               bool required);

// Sets adapter.kinds and adapter.layers from the parsed --targets and --layers.
void resolve_adapter_shape(const AdapterShapeText& text, int64_t layer_count, AdapterInitOptions& adapter);

}  // namespace dt
