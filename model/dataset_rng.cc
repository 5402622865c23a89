#include "model/dataset_rng.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "protocols/check.h"

namespace fedfm::model {
namespace {

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t DeriveSeed(uint64_t seed, uint64_t purpose) {
  uint64_t state = seed;
  uint64_t a = SplitMix64(state);
  state = a ^ (purpose * 0xD1B54A32D192ED03ull);
  return SplitMix64(state);
}

DataRng::DataRng(uint64_t seed) {
  uint64_t state = seed;
  for (uint64_t& word : s_) word = SplitMix64(state);
}

uint64_t DataRng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

uint64_t DataRng::Uniform(uint64_t n) {
  FEDFM_CHECK(n > 0);
  // Reject the top partial copy of [0, n) so every value is equally likely.
  const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % n);
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return x % n;
}

double DataRng::UniformDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

double DataRng::Normal() {
  // 1 - U is in (0, 1], so the log is finite.
  const double u1 = 1.0 - UniformDouble();
  const double u2 = UniformDouble();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

double DataRng::GammaAtLeastOne(double shape) {
  // Marsaglia & Tsang (2000), "A simple method for generating gamma
  // variables", for shape >= 1.
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x;
    double v;
    do {
      x = Normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = 1.0 - UniformDouble();
    if (u < 1.0 - 0.0331 * (x * x) * (x * x)) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

double DataRng::LogGamma(double shape) {
  FEDFM_CHECK(shape > 0);
  if (shape >= 1.0) return std::log(GammaAtLeastOne(shape));
  // Gamma(a) = Gamma(a + 1) * U^(1/a) (Marsaglia & Tsang, section 6), in logs:
  // for small a the power underflows a double.
  const double u = 1.0 - UniformDouble();
  return std::log(GammaAtLeastOne(shape + 1.0)) + std::log(u) / shape;
}

double DataRng::Gamma(double shape) { return std::exp(LogGamma(shape)); }

std::vector<double> DataRng::Dirichlet(const std::vector<double>& alphas) {
  FEDFM_CHECK(!alphas.empty());
  // Normalised gamma draws, computed from their logs (log-sum-exp) so that
  // tiny alphas, whose draws underflow, still give a proper vector.
  std::vector<double> draw(alphas.size());
  double max_log = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < alphas.size(); ++i) {
    draw[i] = LogGamma(alphas[i]);
    max_log = std::max(max_log, draw[i]);
  }
  double sum = 0.0;
  for (double& x : draw) {
    x = std::exp(x - max_log);
    sum += x;
  }
  for (double& x : draw) x /= sum;
  return draw;
}

std::vector<size_t> Permutation(size_t n, uint64_t seed) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  Shuffle(order, seed);
  return order;
}

}  // namespace fedfm::model
