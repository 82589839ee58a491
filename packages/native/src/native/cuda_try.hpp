// The one place CUDA failures become C++ exceptions. Every runtime call goes through CUDA_TRY and
// every driver call through CU_TRY; each records the call text, the CUDA error number and name.
// addon.cc turns these exceptions into JS errors (one boundary); TypeScript maps them to typed errors.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace gpupool {

// A CUDA call failed. `api` is "runtime" or "driver".
class CudaException : public std::runtime_error {
 public:
  CudaException(std::string call, int code, std::string name, std::string api, const std::string& description)
      : std::runtime_error(call + " failed: " + name + " (" + std::to_string(code) + "): " + description),
        call_(std::move(call)),
        code_(code),
        name_(std::move(name)),
        api_(std::move(api)) {}
  const std::string& call() const { return call_; }
  int code() const { return code_; }
  const std::string& name() const { return name_; }
  const std::string& api() const { return api_; }

 private:
  std::string call_;
  int code_;
  std::string name_;
  std::string api_;
};

// A request the addon refuses on its own (unknown handle, pages not mapped, out of bounds).
// TypeScript validates first, so seeing one of these from JS means the wrapper was bypassed.
class UsageException : public std::runtime_error {
 public:
  UsageException(std::string kind, const std::string& message)
      : std::runtime_error(message), kind_(std::move(kind)) {}
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
};

[[noreturn]] void ThrowRuntime(const char* call, cudaError_t status);
[[noreturn]] void ThrowDriver(const char* call, CUresult status);

}  // namespace gpupool

#define CUDA_TRY(expr)                                 \
  do {                                                 \
    cudaError_t gpupool_status_ = (expr);              \
    if (gpupool_status_ != cudaSuccess) {              \
      ::gpupool::ThrowRuntime(#expr, gpupool_status_); \
    }                                                  \
  } while (0)

#define CU_TRY(expr)                                  \
  do {                                                \
    CUresult gpupool_result_ = (expr);                \
    if (gpupool_result_ != CUDA_SUCCESS) {            \
      ::gpupool::ThrowDriver(#expr, gpupool_result_); \
    }                                                 \
  } while (0)
