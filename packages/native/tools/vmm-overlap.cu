// Standalone probe: can CUDA virtual-memory calls made on a helper thread overlap the main thread's
// own work (no Node needed):
//   nvcc -O2 -o /tmp/vmm-overlap packages/native/tools/vmm-overlap.cu -lcuda -lpthread && /tmp/vmm-overlap
// A pool that grows to N windows of 64 MiB, with W µs of other (JavaScript) work between growths,
// is timed three ways:
//   sync      the main thread creates, maps and sets access itself (what the addon does now);
//   async-map the main thread creates (so a refusal still surfaces at once), a helper thread maps
//             and sets access; the main thread waits for the helper at the end;
//   async-all the helper does all three.
// Then the teardown (unmap + release) the same ways. Prints wall ms per phase, the median
// cuMemCreate µs seen by the main thread, and the main thread's time inside the driver. Answers
// "does the driver serialise its VMM calls across threads, and how much of a replay's driver time
// could a helper thread hide".
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "probe.hpp"  // CK (prints the failing call, exits 1), nowUs, median, DescribeVmmDevice

static void spinUs(double us) {
  double end = nowUs() + us;
  while (nowUs() < end) {
  }
}

/** One helper thread running jobs in order; wait() returns once all are done. */
class Helper {
 public:
  explicit Helper(CUcontext ctx) : thread_([this, ctx] { Run(ctx); }) {}
  ~Helper() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void push(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push_back(std::move(job));
      pending_++;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  void Run(CUcontext ctx) {
    CK(cuCtxSetCurrent(ctx));
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        pending_--;
      }
      done_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_, done_;
  std::deque<std::function<void()>> jobs_;
  int pending_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

struct PhaseResult {
  double growMs, teardownMs, createMedianUs, mainDriverMs;
};

enum Mode { kSync, kAsyncMap, kAsyncAll };
static const char* kModeNames[] = {"sync", "async-map", "async-all"};

static PhaseResult RunPhase(Mode mode, CUcontext ctx, CUdeviceptr base, size_t window, int n, double spin,
                            const CUmemAllocationProp& prop, const CUmemAccessDesc& access) {
  std::vector<CUmemGenericAllocationHandle> handles(n, 0);
  std::vector<double> creates;
  double mainDriverUs = 0;
  PhaseResult result{};
  {
    Helper helper(ctx);
    double t0 = nowUs();
    for (int i = 0; i < n; i++) {
      spinUs(spin);
      CUdeviceptr at = base + i * window;
      if (mode == kAsyncAll) {
        helper.push([&, i, at] {
          CK(cuMemCreate(&handles[i], window, &prop, 0));
          CK(cuMemMap(at, window, 0, handles[i], 0));
          CK(cuMemSetAccess(at, window, &access, 1));
        });
        continue;
      }
      double c0 = nowUs();
      CK(cuMemCreate(&handles[i], window, &prop, 0));
      double c1 = nowUs();
      creates.push_back(c1 - c0);
      if (mode == kSync) {
        CK(cuMemMap(at, window, 0, handles[i], 0));
        CK(cuMemSetAccess(at, window, &access, 1));
      } else {
        CUmemGenericAllocationHandle h = handles[i];
        helper.push([&, h, at] {
          CK(cuMemMap(at, window, 0, h, 0));
          CK(cuMemSetAccess(at, window, &access, 1));
        });
      }
      mainDriverUs += nowUs() - c0;
    }
    helper.wait();
    result.growMs = (nowUs() - t0) / 1000;
    double t1 = nowUs();
    for (int i = 0; i < n; i++) {
      spinUs(spin);
      CUdeviceptr at = base + i * window;
      CUmemGenericAllocationHandle h = handles[i];
      if (mode == kSync) {
        double c0 = nowUs();
        CK(cuMemUnmap(at, window));
        CK(cuMemRelease(h));
        mainDriverUs += nowUs() - c0;
      } else {
        helper.push([&, h, at] {
          CK(cuMemUnmap(at, window));
          CK(cuMemRelease(h));
        });
      }
    }
    helper.wait();
    result.teardownMs = (nowUs() - t1) / 1000;
  }
  result.createMedianUs = median(creates);
  result.mainDriverMs = mainDriverUs / 1000;
  return result;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 240;
  CK(cuInit(0));
  CUdevice dev;
  CK(cuDeviceGet(&dev, 0));
  CUcontext ctx;
  CK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CK(cuCtxSetCurrent(ctx));
  const VmmDevice device = DescribeVmmDevice(dev);
  const char* name = device.name;
  const CUmemAllocationProp& prop = device.prop;
  const CUmemAccessDesc& access = device.access;
  const size_t window = 64ull << 20;
  CUdeviceptr base;
  CK(cuMemAddressReserve(&base, n * window, 0, 0, 0));

  std::printf("%s: %d windows of 64 MiB (%.1f GiB); ms wall for growth | teardown, median cuMemCreate us on the main thread, ms the main thread spent in the driver\n",
              name, n, n * 64.0 / 1024);
  const double spins[] = {0, 20, 55, 100};
  for (double spin : spins) {
    for (int round = 0; round < 2; round++) {
      for (Mode mode : {kSync, kAsyncMap, kAsyncAll}) {
        PhaseResult r = RunPhase(mode, ctx, base, window, n, spin, prop, access);
        double jsMs = n * spin / 1000;
        std::printf("spin %5.0f us (other work %6.1f ms) round %d %-9s grow %7.1f ms | teardown %7.1f ms  create %5.1f us  main in driver %6.1f ms\n",
                    spin, jsMs, round, kModeNames[mode], r.growMs, r.teardownMs, r.createMedianUs, r.mainDriverMs);
      }
    }
  }
  CK(cuMemAddressFree(base, n * window));
  CK(cuDevicePrimaryCtxRelease(dev));
  return 0;
}
