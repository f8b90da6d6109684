// s4s::Sampler: contract checks, input validation and batch splitting over a backend.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include "backend.h"

namespace s4s {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string describe(const TensorInfo& t) {
  std::ostringstream out;
  out << t.name << " [";
  for (size_t i = 0; i < t.shape.size(); ++i) out << (i ? "," : "") << (t.shape[i] < 0 ? "B" : std::to_string(t.shape[i]));
  out << "] " << t.dtype;
  return out.str();
}

const TensorInfo* find_input(const std::vector<TensorInfo>& inputs, const std::string& name) {
  for (const auto& t : inputs)
    if (t.name == name) return &t;
  return nullptr;
}

// One scale per image from none (the default), one for all, or one per image; Error naming what came.
std::vector<float> per_image_scales(const std::vector<float>& given, int64_t batch, float fallback) {
  std::vector<float> scales;
  if (given.empty()) scales.assign(batch, fallback);
  else if (given.size() == 1) scales.assign(batch, given[0]);
  else if (static_cast<int64_t>(given.size()) == batch) scales = given;
  else throw Error("guidance_scale must be one number or one per image (" + std::to_string(batch) + "); got " +
                   std::to_string(given.size()));
  for (float g : scales)
    if (!std::isfinite(g)) throw Error("guidance_scale must be finite; got " + std::to_string(g));
  return scales;
}

}  // namespace

static bool is_text_input(const std::string& name) {
  for (const char* text : contract::kTextInputs)
    if (name == text) return true;
  return false;
}

void check_contract(const std::string& path, const Backend& b) {
  const std::string where = path + " is not an s4s-export sampler graph: ";
  const TensorInfo* noise = find_input(b.inputs, contract::kNoise);
  for (const auto& t : b.inputs) {
    if (t.name != contract::kNoise && t.name != contract::kClassLabels && t.name != contract::kGuidanceScale &&
        !is_text_input(t.name))
      throw Error(where + "unexpected input " + describe(t));
    if (is_text_input(t.name) && (t.shape.size() < 2 || t.dtype != contract::kEmbedsDtype))
      throw Error(where + describe(t) + " should be [B, ...] float32");
  }
  if (!noise || noise->shape.size() != 4 || noise->dtype != contract::kNoiseDtype)
    throw Error(where + "expected input noise [B,C,H,W] float32");
  for (size_t i = 1; i < 4; ++i)
    if (noise->shape[i] < 0) throw Error(where + describe(*noise) + " should have fixed C, H, W");
  const TensorInfo* labels = find_input(b.inputs, contract::kClassLabels);
  const TensorInfo* guidance = find_input(b.inputs, contract::kGuidanceScale);
  const bool text = find_input(b.inputs, contract::kPromptEmbeds) != nullptr;
  if (guidance && !labels && !text) throw Error(where + "it takes guidance_scale but no class_labels or prompt_embeds");
  if (labels && (labels->shape.size() != 1 || labels->dtype != contract::kClassLabelsDtype))
    throw Error(where + describe(*labels) + " should be class_labels [B] int64");
  if (guidance && (guidance->shape.size() > 1 || guidance->dtype != contract::kGuidanceScaleDtype))
    throw Error(where + describe(*guidance) + " should be guidance_scale [] or [B] float32");
  if (b.output.shape.size() != 4 || (b.output.dtype != contract::kImagesFloatDtype && b.output.dtype != contract::kImagesUint8Dtype))
    throw Error(where + "expected one output images [B,...] float32 or uint8, got " + describe(b.output));
}

std::vector<int64_t> plan_batches(int64_t batch, int64_t lo, int64_t hi) {
  if (batch < lo)
    throw Error("batch " + std::to_string(batch) + " is below the minimum batch " + std::to_string(lo) +
                "; ask for at least " + std::to_string(lo) + " images or rebuild with a smaller minimum batch");
  if (hi < 0 || batch <= hi) return {batch};
  const int64_t runs = (batch + hi - 1) / hi;
  if (runs * lo > batch)
    throw Error("batch " + std::to_string(batch) + " cannot be split into runs within the batch range [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]; ask for a multiple of " + std::to_string(lo) +
                " images or rebuild with a wider batch range");
  int64_t extra = batch - runs * lo;
  std::vector<int64_t> sizes;
  for (int64_t i = 0; i < runs; ++i) {
    const int64_t grow = std::min(hi - lo, extra);
    sizes.push_back(lo + grow);
    extra -= grow;
  }
  return sizes;
}

Sampler::Sampler(std::unique_ptr<Backend> backend, std::unique_ptr<TextEncoder> text_encoder)
    : backend_(std::move(backend)), text_encoder_(std::move(text_encoder)) {}
Sampler::~Sampler() = default;

std::unique_ptr<Sampler> Sampler::load(const std::string& path, const Options& options) {
  std::unique_ptr<Backend> backend;
  if (ends_with(path, ".onnx")) {
    backend = make_onnxruntime_backend(path, options);
  } else if (ends_with(path, ".plan") || ends_with(path, ".engine") || ends_with(path, ".trt")) {
    backend = make_tensorrt_backend(path, options);
  } else {
    throw Error(path + ": unknown model file type; expected .onnx or a TensorRT engine (.plan, .engine, .trt)");
  }
  check_contract(path, *backend);
  if (options.max_batch > 0) {
    auto& range = backend->batch_range;
    range[1] = range[1] < 0 ? options.max_batch : std::min(range[1], std::max(range[0], options.max_batch));
  }
  std::unique_ptr<TextEncoder> encoder;
  if (!backend->text_encoder_file.empty()) {
    const TensorInfo* embeds = find_input(backend->inputs, contract::kPromptEmbeds);
    if (!embeds) throw Error(path + " names a text encoder but takes no prompt embeddings; rebuild it");
    const std::string file = (std::filesystem::path(path).parent_path() / backend->text_encoder_file).string();
    encoder = make_text_encoder(file, backend->text_length, options);
    if (embeds->shape.size() != 3 || embeds->shape[1] != encoder->length || embeds->shape[2] != encoder->dim)
      throw Error(file + " gives prompt embeddings [B, " + std::to_string(encoder->length) + ", " +
                  std::to_string(encoder->dim) + "], but " + path + " takes " + describe(*embeds) +
                  "; rebuild both with `s4s-export build --text-encoder`");
  }
  return std::unique_ptr<Sampler>(new Sampler(std::move(backend), std::move(encoder)));
}

bool Sampler::has_text_encoder() const { return text_encoder_ != nullptr; }
void Sampler::require_text_encoder() const {
  if (!backend_->text_encoder_unsupported.empty()) throw Error(backend_->text_encoder_unsupported);
  if (!text_encoder_)
    throw Error("this sampler has no text encoder graph beside it: rebuild with `s4s-export build --text-encoder`, "
                "or call run_text with prompt embeddings");
}
int64_t Sampler::text_length() const { return text_encoder_ ? text_encoder_->length : 0; }

const std::vector<TensorInfo>& Sampler::inputs() const { return backend_->inputs; }
const TensorInfo& Sampler::output() const { return backend_->output; }
bool Sampler::conditional() const { return find_input(backend_->inputs, contract::kClassLabels) != nullptr; }
bool Sampler::text() const { return find_input(backend_->inputs, contract::kPromptEmbeds) != nullptr; }
int64_t Sampler::num_classes() const { return backend_->num_classes; }
std::array<int64_t, 2> Sampler::batch_range() const { return backend_->batch_range; }

std::array<int64_t, 3> Sampler::image_shape() const {
  const auto& s = find_input(backend_->inputs, contract::kNoise)->shape;
  return {s[1], s[2], s[3]};
}

int64_t Sampler::noise_size() const {
  const auto chw = image_shape();
  return chw[0] * chw[1] * chw[2];
}

float Sampler::default_guidance_scale() const {
  if (!backend_->default_guidance_error.empty()) throw Error(backend_->default_guidance_error);
  return backend_->default_guidance;
}

Images Sampler::run(const float* noise, int64_t batch, const int64_t* labels, std::optional<float> guidance_scale) const {
  return run(noise, batch, labels, guidance_scale ? std::vector<float>{*guidance_scale} : std::vector<float>{});
}

// Checks as runtime/inputs.py prepare_inputs does; the guidance default comes from the graph's description.
Images Sampler::run(const float* noise, int64_t batch, const int64_t* labels,
                    const std::vector<float>& guidance_scale) const {
  if (batch < 1) throw Error("batch must be at least 1, got " + std::to_string(batch));
  if (!noise) throw Error("noise is null");
  if (text()) throw Error("this model is text-conditioned: call run_text with its prompt embeddings");
  const int64_t size = noise_size();
  for (int64_t i = 0; i < batch * size; ++i)
    if (!std::isfinite(noise[i])) throw Error("noise contains non-finite values (NaN or inf); pass finite noise");
  const int64_t classes = backend_->num_classes;
  const TensorInfo* guidance = find_input(backend_->inputs, contract::kGuidanceScale);
  std::vector<float> scales;  // one per image
  if (conditional()) {
    const std::string valid = classes > 0 ? "[0, " + std::to_string(classes) + "] (" + std::to_string(classes) +
                                                " = unconditional)" : "non-negative integers";
    if (!labels) throw Error("this model is class-conditional: pass class labels (" + std::to_string(batch) +
                             " integers in " + valid + ")");
    for (int64_t i = 0; i < batch; ++i)
      if (labels[i] < 0 || (classes > 0 && labels[i] > classes))
        throw Error("class label " + std::to_string(labels[i]) + " out of range; valid labels are " + valid);
    if (guidance) {
      if (guidance->shape.empty() && guidance_scale.size() > 1)
        throw Error("this graph takes one guidance_scale for the whole batch (guidance_scale [], exported before "
                    "per-sample scales): pass one scale, or re-export it with `s4s-export build` for one per image");
      scales = per_image_scales(guidance_scale, batch, guidance_scale.empty() ? default_guidance_scale() : 0.0f);
    } else if (!guidance_scale.empty()) {
      throw Error("this graph has its guidance scale baked in: it takes no guidance_scale; drop it "
                  "or re-export with the guidance scale as an input");
    }
  } else if (labels) {
    throw Error("this model is unconditional: it takes no class labels; drop them");
  } else if (!guidance_scale.empty()) {
    throw Error("this model is unconditional: it takes no guidance_scale; drop it");
  }
  const auto chw = image_shape();
  Images out;
  int64_t start = 0;
  for (int64_t n : plan_batches(batch, backend_->batch_range[0], backend_->batch_range[1])) {
    std::map<std::string, Feed> feeds{{contract::kNoise, {noise + start * size, {n, chw[0], chw[1], chw[2]}}}};
    if (labels) feeds[contract::kClassLabels] = {labels + start, {n}};
    if (guidance && guidance->shape.empty()) feeds[contract::kGuidanceScale] = {scales.data(), {}};
    else if (guidance) feeds[contract::kGuidanceScale] = {scales.data() + start, {n}};
    backend_->run(feeds, out);
    start += n;
  }
  out.shape[0] = batch;
  return out;
}

Images Sampler::run(const std::vector<float>& noise, const std::vector<int64_t>& labels,
                    std::optional<float> guidance_scale) const {
  const int64_t size = noise_size();
  const auto chw = image_shape();
  const int64_t count = static_cast<int64_t>(noise.size());
  if (count == 0 || count % size != 0)
    throw Error("noise must hold B * " + std::to_string(size) + " floats (B images of " + std::to_string(chw[0]) + "x" +
                std::to_string(chw[1]) + "x" + std::to_string(chw[2]) + "); got " + std::to_string(count));
  const int64_t batch = count / size;
  if (!labels.empty() && static_cast<int64_t>(labels.size()) != batch)
    throw Error("class labels must be one per image: " + std::to_string(batch) + " images, got " +
                std::to_string(labels.size()) + " labels");
  return run(noise.data(), batch, labels.empty() ? nullptr : labels.data(), guidance_scale);
}

// Checks as runtime/inputs.py prepare_inputs does for text-conditioned graphs.
Images Sampler::run_text(const float* noise, int64_t batch, const std::map<std::string, std::vector<float>>& embeddings,
                         const std::vector<float>& guidance_scale) const {
  if (!text()) throw Error("this model is not text-conditioned: call run");
  if (batch < 1) throw Error("batch must be at least 1, got " + std::to_string(batch));
  if (!noise) throw Error("noise is null");
  const int64_t size = noise_size();
  for (int64_t i = 0; i < batch * size; ++i)
    if (!std::isfinite(noise[i])) throw Error("noise contains non-finite values (NaN or inf); pass finite noise");
  const std::vector<float> scales =
      per_image_scales(guidance_scale, batch, guidance_scale.empty() ? default_guidance_scale() : 0.0f);
  bool guided = false;
  for (float g : scales) guided = guided || g != 1.0f;
  for (const auto& [name, values] : embeddings)
    if (!find_input(backend_->inputs, name)) throw Error("this graph takes no " + name + "; drop it");
  // every text input as [batch, ...]: given per image, or one row repeated; negative ones zero when unguided
  std::map<std::string, std::vector<float>> rows;
  std::map<std::string, int64_t> sizes;
  for (const auto& t : backend_->inputs) {
    if (!is_text_input(t.name)) continue;
    int64_t per = 1;
    for (size_t i = 1; i < t.shape.size(); ++i) per *= t.shape[i];
    sizes[t.name] = per;
    const auto given = embeddings.find(t.name);
    const bool negative = t.name == std::string(contract::kNegativePromptEmbeds) ||
                          t.name == std::string(contract::kNegativePooledEmbeds);
    std::vector<float>& row = rows[t.name];
    if (given == embeddings.end()) {
      if (!negative || guided)
        throw Error("this model is text-conditioned: " + t.name + " is missing" +
                    (negative ? "; with guidance_scale != 1 pass the empty prompt's embeddings" : "; pass it"));
      row.assign(batch * per, 0.0f);
      continue;
    }
    const auto& v = given->second;
    if (static_cast<int64_t>(v.size()) == per) {
      row.reserve(batch * per);
      for (int64_t b = 0; b < batch; ++b) row.insert(row.end(), v.begin(), v.end());
    } else if (static_cast<int64_t>(v.size()) == batch * per) {
      row = v;
    } else {
      throw Error(t.name + " must hold " + std::to_string(per) + " floats (one row for all images) or " +
                  std::to_string(batch * per) + " (one per image); got " + std::to_string(v.size()));
    }
    for (float x : row)
      if (!std::isfinite(x)) throw Error(t.name + " contains non-finite values (NaN or inf); pass finite embeddings");
  }
  const auto chw = image_shape();
  Images out;
  int64_t start = 0;
  for (int64_t n : plan_batches(batch, backend_->batch_range[0], backend_->batch_range[1])) {
    std::map<std::string, Feed> feeds{{contract::kNoise, {noise + start * size, {n, chw[0], chw[1], chw[2]}}}};
    for (const auto& t : backend_->inputs) {
      if (!is_text_input(t.name)) continue;
      std::vector<int64_t> shape(t.shape);
      shape[0] = n;
      feeds[t.name] = {rows[t.name].data() + start * sizes[t.name], shape};
    }
    feeds[contract::kGuidanceScale] = {scales.data() + start, {n}};
    backend_->run(feeds, out);
    start += n;
  }
  out.shape[0] = batch;
  return out;
}

Images Sampler::run_ids(const float* noise, int64_t batch, const std::vector<int64_t>& ids,
                        const std::vector<int64_t>& negative_ids, const std::vector<float>& guidance_scale) const {
  require_text_encoder();
  if (batch < 1) throw Error("batch must be at least 1, got " + std::to_string(batch));
  const int64_t length = text_encoder_->length;
  std::map<std::string, std::vector<float>> embeddings;
  const std::pair<const char*, const std::vector<int64_t>*> prompts[] = {{contract::kPromptEmbeds, &ids},
                                                                         {contract::kNegativePromptEmbeds, &negative_ids}};
  for (const auto& [name, given] : prompts) {
    const std::string what = name == std::string(contract::kPromptEmbeds) ? "ids" : "negative_ids";
    if (given->empty() && what == "negative_ids") continue;  // run_text: zeros when unguided, else an error
    const int64_t count = static_cast<int64_t>(given->size());
    if (count != length && count != batch * length)
      throw Error(what + " must hold " + std::to_string(length) + " token ids (one prompt for all images) or " +
                  std::to_string(batch * length) + " (one prompt per image); got " + std::to_string(count));
    for (int64_t id : *given)
      if (id < 0) throw Error(what + " holds the negative id " + std::to_string(id) + "; pass the ids the "
                              "tokenizer.json beside the graph gives");
    embeddings[name] = text_encoder_->encode(given->data(), count / length);
  }
  return run_text(noise, batch, embeddings, guidance_scale);
}

}  // namespace s4s
