#include "driver_api.hpp"

#include <cuda_runtime_api.h>

#include "cuda_try.hpp"

namespace gpupool {

namespace {

template <typename Fn>
bool Resolve(DriverApi& api, const char* symbol, Fn*& target) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSymbolNotFound;
  // 12000: the ABI of these entry points as of CUDA 12.0 (unchanged through 13.x).
  cudaError_t status = cudaGetDriverEntryPointByVersion(symbol, &fn, 12000, cudaEnableDefault, &query);
  if (status != cudaSuccess || query != cudaDriverEntryPointSuccess || fn == nullptr) {
    api.loaded = false;
    api.errorCode = static_cast<int>(status);
    api.error = std::string("cudaGetDriverEntryPointByVersion(") + symbol +
                "): " + (status != cudaSuccess ? cudaGetErrorName(status) : "symbol not found");
    cudaGetLastError();
    return false;
  }
  target = reinterpret_cast<Fn*>(fn);
  return true;
}

DriverApi LoadDriver() {
  DriverApi api;
  api.loaded = true;
  bool ok = Resolve(api, "cuGetErrorName", api.cuGetErrorName) &&
            Resolve(api, "cuGetErrorString", api.cuGetErrorString) &&
            Resolve(api, "cuMemAddressReserve", api.cuMemAddressReserve) &&
            Resolve(api, "cuMemAddressFree", api.cuMemAddressFree) &&
            Resolve(api, "cuMemCreate", api.cuMemCreate) && Resolve(api, "cuMemRelease", api.cuMemRelease) &&
            Resolve(api, "cuMemMap", api.cuMemMap) && Resolve(api, "cuMemUnmap", api.cuMemUnmap) &&
            Resolve(api, "cuMemSetAccess", api.cuMemSetAccess) &&
            Resolve(api, "cuMemGetAllocationGranularity", api.cuMemGetAllocationGranularity) &&
            Resolve(api, "cuDeviceGetAttribute", api.cuDeviceGetAttribute) &&
            Resolve(api, "cuDeviceGet", api.cuDeviceGet) &&
            Resolve(api, "cuDevicePrimaryCtxGetState", api.cuDevicePrimaryCtxGetState);
  api.loaded = ok;
  return api;
}

}  // namespace

const DriverApi& Driver() {
  // Deliberately leaked (like the RangeRegistry): a worker's cleanup hook may still unmap pages
  // while the process tears down statics.
  static const DriverApi* api = new DriverApi(LoadDriver());
  return *api;
}

const DriverApi& RequireDriver() {
  const DriverApi& api = Driver();
  if (!api.loaded) {
    cudaError_t status = static_cast<cudaError_t>(api.errorCode);
    throw CudaException("cudaGetDriverEntryPointByVersion", api.errorCode,
                        api.errorCode != 0 ? cudaGetErrorName(status) : "cudaErrorSymbolNotFound", "runtime",
                        api.error);
  }
  return api;
}

void ThrowRuntime(const char* call, cudaError_t status) {
  // Clear the non-sticky error so the next call starts clean.
  cudaGetLastError();
  throw CudaException(call, static_cast<int>(status), cudaGetErrorName(status), "runtime",
                      cudaGetErrorString(status));
}

void ThrowDriver(const char* call, CUresult status) {
  const char* name = "CUDA_ERROR_UNKNOWN";
  const char* description = "unknown driver error";
  const DriverApi& api = Driver();
  if (api.cuGetErrorName != nullptr) api.cuGetErrorName(status, &name);
  if (api.cuGetErrorString != nullptr) api.cuGetErrorString(status, &description);
  throw CudaException(call, static_cast<int>(status), name, "driver", description);
}

}  // namespace gpupool
