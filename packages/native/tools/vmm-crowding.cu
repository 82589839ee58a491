// Standalone probe: do CUDA virtual-memory calls get slower as more allocations are mapped?
//   nvcc -O2 -o /tmp/vmm-crowding packages/native/tools/vmm-crowding.cu -lcuda && /tmp/vmm-crowding
// For N other allocations of 64 MiB already mapped (0, 16, 64, 240), in the same address
// reservation as the probe or in a separate one, prints the median microseconds of cuMemCreate,
// cuMemMap, cuMemSetAccess, cuMemUnmap and cuMemRelease for one 2 MiB and one 64 MiB allocation.
// vmm-costs.cu measures an empty context; a pool replay maps its allocations among up to a few
// hundred others, and spent ~3× vmm-costs' per-call time there.
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#define CK(x)                                                                  \
  do {                                                                         \
    CUresult r_ = (x);                                                         \
    if (r_ != CUDA_SUCCESS) {                                                  \
      const char* s_ = nullptr;                                                \
      cuGetErrorName(r_, &s_);                                                 \
      std::printf("FAILED %s: %s (line %d)\n", #x, s_ ? s_ : "?", __LINE__);   \
      return 1;                                                                \
    }                                                                          \
  } while (0)

static double nowUs() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main() {
  cudaFree(nullptr);  // primary context
  CUdevice dev;
  CK(cuCtxGetDevice(&dev));
  char name[256];
  CK(cuDeviceGetName(name, sizeof name, dev));
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = dev;
  CUmemAccessDesc access{};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  const size_t MiB = 1 << 20;
  const size_t GiB = 1024 * MiB;
  const size_t big = 64 * MiB;
  // One reservation the size of a pool's arena on an 80 GB card, one for the "elsewhere" case.
  CUdeviceptr arena = 0, other = 0;
  CK(cuMemAddressReserve(&arena, 96 * GiB, 0, 0, 0));
  CK(cuMemAddressReserve(&other, 32 * GiB, 0, 0, 0));
  std::printf("card: %s\n", name);
  std::printf("%6s %9s %6s %9s %9s %9s %9s %9s %9s\n", "others", "where", "MiB", "create", "map", "access",
              "unmap", "release", "cycle");
  std::vector<CUmemGenericAllocationHandle> background;
  for (int others : {0, 16, 64, 240}) {
    for (int elsewhere = 0; elsewhere < 2; elsewhere++) {
      // Map `others` 64 MiB allocations at the start of the arena, or in the other reservation.
      CUdeviceptr at = elsewhere ? other : arena;
      for (int i = 0; i < others; i++) {
        CUmemGenericAllocationHandle h;
        CK(cuMemCreate(&h, big, &prop, 0));
        CK(cuMemMap(at + i * big, big, 0, h, 0));
        CK(cuMemSetAccess(at + i * big, big, &access, 1));
        background.push_back(h);
      }
      CUdeviceptr probe = arena + 80 * GiB;  // past every background mapping
      for (size_t bytes : {2 * MiB, big}) {
        std::vector<double> c, m, a, u, r, t;
        for (int rep = 0; rep < 21; rep++) {
          CUmemGenericAllocationHandle h;
          double t0 = nowUs();
          CK(cuMemCreate(&h, bytes, &prop, 0));
          double t1 = nowUs();
          CK(cuMemMap(probe, bytes, 0, h, 0));
          double t2 = nowUs();
          CK(cuMemSetAccess(probe, bytes, &access, 1));
          double t3 = nowUs();
          CK(cuMemUnmap(probe, bytes));
          double t4 = nowUs();
          CK(cuMemRelease(h));
          double t5 = nowUs();
          c.push_back(t1 - t0), m.push_back(t2 - t1), a.push_back(t3 - t2), u.push_back(t4 - t3);
          r.push_back(t5 - t4), t.push_back(t5 - t0);
        }
        std::printf("%6d %9s %6zu %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f\n", others, elsewhere ? "elsewhere" : "same",
                    bytes / MiB, median(c), median(m), median(a), median(u), median(r), median(t));
      }
      for (int i = 0; i < others; i++) {
        CK(cuMemUnmap(at + i * big, big));
        CK(cuMemRelease(background[i]));
      }
      background.clear();
    }
  }
  CK(cuMemAddressFree(arena, 96 * GiB));
  CK(cuMemAddressFree(other, 32 * GiB));
  return 0;
}
