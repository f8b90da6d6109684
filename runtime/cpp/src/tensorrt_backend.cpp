// TensorRT backend (TensorRT 10.x / 11.x C++ API): deserialize a plan, run with enqueueV3.
// Compiled only when CMake finds TensorRT and the CUDA toolkit. One execution context, device buffers
// sized for the profile's maximum batch; runs are serialized by a mutex (a context must not run in two
// threads at once).
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <type_traits>

#include "backend.h"

namespace s4s {
namespace {

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(status));
}

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << message << "\n";
  }
};

std::string dtype_name(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kUINT8: return "uint8";
    default: return "unsupported(" + std::to_string(static_cast<int>(type)) + ")";
  }
}

size_t element_size(const std::string& dtype) {
  if (dtype == "float32" || dtype == "int32") return 4;
  if (dtype == "float16") return 2;
  if (dtype == "int64") return 8;
  if (dtype == "uint8") return 1;
  throw Error("the engine has a tensor of type " + dtype + ", which this runtime cannot feed or read; "
              "rebuild it from an s4s-export graph");
}

std::vector<int64_t> to_vector(const nvinfer1::Dims& dims) { return {dims.d, dims.d + dims.nbDims}; }

nvinfer1::Dims to_dims(const std::vector<int64_t>& shape) {
  nvinfer1::Dims dims{};
  dims.nbDims = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) dims.d[i] = shape[i];
  return dims;
}

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

struct CudaFree {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
struct StreamDestroy {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};

class TrtBackend final : public Backend {
 public:
  TrtBackend(const std::string& path, const Options& options) : device_(options.device_id) {
    std::ifstream file(path, std::ios::binary);
    if (!file) throw Error(path + " does not exist; build it with `s4s-export build --trt`");
    const std::vector<char> plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error("TensorRT could not create a runtime (is a GPU and its driver available?)");
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_)
      throw Error("TensorRT could not load " + path + " (see its log): engines only run with the TensorRT version "
                  "and GPU they were built for; rebuild it with `s4s-export build --trt`");
    std::vector<TensorInfo> outputs;
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      TensorInfo info{name, dtype_name(engine_->getTensorDataType(name)), to_vector(engine_->getTensorShape(name))};
      (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputs : outputs).push_back(info);
    }
    if (outputs.size() != 1)
      throw Error(path + " is not an s4s-export sampler engine: it has " + std::to_string(outputs.size()) +
                  " outputs; expected one, images");
    output = outputs[0];
    // The description is the engine's sidecar model.plan.json alone (runtime/tensorrt_runner.py).
    Description description;
    overlay_sidecar(path, description);
    apply_description(description, *this);
    check_contract(path, *this);  // before any allocation: buffer sizes rely on the contract's dtypes and shapes
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw std::runtime_error("TensorRT could not create an execution context (out of GPU memory?)");
    cudaStream_t stream = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    stream_.reset(stream);
    for (const auto& t : inputs) {
      if (t.name != contract::kNoise || t.shape.empty()) continue;
      if (t.shape[0] < 0) {
        batch_range = {engine_->getProfileShape(t.name.c_str(), 0, nvinfer1::OptProfileSelector::kMIN).d[0],
                       engine_->getProfileShape(t.name.c_str(), 0, nvinfer1::OptProfileSelector::kMAX).d[0]};
      } else {
        batch_range = {t.shape[0], t.shape[0]};
      }
    }
    set_batch(batch_range[1]);  // size every buffer for the largest batch
    for (const auto* t : all_tensors()) {
      void* buffer = nullptr;
      const auto shape = to_vector(context_->getTensorShape(t->name.c_str()));
      check_cuda(cudaMalloc(&buffer, std::max<size_t>(1, element_count(shape) * element_size(t->dtype))), "cudaMalloc");
      buffers_[t->name].reset(buffer);
      if (!context_->setTensorAddress(t->name.c_str(), buffer)) throw std::runtime_error("setTensorAddress " + t->name);
    }
  }

  void run(const std::map<std::string, Feed>& feeds, Images& out) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    const int64_t batch = feeds.at(contract::kNoise).shape[0];
    if (batch != batch_) set_batch(batch);
    for (const auto& [name, feed] : feeds) {
      const auto* t = input(name);
      check_cuda(cudaMemcpyAsync(buffers_.at(name).get(), feed.data, element_count(feed.shape) * element_size(t->dtype),
                                 cudaMemcpyHostToDevice, stream_.get()), "cudaMemcpyAsync");
    }
    if (!context_->enqueueV3(stream_.get())) throw std::runtime_error("TensorRT enqueueV3 failed (see its log)");
    const auto shape = to_vector(context_->getTensorShape(output.name.c_str()));
    const size_t count = element_count(shape);
    out.shape = shape;
    out.dtype = output.dtype;
    void* host;
    if (output.dtype == contract::kImagesUint8Dtype) {
      out.u8.resize(out.u8.size() + count);
      host = out.u8.data() + out.u8.size() - count;
    } else {
      out.f32.resize(out.f32.size() + count);
      host = out.f32.data() + out.f32.size() - count;
    }
    check_cuda(cudaMemcpyAsync(host, buffers_.at(output.name).get(), count * element_size(output.dtype),
                               cudaMemcpyDeviceToHost, stream_.get()), "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(stream_.get()), "cudaStreamSynchronize");
  }

 private:
  const TensorInfo* input(const std::string& name) const {
    for (const auto& t : inputs)
      if (t.name == name) return &t;
    throw Error("the engine has no input " + name);
  }

  std::vector<const TensorInfo*> all_tensors() const {
    std::vector<const TensorInfo*> all;
    for (const auto& t : inputs) all.push_back(&t);
    all.push_back(&output);
    return all;
  }

  void set_batch(int64_t batch) const {
    for (const auto& t : inputs) {
      if (t.shape.empty() || t.shape[0] >= 0) continue;
      auto shape = t.shape;
      shape[0] = batch;
      if (!context_->setInputShape(t.name.c_str(), to_dims(shape)))
        throw std::runtime_error("TensorRT refused batch " + std::to_string(batch) + " for " + t.name);
    }
    batch_ = batch;
  }

  int device_;
  Logger logger_;  // must outlive the runtime, engine and context
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy> stream_;  // RAII: a throwing constructor
  std::map<std::string, std::unique_ptr<void, CudaFree>> buffers_;              // still releases them
  mutable int64_t batch_ = -1;
  mutable std::mutex mutex_;
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Options& options) {
  return std::make_unique<TrtBackend>(path, options);
}

}  // namespace s4s
