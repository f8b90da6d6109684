// Built when CMake found no TensorRT: engines cannot be loaded by this build.
#include "backend.h"

namespace s4s {

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Options&) {
  throw Error("cannot load " + path + ": this s4s runtime was built without TensorRT; rebuild it where TensorRT "
              "(NvInfer.h, libnvinfer) and the CUDA toolkit are installed (-DTensorRT_ROOT=...), or load the .onnx");
}

}  // namespace s4s
