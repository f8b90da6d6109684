// Internal: what a backend provides to s4s::Sampler.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "contract.h"
#include "s4s/runtime.h"

namespace s4s {

// A JSON value: what the graph's description (metadata_props values, sidecar) holds.
struct Json {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  bool integer = false;           // a number written without fraction or exponent (Python: int)
  std::string text;               // String: the value; Number: as written
  std::vector<Json> items;        // Array: elements; Object: values, items[i] under keys[i]
  std::vector<std::string> keys;  // Object: keys in order
  const Json* get(const std::string& key) const;  // Object member or nullptr
};

// The graph's description: top-level key -> value (Python: GraphSpec.info).
using Description = std::map<std::string, Json>;

Json parse_json(const std::string& text);  // throws std::invalid_argument naming the character
// A metadata_props value as runtime/spec.py parse_metadata reads it: its JSON value, else the string itself.
Json metadata_value(const std::string& value);
// model.onnx -> model.json; model.plan -> model.plan.json (runtime/spec.py sidecar_path).
std::string sidecar_path(const std::string& model_path);
// Overlays the sidecar's top-level keys onto `doc` when the sidecar exists; Error when it is not a JSON object.
void overlay_sidecar(const std::string& model_path, Description& doc);

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
  int64_t num_classes = 0;                 // from the description; 0: not recorded
  float default_guidance = 1.0f;           // guidance_scale when the caller gives none
  std::string default_guidance_error;      // non-empty: the recorded guidance_scale is unusable
  std::string text_encoder_file;           // the description's text encoder graph (file name beside the model)
  int64_t text_length = 0;                 // its ids per prompt (L)
  std::string text_encoder_unsupported;    // why run_ids cannot serve this encoder (several tokenizers), or empty
  // Runs once; feeds are keyed by input name and already validated; appends the output to `out`.
  virtual void run(const std::map<std::string, Feed>& feeds, Images& out) const = 0;
};

// Error unless the backend's tensors follow the sampler graph contract (runtime.h).
void check_contract(const std::string& path, const Backend& backend);

// Sets num_classes and the default guidance from the description, as the Python runtime reads them.
void apply_description(const Description& doc, Backend& backend);

// ONNX Runtime TensorRT provider options trt_profile_{min,opt,max}_shapes for batches lo..hi (opt: min(max(lo, 4), hi))
// over the inputs with a dynamic batch, e.g. "noise:1x1x6x5,class_labels:1", as runtime/onnxruntime_backend.py
// provider_options writes them; empty when no input has a dynamic batch.
std::map<std::string, std::string> trt_profile_options(const std::vector<TensorInfo>& inputs, int64_t lo, int64_t hi);

// The text encoder graph beside a text-conditioned sampler (runtime/text_encoder.py's counterpart):
// input_ids [B, L] int64 -> prompt_embeds [B, L, D] float32, on ONNX Runtime's CPU provider.
class TextEncoder {
 public:
  virtual ~TextEncoder() = default;
  int64_t length = 0;  // L
  int64_t dim = 0;     // D
  // rows * length ids (already checked) -> rows * length * dim floats.
  virtual std::vector<float> encode(const int64_t* ids, int64_t rows) const = 0;
};

// Loads `path` and checks it against the text encoder contract and the description's `length`.
std::unique_ptr<TextEncoder> make_text_encoder(const std::string& path, int64_t length, const Options& options);

std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& path, const Options& options);
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& path, const Options& options);

}  // namespace s4s
