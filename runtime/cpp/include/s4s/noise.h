// Seeded noise, the one definition every s4s-export runtime shares (docs/runtime.md "Noise";
// Python: s4s_export/noise.py). Philox4x64-10 with key (seed, 0) and counter (block j, sample i, domain, 0):
// sample i depends only on (seed, i), and the same seed gives the same float32 bits as the Python runtime.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace s4s {

// Philox4x64-10 (Salmon et al. 2011, Random123): one block of four 64-bit words.
std::array<uint64_t, 4> philox4x64(std::array<uint64_t, 4> counter, std::array<uint64_t, 2> key);

// float32 standard normal noise for samples start .. start+n-1, `size` values each (C*H*W), sample-major.
std::vector<float> seeded_noise(int64_t size, int64_t n, uint64_t seed, uint64_t start = 0);

// Class labels in [0, num_classes) for samples start .. start+n-1 (empty when num_classes <= 0).
std::vector<int64_t> seeded_labels(int64_t num_classes, int64_t n, uint64_t seed, uint64_t start = 0);

}  // namespace s4s
