// Raw allocation micro-benchmarks, timed inside C++ so JavaScript overhead is not counted.
// The bench package reports these next to the pool's own acquire+release timings.
#pragma once

#include <string>

namespace gpupool {

// Nanoseconds per allocate+free pair of `bytes`, averaged over `iterations` after a short warm-up.
// mode: "malloc" (cudaMalloc+cudaFree), "mallocAsync" (cudaMallocAsync+cudaFreeAsync on the default
// pool, default stream), "vmm" (cuMemCreate+cuMemMap+cuMemSetAccess+cuMemUnmap+cuMemRelease of
// `bytes` rounded up to the granularity, in a range reserved once).
double BenchAllocation(int device, const std::string& mode, size_t bytes, int iterations);

}  // namespace gpupool
