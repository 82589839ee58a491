// Standalone probe of a second mapping of existing physical memory (no Node needed):
//   nvcc -O2 -o /tmp/vmm-alias packages/native/tools/vmm-alias.cu -lcuda && /tmp/vmm-alias
// A 64 MiB allocation is mapped at address A. The probe asks the driver to map part of it a second
// time at address B ("an alias": k of its 2 MiB pages at an offset, then a prefix, then all of it),
// prints which it accepts, and times the accepted kinds (cuMemMap, cuMemSetAccess, cuMemUnmap; the
// allocation stays mapped at A), cuMemRetainAllocationHandle, and a new allocation's whole map for
// comparison; where a partial alias is accepted, it checks that bytes written through B are read
// through A. Answers whether a pool could lend a pinned allocation's empty pages to a new block
// (docs/benchmarks.md, "Lending a pinned allocation's empty pages"). On an H100 with driver
// 580.159.04 only the whole allocation can be mapped twice: a part at an offset is
// CUDA_ERROR_INVALID_VALUE, a prefix CUDA_ERROR_NOT_SUPPORTED.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "probe.hpp"  // CK (prints the failing call, exits 1), nowUs, median, DescribeVmmDevice

int main() {
  cudaFree(nullptr);  // primary context
  CUdevice dev;
  CK(cuCtxGetDevice(&dev));
  const VmmDevice device = DescribeVmmDevice(dev);
  const char* name = device.name;
  const CUmemAllocationProp& prop = device.prop;
  const CUmemAccessDesc& access = device.access;
  const size_t page = device.pageBytes;
  const size_t MiB = 1 << 20;
  const size_t allocationBytes = 64 * MiB;
  const int reps = 200;

  // A: the source allocation, mapped and accessible, as a pool's pinned allocation is.
  CUdeviceptr a = 0, b = 0;
  CK(cuMemAddressReserve(&a, allocationBytes, 0, 0, 0));
  CK(cuMemAddressReserve(&b, allocationBytes, 0, 0, 0));
  CUmemGenericAllocationHandle handle;
  CK(cuMemCreate(&handle, allocationBytes, &prop, 0));
  CK(cuMemMap(a, allocationBytes, 0, handle, 0));
  CK(cuMemSetAccess(a, allocationBytes, &access, 1));
  std::printf("card: %s; page %zu bytes; source allocation %zu MiB; %d repetitions\n", name, page,
              allocationBytes / MiB, reps);

  {
    std::vector<double> retain;
    for (int i = 0; i < reps; i++) {
      CUmemGenericAllocationHandle h;
      double t0 = nowUs();
      CK(cuMemRetainAllocationHandle(&h, reinterpret_cast<void*>(a + 5 * page)));
      retain.push_back(nowUs() - t0);
      CK(cuMemRelease(h));  // drops the reference the retain took
    }
    std::printf("cuMemRetainAllocationHandle: %.1f us\n", median(retain));
  }

  // What the driver accepts: part of an allocation at an offset, a prefix, the whole allocation.
  auto tryAlias = [&](size_t offset, size_t bytes) {
    CUresult r = cuMemMap(b, bytes, 0, handle, offset);
    if (r == CUDA_SUCCESS) CK(cuMemUnmap(b, bytes));
    const char* s = nullptr;
    cuGetErrorName(r, &s);
    std::printf("second mapping of %zu MiB at offset %zu MiB: %s\n", bytes / MiB, offset / MiB,
                r == CUDA_SUCCESS ? "accepted" : s);
    return r == CUDA_SUCCESS;
  };
  const bool atOffset = tryAlias(3 * page, 4 * page);
  const bool prefix = tryAlias(0, 4 * page);
  const bool whole = tryAlias(0, allocationBytes);
  const size_t aliasOffset = atOffset ? 3 * page : 0;

  std::printf("%6s %9s %9s %9s %9s   (second mapping of k pages at offset %zu MiB; us, median)\n", "pages",
              "map", "access", "unmap", "cycle", aliasOffset / MiB);
  for (size_t k : {1, 2, 4, 10, 20, 32}) {
    std::vector<double> map, acc, unmap, cycle;
    const size_t bytes = k * page;
    const size_t offset = aliasOffset;
    if (!(atOffset || (prefix && k < 32) || (whole && k == 32))) continue;
    for (int i = 0; i < reps; i++) {
      double t0 = nowUs();
      CK(cuMemMap(b, bytes, 0, handle, offset));
      double t1 = nowUs();
      CK(cuMemSetAccess(b, bytes, &access, 1));
      double t2 = nowUs();
      CK(cuMemUnmap(b, bytes));
      double t3 = nowUs();
      map.push_back(t1 - t0), acc.push_back(t2 - t1), unmap.push_back(t3 - t2), cycle.push_back(t3 - t0);
    }
    std::printf("%6zu %9.1f %9.1f %9.1f %9.1f\n", k, median(map), median(acc), median(unmap), median(cycle));
  }

  {
    // For comparison: what a pool's map of a new 64 MiB allocation costs today, and its unmap.
    std::vector<double> fresh, freeing;
    for (int i = 0; i < 50; i++) {
      CUmemGenericAllocationHandle h;
      double t0 = nowUs();
      CK(cuMemCreate(&h, allocationBytes, &prop, 0));
      CK(cuMemMap(b, allocationBytes, 0, h, 0));
      CK(cuMemSetAccess(b, allocationBytes, &access, 1));
      double t1 = nowUs();
      CK(cuMemUnmap(b, allocationBytes));
      CK(cuMemRelease(h));
      double t2 = nowUs();
      fresh.push_back(t1 - t0), freeing.push_back(t2 - t1);
    }
    std::printf("new 64 MiB allocation: create+map+access %.1f us, unmap+release %.1f us\n", median(fresh),
                median(freeing));
  }

  {
    // Coherence: bytes written through the alias are the allocation's bytes, read through A.
    if (!atOffset && !prefix) {
      std::printf("coherence: not checked (no partial second mapping accepted)\n");
      CK(cuMemUnmap(a, allocationBytes));
      CK(cuMemRelease(handle));
      return 0;
    }
    const size_t k = 4, offset = aliasOffset, bytes = k * page;
    CK(cuMemMap(b, bytes, 0, handle, offset));
    CK(cuMemSetAccess(b, bytes, &access, 1));
    cudaMemset(reinterpret_cast<void*>(a), 0, allocationBytes);
    cudaMemset(reinterpret_cast<void*>(b), 0x5a, bytes);
    cudaDeviceSynchronize();
    std::vector<unsigned char> host(allocationBytes);
    cudaMemcpy(host.data(), reinterpret_cast<void*>(a), allocationBytes, cudaMemcpyDeviceToHost);
    size_t inside = 0, outside = 0;
    for (size_t i = 0; i < allocationBytes; i++) {
      bool in = i >= offset && i < offset + bytes;
      if (host[i] == 0x5a) (in ? inside : outside)++;
    }
    std::printf("coherence: %zu of %zu bytes written through the alias read back through A; %zu others changed; %s\n",
                inside, bytes, outside, inside == bytes && outside == 0 ? "OK" : "MISMATCH");
    CK(cuMemUnmap(b, bytes));
    cudaError_t err = cudaGetLastError();
    std::printf("runtime errors: %s\n", cudaGetErrorName(err));
  }

  CK(cuMemUnmap(a, allocationBytes));
  CK(cuMemRelease(handle));
  CK(cuMemAddressFree(a, allocationBytes));
  CK(cuMemAddressFree(b, allocationBytes));
  return 0;
}
