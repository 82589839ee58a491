// Which VMM call pattern stops compute-sanitizer (memcheck)? Each case runs in its own process:
//   nvcc -O2 -o /tmp/repro packages/native/tools/vmm-sanitizer-repro.cu -lcuda
//   for c in 1 2 3 4 5; do compute-sanitizer --tool memcheck /tmp/repro $c; echo "case $c exit $?"; done
// 1: one run of three allocations (4, 8, 4 MiB), one cuMemSetAccess over the run
// 2: the same, cuMemSetAccess per allocation
// 3: two allocations of 4 MiB, one cuMemSetAccess over both
// 4: case 1 plus a cudaMemcpy across the allocations
// 5: one allocation of 8 MiB (control)
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                               \
  do {                                                                      \
    CUresult r_ = (x);                                                      \
    if (r_ != CUDA_SUCCESS) {                                               \
      std::printf("FAILED %s: %d (line %d)\n", #x, static_cast<int>(r_), __LINE__); \
      return 1;                                                             \
    }                                                                       \
  } while (0)

int main(int argc, char** argv) {
  int which = argc > 1 ? std::atoi(argv[1]) : 1;
  cudaFree(nullptr);
  CUdevice dev;
  CK(cuCtxGetDevice(&dev));
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = dev;
  CUmemAccessDesc access{};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  const size_t MiB = 1 << 20;
  std::vector<size_t> sizes;
  if (which == 1 || which == 2 || which == 4) sizes = {4 * MiB, 8 * MiB, 4 * MiB};
  if (which == 3) sizes = {4 * MiB, 4 * MiB};
  if (which == 5) sizes = {8 * MiB};
  size_t total = 0;
  for (size_t s : sizes) total += s;
  CUdeviceptr base = 0;
  CK(cuMemAddressReserve(&base, 64 * MiB, 0, 0, 0));
  std::vector<CUmemGenericAllocationHandle> handles;
  size_t at = 4 * MiB;
  for (size_t s : sizes) {
    CUmemGenericAllocationHandle h;
    CK(cuMemCreate(&h, s, &prop, 0));
    CK(cuMemMap(base + at, s, 0, h, 0));
    if (which == 2) CK(cuMemSetAccess(base + at, s, &access, 1));
    handles.push_back(h);
    at += s;
  }
  if (which != 2) CK(cuMemSetAccess(base + 4 * MiB, total, &access, 1));
  if (which == 4) {
    std::vector<unsigned char> host(total, 7);
    if (cudaMemcpy(reinterpret_cast<void*>(base + 4 * MiB), host.data(), total, cudaMemcpyHostToDevice) != cudaSuccess)
      return 2;
  }
  at = 4 * MiB;
  for (size_t i = 0; i < sizes.size(); i++) {
    CK(cuMemUnmap(base + at, sizes[i]));
    CK(cuMemRelease(handles[i]));
    at += sizes[i];
  }
  CK(cuMemAddressFree(base, 64 * MiB));
  std::printf("case %d done\n", which);
  return 0;
}
