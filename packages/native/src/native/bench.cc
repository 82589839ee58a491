#include "bench.hpp"

#include <chrono>

#include "cuda_try.hpp"
#include "driver_api.hpp"

namespace gpupool {

namespace {

template <typename Op>
double TimeNs(int iterations, Op op) {
  int warmup = iterations < 10 ? iterations : 10;
  for (int i = 0; i < warmup; ++i) op();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) op();
  auto stop = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(stop - start).count() / iterations;
}

}  // namespace

double BenchAllocation(int device, const std::string& mode, size_t bytes, int iterations) {
  CUDA_TRY(cudaSetDevice(device));
  CUDA_TRY(cudaFree(nullptr));
  if (mode == "malloc") {
    return TimeNs(iterations, [&] {
      void* p = nullptr;
      CUDA_TRY(cudaMalloc(&p, bytes));
      CUDA_TRY(cudaFree(p));
    });
  }
  if (mode == "mallocAsync") {
    double ns = TimeNs(iterations, [&] {
      void* p = nullptr;
      CUDA_TRY(cudaMallocAsync(&p, bytes, nullptr));
      CUDA_TRY(cudaFreeAsync(p, nullptr));
    });
    CUDA_TRY(cudaStreamSynchronize(nullptr));
    return ns;
  }
  if (mode == "vmm") {
    const DriverApi& api = RequireDriver();
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = device;
    size_t granularity = 0;
    CU_TRY(api.cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    size_t size = (bytes + granularity - 1) / granularity * granularity;
    CUdeviceptr base = 0;
    CU_TRY(api.cuMemAddressReserve(&base, size, granularity, 0, 0));
    CUmemAccessDesc access{};
    access.location = prop.location;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    double ns = 0;
    try {
      ns = TimeNs(iterations, [&] {
        CUmemGenericAllocationHandle handle = 0;
        CU_TRY(api.cuMemCreate(&handle, size, &prop, 0));
        // A failed step must not leave the allocation (or its mapping) behind for the process.
        CUresult status = api.cuMemMap(base, size, 0, handle, 0);
        if (status != CUDA_SUCCESS) {
          api.cuMemRelease(handle);
          ThrowDriver("cuMemMap(base, size, 0, handle, 0)", status);
        }
        status = api.cuMemSetAccess(base, size, &access, 1);
        if (status != CUDA_SUCCESS) {
          api.cuMemUnmap(base, size);
          api.cuMemRelease(handle);
          ThrowDriver("cuMemSetAccess(base, size, &access, 1)", status);
        }
        status = api.cuMemUnmap(base, size);
        if (status != CUDA_SUCCESS) {
          api.cuMemRelease(handle);
          ThrowDriver("cuMemUnmap(base, size)", status);
        }
        CU_TRY(api.cuMemRelease(handle));
      });
    } catch (...) {
      api.cuMemAddressFree(base, size);
      throw;
    }
    CU_TRY(api.cuMemAddressFree(base, size));
    return ns;
  }
  throw UsageException("argument", "benchAllocation: unknown mode " + mode);
}

}  // namespace gpupool
