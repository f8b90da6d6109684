// Tests of the C++ runtime against the tiny graphs the Python tests export.
// Paths come from S4S_TEST_UNCOND, S4S_TEST_COND (a conditional graph recording num_classes 3, taking
// guidance_scale [] as graphs exported before per-sample scales), S4S_TEST_PER_SAMPLE (the same taking
// guidance_scale [B]), S4S_TEST_GUIDED (one also recording guidance_scale 2.5) and S4S_TEST_FIXED2 (fixed
// batch 2); without them the test is skipped (exit code 77).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "../src/backend.h"  // internal: the description's JSON parser
#include "s4s/noise.h"
#include "s4s/runtime.h"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::cerr << "FAIL: " << what << "\n";
    ++failures;
  }
}

void expect_error(const std::function<void()>& call, const std::string& words, const std::string& what) {
  try {
    call();
    expect(false, what + ": no error");
  } catch (const s4s::Error& e) {
    expect(std::string(e.what()).find(words) != std::string::npos, what + ": message '" + e.what() + "'");
  }
}

template <typename E>
void expect_error_type(const std::function<void()>& call, const std::string& what) {
  try {
    call();
    expect(false, what + ": no error");
  } catch (const E&) {
  }
}

std::vector<float> normal(int64_t count, unsigned seed) { return s4s::seeded_noise(count, 1, seed); }

// Random123 1.09 examples/kat_vectors, philox4x64 10: counter, key -> output.
void test_philox_known_answers() {
  const uint64_t f = ~0ULL;
  expect(s4s::philox4x64({0, 0, 0, 0}, {0, 0}) == std::array<uint64_t, 4>{0x16554d9eca36314cULL, 0xdb20fe9d672d0fdcULL,
                                                                           0xd7e772cee186176bULL, 0x7e68b68aec7ba23bULL},
         "philox zeros");
  expect(s4s::philox4x64({f, f, f, f}, {f, f}) == std::array<uint64_t, 4>{0x87b092c3013fe90bULL, 0x438c3c67be8d0224ULL,
                                                                           0x9cc7d7c69cd777b6ULL, 0xa09caebf594f0ba0ULL},
         "philox ones");
  expect(s4s::philox4x64({0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, 0xa4093822299f31d0ULL, 0x082efa98ec4e6c89ULL},
                         {0x452821e638d01377ULL, 0xbe5466cf34e90c6cULL}) ==
             std::array<uint64_t, 4>{0xa528f45403e61d95ULL, 0x38c72dbd566e9788ULL, 0xa5a1610e72fd18b5ULL,
                                     0x57bd43b5e52b7fe6ULL},
         "philox pi");
  // sample i depends only on (seed, i): a later start is a suffix of a longer set
  const auto full = s4s::seeded_noise(7, 5, 3), tail = s4s::seeded_noise(7, 2, 3, 3);
  expect(std::equal(tail.begin(), tail.end(), full.begin() + 21), "noise suffix");
  expect(s4s::seeded_labels(0, 4, 3).empty() && s4s::seeded_labels(5, 4, 3).size() == 4, "labels");
  expect_error([] { s4s::seeded_noise(4, -1, 0); }, "must be non-negative", "negative count");
}

void test_unconditional(const std::string& path) {
  auto sampler = s4s::Sampler::load(path);
  const auto chw = sampler->image_shape();
  expect(!sampler->conditional() && sampler->batch_range()[0] == 1 && sampler->batch_range()[1] == -1, "uncond meta");
  const auto noise = normal(5 * sampler->noise_size(), 1);
  const auto images = sampler->run(noise.data(), 5);
  expect(images.dtype == "float32" && images.shape == std::vector<int64_t>({5, chw[0], chw[1], chw[2]}), "shape");
  expect(images.f32.size() == static_cast<size_t>(5 * sampler->noise_size()), "size");
  for (float v : images.f32) expect(v >= -1.0f && v <= 1.0f, "range");
  // split runs give the same images as one run
  s4s::Options small;
  small.max_batch = 2;
  auto split = s4s::Sampler::load(path, small);
  expect(split->batch_range()[1] == 2, "max_batch");
  const auto again = split->run(noise.data(), 5);
  for (size_t i = 0; i < images.f32.size(); ++i) expect(std::fabs(again.f32[i] - images.f32[i]) <= 1e-6f, "split");
  // errors
  auto bad = noise;
  bad[3] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { sampler->run(bad.data(), 1); }, "non-finite", "nan noise");
  expect_error([&] { sampler->run(noise.data(), 0); }, "at least 1", "empty batch");
  const int64_t labels[1] = {0};
  expect_error([&] { sampler->run(noise.data(), 1, labels); }, "unconditional", "labels for unconditional");
  expect_error([&] { sampler->run(noise.data(), 1, nullptr, 2.0f); }, "takes no guidance_scale", "guidance for unconditional");
  // the vector overload takes the batch from the noise size
  const auto whole = sampler->run(noise);
  expect(whole.shape[0] == 5 && whole.f32 == images.f32, "vector run");
  const std::vector<float> short_noise(noise.begin(), noise.end() - 1);
  expect_error([&] { sampler->run(short_noise); }, "noise must hold B * 30 floats", "noise size");
  expect_error([&] { sampler->run(std::vector<float>{}); }, "noise must hold", "empty noise");
  expect_error([&] { s4s::Sampler::load("missing.onnx"); }, "does not exist", "missing graph");
  s4s::Options cuda;
  cuda.providers = {"warp-drive"};
  expect_error([&] { s4s::Sampler::load(path, cuda); }, "unknown execution provider", "provider");
}

void test_conditional(const std::string& path) {
  auto sampler = s4s::Sampler::load(path);
  expect(sampler->conditional() && sampler->num_classes() == 3, "cond meta");
  const auto noise = normal(2 * sampler->noise_size(), 2);
  const int64_t labels[2] = {0, 3};
  const auto a = sampler->run(noise.data(), 2, labels, 1.0f);
  const auto b = sampler->run(noise.data(), 2, labels, 2.0f);
  expect(a.f32 != b.f32, "guidance changes the images");
  expect(sampler->default_guidance_scale() == 1.0f, "no recorded guidance: default 1");
  expect(sampler->run(noise.data(), 2, labels).f32 == a.f32, "default guidance 1");
  expect_error([&] { sampler->run(noise.data(), 2); }, "class-conditional", "missing labels");
  const int64_t out_of_range[2] = {0, 4};
  expect_error([&] { sampler->run(noise.data(), 2, out_of_range); }, "class label 4 out of range; valid labels are [0, 3]",
               "label range");
  const int64_t negative[2] = {-1, 0};
  expect_error([&] { sampler->run(noise.data(), 2, negative); }, "class label -1 out of range", "negative label");
  expect_error([&] { sampler->run(noise.data(), 2, labels, INFINITY); }, "finite", "guidance");
  expect_error([&] { sampler->run(noise, {0, 1, 2}); }, "one per image: 2 images, got 3 labels", "label count");
  // the TensorRT provider's profile, as the Python runtime writes it (tests/runtime/test_cpp.py checks Python's)
  const auto profile = s4s::trt_profile_options(sampler->inputs(), 1, 16);
  expect(profile == std::map<std::string, std::string>{{"trt_profile_min_shapes", "noise:1x1x6x5,class_labels:1"},
                                                       {"trt_profile_opt_shapes", "noise:4x1x6x5,class_labels:4"},
                                                       {"trt_profile_max_shapes", "noise:16x1x6x5,class_labels:16"}},
         "tensorrt provider profile");
  expect(s4s::trt_profile_options({{"noise", "float32", {2, 1, 6, 5}}}, 2, 2).empty(), "no profile for a fixed batch");
  expect(sampler->run(noise, {0, 3}, 2.0f).f32 == b.f32, "vector run with labels");
  // guidance_scale []: one scale for the batch
  expect(sampler->run(noise.data(), 2, labels, std::vector<float>{2.0f}).f32 == b.f32, "one scale as a vector");
  expect_error([&] { sampler->run(noise.data(), 2, labels, std::vector<float>{1.0f, 2.0f}); },
               "takes one guidance_scale for the whole batch", "per-sample scales for a scalar graph");
}

// guidance_scale [B]: each image gets its own scale, equal to running it alone with that scale.
void test_per_sample(const std::string& path) {
  auto sampler = s4s::Sampler::load(path);
  const int64_t size = sampler->noise_size();
  const auto noise = normal(3 * size, 5);
  const int64_t labels[3] = {1, 2, 0};
  const std::vector<float> scales{0.5f, 2.0f, 3.5f};
  const auto together = sampler->run(noise.data(), 3, labels, scales);
  float worst = 0.0f;
  for (int64_t i = 0; i < 3; ++i) {
    const auto alone = sampler->run(noise.data() + i * size, 1, labels + i, scales[i]);
    for (int64_t k = 0; k < size; ++k) worst = std::max(worst, std::fabs(alone.f32[k] - together.f32[i * size + k]));
  }
  expect(worst <= 1e-5f, "per-sample scales equal each image alone (max abs " + std::to_string(worst) + ")");
  expect(together.f32 != sampler->run(noise.data(), 3, labels, 2.0f).f32, "per-sample scales differ from one");
  expect(sampler->run(noise.data(), 3, labels, 2.0f).f32 ==
             sampler->run(noise.data(), 3, labels, std::vector<float>{2.0f, 2.0f, 2.0f}).f32, "one scale repeated");
  s4s::Options small;  // split runs take their slice of the scales
  small.max_batch = 2;
  expect(s4s::Sampler::load(path, small)->run(noise.data(), 3, labels, scales).f32 == together.f32, "split scales");
  expect_error([&] { sampler->run(noise.data(), 3, labels, std::vector<float>{1.0f, 2.0f}); },
               "one number or one per image (3); got 2", "scale count");
  expect_error([&] { sampler->run(noise.data(), 3, labels, std::vector<float>{1.0f, NAN, 2.0f}); }, "finite",
               "non-finite scale");
  expect_error([&] { sampler->run_ids(noise.data(), 3, {1, 2}); }, "no text encoder graph", "ids without encoder");
  const auto profile = s4s::trt_profile_options(sampler->inputs(), 1, 16);
  expect(profile.at("trt_profile_max_shapes") == "noise:16x1x6x5,class_labels:16,guidance_scale:16",
         "tensorrt provider profile with per-sample guidance");
}

void test_guided(const std::string& path) {
  auto sampler = s4s::Sampler::load(path);
  expect(sampler->default_guidance_scale() == 2.5f, "recorded guidance 2.5");
  const auto noise = normal(3 * sampler->noise_size(), 3);
  const int64_t labels[3] = {2, 0, 3};
  const auto plain = sampler->run(noise.data(), 3, labels);
  expect(plain.f32 == sampler->run(noise.data(), 3, labels, 2.5f).f32, "default guidance is the recorded one");
  expect(plain.f32 != sampler->run(noise.data(), 3, labels, 1.0f).f32, "recorded guidance is not 1");
}

void test_fixed_batch(const std::string& path) {
  auto sampler = s4s::Sampler::load(path);
  expect(sampler->batch_range() == std::array<int64_t, 2>{2, 2}, "fixed batch range");
  const auto noise = normal(4 * sampler->noise_size(), 4);
  expect_error([&] { sampler->run(noise.data(), 1); }, "below the minimum batch 2", "batch below the range");
  expect_error([&] { sampler->run(noise.data(), 3); }, "cannot be split into runs within the batch range [2, 2]",
               "batch not a multiple");
  const auto four = sampler->run(noise.data(), 4);  // two runs of 2
  const auto second = sampler->run(noise.data() + 2 * sampler->noise_size(), 2);
  expect(four.shape[0] == 4 && std::equal(second.f32.begin(), second.f32.end(), four.f32.begin() + second.f32.size()),
         "split fixed batch");
}

void test_json() {
  const auto doc = s4s::parse_json(R"( {"a": [1, -2.5e1, true, false, null], "s": "x\"\u00e9\ud83d\ude00\n", "n": NaN,
                                      "a": {"k": -Infinity}} )");
  expect(doc.kind == s4s::Json::Kind::Object && doc.keys.size() == 4, "json object");
  const auto* a = doc.get("a");  // the last duplicate wins
  expect(a && a->get("k") && std::isinf(a->get("k")->number) && a->get("k")->number < 0, "json duplicate key");
  expect(doc.items[0].items.size() == 5 && doc.items[0].items[0].integer && doc.items[0].items[1].number == -25.0 &&
             !doc.items[0].items[1].integer && doc.items[0].items[2].boolean && !doc.items[0].items[3].boolean &&
             doc.items[0].items[4].kind == s4s::Json::Kind::Null, "json array");
  expect(doc.get("s") && doc.get("s")->text == "x\"\xc3\xa9\xf0\x9f\x98\x80\n", "json string escapes");
  expect(doc.get("n") && std::isnan(doc.get("n")->number), "json NaN");
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\t\"", "1 2", "tru", "{'a': 1}"})
    expect_error_type<std::invalid_argument>([&] { s4s::parse_json(bad); }, std::string("json rejects ") + bad);
  expect(s4s::metadata_value("{not json").kind == s4s::Json::Kind::String, "metadata: non-JSON stays a string");
  expect(s4s::metadata_value(" 2.5 ").number == 2.5, "metadata: JSON number");
  s4s::Description description{{"model", s4s::parse_json(R"({"num_classes": 10})")}, {"guidance_scale", s4s::parse_json("\"x\"")}};
  struct Probe : s4s::Backend {
    void run(const std::map<std::string, s4s::Feed>&, s4s::Images&) const override {}
  } probe;
  s4s::apply_description(description, probe);
  expect(probe.num_classes == 10 && probe.default_guidance_error.find("'x', not a number") != std::string::npos,
         "description: model.num_classes, bad guidance");
  description["num_classes"] = s4s::parse_json("4.0");  // not an integer: model.num_classes stays
  description["guidance_scale"] = s4s::parse_json("3");
  s4s::apply_description(description, probe);
  expect(probe.num_classes == 10 && probe.default_guidance == 3.0f && probe.default_guidance_error.empty(),
         "description: integer num_classes only, integer guidance");
}

}  // namespace

int main() {
  const char* uncond = std::getenv("S4S_TEST_UNCOND");
  const char* cond = std::getenv("S4S_TEST_COND");
  const char* guided = std::getenv("S4S_TEST_GUIDED");
  const char* fixed2 = std::getenv("S4S_TEST_FIXED2");
  const char* per_sample = std::getenv("S4S_TEST_PER_SAMPLE");
  if (!uncond || !cond || !guided || !fixed2 || !per_sample) {
    std::cerr << "skipped: set S4S_TEST_UNCOND, S4S_TEST_COND, S4S_TEST_PER_SAMPLE, S4S_TEST_GUIDED and "
                 "S4S_TEST_FIXED2 to sampler graphs\n";
    return 77;
  }
  test_json();
  test_philox_known_answers();
  expect(s4s::plan_batches(9, 4, 8) == std::vector<int64_t>({5, 4}), "plan 9 in [4,8]");
  expect(s4s::plan_batches(16, 4, 5) == std::vector<int64_t>({4, 4, 4, 4}), "plan 16 in [4,5]");
  expect_error([] { s4s::plan_batches(9, 8, 8); }, "cannot be split", "plan 9 in [8,8]");
  expect_error([] { s4s::Sampler::load("model.pt"); }, "unknown model file type", "suffix");
  expect_error([] { s4s::Sampler::load("missing.plan"); }, "missing.plan", "engine");
  test_unconditional(uncond);
  test_conditional(cond);
  test_per_sample(per_sample);
  test_guided(guided);
  test_fixed_batch(fixed2);
  std::cout << (failures ? "FAILED " : "passed ") << failures << " failures\n";
  return failures ? 1 : 0;
}
