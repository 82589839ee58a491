#include "range_registry.hpp"

namespace gpupool {

RangeRegistry& RangeRegistry::Get() {
  // Deliberately leaked: worker threads may still use it while the process tears down statics.
  static RangeRegistry* registry = new RangeRegistry();
  return *registry;
}

std::shared_ptr<RangeRecord> RangeRegistry::Add(const void* owner, int device, CUdeviceptr base, size_t bytes,
                                                size_t page, size_t allocation) {
  std::lock_guard<std::mutex> lock(mutex_);
  int id = nextId_++;
  auto record = std::make_shared<RangeRecord>(id, owner, device, base, bytes, page, allocation);
  ranges_[id] = record;
  return record;
}

std::shared_ptr<RangeRecord> RangeRegistry::Find(int id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = ranges_.find(id);
  return it == ranges_.end() ? nullptr : it->second;
}

void RangeRegistry::Remove(int id) {
  std::lock_guard<std::mutex> lock(mutex_);
  ranges_.erase(id);
}

RangeRegistry::Counts RangeRegistry::Live() {
  std::vector<std::shared_ptr<RangeRecord>> records;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& entry : ranges_) records.push_back(entry.second);
  }
  Counts counts{0, 0};
  for (auto& record : records) {
    std::lock_guard<std::mutex> lock(record->mutex);
    if (record->released) continue;
    counts.ranges++;
    for (CUmemGenericAllocationHandle handle : record->pages) counts.mappedPages += handle != 0 ? 1 : 0;
  }
  return counts;
}

}  // namespace gpupool
