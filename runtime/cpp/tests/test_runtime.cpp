// Tests of the C++ runtime against the tiny graphs the Python tests export.
// Paths come from S4S_TEST_UNCOND / S4S_TEST_COND (a conditional graph recording num_classes);
// without them the test is skipped (exit code 77).
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

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

std::vector<float> normal(int64_t count, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(count);
  for (auto& x : v) x = dist(gen);
  return v;
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
  expect_error([&] { sampler->run(noise.data(), 2); }, "class-conditional", "missing labels");
  const int64_t out_of_range[2] = {0, 4};
  expect_error([&] { sampler->run(noise.data(), 2, out_of_range); }, "out of range", "label range");
  expect_error([&] { sampler->run(noise.data(), 2, labels, INFINITY); }, "finite", "guidance");
}

}  // namespace

int main() {
  const char* uncond = std::getenv("S4S_TEST_UNCOND");
  const char* cond = std::getenv("S4S_TEST_COND");
  if (!uncond || !cond) {
    std::cerr << "skipped: set S4S_TEST_UNCOND and S4S_TEST_COND to sampler graphs\n";
    return 77;
  }
  expect(s4s::plan_batches(9, 4, 8) == std::vector<int64_t>({5, 4}), "plan 9 in [4,8]");
  expect(s4s::plan_batches(16, 4, 5) == std::vector<int64_t>({4, 4, 4, 4}), "plan 16 in [4,5]");
  expect_error([] { s4s::plan_batches(9, 8, 8); }, "cannot be split", "plan 9 in [8,8]");
  expect_error([] { s4s::Sampler::load("model.pt"); }, "unknown model file type", "suffix");
  expect_error([] { s4s::Sampler::load("missing.plan"); }, "missing.plan", "engine");
  test_unconditional(uncond);
  test_conditional(cond);
  std::cout << (failures ? "FAILED " : "passed ") << failures << " failures\n";
  return failures ? 1 : 0;
}
