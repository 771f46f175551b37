// libFuzzer target: any byte string given to the safetensors parser either parses or fails with a
// dt::Error; anything else (a crash, a sanitizer report, another exception type) is a bug.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dt::ParsedSafetensors parsed = dt::parse_safetensors(data, size, "fuzz-input");
    // Touch every accepted range: the sanitizer flags any that reach outside the input.
    volatile uint8_t sink = 0;
    for (const dt::TensorInfo& tensor : parsed.tensors) {
      if (tensor.end == tensor.begin) continue;
      sink = sink ^ data[parsed.buffer_offset + tensor.begin] ^ data[parsed.buffer_offset + tensor.end - 1];
    }
  } catch (const dt::Error&) {
  }
  return 0;
}
