// CudaContext: everything one CudaDevice owns on one GPU, with RAII over every CUDA handle.
// Invariants: a range's page table (in the process-wide RangeRegistry) holds one physical handle per
// mapped page (0 = unmapped), so any page-aligned run can be unmapped however and by whichever
// context of the same GPU it was mapped; a context works on ranges it reserved (owned) or adopted
// (reserved by another context of this process, same GPU); only the owner releases a range.
// Range ids are process-unique; other ids are never reused within a context. Destroy() is
// idempotent and releases everything it owns (events, streams, pages and ranges, segments) exactly
// once; adopted ranges are only forgotten.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "range_registry.hpp"

namespace gpupool {

struct DeviceProperties {
  std::string name;
  size_t totalBytes = 0;
  int major = 0;
  int minor = 0;
  int multiprocessors = 0;
  bool vmmSupported = false;
  int pciBusId = 0;
};

DeviceProperties QueryDeviceProperties(int device);

class CudaContext {
 public:
  explicit CudaContext(int device);
  ~CudaContext() { Destroy(); }
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  void Destroy() noexcept;
  bool destroyed() const { return destroyed_; }
  int device() const { return device_; }

  // Virtual memory management. Offsets and sizes are multiples of Granularity().
  size_t Granularity();
  // The VMM page: what map and unmap count in. A multiple of Granularity() (default: equal).
  size_t PageBytes();
  void SetPageBytes(size_t bytes);
  // Most bytes one physical allocation covers: a map call makes one per aligned window of this
  // size that it touches, and unmap takes whole allocations only. A multiple of PageBytes()
  // (default: equal, one allocation per page). Fixed per range when it is reserved.
  size_t AllocationBytes();
  void SetAllocationBytes(size_t bytes);
  int Reserve(size_t bytes, uint64_t* base);
  void ReleaseRange(int id);
  void Map(int id, size_t offsetBytes, size_t bytes);
  void Unmap(int id, size_t offsetBytes, size_t bytes);
  // Enters a live range reserved by another context of this process (same GPU) into these books.
  void AdoptRange(int id, uint64_t base, size_t bytes);
  // Forgets an adopted range without touching its pages.
  void DisownRange(int id);
  // First page in [firstPage, firstPage + count) whose mapped state is `mapped`, or -1.
  long FindPage(int id, size_t firstPage, size_t count, bool mapped);

  // Whole allocations: cudaMalloc, or cudaMallocAsync on the device's default pool.
  int AllocateSegment(size_t bytes, bool async, uint64_t* base);
  void FreeSegment(int id);

  void MemInfo(size_t* freeBytes, size_t* totalBytes);
  void Synchronize();

  // Data. Stream 0 is the legacy default stream. Sync variants return once the data is in place.
  void CopyIn(uint64_t dst, const void* src, size_t bytes, int stream, bool async);
  void CopyOut(void* dst, uint64_t src, size_t bytes, int stream, bool async);
  void Fill(uint64_t dst, int value, size_t bytes, int stream, bool async);

  int CreateStream();
  void DestroyStream(int id);
  void SynchronizeStream(int id);
  cudaStream_t Stream(int id);
  int RecordEvent(int stream);
  bool EventDone(int id);
  void SynchronizeEvent(int id);
  void DestroyEvent(int id);
  // Tests only: where NextId() starts looking (1 … INT32_MAX), to reach the wrap-around.
  void SetNextIdForTest(int id);

  struct Counts {
    size_t ranges, mappedPages, segments, streams, events, adoptedRanges;
  };
  Counts Live() const;

 private:
  struct RangeRef {
    std::shared_ptr<RangeRecord> record;
    bool owned;
  };
  struct SegmentEntry {
    void* ptr;
    size_t bytes;
    bool async;
  };

  // A segment, stream or event id no live handle of this context has. Ids are 32-bit on both sides
  // and wrap after INT32_MAX (a server that records an event per release gets there in days).
  int NextId();
  void Use();  // makes this context's device current on the calling thread
  void CheckAlive() const;
  RangeRef& FindRange(int id);
  // Locks the record of a range in these books; throws if its owner released it meanwhile.
  std::unique_lock<std::mutex> LockLive(RangeRecord& record);
  CUmemAllocationProp PageProp() const;
  // Best effort, never throws; the caller holds the record's lock.
  static void UnmapPages(RangeRecord& range, size_t first, size_t count) noexcept;
  // The first page after the allocation that page i belongs to (equal neighbours share one), at most end.
  static size_t AllocationEnd(const RangeRecord& range, size_t i, size_t end) noexcept;
  // Releases each distinct allocation behind [first, first + count) and zeroes its pages; the
  // caller has unmapped them. Never throws (best effort).
  static void ReleaseAllocations(RangeRecord& range, size_t first, size_t count) noexcept;

  int device_;
  bool destroyed_ = false;
  size_t granularity_ = 0;
  size_t pageBytes_ = 0;
  size_t allocationBytes_ = 0;
  // The next segment, stream or event id to try (NextId): 1 … INT32_MAX, then 1 again.
  int nextId_ = 1;
  std::map<int, RangeRef> ranges_;  // owned and adopted
  std::map<int, SegmentEntry> segments_;
  std::map<int, cudaStream_t> streams_;
  std::map<int, cudaEvent_t> events_;
};

}  // namespace gpupool
