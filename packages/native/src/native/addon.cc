// The Node-API boundary. The only file that knows about JavaScript: it unpacks plain arguments (the
// TypeScript wrapper has validated them), calls into CudaContext and friends, and turns every C++
// exception into a JS Error in one place (Guard), with `kind`, and for CUDA failures `cudaCode`,
// `cudaName`, `call` and `api`, which src/errors.ts maps to typed errors.
#include <cuda_runtime_api.h>
#include <napi.h>

#include <climits>
#include <memory>
#include <mutex>
#include <string>
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

// Argument checks. The TypeScript wrapper validates first; these stop a direct caller of the addon
// (it is loadable on its own) from turning a negative, fractional or non-numeric value into a
// wrapped-around size_t, a wild kernel launch or an untyped N-API error. Each names the argument.
// They cost no extra N-API call: the value is read once, as the old unchecked helpers did.
constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1: sizes beyond are not exact in JS
constexpr int kImageSideMax = 16384;                    // IMAGE_SIDE_MAX in src/cpu-kernels.ts
constexpr int kCropBoxesMax = 65535;                    // CROP_BOXES_MAX: the grid's z limit

[[noreturn]] void BadArgument(const char* name, const char* rule) {
  throw UsageException("argument", std::string(name) + " " + rule);
}

double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double value = 0;
  if (napi_get_value_double(info.Env(), info[i], &value) != napi_ok) BadArgument(name, "must be a number");
  return value;
}
// A byte count or offset: an integer in min..2^53-1.
size_t Size(const Napi::CallbackInfo& info, size_t i, const char* name, double min = 0) {
  double value = NumberArg(info, i, name);
  if (!(value >= min && value <= kMaxSafeInteger) ||
      value != static_cast<double>(static_cast<int64_t>(value))) {
    BadArgument(name, min > 0 ? "must be a positive integer below 2^53" : "must be an integer in 0..2^53-1");
  }
  return static_cast<size_t>(value);
}
// A handle, index or small count: an integer in min..max.
int Int(const Napi::CallbackInfo& info, size_t i, const char* name, int min = 0, int max = INT_MAX) {
  double value = NumberArg(info, i, name);
  if (!(value >= min && value <= max) || value != static_cast<double>(static_cast<int>(value))) {
    BadArgument(name, ("must be an integer in " + std::to_string(min) + ".." + std::to_string(max)).c_str());
  }
  return static_cast<int>(value);
}
// A device address: a bigint in 0..2^64-1.
uint64_t Ptr(const Napi::CallbackInfo& info, size_t i, const char* name) {
  uint64_t value = 0;
  bool lossless = false;
  if (napi_get_value_bigint_uint64(info.Env(), info[i], &value, &lossless) != napi_ok) {
    BadArgument(name, "must be a bigint device address");
  }
  if (!lossless) BadArgument(name, "must be a bigint in 0..2^64-1");
  return value;
}

struct View {
  void* data;
  size_t bytes;
  napi_typedarray_type type;
};
// Host memory of any TypedArray, over an ArrayBuffer or a SharedArrayBuffer, from its byte offset.
// (napi_get_arraybuffer_info refuses SharedArrayBuffers, so the data pointer is taken from the
// typed array itself.) A detached view has no data and 0 bytes.
View ViewOf(const Napi::CallbackInfo& info, size_t i, const char* name) {
  napi_typedarray_type type = napi_uint8_array;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(info.Env(), info[i], &type, &length, &data, nullptr, nullptr) != napi_ok) {
    BadArgument(name, "must be a TypedArray");
  }
  size_t element = 0;
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array:
      element = 1;
      break;
    case napi_int16_array:
    case napi_uint16_array:
      element = 2;
      break;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      element = 4;
      break;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      element = 8;
      break;
    default:
      BadArgument(name, "must be a TypedArray of a known element type");
  }
  return View{length == 0 ? nullptr : data, length * element, type};
}
// A Float32Array of at least `count` elements (mean, std): read on the host by the launch.
const float* Floats(const Napi::CallbackInfo& info, size_t i, const char* name, size_t count) {
  View view = ViewOf(info, i, name);
  if (view.type != napi_float32_array || view.bytes < count * sizeof(float)) {
    BadArgument(name, ("must be a Float32Array of at least " + std::to_string(count) + " elements").c_str());
  }
  return static_cast<const float*>(view.data);
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
                           InstanceMethod<&Context::SetNextIdForTest>("setNextIdForTest"),
                           InstanceMethod<&Context::PreprocessFrame>("preprocessFrame"),
                           InstanceMethod<&Context::CropResize>("cropResize"),
                           InstanceMethod<&Context::Live>("live"),
                           InstanceMethod<&Context::Destroy>("destroy"),
                       });
  }

  explicit Context(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Context>(info), env_(info.Env()) {
    Guard(info, [&]() -> Napi::Value {
      ctx_ = std::make_unique<CudaContext>(Int(info, 0, "deviceIndex"));
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
      ctx().SetPageBytes(Size(info, 0, "setPageBytes: bytes", 1));
      return info.Env().Undefined();
    });
  }

  Napi::Value SetAllocationBytes(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().SetAllocationBytes(Size(info, 0, "setAllocationBytes: bytes", 1));
      return info.Env().Undefined();
    });
  }

  Napi::Value Granularity(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value { return Napi::Number::New(info.Env(), ctx().Granularity()); });
  }
  Napi::Value Reserve(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      uint64_t base = 0;
      int id = ctx().Reserve(Size(info, 0, "reserve: bytes", 1), &base);
      return Pair(info.Env(), id, base);
    });
  }
  Napi::Value ReleaseRange(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().ReleaseRange(Int(info, 0, "releaseRange: id"));
      return info.Env().Undefined();
    });
  }
  Napi::Value Map(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().Map(Int(info, 0, "map: id"), Size(info, 1, "map: offsetBytes"), Size(info, 2, "map: bytes", 1));
      return info.Env().Undefined();
    });
  }
  Napi::Value Unmap(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().Unmap(Int(info, 0, "unmap: id"), Size(info, 1, "unmap: offsetBytes"),
                  Size(info, 2, "unmap: bytes", 1));
      return info.Env().Undefined();
    });
  }
  // adoptRange(id, base, bytes)
  Napi::Value AdoptRange(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().AdoptRange(Int(info, 0, "adoptRange: id"), Ptr(info, 1, "adoptRange: base"),
                       Size(info, 2, "adoptRange: bytes", 1));
      return info.Env().Undefined();
    });
  }
  Napi::Value DisownRange(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().DisownRange(Int(info, 0, "disownRange: id"));
      return info.Env().Undefined();
    });
  }
  // findPage(id, firstPage, count, mapped) -> first page of the run in that state, or -1
  Napi::Value FindPage(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      long page = ctx().FindPage(Int(info, 0, "findPage: id"), Size(info, 1, "findPage: firstPage"),
                                 Size(info, 2, "findPage: count"), info[3].ToBoolean().Value());
      return Napi::Number::New(info.Env(), static_cast<double>(page));
    });
  }
  Napi::Value AllocateSegment(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      uint64_t base = 0;
      int id = ctx().AllocateSegment(Size(info, 0, "allocateSegment: bytes", 1), info[1].ToBoolean().Value(),
                                     &base);
      return Pair(info.Env(), id, base);
    });
  }
  Napi::Value FreeSegment(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().FreeSegment(Int(info, 0, "freeSegment: id"));
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
      View view = ViewOf(info, 1, "copyIn: source");
      ctx().CopyIn(Ptr(info, 0, "copyIn: ptr"), view.data, view.bytes, Int(info, 2, "copyIn: stream"),
                   info[3].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  // copyOut(ptr, view, stream, async)
  Napi::Value CopyOut(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      View view = ViewOf(info, 1, "copyOut: target");
      ctx().CopyOut(view.data, Ptr(info, 0, "copyOut: ptr"), view.bytes, Int(info, 2, "copyOut: stream"),
                    info[3].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  // fill(ptr, byteValue, bytes, stream, async)
  Napi::Value Fill(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().Fill(Ptr(info, 0, "fill: ptr"), Int(info, 1, "fill: byteValue", 0, 255),
                 Size(info, 2, "fill: bytes"), Int(info, 3, "fill: stream"), info[4].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  Napi::Value CreateStream(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value { return Napi::Number::New(info.Env(), ctx().CreateStream()); });
  }
  Napi::Value DestroyStream(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().DestroyStream(Int(info, 0, "destroyStream: stream"));
      return info.Env().Undefined();
    });
  }
  Napi::Value SynchronizeStream(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().SynchronizeStream(Int(info, 0, "synchronizeStream: stream"));
      return info.Env().Undefined();
    });
  }
  Napi::Value RecordEvent(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      return Napi::Number::New(info.Env(), ctx().RecordEvent(Int(info, 0, "recordEvent: stream")));
    });
  }
  Napi::Value EventDone(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      return Napi::Boolean::New(info.Env(), ctx().EventDone(Int(info, 0, "eventDone: event")));
    });
  }
  Napi::Value SynchronizeEvent(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().SynchronizeEvent(Int(info, 0, "synchronizeEvent: event"));
      return info.Env().Undefined();
    });
  }
  Napi::Value DestroyEvent(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().DestroyEvent(Int(info, 0, "destroyEvent: event"));
      return info.Env().Undefined();
    });
  }
  // Tests only (see CudaContext::SetNextIdForTest).
  Napi::Value SetNextIdForTest(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      ctx().SetNextIdForTest(Int(info, 0, "setNextIdForTest: id", 1));
      return info.Env().Undefined();
    });
  }
  // preprocessFrame(src, srcW, srcH, dst, dstW, dstH, mean Float32Array(3), std Float32Array(3), stream)
  Napi::Value PreprocessFrame(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      CudaContext& c = ctx();
      // Every dimension is checked before the launch: a zero width would read before the source.
      uint64_t src = Ptr(info, 0, "preprocessFrame: source");
      int srcW = Int(info, 1, "preprocessFrame: width", 1, kImageSideMax);
      int srcH = Int(info, 2, "preprocessFrame: height", 1, kImageSideMax);
      uint64_t dst = Ptr(info, 3, "preprocessFrame: target");
      int dstW = Int(info, 4, "preprocessFrame: targetWidth", 1, kImageSideMax);
      int dstH = Int(info, 5, "preprocessFrame: targetHeight", 1, kImageSideMax);
      const float* mean = Floats(info, 6, "preprocessFrame: mean", 3);
      const float* stdev = Floats(info, 7, "preprocessFrame: std", 3);
      cudaStream_t stream = c.Stream(Int(info, 8, "preprocessFrame: stream"));
      CUDA_TRY(cudaSetDevice(c.device()));
      LaunchPreprocessFrame(src, srcW, srcH, dst, dstW, dstH, mean, stdev, stream);
      return info.Env().Undefined();
    });
  }
  // cropResize(image, height, width, boxes Float32Array(4n), dst, outH, outW, stream)
  Napi::Value CropResize(const Napi::CallbackInfo& info) {
    return Guard(info, [&]() -> Napi::Value {
      CudaContext& c = ctx();
      uint64_t image = Ptr(info, 0, "cropResize: image");
      int height = Int(info, 1, "cropResize: height", 1, kImageSideMax);
      int width = Int(info, 2, "cropResize: width", 1, kImageSideMax);
      View boxes = ViewOf(info, 3, "cropResize: boxes");
      if (boxes.type != napi_float32_array || boxes.bytes % (4 * sizeof(float)) != 0 ||
          boxes.bytes / (4 * sizeof(float)) > static_cast<size_t>(kCropBoxesMax)) {
        BadArgument("cropResize: boxes", "must be a Float32Array of 4 numbers per box, at most 65535 boxes");
      }
      uint64_t dst = Ptr(info, 4, "cropResize: target");
      int outH = Int(info, 5, "cropResize: outHeight", 1, kImageSideMax);
      int outW = Int(info, 6, "cropResize: outWidth", 1, kImageSideMax);
      cudaStream_t stream = c.Stream(Int(info, 7, "cropResize: stream"));
      CUDA_TRY(cudaSetDevice(c.device()));
      LaunchCropResize(image, height, width, static_cast<const float*>(boxes.data),
                       static_cast<int>(boxes.bytes / (4 * sizeof(float))), dst, outH, outW, stream);
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
// Deliberately leaked, like the RangeRegistry: a worker's finalizers may still run while the
// process tears down statics.
struct PinnedRegistry {
  std::mutex mutex;
  std::unordered_map<void*, PinnedBlock*> blocks;
};
PinnedRegistry& Pinned() {
  static PinnedRegistry* registry = new PinnedRegistry();
  return *registry;
}

// Waits for all work queued on every GPU whose primary context is active in this process (the
// contexts this addon uses, and any other library's), then makes the calling thread's device
// current again. Without the driver API it waits on every GPU.
void SynchronizeActiveGpus() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return;  // no device: nothing can be in flight
  }
  int previous = 0;
  CUDA_TRY(cudaGetDevice(&previous));
  struct Restore {
    int device;
    ~Restore() {
      cudaSetDevice(device);
      cudaGetLastError();
    }
  } restore{previous};
  const DriverApi& api = Driver();
  for (int ordinal = 0; ordinal < count; ordinal++) {
    if (api.loaded) {
      CUdevice dev = 0;
      unsigned int flags = 0;
      int active = 0;
      // A GPU without an active context has no work queued, and synchronizing it would create one.
      if (api.cuDeviceGet(&dev, ordinal) == CUDA_SUCCESS &&
          api.cuDevicePrimaryCtxGetState(dev, &flags, &active) == CUDA_SUCCESS && active == 0)
        continue;
    }
    CUDA_TRY(cudaSetDevice(ordinal));
    CUDA_TRY(cudaDeviceSynchronize());
  }
}

void FinalizePinned(Napi::Env, void*, PinnedBlock* block) {
  if (!block->freed) {
    // As in freePinned: a copy queued before the buffer became garbage may still be running.
    // Finalizers must not throw; a failed wait leaves cudaFreeHost to do what it does.
    try {
      SynchronizeActiveGpus();
    } catch (...) {
      cudaGetLastError();
    }
  }
  {
    PinnedRegistry& pinned = Pinned();
    std::lock_guard<std::mutex> lock(pinned.mutex);
    if (!block->freed) {
      pinned.blocks.erase(block->ptr);
      cudaFreeHost(block->ptr);
      cudaGetLastError();
    }
  }
  delete block;
}

Napi::Value AllocPinned(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    size_t bytes = Size(info, 0, "allocPinned: bytes", 1);
    void* ptr = nullptr;
    CUDA_TRY(cudaHostAlloc(&ptr, bytes, cudaHostAllocPortable));
    PinnedRegistry& pinned = Pinned();
    std::unique_ptr<PinnedBlock> block(new PinnedBlock{ptr, bytes, false});
    try {
      {
        std::lock_guard<std::mutex> lock(pinned.mutex);
        pinned.blocks[ptr] = block.get();
      }
      // Throws where external buffers are not allowed (a V8 sandbox): then nothing may stay behind.
      Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(info.Env(), ptr, bytes, FinalizePinned, block.get());
      block.release();  // the finalizer owns it now
      return buffer;
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(pinned.mutex);
        pinned.blocks.erase(ptr);
      }
      cudaFreeHost(ptr);
      cudaGetLastError();
      throw;
    }
  });
}

Napi::Value FreePinned(const Napi::CallbackInfo& info) {
  return Guard(info, [&]() -> Napi::Value {
    if (!info[0].IsArrayBuffer())
      BadArgument("freePinned: buffer", "must be an ArrayBuffer from allocPinned");
    Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
    void* ptr = buffer.Data();
    PinnedRegistry& pinned = Pinned();
    {
      std::lock_guard<std::mutex> lock(pinned.mutex);
      if (ptr == nullptr || pinned.blocks.find(ptr) == pinned.blocks.end()) {
        throw UsageException("handle", "freePinned: not a live pinned buffer");
      }
    }
    // An async copy from or to the buffer may still be running on any stream of any GPU: wait for
    // it, so that no DMA touches the memory once it is given back (whether cudaFreeHost waits by
    // itself is not documented). A device-wide wait, but freePinned is rare (staging buffers).
    // Before the detach: if it throws (a sticky error), the buffer stays live and listed.
    SynchronizeActiveGpus();
    // Detach before touching the books: if it throws, the buffer is still live and still listed.
    // (Not under the lock: a finalizer it schedules takes the lock itself.)
    buffer.Detach();
    {
      std::lock_guard<std::mutex> lock(pinned.mutex);
      auto it = pinned.blocks.find(ptr);
      if (it == pinned.blocks.end()) return info.Env().Undefined();  // its finalizer already freed it
      it->second->freed = true;
      pinned.blocks.erase(it);
    }
    CUDA_TRY(cudaFreeHost(ptr));
    return info.Env().Undefined();
  });
}

Napi::Value PinnedLive(const Napi::CallbackInfo& info) {
  PinnedRegistry& pinned = Pinned();
  std::lock_guard<std::mutex> lock(pinned.mutex);
  return Napi::Number::New(info.Env(), static_cast<double>(pinned.blocks.size()));
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
    DeviceProperties props = QueryDeviceProperties(Int(info, 0, "deviceProperties: deviceIndex"));
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
    int device = Int(info, 0, "benchAllocation: deviceIndex");
    if (!info[1].IsString()) BadArgument("benchAllocation: mode", "must be a string");
    size_t bytes = Size(info, 2, "benchAllocation: bytes", 1);
    int iterations = Int(info, 3, "benchAllocation: iterations", 1);  // the mean divides by it
    double ns = BenchAllocation(device, info[1].As<Napi::String>().Utf8Value(), bytes, iterations);
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
  // NATIVE_ABI_VERSION in binding.ts: bump both when an exported function changes its arguments.
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace

}  // namespace gpupool

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return gpupool::Init(env, exports);
}

NODE_API_MODULE(gpupool_native, InitModule)
