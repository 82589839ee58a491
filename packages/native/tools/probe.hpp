// What the standalone CUDA probes in this folder share (each builds with one nvcc line, which finds
// this header next to it): a driver-call check that prints the failing call and exits 1, a
// microsecond clock, a median, and the description of a device that VMM calls need.
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

/** A device as VMM calls need it: pinned device memory there, its minimum page, read-write access. */
struct VmmDevice {
  CUdevice dev = 0;
  char name[256] = {};
  CUmemAllocationProp prop = {};
  CUmemAccessDesc access = {};
  size_t pageBytes = 0;
};

/** Describes `dev` (whose context the caller has made current) for VMM calls. */
static VmmDevice DescribeVmmDevice(CUdevice dev) {
  VmmDevice d;
  d.dev = dev;
  CK(cuDeviceGetName(d.name, sizeof d.name, dev));
  d.prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  d.prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  d.prop.location.id = dev;
  CK(cuMemGetAllocationGranularity(&d.pageBytes, &d.prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  d.access.location = d.prop.location;
  d.access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  return d;
}
