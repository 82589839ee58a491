#include <cuda_fp16.h>

#include "cuda_try.hpp"
#include "kernels.hpp"

namespace gpupool {

namespace {

struct Channels {
  float v[3];
};

// Source coordinate of an output pixel center, clamped at 0 (align_corners=false).
__device__ __forceinline__ void Tap(float s, int size, int* i0, int* i1, float* lo, float* hi) {
  if (s < 0.f) s = 0.f;
  int i = static_cast<int>(floorf(s));
  if (i > size - 1) i = size - 1;
  *i0 = i;
  *i1 = i + 1 < size ? i + 1 : size - 1;
  *hi = __fsub_rn(s, static_cast<float>(i));
  *lo = __fsub_rn(1.f, *hi);
}

__device__ __forceinline__ float Lerp2(float hx, float lx, float hy, float ly, float p00, float p01,
                                       float p10, float p11) {
  float top = __fadd_rn(__fmul_rn(hx, p00), __fmul_rn(lx, p01));
  float bottom = __fadd_rn(__fmul_rn(hx, p10), __fmul_rn(lx, p11));
  return __fadd_rn(__fmul_rn(hy, top), __fmul_rn(ly, bottom));
}

__global__ void PreprocessFrameKernel(const uint8_t* __restrict__ src, int srcW, int srcH,
                                      __half* __restrict__ dst, int dstW, int dstH, Channels mean,
                                      Channels stdev) {
  int ox = blockIdx.x * blockDim.x + threadIdx.x;
  int oy = blockIdx.y * blockDim.y + threadIdx.y;
  if (ox >= dstW || oy >= dstH) return;
  float scaleX = __fdiv_rn(static_cast<float>(srcW), static_cast<float>(dstW));
  float scaleY = __fdiv_rn(static_cast<float>(srcH), static_cast<float>(dstH));
  float sx = __fsub_rn(__fmul_rn(static_cast<float>(ox) + 0.5f, scaleX), 0.5f);
  float sy = __fsub_rn(__fmul_rn(static_cast<float>(oy) + 0.5f, scaleY), 0.5f);
  int x0, x1, y0, y1;
  float hx, lx, hy, ly;
  Tap(sx, srcW, &x0, &x1, &hx, &lx);
  Tap(sy, srcH, &y0, &y1, &hy, &ly);
  const uint8_t* r0 = src + static_cast<size_t>(y0) * srcW * 3;
  const uint8_t* r1 = src + static_cast<size_t>(y1) * srcW * 3;
  size_t plane = static_cast<size_t>(dstW) * dstH;
  size_t out = static_cast<size_t>(oy) * dstW + ox;
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    float v = Lerp2(hx, lx, hy, ly, r0[x0 * 3 + c], r0[x1 * 3 + c], r1[x0 * 3 + c], r1[x1 * 3 + c]);
    float n = __fdiv_rn(__fsub_rn(__fdiv_rn(v, 255.f), mean.v[c]), stdev.v[c]);
    dst[c * plane + out] = __float2half_rn(n);
  }
}

__device__ __forceinline__ float Clamp(float v, float hi) {
  return v < 0.f ? 0.f : (v > hi ? hi : v);
}

__global__ void CropResizeKernel(const __half* __restrict__ image, int height, int width,
                                 const float* __restrict__ boxes, __half* __restrict__ dst, int outH,
                                 int outW) {
  int ox = blockIdx.x * blockDim.x + threadIdx.x;
  int oy = blockIdx.y * blockDim.y + threadIdx.y;
  int n = blockIdx.z;
  if (ox >= outW || oy >= outH) return;
  float bx0 = boxes[n * 4 + 0], by0 = boxes[n * 4 + 1], bx1 = boxes[n * 4 + 2], by1 = boxes[n * 4 + 3];
  float scaleX = __fdiv_rn(__fsub_rn(bx1, bx0), static_cast<float>(outW));
  float scaleY = __fdiv_rn(__fsub_rn(by1, by0), static_cast<float>(outH));
  float sx = Clamp(__fadd_rn(bx0, __fsub_rn(__fmul_rn(static_cast<float>(ox) + 0.5f, scaleX), 0.5f)),
                   static_cast<float>(width - 1));
  float sy = Clamp(__fadd_rn(by0, __fsub_rn(__fmul_rn(static_cast<float>(oy) + 0.5f, scaleY), 0.5f)),
                   static_cast<float>(height - 1));
  int x0, x1, y0, y1;
  float hx, lx, hy, ly;
  Tap(sx, width, &x0, &x1, &hx, &lx);
  Tap(sy, height, &y0, &y1, &hy, &ly);
  size_t plane = static_cast<size_t>(width) * height;
  size_t outPlane = static_cast<size_t>(outW) * outH;
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    const __half* p = image + c * plane;
    float v = Lerp2(hx, lx, hy, ly, __half2float(p[static_cast<size_t>(y0) * width + x0]),
                    __half2float(p[static_cast<size_t>(y0) * width + x1]),
                    __half2float(p[static_cast<size_t>(y1) * width + x0]),
                    __half2float(p[static_cast<size_t>(y1) * width + x1]));
    dst[(static_cast<size_t>(n) * 3 + c) * outPlane + static_cast<size_t>(oy) * outW + ox] =
        __float2half_rn(v);
  }
}

}  // namespace

void LaunchPreprocessFrame(uint64_t src, int srcW, int srcH, uint64_t dst, int dstW, int dstH,
                           const float mean[3], const float std[3], cudaStream_t stream) {
  Channels m{{mean[0], mean[1], mean[2]}};
  Channels s{{std[0], std[1], std[2]}};
  dim3 block(32, 8);
  dim3 grid((dstW + block.x - 1) / block.x, (dstH + block.y - 1) / block.y);
  PreprocessFrameKernel<<<grid, block, 0, stream>>>(reinterpret_cast<const uint8_t*>(src), srcW, srcH,
                                                    reinterpret_cast<__half*>(dst), dstW, dstH, m, s);
  CUDA_TRY(cudaGetLastError());
}

void LaunchCropResize(uint64_t image, int height, int width, const float* boxesHost, int count, uint64_t dst,
                      int outH, int outW, cudaStream_t stream) {
  if (count == 0) return;
  size_t boxBytes = static_cast<size_t>(count) * 4 * sizeof(float);
  void* boxes = nullptr;
  // Stream-ordered scratch for the boxes: freed after the kernel on the same stream.
  CUDA_TRY(cudaMallocAsync(&boxes, boxBytes, stream));
  cudaError_t status = cudaMemcpyAsync(boxes, boxesHost, boxBytes, cudaMemcpyHostToDevice, stream);
  if (status == cudaSuccess) {
    dim3 block(32, 8);
    dim3 grid((outW + block.x - 1) / block.x, (outH + block.y - 1) / block.y, count);
    CropResizeKernel<<<grid, block, 0, stream>>>(reinterpret_cast<const __half*>(image), height, width,
                                                 static_cast<const float*>(boxes),
                                                 reinterpret_cast<__half*>(dst), outH, outW);
    status = cudaGetLastError();
  }
  cudaFreeAsync(boxes, stream);
  if (status != cudaSuccess) ThrowRuntime("CropResizeKernel<<<...>>>", status);
}

}  // namespace gpupool
