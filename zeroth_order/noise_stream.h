// The identity of one tensor's noise: plain C++17 with no dependencies, so
// that CUDA translation units (noise_kernels.h) share it with the CPU code.
#ifndef FEDFM_ZEROTH_ORDER_NOISE_STREAM_H_
#define FEDFM_ZEROTH_ORDER_NOISE_STREAM_H_

#include <cstdint>

namespace fedfm::zeroth_order {

// The value is Philox counter word 3 of the stream (docs/zeroth_order_noise.md).
enum class NoiseKind : uint32_t {
  kGaussian = 0,    // N(0, 1) by Box-Muller, |z| <= sqrt(48 ln 2) ~ 5.768
  kRademacher = 1,  // +1 or -1, one Philox output bit per element
};

// z[i], i = 0, 1, ..., of one tensor is a pure function of (seed,
// tensor_index, kind, i): the same on every thread count, CPU and GPU.
// tensor_index is the tensor's position in the trainable set (the global
// TensorMap's insertion order), so one seed perturbs a whole model.
struct NoiseStream {
  uint64_t seed = 0;
  uint32_t tensor_index = 0;
  NoiseKind kind = NoiseKind::kGaussian;
};

}  // namespace fedfm::zeroth_order

#endif  // FEDFM_ZEROTH_ORDER_NOISE_STREAM_H_
