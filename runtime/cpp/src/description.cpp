// The graph's description (ONNX metadata_props and the JSON sidecar), read as the Python runtime reads it:
// runtime/spec.py (parse_metadata, read_sidecar, GraphSpec.num_classes) and runtime/inputs.py (guidance default).
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <locale>
#include <sstream>
#include <utility>

#include "backend.h"

namespace s4s {
namespace {

// Number text already checked against the JSON grammar -> double; out of range: +-inf or 0, like Python's float().
double to_double(const std::string& s) {
  double v = 0;
#if defined(__cpp_lib_to_chars)
  if (std::from_chars(s.data(), s.data() + s.size(), v).ec == std::errc()) return v;
#else
  std::istringstream in(s);
  in.imbue(std::locale::classic());
  if (in >> v) return v;
#endif
  const size_t e = s.find_first_of("eE");
  const double magnitude = e != std::string::npos && s[e + 1] == '-' ? 0.0 : std::numeric_limits<double>::infinity();
  return s[0] == '-' ? -magnitude : magnitude;
}

void append_utf8(std::string& out, uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

// Strict JSON (RFC 8259) plus NaN / Infinity / -Infinity, which Python's json module also reads.
class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  Json document() {
    Json v = value(0);
    skip();
    if (pos_ != s_.size()) fail("extra data");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument(what + " at character " + std::to_string(pos_));
  }
  void skip() {
    while (pos_ < s_.size() && std::strchr(" \t\n\r", s_[pos_]) && s_[pos_] != '\0') ++pos_;
  }
  bool take(const char* word) {
    const size_t n = std::strlen(word);
    if (s_.compare(pos_, n, word) != 0) return false;
    pos_ += n;
    return true;
  }
  bool digit() const { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; }

  Json value(int depth) {
    if (depth > 100) fail("nesting too deep");
    skip();
    if (pos_ >= s_.size()) fail("unexpected end");
    Json v;
    if (take("{")) {
      v.kind = Json::Kind::Object;
      skip();
      if (take("}")) return v;
      while (true) {
        skip();
        if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
        v.keys.push_back(string());
        skip();
        if (!take(":")) fail("expected ':'");
        v.items.push_back(value(depth + 1));
        skip();
        if (take("}")) return v;
        if (!take(",")) fail("expected ',' or '}'");
      }
    }
    if (take("[")) {
      v.kind = Json::Kind::Array;
      skip();
      if (take("]")) return v;
      while (true) {
        v.items.push_back(value(depth + 1));
        skip();
        if (take("]")) return v;
        if (!take(",")) fail("expected ',' or ']'");
      }
    }
    if (s_[pos_] == '"') {
      v.kind = Json::Kind::String;
      v.text = string();
      return v;
    }
    if (take("true") || take("false")) {
      v.kind = Json::Kind::Bool;
      v.boolean = s_[pos_ - 1] == 'e' && s_[pos_ - 2] == 'u';  // "true", not "false"
      return v;
    }
    if (take("null")) return v;
    v.kind = Json::Kind::Number;
    constexpr double inf = std::numeric_limits<double>::infinity();
    for (const auto& [word, number] : {std::pair<const char*, double>{"NaN", std::numeric_limits<double>::quiet_NaN()},
                                       {"Infinity", inf}, {"-Infinity", -inf}}) {
      if (take(word)) {
        v.text = word;
        v.number = number;
        return v;
      }
    }
    const size_t start = pos_;
    take("-");
    if (take("0")) {
    } else if (digit()) {
      while (digit()) ++pos_;
    } else {
      fail("expected a value");
    }
    v.integer = true;
    if (take(".")) {
      v.integer = false;
      if (!digit()) fail("expected a digit");
      while (digit()) ++pos_;
    }
    if (take("e") || take("E")) {
      v.integer = false;
      if (!take("+")) take("-");
      if (!digit()) fail("expected a digit");
      while (digit()) ++pos_;
    }
    v.text = s_.substr(start, pos_ - start);
    v.number = to_double(v.text);
    return v;
  }

  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("bad \\u escape");
    uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      code <<= 4;
      if (c >= '0' && c <= '9') code |= c - '0';
      else if (c >= 'a' && c <= 'f') code |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') code |= c - 'A' + 10;
      else fail("bad \\u escape");
    }
    return code;
  }

  std::string string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t code = hex4();
          if (code >= 0xD800 && code < 0xDC00 && s_.compare(pos_, 2, "\\u") == 0) {  // surrogate pair
            const size_t back = pos_;
            pos_ += 2;
            const uint32_t low = hex4();
            if (low >= 0xDC00 && low < 0xE000) code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
            else pos_ = back;
          }
          append_utf8(out, code);
          break;
        }
        default: --pos_; fail("bad escape");
      }
    }
  }

  const std::string& s_;
  size_t pos_ = 0;
};

}  // namespace

const Json* Json::get(const std::string& key) const {
  if (kind != Kind::Object) return nullptr;
  for (size_t i = keys.size(); i-- > 0;)  // the last duplicate wins, as in Python's json
    if (keys[i] == key) return &items[i];
  return nullptr;
}

Json parse_json(const std::string& text) { return Parser(text).document(); }

Json metadata_value(const std::string& value) {
  try {
    return parse_json(value);
  } catch (const std::invalid_argument&) {
    Json v;
    v.kind = Json::Kind::String;
    v.text = value;
    return v;
  }
}

std::string sidecar_path(const std::string& model_path) {
  const std::string onnx = ".onnx";
  if (model_path.size() >= onnx.size() && model_path.compare(model_path.size() - onnx.size(), onnx.size(), onnx) == 0)
    return model_path.substr(0, model_path.size() - onnx.size()) + contract::kSidecarSuffix;
  return model_path + contract::kSidecarSuffix;
}

void overlay_sidecar(const std::string& model_path, Description& doc) {
  const std::string path = sidecar_path(model_path);
  std::ifstream file(path, std::ios::binary);
  if (!file) return;  // no sidecar: the description is the metadata alone
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  Json sidecar;
  try {
    sidecar = parse_json(text);
  } catch (const std::invalid_argument& e) {
    throw Error(path + " is not valid JSON (" + e.what() + "); delete it or re-export the model");
  }
  if (sidecar.kind != Json::Kind::Object)
    throw Error(path + " should hold a JSON object; delete it or re-export the model");
  for (size_t i = 0; i < sidecar.keys.size(); ++i) doc[sidecar.keys[i]] = sidecar.items[i];
}

void apply_description(const Description& doc, Backend& backend) {
  // num_classes: the top-level entry, else model.num_classes; a positive integer, else not recorded.
  backend.num_classes = 0;
  const auto top = doc.find(contract::kNumClassesKey);
  const auto model = doc.find(contract::kModelKey);
  for (const Json* v : {top == doc.end() ? nullptr : &top->second,
                        model == doc.end() ? nullptr : model->second.get(contract::kNumClassesKey)}) {
    int64_t n = 0;
    if (!v || v->kind != Json::Kind::Number || !v->integer) continue;
    const auto parsed = std::from_chars(v->text.data(), v->text.data() + v->text.size(), n);
    if (parsed.ec == std::errc() && n > 0) {
      backend.num_classes = n;
      break;
    }
  }
  // text_encoder: {onnx: file name beside the model, length: ids per prompt, ...} (runtime/text_encoder.py)
  backend.text_encoder_file.clear();
  backend.text_length = 0;
  const auto encoder = doc.find(contract::kTextEncoderKey);
  if (encoder != doc.end() && encoder->second.kind == Json::Kind::Object) {
    const Json* file = encoder->second.get(contract::kTextEncoderFileKey);
    const Json* length = encoder->second.get(contract::kTextLengthKey);
    int64_t n = 0;
    if (!file || file->kind != Json::Kind::String || file->text.empty() || file->text.find('/') != std::string::npos ||
        !length || length->kind != Json::Kind::Number || !length->integer ||
        std::from_chars(length->text.data(), length->text.data() + length->text.size(), n).ec != std::errc() || n < 1)
      throw Error(std::string("the description's ") + contract::kTextEncoderKey + " entry needs a file name '" +
                  contract::kTextEncoderFileKey + "' and a positive integer '" + contract::kTextLengthKey +
                  "'; rebuild with `s4s-export build --text-encoder`");
    backend.text_encoder_file = file->text;
    backend.text_length = n;
    // SDXL / SD3 encoders take one ids input per tokenizer and also give pooled embeddings: not served here.
    const Json* tokenizers = encoder->second.get(contract::kTextTokenizersKey);
    if (tokenizers && tokenizers->kind == Json::Kind::Array && tokenizers->items.size() > 1) {
      backend.text_encoder_unsupported =
          "this sampler's text encoder takes " + std::to_string(tokenizers->items.size()) +
          " token-id inputs (SDXL / SD3); the C++ runtime's run_ids serves one-tokenizer (CLIP) encoders only: "
          "call run_text with prompt embeddings (the Python runtime encodes prompts for these models)";
      backend.text_encoder_file.clear();
    }
  }
  // guidance_scale: the default when the caller gives none (1.0: plain conditional model).
  backend.default_guidance = contract::kDefaultGuidance;
  backend.default_guidance_error.clear();
  const auto guidance = doc.find(contract::kGuidanceKey);
  if (guidance == doc.end()) return;
  if (guidance->second.kind == Json::Kind::Number) {
    backend.default_guidance = static_cast<float>(guidance->second.number);
  } else {
    static const char* kinds[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    const Json& v = guidance->second;
    backend.default_guidance_error = std::string("the graph's recorded guidance_scale is ") +
                                     (v.kind == Json::Kind::String ? "'" + v.text + "'" : kinds[static_cast<int>(v.kind)]) +
                                     ", not a number; pass a guidance scale (1.0 = no guidance)";
  }
}

}  // namespace s4s
