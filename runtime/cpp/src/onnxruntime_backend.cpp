// ONNX Runtime backend (C++ API): CPU, CUDA or TensorRT execution providers.
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include "backend.h"
#include "ort.h"

namespace s4s {
namespace {

constexpr int64_t kTrtEpMaxBatch = 16;  // TensorRT provider's profile max when Options::max_batch is 0 (as in Python)

std::string dtype_name(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    default: return "unsupported(" + std::to_string(static_cast<int>(type)) + ")";
  }
}

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string strip_onnx(const std::string& path) { return path.substr(0, path.size() - 5); }

// Every metadata_props entry, each value parsed as JSON where it parses (runtime/spec.py parse_metadata).
Description metadata_description(const Ort::Session& session) {
  Ort::AllocatorWithDefaultOptions allocator;
  Ort::ModelMetadata metadata = session.GetModelMetadata();
  Description doc;
  for (const auto& key : metadata.GetCustomMetadataMapKeysAllocated(allocator)) {
    Ort::AllocatedStringPtr value = metadata.LookupCustomMetadataMapAllocated(key.get(), allocator);
    if (value) doc[key.get()] = metadata_value(value.get());
  }
  return doc;
}

class OrtBackend final : public Backend {
 public:
  OrtBackend(const std::string& path, const Options& options) {
    if (!std::filesystem::is_regular_file(path))
      throw Error(path + " does not exist; export the sampler first with `s4s-export build`");
    Ort::SessionOptions session_options;
    if (options.threads > 0) session_options.SetIntraOpNumThreads(options.threads);
    const std::string device = std::to_string(options.device_id);
    const bool tensorrt = std::find(options.providers.begin(), options.providers.end(), "tensorrt") != options.providers.end();
    const int64_t trt_max_batch = options.max_batch > 0 ? options.max_batch : kTrtEpMaxBatch;
    try {
      for (const auto& provider : options.providers) {
        if (provider == "cuda") {
          Ort::CUDAProviderOptions cuda;
          cuda.Update({{"device_id", device}});
          session_options.AppendExecutionProvider_CUDA_V2(*cuda);
        } else if (provider == "tensorrt") {
          // Engine and timing caches next to the graph; precision comes from the graph (no trt_fp16_enable).
          // The profile spans batch 1..trt_max_batch: it needs the input shapes, so a CPU session reads them
          // first (as the Python runtime does). Option names: onnxruntime's tensorrt_execution_provider_info.cc.
          Ort::TensorRTProviderOptions trt;  // first: throws when this onnxruntime lacks TensorRT
          const std::string cache = strip_onnx(path) + ".ort-trt";
          std::filesystem::create_directories(cache);
          std::unordered_map<std::string, std::string> values{
              {"device_id", device}, {"trt_engine_cache_enable", "1"}, {"trt_engine_cache_path", cache},
              {"trt_timing_cache_enable", "1"}, {"trt_timing_cache_path", cache}, {"trt_builder_optimization_level", "3"}};
          for (const auto& [key, shapes] : trt_profile_options(ort_session_inputs(ort_load(path, Ort::SessionOptions())), 1, trt_max_batch))
            values[key] = shapes;
          trt.Update(values);
          session_options.AppendExecutionProvider_TensorRT_V2(*trt);
        } else if (provider != "cpu") {
          throw Error("unknown execution provider '" + provider + "'; choose from: cpu, cuda, tensorrt");
        }
      }
    } catch (const Ort::Exception& e) {
      std::string why = e.what();
      while (!why.empty() && (why.back() == '.' || why.back() == ' ')) why.pop_back();
      throw Error("this onnxruntime cannot use the requested providers: " + why +
                  "; CUDA and TensorRT need an onnxruntime-gpu library and an NVIDIA GPU");
    } catch (const std::filesystem::filesystem_error& e) {
      throw Error(std::string("cannot create the TensorRT cache folder: ") + e.what());
    }
    session_ = ort_load(path, session_options);
    inputs = ort_session_inputs(session_);
    const auto outputs = ort_session_outputs(session_);
    if (outputs.size() != 1)
      throw Error(path + " is not an s4s-export sampler graph: it has " + std::to_string(outputs.size()) +
                  " outputs; expected one, images");
    output = outputs[0];
    Description description = metadata_description(session_);
    overlay_sidecar(path, description);
    apply_description(description, *this);
    for (const auto& t : inputs)
      if (t.name == contract::kNoise && !t.shape.empty() && t.shape[0] >= 0) batch_range = {t.shape[0], t.shape[0]};
    if (tensorrt && options.max_batch <= 0)  // the provider's engine cannot run larger batches: split them
      batch_range[1] = batch_range[1] < 0 ? trt_max_batch : std::min(batch_range[1], trt_max_batch);
  }

  void run(const std::map<std::string, Feed>& feeds, Images& out) const override {
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    std::vector<const char*> names;
    std::vector<Ort::Value> values;
    for (const auto& [name, feed] : feeds) {
      names.push_back(name.c_str());
      const int64_t count = element_count(feed.shape);
      if (name == contract::kClassLabels) {
        values.push_back(Ort::Value::CreateTensor<int64_t>(memory, const_cast<int64_t*>(static_cast<const int64_t*>(feed.data)),
                                                           count, feed.shape.data(), feed.shape.size()));
      } else {
        values.push_back(Ort::Value::CreateTensor<float>(memory, const_cast<float*>(static_cast<const float*>(feed.data)),
                                                         count, feed.shape.data(), feed.shape.size()));
      }
    }
    const char* output_name = output.name.c_str();
    std::vector<Ort::Value> result;
    try {
      result = session_.Run(Ort::RunOptions{nullptr}, names.data(), values.data(), values.size(), &output_name, 1);
    } catch (const Ort::Exception& e) {
      throw std::runtime_error(std::string("onnxruntime failed to run the graph: ") + e.what());
    }
    const auto info = result[0].GetTensorTypeAndShapeInfo();
    const size_t count = info.GetElementCount();
    out.shape = info.GetShape();  // this run's; Sampler::run sets the total batch
    out.dtype = output.dtype;
    if (output.dtype == contract::kImagesUint8Dtype) {
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

Ort::Env& ort_environment() {
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "s4s");
  return env;
}

TensorInfo ort_tensor_info(const std::string& name, const Ort::TypeInfo& type) {
  if (type.GetONNXType() != ONNX_TYPE_TENSOR) return {name, "unsupported(not a tensor)", {}};
  const auto tensor = type.GetTensorTypeAndShapeInfo();
  return {name, dtype_name(tensor.GetElementType()), tensor.GetShape()};
}

std::vector<TensorInfo> ort_session_inputs(const Ort::Session& session) {
  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<TensorInfo> inputs;
  for (size_t i = 0; i < session.GetInputCount(); ++i)
    inputs.push_back(ort_tensor_info(session.GetInputNameAllocated(i, allocator).get(), session.GetInputTypeInfo(i)));
  return inputs;
}

std::vector<TensorInfo> ort_session_outputs(const Ort::Session& session) {
  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<TensorInfo> outputs;
  for (size_t i = 0; i < session.GetOutputCount(); ++i)
    outputs.push_back(ort_tensor_info(session.GetOutputNameAllocated(i, allocator).get(), session.GetOutputTypeInfo(i)));
  return outputs;
}

Ort::Session ort_load(const std::string& path, const Ort::SessionOptions& options) {
  try {
    return Ort::Session(ort_environment(), path.c_str(), options);
  } catch (const Ort::Exception& e) {
    throw Error("onnxruntime could not load " + path + ": " + e.what());
  }
}

std::map<std::string, std::string> trt_profile_options(const std::vector<TensorInfo>& inputs, int64_t lo, int64_t hi) {
  std::map<std::string, std::string> out;
  const std::pair<const char*, int64_t> batches[] = {{"min", lo}, {"opt", std::min(std::max<int64_t>(lo, 4), hi)}, {"max", hi}};
  for (const auto& [which, batch] : batches) {
    std::string shapes;
    for (const auto& t : inputs) {
      if (t.shape.empty() || t.shape[0] >= 0) continue;
      shapes += (shapes.empty() ? "" : ",") + t.name + ":" + std::to_string(batch);
      for (size_t i = 1; i < t.shape.size(); ++i) shapes += "x" + std::to_string(t.shape[i]);
    }
    if (!shapes.empty()) out[std::string("trt_profile_") + which + "_shapes"] = shapes;
  }
  return out;
}

std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& path, const Options& options) {
  return std::make_unique<OrtBackend>(path, options);
}

}  // namespace s4s
