// RangeRegistry: the process-wide book of VMM address ranges. One CUDA primary context per device
// and process means a reserved address is valid in every thread, so every CudaContext (one per
// CudaDevice, in any thread) finds ranges here by a process-unique id.
// Invariants: a record's page table (per page, the physical allocation behind it, 0 = unmapped;
// an allocation covers the part of one map call inside one aligned window of `allocation` bytes,
// so equal neighbours belong to the same allocation) and its
// `released` flag change only under the record's mutex; a released record is never used again
// (Find still may return it briefly, so users check `released` under the lock); ids are never
// reused in the process. The registry itself is never destroyed (no CUDA call at static teardown):
// the reserving context releases its ranges in Destroy() (or its env cleanup hook).
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace gpupool {

struct RangeRecord {
  RangeRecord(int id, const void* owner, int device, CUdeviceptr base, size_t bytes, size_t page,
              size_t allocation)
      : id(id),
        owner(owner),
        device(device),
        base(base),
        bytes(bytes),
        page(page),
        allocation(allocation),
        pages(bytes / page, 0) {}
  const int id;
  const void* const owner;  // the CudaContext that reserved it (identity only, never dereferenced)
  const int device;
  const CUdeviceptr base;
  const size_t bytes;
  const size_t page;
  const size_t allocation;  // most bytes per physical allocation: a multiple of `page`
  std::mutex mutex;                                 // guards everything below
  std::vector<CUmemGenericAllocationHandle> pages;  // 0 = unmapped
  bool released = false;
};

class RangeRegistry {
 public:
  static RangeRegistry& Get();

  // Registers a reserved range; returns its record with a fresh process-unique id.
  std::shared_ptr<RangeRecord> Add(const void* owner, int device, CUdeviceptr base, size_t bytes,
                                   size_t page, size_t allocation);
  // nullptr when unknown. The caller locks the record and checks `released`.
  std::shared_ptr<RangeRecord> Find(int id);
  void Remove(int id);

  struct Counts {
    size_t ranges, mappedPages;
  };
  Counts Live();

 private:
  RangeRegistry() = default;
  std::mutex mutex_;
  int nextId_ = 1;
  std::map<int, std::shared_ptr<RangeRecord>> ranges_;
};

}  // namespace gpupool
