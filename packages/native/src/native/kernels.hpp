// The pipeline kernels (sm_90). Arithmetic is float32 with explicit round-to-nearest intrinsics and
// no fused multiply-add, in the exact order of the TypeScript references (src/cpu-kernels.ts), so
// GPU and CPU agree bit for bit. Pointers are device addresses checked by the TypeScript wrapper.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace gpupool {

// uint8 HWC RGB (srcW x srcH) -> float16 CHW 3 x dstH x dstW: bilinear, half-pixel centers, edge
// clamp, then (x / 255 - mean[c]) / std[c].
void LaunchPreprocessFrame(uint64_t src, int srcW, int srcH, uint64_t dst, int dstW, int dstH,
                           const float mean[3], const float std[3], cudaStream_t stream);

// float16 CHW 3 x H x W and `count` boxes (x0, y0, x1, y1 in pixels, host memory) -> float16
// count x 3 x outH x outW, bilinear with half-pixel centers, coordinates clamped to the image.
void LaunchCropResize(uint64_t image, int height, int width, const float* boxesHost, int count, uint64_t dst,
                      int outH, int outW, cudaStream_t stream);

}  // namespace gpupool
