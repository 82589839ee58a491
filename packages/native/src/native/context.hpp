// CudaContext: everything one CudaDevice owns on one GPU, with RAII over every CUDA handle.
// Invariants: a range's page table holds one physical handle per mapped page (0 = unmapped), so any
// page-aligned run can be unmapped however it was mapped; ids are never reused within a context;
// Destroy() is idempotent and releases everything (events, streams, pages, ranges, segments).
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <map>
#include <vector>

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
  int Reserve(size_t bytes, uint64_t* base);
  void ReleaseRange(int id);
  void Map(int id, size_t offsetBytes, size_t bytes);
  void Unmap(int id, size_t offsetBytes, size_t bytes);

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

  struct Counts {
    size_t ranges, mappedPages, segments, streams, events;
  };
  Counts Live() const;

 private:
  struct Range {
    CUdeviceptr base;
    size_t bytes;
    std::vector<CUmemGenericAllocationHandle> pages;  // 0 = unmapped
  };
  struct SegmentEntry {
    void* ptr;
    size_t bytes;
    bool async;
  };

  void Use();  // makes this context's device current on the calling thread
  void CheckAlive() const;
  Range& FindRange(int id);
  CUmemAllocationProp PageProp() const;
  void UnmapPages(Range& range, size_t first, size_t count);

  int device_;
  bool destroyed_ = false;
  size_t granularity_ = 0;
  int nextId_ = 1;
  std::map<int, Range> ranges_;
  std::map<int, SegmentEntry> segments_;
  std::map<int, cudaStream_t> streams_;
  std::map<int, cudaEvent_t> events_;
};

}  // namespace gpupool
