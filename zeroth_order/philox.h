// Philox-4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel Random Numbers: As
// Easy as 1, 2, 3", SC11), the counter-based generator behind every
// zeroth-order perturbation, and the seed derivation built on it.
//
// Header-only, C++17, no dependencies, usable from host code and from CUDA
// device code (nvcc), so that the CPU reference and the GPU kernels share
// one definition. docs/zeroth_order_noise.md specifies how seeds, tensor
// indices and element offsets map onto keys and counters.
#ifndef FEDFM_ZEROTH_ORDER_PHILOX_H_
#define FEDFM_ZEROTH_ORDER_PHILOX_H_

#include <cstdint>

#if defined(__CUDACC__)
#define FEDFM_HOST_DEVICE __host__ __device__
#else
#define FEDFM_HOST_DEVICE
#endif

namespace fedfm::zeroth_order {

// The Random123 constants: multipliers and Weyl key increments.
inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
inline constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

struct Philox4x32Counter {
  uint32_t v[4];
};
struct Philox4x32Key {
  uint32_t v[2];
};

// One Philox-4x32 round: two 32x32->64 multiplies, xor with the key.
FEDFM_HOST_DEVICE inline Philox4x32Counter PhiloxRound(Philox4x32Counter c, Philox4x32Key k) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c.v[0];
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c.v[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  Philox4x32Counter out;
  out.v[0] = hi1 ^ c.v[1] ^ k.v[0];
  out.v[1] = lo1;
  out.v[2] = hi0 ^ c.v[3] ^ k.v[1];
  out.v[3] = lo0;
  return out;
}

// Philox-4x32 with `Rounds` rounds; the key is bumped by (W0, W1) between
// rounds. Rounds = 10 is the standard (and the only one fedfm uses);
// 7 is there for the published known-answer vectors.
template <int Rounds>
FEDFM_HOST_DEVICE inline Philox4x32Counter Philox4x32R(Philox4x32Counter c, Philox4x32Key k) {
  for (int r = 0; r < Rounds; ++r) {
    if (r > 0) {
      k.v[0] += kPhiloxW0;
      k.v[1] += kPhiloxW1;
    }
    c = PhiloxRound(c, k);
  }
  return c;
}

FEDFM_HOST_DEVICE inline Philox4x32Counter Philox4x32_10(Philox4x32Counter c, Philox4x32Key k) {
  return Philox4x32R<10>(c, k);
}

// The 64-bit seed as the 2x32 key: v[0] = low word, v[1] = high word.
FEDFM_HOST_DEVICE inline Philox4x32Key PhiloxKeyFromSeed(uint64_t seed) {
  Philox4x32Key k;
  k.v[0] = static_cast<uint32_t>(seed);
  k.v[1] = static_cast<uint32_t>(seed >> 32);
  return k;
}

// Counter word 3 separates the streams one key feeds: noise of each kind
// (NoiseKind values 0 and 1, noise_stream.h) and the derivation purposes below.
inline constexpr uint32_t kPurposeSeedPool = 0x504F4F4Cu;      // "POOL": pool seed k of a round
inline constexpr uint32_t kPurposePerturbation = 0x50455254u;  // "PERT": perturbation p of a step
inline constexpr uint32_t kPurposePoolPick = 0x5049434Bu;      // "PICK": pool slot of perturbation p
inline constexpr uint32_t kPurposeStep = 0x53544550u;          // "STEP": step t of a client's round

// A child seed, a pure function of its inputs: Philox-4x32-10 with key =
// `parent`, counter = (lo32(a), hi32(a), b, purpose); the child is
// out[0] | out[1] << 32. Distinct (a, b, purpose) give independent children.
FEDFM_HOST_DEVICE inline uint64_t DeriveSeed(uint64_t parent, uint64_t a, uint32_t b,
                                             uint32_t purpose) {
  Philox4x32Counter c;
  c.v[0] = static_cast<uint32_t>(a);
  c.v[1] = static_cast<uint32_t>(a >> 32);
  c.v[2] = b;
  c.v[3] = purpose;
  const Philox4x32Counter out = Philox4x32_10(c, PhiloxKeyFromSeed(parent));
  return static_cast<uint64_t>(out.v[0]) | (static_cast<uint64_t>(out.v[1]) << 32);
}

}  // namespace fedfm::zeroth_order

#endif  // FEDFM_ZEROTH_ORDER_PHILOX_H_
