// Internal: what a backend provides to s4s::Sampler.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "s4s/runtime.h"

namespace s4s {

// One input tensor of one run: a host pointer and its shape.
struct Feed {
  const void* data;
  std::vector<int64_t> shape;
};

class Backend {
 public:
  virtual ~Backend() = default;
  std::vector<TensorInfo> inputs;
  TensorInfo output;
  std::array<int64_t, 2> batch_range{1, -1};
  int64_t num_classes = 0;
  // Runs once; feeds are keyed by input name and already validated; appends the output to `out`.
  virtual void run(const std::map<std::string, Feed>& feeds, Images& out) const = 0;
};

std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& path, const Options& options);
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Options& options);

}  // namespace s4s
