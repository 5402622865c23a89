// The random numbers of datasets and partitioners: a small generator with an
// explicit seed, specified exactly so that a seed gives the same shuffle,
// split and partition on every platform (std::shuffle and the std::
// distributions are implementation-defined, so they are not used).
//
// Generator: xoshiro256** (Blackman & Vigna) with its state filled by
// splitmix64 from the 64-bit seed. Integers are exact everywhere; Normal and
// Gamma go through std::log / std::sqrt / std::cos / std::pow and so match
// wherever libm rounds those alike.
#ifndef FEDFM_MODEL_DATASET_RNG_H_
#define FEDFM_MODEL_DATASET_RNG_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace fedfm::model {

// splitmix64 step: advances `state` and returns the next output. Also a good
// way to derive sub-seeds: Mix(seed ^ purpose).
uint64_t SplitMix64(uint64_t& state);

// A seed for one purpose derived from a parent seed, e.g.
// DeriveSeed(run_seed, /*purpose=*/client_id).
uint64_t DeriveSeed(uint64_t seed, uint64_t purpose);

class DataRng {
 public:
  explicit DataRng(uint64_t seed);

  uint64_t Next();                  // 64 uniform bits
  uint64_t Uniform(uint64_t n);     // uniform in [0, n), n > 0, unbiased (rejection)
  double UniformDouble();           // uniform in [0, 1), 53 bits
  double Normal();                  // standard normal (Box-Muller)
  double Gamma(double shape);       // Gamma(shape, 1), shape > 0 (Marsaglia-Tsang)
  double LogGamma(double shape);    // log of a Gamma(shape, 1) draw; finite for tiny shapes
  // A draw from Dirichlet(alphas) (every alpha > 0); sums to 1.
  std::vector<double> Dirichlet(const std::vector<double>& alphas);

 private:
  double GammaAtLeastOne(double shape);
  uint64_t s_[4];
};

// A uniformly random permutation of 0..n-1 (Fisher-Yates from the top).
std::vector<size_t> Permutation(size_t n, uint64_t seed);

// Shuffles `items` in place with the same permutation Permutation() gives.
template <typename T>
void Shuffle(std::vector<T>& items, uint64_t seed) {
  DataRng rng(seed);
  for (size_t i = items.size(); i > 1; --i) {
    size_t j = static_cast<size_t>(rng.Uniform(i));
    std::swap(items[i - 1], items[j]);
  }
}

}  // namespace fedfm::model

#endif  // FEDFM_MODEL_DATASET_RNG_H_
