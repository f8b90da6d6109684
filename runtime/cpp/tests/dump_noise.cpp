// s4s_dump_noise SIZE N SEED START CLASSES NOISE_FILE LABELS_FILE: the C++ runtime's seeded noise
// (float32) and labels (int64), little-endian raw, for tests/runtime/test_noise_cpp.py to compare with Python.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "s4s/noise.h"

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: s4s_dump_noise SIZE N SEED START CLASSES NOISE_FILE LABELS_FILE\n";
    return 2;
  }
  const int64_t size = std::stoll(argv[1]), n = std::stoll(argv[2]), classes = std::stoll(argv[5]);
  const uint64_t seed = std::stoull(argv[3]), start = std::stoull(argv[4]);
  const auto noise = s4s::seeded_noise(size, n, seed, start);
  const auto labels = s4s::seeded_labels(classes, n, seed, start);
  std::ofstream(argv[6], std::ios::binary).write(reinterpret_cast<const char*>(noise.data()), noise.size() * 4);
  std::ofstream(argv[7], std::ios::binary).write(reinterpret_cast<const char*>(labels.data()), labels.size() * 8);
  return 0;
}
