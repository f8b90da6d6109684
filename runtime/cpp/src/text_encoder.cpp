// The text encoder graph beside a text-conditioned sampler: token ids -> prompt embeddings on ONNX Runtime's
// CPU provider, as the Python runtime runs it (runtime/text_encoder.py).
#include <filesystem>

#include "backend.h"
#include "ort.h"

namespace s4s {
namespace {

class OrtTextEncoder final : public TextEncoder {
 public:
  OrtTextEncoder(const std::string& path, int64_t expected_length, const Options& options) {
    if (!std::filesystem::is_regular_file(path))
      throw Error(path + " is missing (the sampler's description names it); rebuild with `s4s-export build "
                  "--text-encoder`, or remove the text_encoder entry and pass prompt embeddings");
    Ort::SessionOptions session_options;
    if (options.threads > 0) session_options.SetIntraOpNumThreads(options.threads);
    session_ = ort_load(path, session_options);
    const auto inputs = ort_session_inputs(session_);
    const auto outputs = ort_session_outputs(session_);
    const std::string where = path + " is not an s4s-export text encoder graph: expected " + contract::kInputIds +
                              " [B, " + std::to_string(expected_length) + "] " + contract::kInputIdsDtype + " -> " +
                              contract::kPromptEmbeds + " [B, " + std::to_string(expected_length) + ", D] " +
                              contract::kEmbedsDtype + "; rebuild with `s4s-export build --text-encoder`";
    if (inputs.size() != 1 || inputs[0].name != contract::kInputIds || inputs[0].dtype != contract::kInputIdsDtype ||
        inputs[0].shape.size() != 2 || inputs[0].shape[1] != expected_length || outputs.size() != 1 ||
        outputs[0].name != contract::kPromptEmbeds || outputs[0].dtype != contract::kEmbedsDtype ||
        outputs[0].shape.size() != 3 || outputs[0].shape[2] < 1)
      throw Error(where);
    length = expected_length;
    dim = outputs[0].shape[2];
  }

  std::vector<float> encode(const int64_t* ids, int64_t rows) const override {
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    const std::vector<int64_t> shape{rows, length};
    Ort::Value input = Ort::Value::CreateTensor<int64_t>(memory, const_cast<int64_t*>(ids), rows * length,
                                                         shape.data(), shape.size());
    const char* input_name = contract::kInputIds;
    const char* output_name = contract::kPromptEmbeds;
    std::vector<Ort::Value> result;
    try {
      result = session_.Run(Ort::RunOptions{nullptr}, &input_name, &input, 1, &output_name, 1);
    } catch (const Ort::Exception& e) {  // e.g. an id past the vocabulary
      throw Error(std::string("the text encoder failed on these ids (") + e.what() + "); pass the ids the "
                  "tokenizer.json beside the graph gives");
    }
    const float* data = result[0].GetTensorData<float>();
    return std::vector<float>(data, data + rows * length * dim);
  }

 private:
  mutable Ort::Session session_{nullptr};
};

}  // namespace

std::unique_ptr<TextEncoder> make_text_encoder(const std::string& path, int64_t length, const Options& options) {
  return std::make_unique<OrtTextEncoder>(path, length, options);
}

}  // namespace s4s
