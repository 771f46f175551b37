#pragma once
// Every user-facing failure is a dt::Error whose message names the file, key or line at fault and
// what was expected. The CLI prints it to stderr and exits non-zero.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace dt {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace dt
