// The Node-API boundary. The only file that knows about JavaScript: it unpacks plain arguments (the
// TypeScript wrapper has validated them), calls into CudaContext and friends, and turns every C++
// exception into a JS Error in one place (Guard), with `kind`, and for CUDA failures `cudaCode`,
// `cudaName`, `call` and `api`, which src/errors.ts maps to typed errors.
#include <cuda_runtime_api.h>
#include <napi.h>

#include <memory>
#include <mutex>
#include <unordered_map>

#include "bench.hpp"
#include "context.hpp"
#include "cuda_try.hpp"
#include "driver_api.hpp"
#include "kernels.hpp"
#include "range_registry.hpp"

namespace gpupool {

namespace {

Napi::Error ToJsError(Napi::Env env, std::exception_ptr failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const CudaException& e) {
    Napi::Error error = Napi::Error::New(env, e.what());
    error.Set("kind", "cuda");
    error.Set("cudaCode", Napi::Number::New(env, e.code()));
    error.Set("cudaName", e.name());
    error.Set("call", e.call());
    error.Set("api", e.api());
    return error;
  } catch (const UsageException& e) {
    Napi::Error error = Napi::Error::New(env, e.what());
    error.Set("kind", e.kind());
    return error;
  } catch (const std::exception& e) {
    Napi::Error error = Napi::Error::New(env, e.what());
    error.Set("kind", "internal");
    return error;
  } catch (...) {
    Napi::Error error = Napi::Error::New(env, "unknown native failure");
    error.Set("kind", "internal");
    return error;
  }
}

template <typename Fn>
Napi::Value Guard(const Napi::CallbackInfo& info, Fn&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw ToJsError(info.Env(), std::current_exception());
  }
}

size_t Size(const Napi::Value& value) {
  return static_cast<size_t>(value.As<Napi::Number>().Int64Value());
}
int Int(const Napi::Value& value) {
  return value.As<Napi::Number>().Int32Value();
}
uint64_t Ptr(const Napi::Value& value) {
  bool lossless = false;
  return value.As<Napi::BigInt>().Uint64Value(&lossless);
}

struct View {
  void* data;
  size_t bytes;
};
View ViewOf(const Napi::Value& value) {
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  Napi::ArrayBuffer buffer = array.ArrayBuffer();
  return View{static_cast<uint8_t*>(buffer.Data()) + array.ByteOffset(), array.ByteLength()};
}

Napi::Value Pair(Napi::Env env, int id, uint64_t base) {
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, id));
  out.Set(1u, Napi::BigInt::New(env, base));
  return out;
}

// One CudaContext per CudaDevice. An env cleanup hook destroys it when the worker or process exits
// while the JS object is still alive; otherwise the destructor does, when the object is collected.
class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Context",
                       {
                           InstanceMethod<&Context::Granularity>("granularity"),
                           InstanceMethod<&Context::SetPageBytes>("setPageBytes"),
                           InstanceMethod<&Context::SetAllocationBytes>("setAllocationBytes"),
                           InstanceMethod<&Context::Reserve>("reserve"),
                           InstanceMethod<&Context::ReleaseRange>("releaseRange"),
                           InstanceMethod<&Context::Map>("map"),
                           InstanceMethod<&Context::Unmap>("unmap"),
                           InstanceMethod<&Context::AdoptRange>("adoptRange"),
                           InstanceMethod<&Context::DisownRange>("disownRange"),
                           InstanceMethod<&Context::FindPage>("findPage"),
                           InstanceMethod<&Context::AllocateSegment>("allocateSegment"),
                           InstanceMethod<&Context::FreeSegment>("freeSegment"),
                           InstanceMethod<&Context::MemInfo>("memInfo"),
                           InstanceMethod<&Context::Synchronize>("synchronize"),
                           InstanceMethod<&Context::CopyIn>("copyIn"),
                           InstanceMethod<&Context::CopyOut>("copyOut"),
                           InstanceMethod<&Context::Fill>("fill"),
                           InstanceMethod<&Context::CreateStream>("createStream"),
                           InstanceMethod<&Context::DestroyStream>("destroyStream"),
                           InstanceMethod<&Context::SynchronizeStream>("synchronizeStream"),
                           InstanceMethod<&Context::RecordEvent>("recordEvent"),
                           InstanceMethod<&Context::EventDone>("eventDone"),
                           InstanceMethod<&Context::SynchronizeEvent>("synchronizeEvent"),
                           InstanceMethod<&Context::DestroyEvent>("destroyEvent"),
                           InstanceMethod<&Context::PreprocessFrame>("preprocessFrame"),
                           InstanceMethod<&Context::CropResize>("cropResize"),
                           InstanceMethod<&Context::Live>("live"),
                           InstanceMethod<&Context::Destroy>("destroy"),
                       });
  }

  explicit Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info), env_(info.Env()) {
    Guard(info, [&]() -> Napi::Value {
      ctx_ = std::make_unique<CudaContext>(Int(info[0]));
      return info.Env().Undefined();
    });
    if (napi_add_env_cleanup_hook(env_, &Context::Cleanup, this) == napi_ok) hooked_ = true;
  }

  ~Context() override {
    if (hooked_) napi_remove_env_cleanup_hook(env_, &Context::Cleanup, this);
  }

 private:
  static void Cleanup(void* arg) {
    Context* self = static_cast<Context*>(arg);
    self->hooked_ = false;
    if (self->ctx_) self->ctx_->Destroy();
  }

  CudaContext& ctx() {
    if (!ctx_) throw UsageException("destroyed", "the CUDA context was not created");
    return *ctx_;
  }

  Napi::Value SetPageBytes(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().SetPageBytes(Size(info[0]));
      return info.Env().Undefined();
    });
  }

  Napi::Value SetAllocationBytes(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().SetAllocationBytes(Size(info[0]));
      return info.Env().Undefined();
    });
  }

  Napi::Value Granularity(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value { return Napi::Number::New(info.Env(), ctx().Granularity()); });
  }
  Napi::Value Reserve(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      uint64_t base = 0;
      int id = ctx().Reserve(Size(info[0]), &base);
      return Pair(info.Env(), id, base);
    });
  }
  Napi::Value ReleaseRange(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().ReleaseRange(Int(info[0]));
      return info.Env().Undefined();
    });
  }
  Napi::Value Map(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().Map(Int(info[0]), Size(info[1]), Size(info[2]));
      return info.Env().Undefined();
    });
  }
  Napi::Value Unmap(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().Unmap(Int(info[0]), Size(info[1]), Size(info[2]));
      return info.Env().Undefined();
    });
  }
  // adoptRange(id, base, bytes)
  Napi::Value AdoptRange(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().AdoptRange(Int(info[0]), Ptr(info[1]), Size(info[2]));
      return info.Env().Undefined();
    });
  }
  Napi::Value DisownRange(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().DisownRange(Int(info[0]));
      return info.Env().Undefined();
    });
  }
  // findPage(id, firstPage, count, mapped) -> first page of the run in that state, or -1
  Napi::Value FindPage(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      long page = ctx().FindPage(Int(info[0]), Size(info[1]), Size(info[2]), info[3].ToBoolean().Value());
      return Napi::Number::New(info.Env(), static_cast<double>(page));
    });
  }
  Napi::Value AllocateSegment(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      uint64_t base = 0;
      int id = ctx().AllocateSegment(Size(info[0]), info[1].ToBoolean().Value(), &base);
      return Pair(info.Env(), id, base);
    });
  }
  Napi::Value FreeSegment(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().FreeSegment(Int(info[0]));
      return info.Env().Undefined();
    });
  }
  Napi::Value MemInfo(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      size_t freeBytes = 0, totalBytes = 0;
      ctx().MemInfo(&freeBytes, &totalBytes);
      Napi::Array out = Napi::Array::New(info.Env(), 2);
      out.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(freeBytes)));
      out.Set(1u, Napi::Number::New(info.Env(), static_cast<double>(totalBytes)));
      return out;
    });
  }
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().Synchronize();
      return info.Env().Undefined();
    });
  }
  // copyIn(ptr, view, stream, async)
  Napi::Value CopyIn(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      View view = ViewOf(info[1]);
      ctx().CopyIn(Ptr(info[0]), view.data, view.bytes, Int(info[2]), info[3].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  // copyOut(ptr, view, stream, async)
  Napi::Value CopyOut(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      View view = ViewOf(info[1]);
      ctx().CopyOut(view.data, Ptr(info[0]), view.bytes, Int(info[2]), info[3].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  // fill(ptr, byteValue, bytes, stream, async)
  Napi::Value Fill(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().Fill(Ptr(info[0]), Int(info[1]), Size(info[2]), Int(info[3]), info[4].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  Napi::Value CreateStream(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value { return Napi::Number::New(info.Env(), ctx().CreateStream()); });
  }
  Napi::Value DestroyStream(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().DestroyStream(Int(info[0]));
      return info.Env().Undefined();
    });
  }
  Napi::Value SynchronizeStream(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().SynchronizeStream(Int(info[0]));
      return info.Env().Undefined();
    });
  }
  Napi::Value RecordEvent(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      return Napi::Number::New(info.Env(), ctx().RecordEvent(Int(info[0])));
    });
  }
  Napi::Value EventDone(const Napi::CallbackInfo& info) {
    return Guard(
        info, [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), ctx().EventDone(Int(info[0]))); });
  }
  Napi::Value SynchronizeEvent(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().SynchronizeEvent(Int(info[0]));
      return info.Env().Undefined();
    });
  }
  Napi::Value DestroyEvent(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().DestroyEvent(Int(info[0]));
      return info.Env().Undefined();
    });
  }
  // preprocessFrame(src, srcW, srcH, dst, dstW, dstH, mean Float32Array(3), std Float32Array(3), stream)
  Napi::Value PreprocessFrame(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      CudaContext& c = ctx();
      cudaStream_t stream = c.Stream(Int(info[8]));
      CUDA_TRY(cudaSetDevice(c.device()));
      const float* mean = static_cast<const float*>(ViewOf(info[6]).data);
      const float* stdev = static_cast<const float*>(ViewOf(info[7]).data);
      LaunchPreprocessFrame(Ptr(info[0]), Int(info[1]), Int(info[2]), Ptr(info[3]), Int(info[4]),
                            Int(info[5]), mean, stdev, stream);
      return info.Env().Undefined();
    });
  }
  // cropResize(image, height, width, boxes Float32Array(4n), dst, outH, outW, stream)
  Napi::Value CropResize(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      CudaContext& c = ctx();
      cudaStream_t stream = c.Stream(Int(info[7]));
      CUDA_TRY(cudaSetDevice(c.device()));
      View boxes = ViewOf(info[3]);
      LaunchCropResize(Ptr(info[0]), Int(info[1]), Int(info[2]), static_cast<const float*>(boxes.data),
                       static_cast<int>(boxes.bytes / (4 * sizeof(float))), Ptr(info[4]), Int(info[5]),
                       Int(info[6]), stream);
      return info.Env().Undefined();
    });
  }
  Napi::Value Live(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      CudaContext::Counts counts = ctx().Live();
      Napi::Object out = Napi::Object::New(info.Env());
      out.Set("ranges", static_cast<double>(counts.ranges));
      out.Set("mappedPages", static_cast<double>(counts.mappedPages));
      out.Set("segments", static_cast<double>(counts.segments));
      out.Set("streams", static_cast<double>(counts.streams));
      out.Set("events", static_cast<double>(counts.events));
      out.Set("adoptedRanges", static_cast<double>(counts.adoptedRanges));
      return out;
    });
  }
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    if (ctx_) ctx_->Destroy();
    return info.Env().Undefined();
  }

  napi_env env_;
  bool hooked_ = false;
  std::unique_ptr<CudaContext> ctx_;
};

// Pinned host buffers: process-wide (cudaHostAlloc is portable), handed to JS as external
// ArrayBuffers. Freed by freePinned (which also detaches the ArrayBuffer) or by the finalizer.
struct PinnedBlock {
  void* ptr;
  size_t bytes;
  bool freed;
};
std::mutex pinnedMutex;
std::unordered_map<void*, PinnedBlock*> pinnedBlocks;

void FinalizePinned(Napi::Env, void*, PinnedBlock* block) {
  {
    std::lock_guard<std::mutex> lock(pinnedMutex);
    if (!block->freed) {
      pinnedBlocks.erase(block->ptr);
      cudaFreeHost(block->ptr);
      cudaGetLastError();
    }
  }
  delete block;
}

Napi::Value AllocPinned(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    size_t bytes = Size(info[0]);
    void* ptr = nullptr;
    CUDA_TRY(cudaHostAlloc(&ptr, bytes, cudaHostAllocPortable));
    PinnedBlock* block = new PinnedBlock{ptr, bytes, false};
    {
      std::lock_guard<std::mutex> lock(pinnedMutex);
      pinnedBlocks[ptr] = block;
    }
    return Napi::ArrayBuffer::New(info.Env(), ptr, bytes, FinalizePinned, block);
  });
}

Napi::Value FreePinned(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
    void* ptr = buffer.Data();
    {
      std::lock_guard<std::mutex> lock(pinnedMutex);
      auto it = pinnedBlocks.find(ptr);
      if (ptr == nullptr || it == pinnedBlocks.end()) {
        throw UsageException("handle", "freePinned: not a live pinned buffer");
      }
      it->second->freed = true;
      pinnedBlocks.erase(it);
    }
    buffer.Detach();
    CUDA_TRY(cudaFreeHost(ptr));
    return info.Env().Undefined();
  });
}

Napi::Value PinnedLive(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(pinnedMutex);
  return Napi::Number::New(info.Env(), static_cast<double>(pinnedBlocks.size()));
}

// probe(): what CUDA says about this machine. Never throws: failures are reported as values.
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  int runtimeVersion = 0, driverVersion = 0, count = 0;
  cudaRuntimeGetVersion(&runtimeVersion);
  cudaDriverGetVersion(&driverVersion);
  cudaGetLastError();
  cudaError_t status = cudaGetDeviceCount(&count);
  cudaGetLastError();
  out.Set("runtimeVersion", runtimeVersion);
  out.Set("driverVersion", driverVersion);
  out.Set("deviceCount", status == cudaSuccess ? count : 0);
  out.Set("status", static_cast<int>(status));
  out.Set("statusName", cudaGetErrorName(status));
  out.Set("statusMessage", cudaGetErrorString(status));
  if (status == cudaSuccess) {
    const DriverApi& api = Driver();
    out.Set("driverApi", api.loaded);
    if (!api.loaded) out.Set("driverApiError", api.error);
  } else {
    out.Set("driverApi", false);
  }
  return out;
}

Napi::Value DeviceProps(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    DeviceProperties props = QueryDeviceProperties(Int(info[0]));
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("name", props.name);
    out.Set("totalBytes", static_cast<double>(props.totalBytes));
    out.Set("computeCapabilityMajor", props.major);
    out.Set("computeCapabilityMinor", props.minor);
    out.Set("multiprocessors", props.multiprocessors);
    out.Set("vmmSupported", props.vmmSupported);
    out.Set("pciBusId", props.pciBusId);
    return out;
  });
}

// benchAllocation(device, mode, bytes, iterations) -> ns per allocate+free pair
Napi::Value BenchAlloc(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    double ns =
        BenchAllocation(Int(info[0]), info[1].As<Napi::String>().Utf8Value(), Size(info[2]), Int(info[3]));
    return Napi::Number::New(info.Env(), ns);
  });
}

// registryLive() -> { ranges, mappedPages } over the whole process (every thread, every context)
Napi::Value RegistryLive(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    RangeRegistry::Counts counts = RangeRegistry::Get().Live();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("ranges", static_cast<double>(counts.ranges));
    out.Set("mappedPages", static_cast<double>(counts.mappedPages));
    return out;
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Context", Context::Define(env));
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  exports.Set("deviceProperties", Napi::Function::New(env, DeviceProps, "deviceProperties"));
  exports.Set("allocPinned", Napi::Function::New(env, AllocPinned, "allocPinned"));
  exports.Set("freePinned", Napi::Function::New(env, FreePinned, "freePinned"));
  exports.Set("pinnedLive", Napi::Function::New(env, PinnedLive, "pinnedLive"));
  exports.Set("benchAllocation", Napi::Function::New(env, BenchAlloc, "benchAllocation"));
  exports.Set("registryLive", Napi::Function::New(env, RegistryLive, "registryLive"));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace

}  // namespace gpupool

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return gpupool::Init(env, exports);
}

NODE_API_MODULE(gpupool_native, InitModule)
