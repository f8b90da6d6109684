// Seeded noise (include/s4s/noise.h); the definition is in docs/runtime.md "Noise". Built with
// -ffp-contract=off (CMakeLists.txt) so no multiply-add is fused: the float64 steps round as numpy's do.
#include "s4s/noise.h"

#include <cmath>

#include "s4s/runtime.h"

namespace s4s {
namespace {

constexpr uint64_t kM0 = 0xD2E7470EE14C6C93ULL, kM1 = 0xCA5A826395121157ULL;  // Random123 multipliers
constexpr uint64_t kW0 = 0x9E3779B97F4A7C15ULL, kW1 = 0xBB67AE8584CAA73BULL;  // Random123 Weyl key bumps
constexpr uint64_t kNoiseDomain = 0, kLabelDomain = 1;
constexpr double kTwoPi = 6.283185307179586;  // the float64 nearest 2*pi, as numpy's 2.0 * np.pi

// High and low 64-bit halves of a * b, from 32-bit pieces (no 128-bit type needed).
void mulhilo(uint64_t a, uint64_t b, uint64_t& hi, uint64_t& lo) {
  const uint64_t mask = 0xFFFFFFFFULL;
  const uint64_t a_lo = a & mask, a_hi = a >> 32, b_lo = b & mask, b_hi = b >> 32;
  const uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
  const uint64_t mid = (ll >> 32) + (lh & mask) + (hl & mask);
  hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
  lo = a * b;
}

// ((w >> 12) + 0.5) * 2^-52: exact in float64, in (0, 1), never 0.
double uniform(uint64_t w) { return (static_cast<double>(w >> 12) + 0.5) * 0x1p-52; }

void check_count(int64_t n, const char* what) {
  if (n < 0) throw Error(std::string(what) + " must be non-negative, got " + std::to_string(n));
}

}  // namespace

std::array<uint64_t, 4> philox4x64(std::array<uint64_t, 4> c, std::array<uint64_t, 2> k) {
  for (int r = 0; r < 10; ++r) {
    if (r) {
      k[0] += kW0;
      k[1] += kW1;
    }
    uint64_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c[0], hi0, lo0);
    mulhilo(kM1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
  return c;
}

std::vector<float> seeded_noise(int64_t size, int64_t n, uint64_t seed, uint64_t start) {
  check_count(size, "noise size");
  check_count(n, "noise count");
  std::vector<float> out(static_cast<size_t>(size * n));
  for (int64_t i = 0; i < n; ++i) {
    float* sample = out.data() + i * size;
    for (int64_t j = 0; 4 * j < size; ++j) {
      const auto w = philox4x64({static_cast<uint64_t>(j), start + static_cast<uint64_t>(i), kNoiseDomain, 0},
                                {seed, 0});
      for (int p = 0; p < 2; ++p) {
        const double r = std::sqrt(-2.0 * std::log(uniform(w[2 * p])));
        const double t = kTwoPi * uniform(w[2 * p + 1]);
        const int64_t e = 4 * j + 2 * p;
        if (e < size) sample[e] = static_cast<float>(r * std::cos(t));
        if (e + 1 < size) sample[e + 1] = static_cast<float>(r * std::sin(t));
      }
    }
  }
  return out;
}

std::vector<int64_t> seeded_labels(int64_t num_classes, int64_t n, uint64_t seed, uint64_t start) {
  check_count(n, "label count");
  if (num_classes <= 0) return {};
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto w = philox4x64({0, start + static_cast<uint64_t>(i), kLabelDomain, 0}, {seed, 0});
    out[i] = static_cast<int64_t>(w[0] % static_cast<uint64_t>(num_classes));
  }
  return out;
}

}  // namespace s4s
