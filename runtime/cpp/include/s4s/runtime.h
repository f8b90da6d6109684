// s4s-export C++ runtime: load a baked sampler (ONNX graph or TensorRT engine), turn noise into images.
//
//   auto sampler = s4s::Sampler::load("sampler.onnx");
//   std::vector<float> noise(n * sampler->noise_size());   // standard normal, [n, C, H, W]
//   s4s::Images images = sampler->run(noise.data(), n);
//
// The graph contract: input `noise` [B,C,H,W] float32 (+ `class_labels` [B] int64 and `guidance_scale`
// [B] float32 for class-conditional models, [] in graphs exported before per-sample scales; latent and text
// graphs: prompt embeddings and guidance_scale [B], docs/runtime.md); output `images`, float32 NCHW in
// [-1, 1] or uint8 NHWC (or `latents`). Only the batch dimension may be dynamic. Errors in the caller's
// input throw s4s::Error.
//
// A text-conditioned graph built with `--text-encoder` has its text encoder graph beside it
// (`<stem>.text_encoder.onnx`: input_ids [B, L] int64 -> prompt_embeds [B, L, D]), named in its description;
// load() loads it too (ONNX Runtime, CPU) and run_ids() takes token ids. Tokenizing stays outside this
// library: the ids are what `<stem>.tokenizer.json` beside the graph gives (HF tokenizers, or any BPE
// implementation of that file), padded and truncated to L.
//
// The graph's description is read as the Python runtime reads it: for `.onnx`, its metadata_props overlaid
// by the sidecar `model.json`; for engines, the sidecar `model.plan.json`. It gives num_classes (label range)
// and the default guidance scale. ONNX Runtime's TensorRT provider gets a profile over batch 1..max_batch
// (16 when max_batch is 0), like the Python runtime; larger requests are split.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace s4s {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TensorInfo {
  std::string name;
  std::string dtype;           // "float32", "float16", "int64", "int32", "uint8"
  std::vector<int64_t> shape;  // -1 marks the dynamic batch dimension
};

struct Images {
  std::string dtype;            // "float32" (NCHW in [-1, 1]) or "uint8" (NHWC)
  std::vector<int64_t> shape;   // [B, C, H, W] or [B, H, W, C]
  std::vector<float> f32;       // filled when dtype == "float32"
  std::vector<uint8_t> u8;      // filled when dtype == "uint8"
};

struct Options {
  std::vector<std::string> providers{"cpu"};  // onnxruntime: "cpu", "cuda", "tensorrt", in order of preference
  int threads = 0;                            // onnxruntime intra-op threads (0: onnxruntime's choice)
  int device_id = 0;                          // GPU for CUDA / TensorRT
  int64_t max_batch = 0;                      // largest batch per run, larger requests are split (0: the graph's)
};

class Backend;
class TextEncoder;

class Sampler {
 public:
  // `.onnx` runs on ONNX Runtime; `.plan` / `.engine` / `.trt` on TensorRT (when built with it).
  static std::unique_ptr<Sampler> load(const std::string& path, const Options& options = {});
  ~Sampler();

  const std::vector<TensorInfo>& inputs() const;
  const TensorInfo& output() const;
  std::array<int64_t, 3> image_shape() const;  // C, H, W of the noise
  int64_t noise_size() const;                  // C * H * W
  bool conditional() const;                    // takes class_labels
  bool text() const;                           // takes prompt_embeds (text-conditioned latent graphs)
  int64_t num_classes() const;                 // from the graph's description; 0 when not recorded
  std::array<int64_t, 2> batch_range() const;  // {min, max}; max -1: unbounded
  // The guidance scale run() uses when given none: the graph's recorded guidance_scale, else 1.0
  // (no guidance). Throws s4s::Error when the recorded value is not a number.
  float default_guidance_scale() const;

  // noise: batch * noise_size() floats. labels: batch class indices in [0, num_classes] for conditional
  // models (num_classes = unconditional), else nullptr. guidance_scale: only for graphs that take one;
  // one scale for every image; std::nullopt: default_guidance_scale(). Thread-safe.
  Images run(const float* noise, int64_t batch, const int64_t* labels = nullptr,
             std::optional<float> guidance_scale = std::nullopt) const;
  // As above with guidance scales as a vector: empty (the default), one for all, or one per image
  // (graphs taking guidance_scale [B]; a graph taking [] accepts one scale only).
  Images run(const float* noise, int64_t batch, const int64_t* labels, const std::vector<float>& guidance_scale) const;
  // As above, with the batch taken from noise.size() (a multiple of noise_size()) and one label per image
  // (labels empty for unconditional models).
  Images run(const std::vector<float>& noise, const std::vector<int64_t>& labels = {},
             std::optional<float> guidance_scale = std::nullopt) const;
  // Text-conditioned graphs: `embeddings` maps each text input the graph takes (prompt_embeds,
  // negative_prompt_embeds, pooled_prompt_embeds, ...: contract::kTextInputs) to its floats, one row for
  // every image or batch rows; negative ones may be left out when every scale is 1. guidance_scale: empty
  // (the default), one for all, or one per image (the graph takes guidance_scale [B]). Thread-safe.
  Images run_text(const float* noise, int64_t batch, const std::map<std::string, std::vector<float>>& embeddings,
                  const std::vector<float>& guidance_scale = {}) const;
  // Text-conditioned graphs with a text encoder beside them: token ids in, images out. `ids` holds
  // text_length() ids per prompt, one prompt for every image or one per image; `negative_ids` likewise
  // (the negative, or the empty prompt's ids as diffusers' pipelines use; empty: no negative embeddings,
  // allowed only when every scale is 1). The text encoder runs on the ids, then run_text. Thread-safe.
  Images run_ids(const float* noise, int64_t batch, const std::vector<int64_t>& ids,
                 const std::vector<int64_t>& negative_ids = {}, const std::vector<float>& guidance_scale = {}) const;
  bool has_text_encoder() const;               // a text encoder graph was loaded beside the sampler
  void require_text_encoder() const;           // throws Error saying why run_ids cannot run here, if it cannot
  int64_t text_length() const;                 // ids per prompt (L) of the text encoder; 0 without one

 private:
  Sampler(std::unique_ptr<Backend> backend, std::unique_ptr<TextEncoder> text_encoder);
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<TextEncoder> text_encoder_;
};

// Batch sizes of the fewest runs covering `batch` within [lo, hi] (hi -1: unbounded), largest first.
std::vector<int64_t> plan_batches(int64_t batch, int64_t lo, int64_t hi);

}  // namespace s4s
