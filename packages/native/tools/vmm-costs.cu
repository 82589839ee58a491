// Standalone probe of CUDA virtual-memory costs, by size (no Node needed):
//   nvcc -O2 -o /tmp/vmm-costs packages/native/tools/vmm-costs.cu -lcuda && /tmp/vmm-costs
// Prints, per allocation size, the median microseconds of cuMemCreate, cuMemMap, cuMemSetAccess,
// cuMemUnmap, cuMemRelease and of one whole cycle; then whether the driver accepts a non-zero
// offset into a handle, unmapping part of one mapping, and unmapping two adjacent mappings in one
// call; then the same cycle with N other 64 MiB allocations mapped (0, 16, 64, 240), in the same
// address reservation or another, since a pool replay maps among up to a few hundred others.
// Answers "what does one physical allocation cost, how may it be unmapped, and does a crowded
// address space make it dearer".
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "probe.hpp"  // CK (prints the failing call, exits 1), nowUs, median, DescribeVmmDevice

/** Microseconds per step of `reps` create / map / access / unmap / release cycles, and in all. */
struct CycleTimes {
  std::vector<double> create, map, access, unmap, release, total;
};

/** Times `reps` cycles of one `bytes` allocation mapped at `at` (a driver error exits: CK). */
static void TimeCycles(CUdeviceptr at, size_t bytes, const CUmemAllocationProp& prop,
                      const CUmemAccessDesc& access, int reps, CycleTimes& out) {
  for (int i = 0; i < reps; i++) {
    CUmemGenericAllocationHandle h;
    double t0 = nowUs();
    CK(cuMemCreate(&h, bytes, &prop, 0));
    double t1 = nowUs();
    CK(cuMemMap(at, bytes, 0, h, 0));
    double t2 = nowUs();
    CK(cuMemSetAccess(at, bytes, &access, 1));
    double t3 = nowUs();
    CK(cuMemUnmap(at, bytes));
    double t4 = nowUs();
    CK(cuMemRelease(h));
    double t5 = nowUs();
    out.create.push_back(t1 - t0), out.map.push_back(t2 - t1), out.access.push_back(t3 - t2);
    out.unmap.push_back(t4 - t3), out.release.push_back(t5 - t4), out.total.push_back(t5 - t0);
  }
}

int main() {
  cudaFree(nullptr);  // primary context
  CUdevice dev;
  CK(cuCtxGetDevice(&dev));
  const VmmDevice device = DescribeVmmDevice(dev);
  const char* name = device.name;
  const CUmemAllocationProp& prop = device.prop;
  const CUmemAccessDesc& access = device.access;
  const size_t gran = device.pageBytes;
  const size_t MiB = 1 << 20;
  const size_t maxBytes = 8192 * MiB;
  CUdeviceptr base = 0;
  CK(cuMemAddressReserve(&base, 2 * maxBytes, 0, 0, 0));
  std::printf("card: %s; granularity %zu bytes\n", name, gran);
  std::printf("%10s %9s %9s %9s %9s %9s %9s %9s\n", "MiB", "create", "map", "access", "unmap", "release",
              "cycle", "us/MiB");
  for (size_t mib : {2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096}) {
    size_t bytes = mib * MiB;
    int reps = mib <= 64 ? 31 : mib <= 256 ? 11 : 5;
    CycleTimes t;
    TimeCycles(base, bytes, prop, access, reps, t);
    std::printf("%10zu %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.2f\n", mib, median(t.create), median(t.map),
                median(t.access), median(t.unmap), median(t.release), median(t.total), median(t.total) / mib);
  }
  // An idle device synchronize (Unmap does one to protect queued work).
  {
    std::vector<double> s;
    for (int i = 0; i < 101; i++) {
      double t0 = nowUs();
      cudaDeviceSynchronize();
      s.push_back(nowUs() - t0);
    }
    std::printf("cudaDeviceSynchronize (idle): %.2f us\n", median(s));
  }
  // Semantics.
  {
    size_t bytes = 4 * gran;
    CUmemGenericAllocationHandle h;
    CK(cuMemCreate(&h, bytes, &prop, 0));
    CUresult off = cuMemMap(base, gran, gran, h, 0);
    std::printf("map with non-zero offset into a handle: %s\n", off == CUDA_SUCCESS ? "accepted" : "refused");
    if (off == CUDA_SUCCESS) CK(cuMemUnmap(base, gran));
    CK(cuMemMap(base, bytes, 0, h, 0));
    CUresult part = cuMemUnmap(base + gran, gran);
    std::printf("unmap part of one mapping: %s\n", part == CUDA_SUCCESS ? "accepted" : "refused");
    if (part != CUDA_SUCCESS) {
      CK(cuMemUnmap(base, bytes));
    } else {
      CK(cuMemUnmap(base, gran));
      CK(cuMemUnmap(base + 2 * gran, 2 * gran));
    }
    CK(cuMemRelease(h));
    CUmemGenericAllocationHandle h1, h2;
    CK(cuMemCreate(&h1, gran, &prop, 0));
    CK(cuMemCreate(&h2, gran, &prop, 0));
    CK(cuMemMap(base, gran, 0, h1, 0));
    CK(cuMemMap(base + gran, gran, 0, h2, 0));
    CUresult both = cuMemUnmap(base, 2 * gran);
    std::printf("unmap two adjacent mappings in one call: %s\n", both == CUDA_SUCCESS ? "accepted" : "refused");
    if (both != CUDA_SUCCESS) {
      CK(cuMemUnmap(base, gran));
      CK(cuMemUnmap(base + gran, gran));
    }
    CK(cuMemRelease(h1));
    CK(cuMemRelease(h2));
  }
  // Crowding: the same cycle with `others` 64 MiB allocations mapped, in the same reservation as
  // the probe (a pool's arena on an 80 GB card) or in another one.
  {
    const size_t GiB = 1024 * MiB;
    const size_t big = 64 * MiB;
    CUdeviceptr arena = 0, elsewhereBase = 0;
    CK(cuMemAddressReserve(&arena, 96 * GiB, 0, 0, 0));
    CK(cuMemAddressReserve(&elsewhereBase, 32 * GiB, 0, 0, 0));
    std::printf("%6s %9s %6s %9s %9s %9s %9s %9s %9s\n", "others", "where", "MiB", "create", "map", "access",
                "unmap", "release", "cycle");
    std::vector<CUmemGenericAllocationHandle> background;
    for (int others : {0, 16, 64, 240}) {
      for (int elsewhere = 0; elsewhere < 2; elsewhere++) {
        CUdeviceptr at = elsewhere ? elsewhereBase : arena;
        for (int i = 0; i < others; i++) {
          CUmemGenericAllocationHandle h;
          CK(cuMemCreate(&h, big, &prop, 0));
          CK(cuMemMap(at + i * big, big, 0, h, 0));
          CK(cuMemSetAccess(at + i * big, big, &access, 1));
          background.push_back(h);
        }
        for (size_t bytes : {2 * MiB, big}) {
          CycleTimes t;
          TimeCycles(arena + 80 * GiB, bytes, prop, access, 21, t);  // past the others
          std::printf("%6d %9s %6zu %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n", others,
                      elsewhere ? "elsewhere" : "same", bytes / MiB, median(t.create), median(t.map),
                      median(t.access), median(t.unmap), median(t.release), median(t.total));
        }
        for (int i = 0; i < others; i++) {
          CK(cuMemUnmap(at + i * big, big));
          CK(cuMemRelease(background[i]));
        }
        background.clear();
      }
    }
    CK(cuMemAddressFree(arena, 96 * GiB));
    CK(cuMemAddressFree(elsewhereBase, 32 * GiB));
  }
  CK(cuMemAddressFree(base, 2 * maxBytes));
  return 0;
}
