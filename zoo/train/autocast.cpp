// CUDA autocast through libtorch's current API. tch 0.24's `tch::autocast` calls
// at::autocast::is_enabled() / set_enabled(), deprecated since PyTorch 2.4, and libtorch 2.11
// prints a deprecation warning on every call: five lines per training step under --amp.
#include <ATen/autocast_mode.h>

extern "C" {

bool zoo_autocast_cuda_enabled() noexcept {
  try {
    return at::autocast::is_autocast_enabled(at::kCUDA);
  } catch (...) {
    return false;
  }
}

void zoo_autocast_set_cuda_enabled(bool enabled) noexcept {
  try {
    at::autocast::set_autocast_enabled(at::kCUDA, enabled);
  } catch (...) {
  }
}

int zoo_autocast_increment_nesting() noexcept {
  return at::autocast::increment_nesting();
}

// Leaving the outermost autocast region clears its cache of casted weights, as tch does.
void zoo_autocast_leave() noexcept {
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
}
}
