// Internal: what the ONNX Runtime parts (sampler backend, text encoder) share.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <string>
#include <vector>

#include "s4s/runtime.h"

namespace s4s {

Ort::Env& ort_environment();  // the process's one environment
TensorInfo ort_tensor_info(const std::string& name, const Ort::TypeInfo& type);
std::vector<TensorInfo> ort_session_inputs(const Ort::Session& session);
std::vector<TensorInfo> ort_session_outputs(const Ort::Session& session);
// The session for `path`; Error naming the file when onnxruntime cannot load it.
Ort::Session ort_load(const std::string& path, const Ort::SessionOptions& options);

}  // namespace s4s
