#include "context.hpp"

#include <algorithm>
#include <climits>
#include <string>

#include "cuda_try.hpp"
#include "driver_api.hpp"

namespace gpupool {

DeviceProperties QueryDeviceProperties(int device) {
  cudaDeviceProp prop{};
  CUDA_TRY(cudaGetDeviceProperties(&prop, device));
  DeviceProperties out;
  out.name = prop.name;
  out.totalBytes = prop.totalGlobalMem;
  out.major = prop.major;
  out.minor = prop.minor;
  out.multiprocessors = prop.multiProcessorCount;
  out.pciBusId = prop.pciBusID;
  const DriverApi& api = Driver();
  if (api.loaded) {
    int supported = 0;
    CU_TRY(api.cuDeviceGetAttribute(&supported, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
                                    device));
    out.vmmSupported = supported != 0;
  }
  return out;
}

CudaContext::CudaContext(int device) : device_(device) {
  CUDA_TRY(cudaSetDevice(device_));
  // Creates (or retains) the primary context, which the driver API calls below run in.
  CUDA_TRY(cudaFree(nullptr));
}

int CudaContext::NextId() {
  // Some id is free: live handles are far fewer than 2^31.
  for (;;) {
    int id = nextId_;
    nextId_ = nextId_ == INT32_MAX ? 1 : nextId_ + 1;
    if (segments_.count(id) == 0 && streams_.count(id) == 0 && events_.count(id) == 0) return id;
  }
}

void CudaContext::SetNextIdForTest(int id) {
  if (id < 1) throw UsageException("range", "setNextIdForTest: id must be 1 … 2^31 - 1");
  nextId_ = id;
}

void CudaContext::Use() {
  CheckAlive();
  CUDA_TRY(cudaSetDevice(device_));
}

void CudaContext::CheckAlive() const {
  if (destroyed_) throw UsageException("destroyed", "the CUDA context was destroyed");
}

CUmemAllocationProp CudaContext::PageProp() const {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device_;
  return prop;
}

size_t CudaContext::Granularity() {
  Use();
  if (granularity_ == 0) {
    const DriverApi& api = RequireDriver();
    CUmemAllocationProp prop = PageProp();
    CU_TRY(api.cuMemGetAllocationGranularity(&granularity_, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  }
  return granularity_;
}

size_t CudaContext::PageBytes() {
  size_t granularity = Granularity();
  return pageBytes_ == 0 ? granularity : pageBytes_;
}

void CudaContext::SetPageBytes(size_t bytes) {
  size_t granularity = Granularity();
  if (bytes == 0 || bytes % granularity != 0) {
    throw UsageException(
        "range", "setPageBytes: the page size must be a positive multiple of the allocation granularity");
  }
  if (!ranges_.empty())
    throw UsageException("state", "setPageBytes: ranges are already reserved with the old page size");
  pageBytes_ = bytes;
  // Keep AllocationBytes() a multiple of the page: an allocation size set for the old page that does
  // not divide into the new one falls back to one page per allocation.
  if (allocationBytes_ % bytes != 0) allocationBytes_ = 0;
}

size_t CudaContext::AllocationBytes() {
  size_t page = PageBytes();
  return allocationBytes_ < page ? page : allocationBytes_;
}

void CudaContext::SetAllocationBytes(size_t bytes) {
  size_t page = PageBytes();
  if (bytes == 0 || bytes % page != 0) {
    throw UsageException(
        "range", "setAllocationBytes: the allocation size must be a positive multiple of the page size");
  }
  if (!ranges_.empty())
    throw UsageException("state",
                         "setAllocationBytes: ranges are already reserved with the old allocation size");
  allocationBytes_ = bytes;
}

CudaContext::RangeRef& CudaContext::FindRange(int id) {
  auto it = ranges_.find(id);
  if (it == ranges_.end())
    throw UsageException("handle", "unknown or released address range " + std::to_string(id));
  return it->second;
}

std::unique_lock<std::mutex> CudaContext::LockLive(RangeRecord& record) {
  std::unique_lock<std::mutex> lock(record.mutex);
  if (record.released) {
    throw UsageException("handle",
                         "address range " + std::to_string(record.id) + " was released by its owner");
  }
  return lock;
}

int CudaContext::Reserve(size_t bytes, uint64_t* base) {
  size_t page = PageBytes();
  if (bytes == 0 || bytes % page != 0)
    throw UsageException("range", "reserve: bytes must be a positive multiple of the page size");
  const DriverApi& api = RequireDriver();
  CUdeviceptr ptr = 0;
  CU_TRY(api.cuMemAddressReserve(&ptr, bytes, page, 0, 0));
  std::shared_ptr<RangeRecord> record;
  try {
    record = RangeRegistry::Get().Add(this, device_, ptr, bytes, page, AllocationBytes());
    ranges_[record->id] = RangeRef{record, true};
  } catch (...) {
    if (record) RangeRegistry::Get().Remove(record->id);
    api.cuMemAddressFree(ptr, bytes);
    throw;
  }
  *base = static_cast<uint64_t>(ptr);
  return record->id;
}

void CudaContext::ReleaseRange(int id) {
  Use();
  RangeRef& ref = FindRange(id);
  if (!ref.owned)
    throw UsageException("state", "releaseRange: only the context that reserved a range releases it");
  std::shared_ptr<RangeRecord> record = ref.record;
  {
    std::unique_lock<std::mutex> lock = LockLive(*record);
    for (CUmemGenericAllocationHandle handle : record->pages) {
      if (handle != 0) throw UsageException("state", "releaseRange: the range still has mapped pages");
    }
    CU_TRY(RequireDriver().cuMemAddressFree(record->base, record->bytes));
    record->released = true;
  }
  RangeRegistry::Get().Remove(id);
  ranges_.erase(id);
}

void CudaContext::AdoptRange(int id, uint64_t base, size_t bytes) {
  const size_t page = PageBytes();  // also makes this context's GPU current
  auto known = ranges_.find(id);
  std::shared_ptr<RangeRecord> record =
      known != ranges_.end() ? known->second.record : RangeRegistry::Get().Find(id);
  if (!record)
    throw UsageException("handle",
                         "adoptRange: no live address range " + std::to_string(id) + " in this process");
  std::unique_lock<std::mutex> lock = LockLive(*record);
  if (record->base != static_cast<CUdeviceptr>(base) || record->bytes != bytes) {
    throw UsageException("handle",
                         "adoptRange: base or size do not match address range " + std::to_string(id));
  }
  if (record->device != device_) {
    throw UsageException("device", "adoptRange: address range " + std::to_string(id) + " belongs to GPU " +
                                       std::to_string(record->device) + ", not GPU " +
                                       std::to_string(device_));
  }
  // The wrapper counts pages in its own page size (bounds checks, findPage): another size would
  // make it vouch for the wrong pages.
  if (record->page != page) {
    throw UsageException("range", "adoptRange: address range " + std::to_string(id) + " has " +
                                      std::to_string(record->page) + "-byte pages, this context maps " +
                                      std::to_string(page) + "-byte pages");
  }
  if (known == ranges_.end()) ranges_[id] = RangeRef{record, false};
}

void CudaContext::DisownRange(int id) {
  CheckAlive();
  RangeRef& ref = FindRange(id);
  if (ref.owned)
    throw UsageException("state", "disownRange: the range was reserved here; release it instead");
  ranges_.erase(id);
}

long CudaContext::FindPage(int id, size_t firstPage, size_t count, bool mapped) {
  CheckAlive();
  RangeRecord& record = *FindRange(id).record;
  std::unique_lock<std::mutex> lock = LockLive(record);
  if (firstPage > record.pages.size() || count > record.pages.size() - firstPage) {
    throw UsageException("range", "findPage: the run lies outside the range");
  }
  for (size_t i = firstPage; i < firstPage + count; ++i) {
    if ((record.pages[i] != 0) == mapped) return static_cast<long>(i);
  }
  return -1;
}

void CudaContext::Map(int id, size_t offsetBytes, size_t bytes) {
  CheckAlive();
  std::shared_ptr<RangeRecord> record = FindRange(id).record;
  RangeRecord& range = *record;
  const size_t page = range.page;
  std::unique_lock<std::mutex> lock = LockLive(range);
  if (range.device != device_) throw UsageException("device", "map: the range belongs to another GPU");
  if (bytes == 0 || offsetBytes % page != 0 || bytes % page != 0 || offsetBytes > range.bytes ||
      bytes > range.bytes - offsetBytes) {
    throw UsageException("range", "map: offset and size must be page-aligned and inside the range");
  }
  size_t first = offsetBytes / page;
  size_t count = bytes / page;
  for (size_t i = first; i < first + count; ++i) {
    if (range.pages[i] != 0) throw UsageException("state", "map: a page in the run is already mapped");
  }
  const DriverApi& api = RequireDriver();
  CUmemAllocationProp prop = PageProp();
  const size_t window = range.allocation / page;  // pages per allocation window
  size_t done = 0;                                // pages backed so far, whole allocations
  try {
    // One physical allocation per window the run touches: creating one costs ~10 µs and releasing
    // it ~10 µs whatever its size, so fewer, larger allocations make growth cheaper.
    while (done < count) {
      size_t at = first + done;
      size_t end = std::min(first + count, (at / window + 1) * window);
      size_t partBytes = (end - at) * page;
      CUmemGenericAllocationHandle handle = 0;
      CU_TRY(api.cuMemCreate(&handle, partBytes, &prop, 0));
      CUresult mapped = api.cuMemMap(range.base + at * page, partBytes, 0, handle, 0);
      if (mapped != CUDA_SUCCESS) {
        api.cuMemRelease(handle);
        ThrowDriver("cuMemMap(range.base + offset, bytes, 0, handle, 0)", mapped);
      }
      for (size_t i = at; i < end; ++i) range.pages[i] = handle;
      done = end - first;
    }
    // One access call for the whole run (~36 µs on an H100, whatever the size).
    CUmemAccessDesc access{};
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = device_;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CU_TRY(api.cuMemSetAccess(range.base + offsetBytes, bytes, &access, 1));
  } catch (...) {
    // A failed map changes nothing: give back the allocations this call created.
    UnmapPages(range, first, done);
    throw;
  }
}

size_t CudaContext::AllocationEnd(const RangeRecord& range, size_t i, size_t end) noexcept {
  size_t j = i + 1;
  while (j < end && range.pages[j] == range.pages[i]) ++j;
  return j;
}

void CudaContext::ReleaseAllocations(RangeRecord& range, size_t first, size_t count) noexcept {
  const DriverApi& api = Driver();
  size_t end = std::min(first + count, range.pages.size());
  for (size_t i = first; i < end;) {
    size_t j = AllocationEnd(range, i, end);
    if (range.pages[i] != 0 && api.loaded) api.cuMemRelease(range.pages[i]);
    std::fill(range.pages.begin() + i, range.pages.begin() + j, 0);
    i = j;
  }
}

void CudaContext::UnmapPages(RangeRecord& range, size_t first, size_t count) noexcept {
  const DriverApi& api = Driver();
  if (!api.loaded) return;
  size_t end = std::min(first + count, range.pages.size());
  for (size_t i = first; i < end;) {
    size_t j = AllocationEnd(range, i, end);
    if (range.pages[i] != 0) api.cuMemUnmap(range.base + i * range.page, (j - i) * range.page);
    i = j;
  }
  ReleaseAllocations(range, first, end - first);
}

void CudaContext::Unmap(int id, size_t offsetBytes, size_t bytes) {
  // Makes this GPU current: the synchronize below must wait for work on this GPU, whichever GPU
  // another CudaDevice of this thread used last.
  Use();
  std::shared_ptr<RangeRecord> record = FindRange(id).record;
  RangeRecord& range = *record;
  const size_t page = range.page;
  std::unique_lock<std::mutex> lock = LockLive(range);
  if (bytes == 0 || offsetBytes % page != 0 || bytes % page != 0 || offsetBytes > range.bytes ||
      bytes > range.bytes - offsetBytes) {
    throw UsageException("range", "unmap: offset and size must be page-aligned and inside the range");
  }
  size_t first = offsetBytes / page;
  size_t count = bytes / page;
  size_t end = first + count;
  for (size_t i = first; i < end; ++i) {
    if (range.pages[i] == 0) throw UsageException("state", "unmap: a page in the run is not mapped");
  }
  // The driver unmaps and frees only whole allocations.
  if ((first > 0 && range.pages[first - 1] == range.pages[first]) ||
      (end < range.pages.size() && range.pages[end] == range.pages[end - 1])) {
    throw UsageException(
        "state", "unmap: the run must cover whole allocations of earlier map calls (allocationBytes)");
  }
  // Work queued on any stream, by any thread, may still read these pages.
  CUDA_TRY(cudaDeviceSynchronize());
  const DriverApi& api = RequireDriver();
  // One cuMemUnmap per allocation: the documented form (the driver also accepted several adjacent
  // mappings in one call in tools/vmm-costs.cu, which the documentation does not promise).
  for (size_t i = first; i < end;) {
    size_t j = AllocationEnd(range, i, end);
    CUresult unmapped = api.cuMemUnmap(range.base + i * page, (j - i) * page);
    if (unmapped != CUDA_SUCCESS) {
      // Keep the books true: what was unmapped before the failure is released; the rest stays.
      ReleaseAllocations(range, first, i - first);
      ThrowDriver("cuMemUnmap(range.base + offset, bytes)", unmapped);
    }
    i = j;
  }
  ReleaseAllocations(range, first, count);
}

int CudaContext::AllocateSegment(size_t bytes, bool async, uint64_t* base) {
  Use();
  if (bytes == 0) throw UsageException("range", "allocateSegment: bytes must be positive");
  void* ptr = nullptr;
  if (async) {
    CUDA_TRY(cudaMallocAsync(&ptr, bytes, nullptr));
    // Blocks from this segment may be used on any stream: make the allocation complete now.
    cudaError_t synced = cudaStreamSynchronize(nullptr);
    if (synced != cudaSuccess) {
      cudaFreeAsync(ptr, nullptr);
      ThrowRuntime("cudaStreamSynchronize(0)", synced);
    }
  } else {
    CUDA_TRY(cudaMalloc(&ptr, bytes));
  }
  int id = NextId();
  try {
    segments_[id] = SegmentEntry{ptr, bytes, async};
  } catch (...) {  // out of host memory for the books: give the segment back
    if (async) {
      cudaFreeAsync(ptr, nullptr);
    } else {
      cudaFree(ptr);
    }
    cudaGetLastError();
    throw;
  }
  *base = reinterpret_cast<uint64_t>(ptr);
  return id;
}

void CudaContext::FreeSegment(int id) {
  Use();
  auto it = segments_.find(id);
  if (it == segments_.end())
    throw UsageException("handle", "unknown or released segment " + std::to_string(id));
  SegmentEntry entry = it->second;
  segments_.erase(it);
  if (entry.async) {
    CUDA_TRY(cudaFreeAsync(entry.ptr, nullptr));
  } else {
    CUDA_TRY(cudaFree(entry.ptr));
  }
}

void CudaContext::MemInfo(size_t* freeBytes, size_t* totalBytes) {
  Use();
  CUDA_TRY(cudaMemGetInfo(freeBytes, totalBytes));
}

void CudaContext::Synchronize() {
  Use();
  CUDA_TRY(cudaDeviceSynchronize());
}

cudaStream_t CudaContext::Stream(int id) {
  // Also the kernels' only check: after Destroy() stream 0 must not launch on freed memory.
  CheckAlive();
  if (id == 0) return nullptr;
  auto it = streams_.find(id);
  if (it == streams_.end())
    throw UsageException("handle", "unknown or destroyed stream " + std::to_string(id));
  return it->second;
}

void CudaContext::CopyIn(uint64_t dst, const void* src, size_t bytes, int stream, bool async) {
  Use();
  if (bytes == 0) return;
  void* target = reinterpret_cast<void*>(dst);
  if (async) {
    CUDA_TRY(cudaMemcpyAsync(target, src, bytes, cudaMemcpyHostToDevice, Stream(stream)));
  } else {
    CUDA_TRY(cudaMemcpy(target, src, bytes, cudaMemcpyHostToDevice));
  }
}

void CudaContext::CopyOut(void* dst, uint64_t src, size_t bytes, int stream, bool async) {
  Use();
  if (bytes == 0) return;
  const void* source = reinterpret_cast<const void*>(src);
  if (async) {
    CUDA_TRY(cudaMemcpyAsync(dst, source, bytes, cudaMemcpyDeviceToHost, Stream(stream)));
  } else {
    CUDA_TRY(cudaMemcpy(dst, source, bytes, cudaMemcpyDeviceToHost));
  }
}

void CudaContext::Fill(uint64_t dst, int value, size_t bytes, int stream, bool async) {
  Use();
  if (bytes == 0) return;
  cudaStream_t s = Stream(stream);
  CUDA_TRY(cudaMemsetAsync(reinterpret_cast<void*>(dst), value, bytes, s));
  if (!async) CUDA_TRY(cudaStreamSynchronize(s));
}

int CudaContext::CreateStream() {
  Use();
  cudaStream_t stream = nullptr;
  CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamDefault));
  int id = NextId();
  try {
    streams_[id] = stream;
  } catch (...) {
    cudaStreamDestroy(stream);
    throw;
  }
  return id;
}

void CudaContext::DestroyStream(int id) {
  Use();
  cudaStream_t stream = Stream(id);
  if (id == 0) throw UsageException("handle", "the default stream cannot be destroyed");
  streams_.erase(id);
  CUDA_TRY(cudaStreamDestroy(stream));
}

void CudaContext::SynchronizeStream(int id) {
  Use();
  CUDA_TRY(cudaStreamSynchronize(Stream(id)));
}

int CudaContext::RecordEvent(int stream) {
  Use();
  cudaStream_t s = Stream(stream);
  cudaEvent_t event = nullptr;
  CUDA_TRY(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  cudaError_t recorded = cudaEventRecord(event, s);
  if (recorded != cudaSuccess) {
    cudaEventDestroy(event);
    ThrowRuntime("cudaEventRecord(event, stream)", recorded);
  }
  int id = NextId();
  try {
    events_[id] = event;
  } catch (...) {
    cudaEventDestroy(event);
    throw;
  }
  return id;
}

bool CudaContext::EventDone(int id) {
  Use();
  auto it = events_.find(id);
  if (it == events_.end()) throw UsageException("handle", "unknown or destroyed event " + std::to_string(id));
  cudaError_t status = cudaEventQuery(it->second);
  if (status == cudaSuccess) return true;
  if (status == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  ThrowRuntime("cudaEventQuery(event)", status);
}

void CudaContext::SynchronizeEvent(int id) {
  Use();
  auto it = events_.find(id);
  if (it == events_.end()) throw UsageException("handle", "unknown or destroyed event " + std::to_string(id));
  CUDA_TRY(cudaEventSynchronize(it->second));
}

void CudaContext::DestroyEvent(int id) {
  Use();
  auto it = events_.find(id);
  if (it == events_.end()) throw UsageException("handle", "unknown or destroyed event " + std::to_string(id));
  cudaEvent_t event = it->second;
  events_.erase(it);
  CUDA_TRY(cudaEventDestroy(event));
}

CudaContext::Counts CudaContext::Live() const {
  Counts counts{0, 0, segments_.size(), streams_.size(), events_.size(), 0};
  for (const auto& entry : ranges_) {
    if (!entry.second.owned) {
      counts.adoptedRanges++;
      continue;
    }
    RangeRecord& record = *entry.second.record;
    std::lock_guard<std::mutex> lock(record.mutex);
    if (record.released) continue;
    counts.ranges++;
    for (CUmemGenericAllocationHandle handle : record.pages) counts.mappedPages += handle != 0 ? 1 : 0;
  }
  return counts;
}

void CudaContext::Destroy() noexcept {
  if (destroyed_) return;
  destroyed_ = true;
  // Without a usable device nothing can be freed, but the registry still forgets what this owned.
  const bool usable = cudaSetDevice(device_) == cudaSuccess;
  if (usable) {
    cudaDeviceSynchronize();
    for (auto& entry : events_) cudaEventDestroy(entry.second);
    for (auto& entry : streams_) cudaStreamDestroy(entry.second);
  }
  events_.clear();
  streams_.clear();
  const DriverApi& api = Driver();
  for (auto& entry : ranges_) {
    if (!entry.second.owned) continue;  // adopted: its owner releases it
    RangeRecord& record = *entry.second.record;
    {
      std::lock_guard<std::mutex> lock(record.mutex);
      if (record.released) continue;
      if (usable) {
        UnmapPages(record, 0, record.pages.size());
        if (api.loaded) api.cuMemAddressFree(record.base, record.bytes);
      }
      record.released = true;
    }
    RangeRegistry::Get().Remove(record.id);
  }
  ranges_.clear();
  if (usable) {
    for (auto& entry : segments_) {
      if (entry.second.async) {
        cudaFreeAsync(entry.second.ptr, nullptr);
      } else {
        cudaFree(entry.second.ptr);
      }
    }
    cudaStreamSynchronize(nullptr);
  }
  segments_.clear();
  cudaGetLastError();
}

}  // namespace gpupool
