// ONNX Runtime backend (C++ API): CPU, CUDA or TensorRT execution providers.
#include <onnxruntime_cxx_api.h>

#include <regex>
#include <unordered_map>

#include "backend.h"

namespace s4s {
namespace {

std::string dtype_name(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    default: return "unsupported(" + std::to_string(static_cast<int>(type)) + ")";
  }
}

Ort::Env& environment() {
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "s4s");
  return env;
}

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string strip_onnx(const std::string& path) { return path.substr(0, path.size() - 5); }

// `num_classes` from the graph's metadata_props: its own entry, or inside the JSON `model` entry.
int64_t metadata_num_classes(const Ort::Session& session) {
  Ort::AllocatorWithDefaultOptions allocator;
  Ort::ModelMetadata metadata = session.GetModelMetadata();
  static const std::regex number("\"num_classes\"\\s*:\\s*(\\d+)");
  std::smatch match;
  for (const std::string key : {"num_classes", "model"}) {
    Ort::AllocatedStringPtr value = metadata.LookupCustomMetadataMapAllocated(key.c_str(), allocator);
    if (!value) continue;
    const std::string text = key == "model" ? value.get() : "\"num_classes\":" + std::string(value.get());
    if (std::regex_search(text, match, number)) return std::stoll(match[1].str());
  }
  return 0;
}

class OrtBackend final : public Backend {
 public:
  OrtBackend(const std::string& path, const Options& options) {
    Ort::SessionOptions session_options;
    if (options.threads > 0) session_options.SetIntraOpNumThreads(options.threads);
    const std::string device = std::to_string(options.device_id);
    try {
      for (const auto& provider : options.providers) {
        if (provider == "cuda") {
          Ort::CUDAProviderOptions cuda;
          cuda.Update({{"device_id", device}});
          session_options.AppendExecutionProvider_CUDA_V2(*cuda);
        } else if (provider == "tensorrt") {
          // Engine and timing caches next to the graph; precision comes from the graph (no trt_fp16_enable).
          const std::string cache = strip_onnx(path) + ".ort-trt";
          Ort::TensorRTProviderOptions trt;
          trt.Update({{"device_id", device}, {"trt_engine_cache_enable", "1"}, {"trt_engine_cache_path", cache},
                      {"trt_timing_cache_enable", "1"}, {"trt_timing_cache_path", cache}});
          session_options.AppendExecutionProvider_TensorRT_V2(*trt);
        } else if (provider != "cpu") {
          throw Error("unknown execution provider '" + provider + "'; choose from: cpu, cuda, tensorrt");
        }
      }
    } catch (const Ort::Exception& e) {
      throw Error(std::string("this onnxruntime cannot use the requested providers: ") + e.what() +
                  "; CUDA and TensorRT need an onnxruntime-gpu library and an NVIDIA GPU");
    }
    try {
      session_ = Ort::Session(environment(), path.c_str(), session_options);
    } catch (const Ort::Exception& e) {
      throw Error("onnxruntime could not load " + path + ": " + e.what());
    }
    Ort::AllocatorWithDefaultOptions allocator;
    for (size_t i = 0; i < session_.GetInputCount(); ++i) {
      Ort::TypeInfo type = session_.GetInputTypeInfo(i);
      auto tensor = type.GetTensorTypeAndShapeInfo();
      inputs.push_back({session_.GetInputNameAllocated(i, allocator).get(), dtype_name(tensor.GetElementType()),
                        tensor.GetShape()});
    }
    if (session_.GetOutputCount() != 1) throw Error(path + " is not an s4s-export sampler graph: it has several outputs");
    Ort::TypeInfo type = session_.GetOutputTypeInfo(0);
    auto tensor = type.GetTensorTypeAndShapeInfo();
    output = {session_.GetOutputNameAllocated(0, allocator).get(), dtype_name(tensor.GetElementType()), tensor.GetShape()};
    num_classes = metadata_num_classes(session_);
    for (const auto& t : inputs)
      if (t.name == "noise" && !t.shape.empty() && t.shape[0] >= 0) batch_range = {t.shape[0], t.shape[0]};
  }

  void run(const std::map<std::string, Feed>& feeds, Images& out) const override {
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    std::vector<const char*> names;
    std::vector<Ort::Value> values;
    for (const auto& [name, feed] : feeds) {
      names.push_back(name.c_str());
      const int64_t count = element_count(feed.shape);
      if (name == "class_labels") {
        values.push_back(Ort::Value::CreateTensor<int64_t>(memory, const_cast<int64_t*>(static_cast<const int64_t*>(feed.data)),
                                                           count, feed.shape.data(), feed.shape.size()));
      } else {
        values.push_back(Ort::Value::CreateTensor<float>(memory, const_cast<float*>(static_cast<const float*>(feed.data)),
                                                         count, feed.shape.data(), feed.shape.size()));
      }
    }
    const char* output_name = output.name.c_str();
    std::vector<Ort::Value> result =
        session_.Run(Ort::RunOptions{nullptr}, names.data(), values.data(), values.size(), &output_name, 1);
    const auto info = result[0].GetTensorTypeAndShapeInfo();
    const size_t count = info.GetElementCount();
    out.shape = info.GetShape();  // this run's; Sampler::run sets the total batch
    out.dtype = output.dtype;
    if (output.dtype == "uint8") {
      const uint8_t* data = result[0].GetTensorData<uint8_t>();
      out.u8.insert(out.u8.end(), data, data + count);
    } else {
      const float* data = result[0].GetTensorData<float>();
      out.f32.insert(out.f32.end(), data, data + count);
    }
  }

 private:
  mutable Ort::Session session_{nullptr};
};

}  // namespace

std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& path, const Options& options) {
  return std::make_unique<OrtBackend>(path, options);
}

}  // namespace s4s
