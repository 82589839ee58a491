// What the standalone CUDA probes in this folder share (each builds with one nvcc line, which finds
// this header next to it): a driver-call check that prints the failing call and exits 1, a
// microsecond clock and a median.
#pragma once

#include <cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                                \
  do {                                                                       \
    CUresult r_ = (x);                                                       \
    if (r_ != CUDA_SUCCESS) {                                                \
      const char* s_ = nullptr;                                              \
      cuGetErrorName(r_, &s_);                                               \
      std::printf("FAILED %s: %s (line %d)\n", #x, s_ ? s_ : "?", __LINE__); \
      std::exit(1);                                                          \
    }                                                                        \
  } while (0)

static double nowUs() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/** The middle value (the upper one of an even count); 0 for none. */
static double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
