// s4s_sample: images from a baked sampler, written as a PPM grid.
//
//   s4s_sample MODEL [--n N] [--seed S] [--noise FILE] [--labels 0,1,2] [--guidance G | G1,G2,...]
//              [--embeds FILE] [--negative-embeds FILE] [--ids FILE] [--negative-ids FILE]
//              [--out grid.ppm] [--raw FILE] [--threads T] [--providers cpu,cuda,tensorrt]
//
// --noise reads N*C*H*W little-endian float32 (N from the file size) instead of generating noise.
// Generated noise is s4s::seeded_noise (s4s/noise.h): --seed S gives the same noise bits as the Python
// runtime's `Sampler.load(MODEL)(seed=S, n=N)` and `s4s-export sample --seed S`.
// --raw writes the sampler's output tensor as raw bytes (float32 or uint8) for comparisons.
// Without --guidance, conditional graphs use their recorded default guidance scale (else 1.0), as in Python;
// --guidance takes one scale for all images or one per image (comma-separated, graphs taking [B] scales).
// Text-conditioned graphs: --embeds / --negative-embeds read prompt_embeds / negative_prompt_embeds as
// little-endian float32, one [L, D] row for every image or N rows (embeddings in, images out). With a text
// encoder graph beside the model, --ids / --negative-ids read token ids instead: little-endian int64, L per
// prompt (one prompt or N), as the tokenizer.json beside the model gives them (tokenizing is not done here).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <locale>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "s4s/noise.h"
#include "s4s/runtime.h"

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, ',');)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

// The whole of `value` as a number of type T; s4s::Error naming the flag otherwise.
template <typename T>
T number(const std::string& flag, const std::string& value) {
  std::istringstream in(value);
  in.imbue(std::locale::classic());
  T out{};
  if (!(in >> out) || !(in >> std::ws).eof())
    throw s4s::Error(flag + " needs a number, got '" + value + "'");
  return out;
}

// A raw little-endian file of N * `size` values of type T.
template <typename T>
std::vector<T> read_raw(const std::string& path, int64_t size, const char* type) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) throw s4s::Error("cannot read " + path);
  const auto bytes = static_cast<int64_t>(file.tellg());
  const int64_t item = static_cast<int64_t>(sizeof(T));
  if (bytes == 0 || bytes % (size * item) != 0)
    throw s4s::Error(path + " must hold N * " + std::to_string(size) + " " + type + " values");
  std::vector<T> values(bytes / item);
  file.seekg(0);
  file.read(reinterpret_cast<char*>(values.data()), bytes);
  return values;
}

// uint8 NHWC pixels of image i, whatever the output format.
std::vector<uint8_t> pixels(const s4s::Images& images, int64_t i, int64_t& h, int64_t& w, int64_t& c) {
  const bool u8 = images.dtype == "uint8";
  h = images.shape[u8 ? 1 : 2];
  w = images.shape[u8 ? 2 : 3];
  c = images.shape[u8 ? 3 : 1];
  std::vector<uint8_t> out(h * w * c);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k) {
        const int64_t at = (y * w + x) * c + k;
        if (u8) {
          out[at] = images.u8[i * h * w * c + at];
        } else {
          const float v = images.f32[((i * c + k) * h + y) * w + x];
          out[at] = static_cast<uint8_t>(std::lround(std::clamp((v + 1.0f) * 127.5f, 0.0f, 255.0f)));
        }
      }
  return out;
}

void write_ppm_grid(const std::string& path, const s4s::Images& images) {
  const int64_t n = images.shape[0], cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int64_t rows = (n + cols - 1) / cols, pad = 2;
  int64_t h, w, c;
  pixels(images, 0, h, w, c);
  const int64_t width = pad + cols * (w + pad), height = pad + rows * (h + pad);
  std::vector<uint8_t> rgb(width * height * 3, 0);
  for (int64_t i = 0; i < n; ++i) {
    const auto image = pixels(images, i, h, w, c);
    const int64_t top = pad + (i / cols) * (h + pad), left = pad + (i % cols) * (w + pad);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t k = 0; k < 3; ++k)
          rgb[((top + y) * width + left + x) * 3 + k] = image[(y * w + x) * c + (c == 1 ? 0 : std::min<int64_t>(k, c - 1))];
  }
  std::ofstream file(path, std::ios::binary);
  file << "P6\n" << width << " " << height << "\n255\n";
  file.write(reinterpret_cast<const char*>(rgb.data()), static_cast<std::streamsize>(rgb.size()));
  if (!file) throw s4s::Error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::cerr << "usage: s4s_sample MODEL [--n N] [--seed S] [--noise FILE] [--labels 0,1,2] [--guidance G|G1,G2,...]\n"
                 "                  [--embeds FILE] [--negative-embeds FILE] [--ids FILE] [--negative-ids FILE]\n"
                 "                  [--out grid.ppm] [--raw FILE] [--threads T] [--providers cpu,cuda,tensorrt]\n";
    return 2;
  }
  try {
    std::string model = argv[1], noise_path, out = "grid.ppm", raw, labels_text, embeds_path, negative_path, ids_path,
                negative_ids_path;
    int64_t n = 16;
    uint64_t seed = 0;
    std::vector<float> guidance;  // empty: the graph's default
    s4s::Options options;
    for (int i = 2; i < argc; i += 2) {
      const std::string flag = argv[i];
      if (i + 1 >= argc) throw s4s::Error(flag + " needs a value");
      const std::string value = argv[i + 1];
      if (flag == "--n") n = number<int64_t>(flag, value);
      else if (flag == "--seed") {
        if (value.empty() || value[0] == '-') throw s4s::Error("--seed must be a non-negative integer, got '" + value + "'");
        seed = number<uint64_t>(flag, value);
      }
      else if (flag == "--noise") noise_path = value;
      else if (flag == "--labels") labels_text = value;
      else if (flag == "--embeds") embeds_path = value;
      else if (flag == "--negative-embeds") negative_path = value;
      else if (flag == "--ids") ids_path = value;
      else if (flag == "--negative-ids") negative_ids_path = value;
      else if (flag == "--guidance") {
        guidance.clear();
        for (const auto& g : split(value)) guidance.push_back(number<float>(flag, g));
        if (guidance.empty()) throw s4s::Error("--guidance needs a number, got '" + value + "'");
      }
      else if (flag == "--out") out = value;
      else if (flag == "--raw") raw = value;
      else if (flag == "--threads") options.threads = number<int>(flag, value);
      else if (flag == "--providers") options.providers = split(value);
      else throw s4s::Error("unknown option " + flag);
    }
    if (n < 1) throw s4s::Error("--n must be at least 1, got " + std::to_string(n));
    auto sampler = s4s::Sampler::load(model, options);
    std::vector<float> noise;
    if (!noise_path.empty()) {
      noise = read_raw<float>(noise_path, sampler->noise_size(), "float32");
      n = static_cast<int64_t>(noise.size()) / sampler->noise_size();
    } else {
      noise = s4s::seeded_noise(sampler->noise_size(), n, seed);
    }
    std::vector<int64_t> labels;
    for (const auto& label : split(labels_text)) labels.push_back(number<int64_t>("--labels", label));
    if (!labels.empty()) {  // cycled to n, like `s4s-export sample --labels`
      const size_t given = labels.size();
      for (size_t i = given; i < static_cast<size_t>(n); ++i) labels.push_back(labels[i % given]);
      labels.resize(n);
    }
    s4s::Images images;
    if (sampler->text() && !ids_path.empty()) {
      if (!embeds_path.empty() || !negative_path.empty())
        throw s4s::Error("pass either --ids or --embeds, not both");
      sampler->require_text_encoder();  // none beside it, or an SDXL / SD3 one: says so, and what to pass instead
      const int64_t length = sampler->text_length();
      images = sampler->run_ids(noise.data(), n, read_raw<int64_t>(ids_path, length, "int64"),
                                negative_ids_path.empty() ? std::vector<int64_t>{}
                                                          : read_raw<int64_t>(negative_ids_path, length, "int64"),
                                guidance);
    } else if (sampler->text()) {
      if (embeds_path.empty()) throw s4s::Error("this model is text-conditioned: pass --embeds FILE (float32) or --ids FILE");
      std::map<std::string, std::vector<float>> embeddings{{"prompt_embeds", read_raw<float>(embeds_path, 1, "float32")}};
      if (!negative_path.empty()) embeddings["negative_prompt_embeds"] = read_raw<float>(negative_path, 1, "float32");
      images = sampler->run_text(noise.data(), n, embeddings, guidance);
    } else {
      if (!embeds_path.empty() || !negative_path.empty() || !ids_path.empty() || !negative_ids_path.empty())
        throw s4s::Error("this model is not text-conditioned: drop --embeds, --negative-embeds, --ids and --negative-ids");
      images = sampler->run(noise.data(), n, labels.empty() ? nullptr : labels.data(), guidance);
    }
    if (!raw.empty()) {
      std::ofstream file(raw, std::ios::binary);
      if (images.dtype == "uint8") file.write(reinterpret_cast<const char*>(images.u8.data()), images.u8.size());
      else file.write(reinterpret_cast<const char*>(images.f32.data()), images.f32.size() * sizeof(float));
    }
    write_ppm_grid(out, images);
    const auto chw = sampler->image_shape();
    std::cout << "wrote " << out << " (" << n << " images " << chw[0] << "x" << chw[1] << "x" << chw[2] << ", "
              << images.dtype << ")\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
