#include "aggregation/aggregator.h"

#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/dp.h"
#include "aggregation/internal/exact_sum.h"
#include "aggregation/robust.h"
#include "protocols/check.h"
#include "protocols/status_macros.h"

namespace fedfm::aggregation {
namespace {

using protocols::AggregationOptions;
using protocols::DType;
using protocols::Shape;
using protocols::Tensor;
using protocols::TensorCoverage;
using protocols::TensorMap;
using protocols::Update;
using protocols::UpdateKind;

enum class Robust { kNone, kMedian, kTrimmedMean, kKrum, kMultiKrum };
enum class ZoMixing { kShare, kSnr, kMean };  // aggregation.zo_mixing

// Coverage of one tensor reduced to what weights depend on: (-1, 0) = whole
// tensor, else (rank_dim, rank) with rank < the dim's size.
using CoverageKey = std::pair<int, int64_t>;

CoverageKey KeyOf(const TensorCoverage& c, const Shape& shape) {
  if (c.rank_dim < 0 || c.rank >= shape[c.rank_dim]) return {-1, 0};
  return {c.rank_dim, c.rank};
}

// Elements after the rank dim: element i lies in rank slice (i / inner) % dim.
int64_t InnerSize(const Shape& shape, int rank_dim) {
  int64_t inner = 1;
  for (size_t d = rank_dim + 1; d < shape.size(); ++d) inner *= shape[d];
  return inner;
}

bool IsCovered(const Shape& shape, CoverageKey key, int64_t inner, int64_t i) {
  if (key.first < 0) return true;
  return (i / inner) % shape[key.first] < key.second;
}

// Calls fn(begin, length) for each maximal contiguous run of flat indices
// inside the coverage `key` (row-major), in increasing order.
template <typename Fn>
void ForEachCoveredRun(const Shape& shape, CoverageKey key, Fn&& fn) {
  const int64_t numel = protocols::NumElements(shape);
  if (numel <= 0) return;
  if (key.first < 0) {
    fn(0, numel);
    return;
  }
  const int64_t inner = InnerSize(shape, key.first);
  const int64_t dim = shape[key.first];
  const int64_t outer = numel / (dim * inner);
  for (int64_t o = 0; o < outer; ++o) fn(o * dim * inner, key.second * inner);
}

// Per-element total weight of the clients that covered each element.
std::vector<uint64_t> ElementWeights(const Shape& shape, int64_t numel, const std::map<CoverageKey, uint64_t>& profile) {
  std::vector<uint64_t> w(numel, 0);
  for (const auto& [key, weight] : profile) {
    if (key.first < 0) {
      for (uint64_t& x : w) x += weight;
      continue;
    }
    const int64_t inner = InnerSize(shape, key.first);
    for (int64_t i = 0; i < numel; ++i) {
      if (IsCovered(shape, key, inner, i)) w[i] += weight;
    }
  }
  return w;
}

struct DpSettings {
  bool enabled = false;
  bool central = false;
  double clip = 0.0;
  double sigma = 0.0;
};

// aggregation.zo_mixing = "share" on one coordinate: the dense clients'
// mean (0 where none covered it) plus the seed-scalar clients' replayed mean
// at their share of the coordinate's weight, so that the zeroth-order
// clients' shorter steps do not shrink the dense step. `signal` (1 under
// "share", ReplaySignal under "snr") scales the replay where dense clients
// covered the coordinate; where none did, the replay is the whole step.
float ShareMix(double dense_mean, double dense_weight, float replay, double zo_weight, double signal) {
  const double factor = dense_weight > 0 ? signal * zo_weight / (dense_weight + zo_weight) : 1.0;
  return static_cast<float>(dense_mean + static_cast<double>(replay) * factor);
}

// aggregation.zo_mixing = "snr": the share of the replayed mean that is
// signal. The replay sum_k s_k z_k of K projected gradients s_k = z_k . g
// (z_k standard normal in d dimensions) has mean K g and noise of squared
// norm about d K |g|^2, so the scalar c minimising E|c R - K g|^2 is
// K^2 / (K^2 + d K) = K / (K + d). K counts the pool slots the round's
// clients used (non-zero mean scalars), d the elements the replay wrote.
// Where dense clients covered a coordinate, their mean already estimates
// the step with little noise, and the replay joins it at this weight.
double ReplaySignal(const std::vector<float>& mean_scalars, const TensorMap& replay) {
  double k = 0;
  for (float s : mean_scalars) k += s != 0.0f ? 1 : 0;
  double d = 0;
  for (const auto& [name, t] : replay) d += static_cast<double>(t.numel());
  return k > 0 ? k / (k + d) : 0.0;
}

// `v` scaled by `factor` (the DP clip) into `scratch`, or `v` itself when
// the factor is 1.
std::span<const float> Scaled(std::span<const float> v, double factor, std::vector<float>* scratch) {
  if (factor == 1.0) return v;
  scratch->resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) (*scratch)[i] = static_cast<float>(v[i] * factor);
  return *scratch;
}

// Validation, bookkeeping and the shared end of a round (seed replay, the
// optimizer step). Subclasses keep the updates' contributions.
class RoundAggregator : public Aggregator {
 public:
  RoundAggregator(const AggregationOptions& options, const TensorMap& global, const RoundContext& context,
                  std::unique_ptr<ServerOptimizer> owned_optimizer, DpSettings dp)
      : options_(options),
        global_(global),
        context_(context),
        owned_optimizer_(std::move(owned_optimizer)),
        optimizer_(context.optimizer != nullptr ? context.optimizer : owned_optimizer_.get()),
        dp_(dp),
        zo_mixing_(options.zo_mixing == "mean"  ? ZoMixing::kMean
                   : options.zo_mixing == "snr" ? ZoMixing::kSnr
                                                : ZoMixing::kShare) {
    int64_t offset = 0;
    for (const auto& [name, t] : global_) {
      index_[name] = names_.size();
      names_.push_back(name);
      offsets_.push_back(offset);
      offset += t.numel();
    }
    total_elements_ = offset;
  }

  const AggregationStats& stats() const final { return stats_; }

  absl::Status Accept(const Update& update) final {
    // The update's own checks (the values included) need no lock; the round's
    // bookkeeping takes mu_ briefly; the values are added outside it.
    absl::Status valid = ValidateContent(update);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) {
        return absl::FailedPreconditionError(
            absl::StrCat("update from client \"", update.client_id, "\" arrived after the round finished"));
      }
      if (valid.ok() && seen_.contains(update.client_id)) {
        valid = absl::InvalidArgumentError(absl::StrCat("update from client \"", update.client_id,
                                                        "\": a second update from this client in the same round"));
      }
      if (valid.ok()) valid = Reserve(update);
      if (!valid.ok()) {
        ++stats_.dropped;
        stats_.drop_reasons.push_back(std::string(valid.message()));
        return valid;
      }
      seen_.insert(update.client_id);
      ++stats_.accepted;
      stats_.accepted_examples += update.num_examples;
    }
    AddValues(update);
    return absl::OkStatus();
  }

  absl::Status AcceptSecureSum(const SecureSum& sum) final {
    if (finished_) return absl::FailedPreconditionError("a secure sum arrived after the round finished");
    absl::Status valid = ValidateSecureSum(sum);
    if (valid.ok()) valid = AddSecureSum(sum);
    if (!valid.ok()) {
      stats_.dropped += static_cast<int>(sum.contributors.size());
      stats_.drop_reasons.push_back(std::string(valid.message()));
      return valid;
    }
    for (const SecureSumContributor& c : sum.contributors) {
      seen_.insert(c.client_id);
      ++stats_.accepted;
      stats_.accepted_examples += c.num_examples;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<TensorMap> Finish() final {
    if (finished_) return absl::FailedPreconditionError("Finish() called twice for one round");
    const int needed = std::max(1, context_.min_updates);
    if (stats_.accepted < needed) {
      return absl::FailedPreconditionError(absl::StrCat("only ", stats_.accepted, " updates accepted (",
                                                        stats_.dropped, " dropped); the round needs ", needed));
    }
    finished_ = true;
    FEDFM_ASSIGN_OR_RETURN(TensorMap delta, PseudoGradient());
    return optimizer_->Step(global_, delta);
  }

 protected:
  // Takes an accepted, validated update into the round's bookkeeping (under
  // mu_, so keep it cheap). An error here still drops the update, and must
  // leave the round as if it never arrived.
  virtual absl::Status Reserve(const Update& update) = 0;
  // Then adds its values, without mu_ and possibly concurrently with other
  // updates' AddValues; cannot fail (the update was validated).
  virtual void AddValues(const Update& update) = 0;
  // Δ over every tensor of the global state, in its order.
  virtual absl::StatusOr<TensorMap> PseudoGradient() = 0;
  // Takes a validated secure sum into the round; as Reserve + AddValues.
  virtual absl::Status AddSecureSum(const SecureSum& sum) = 0;

  size_t K() const { return context_.seed_pool.size(); }

  // Weight of an update: its examples, or 1 under DP.
  uint64_t WeightOf(const Update& u) const { return dp_.enabled ? 1 : u.num_examples; }

  // The factor that clips `u` to the DP norm (1 without central DP).
  double ClipFactor(const Update& u) const {
    if (!dp_.central) return 1.0;
    const double norm = UpdateL2Norm(u);
    return norm > dp_.clip ? dp_.clip / norm : 1.0;
  }

  // The seed-scalar clients' term of a round: the dense delta of their mean
  // scalars, and the factor on it where dense clients covered a coordinate.
  struct Replay {
    TensorMap delta;
    double signal = 1.0;  // ReplaySignal under "snr", else 1 (see ShareMix)
  };

  // "share" and "snr" keep the replay apart from the dense mean (ShareMix).
  bool ReplayApart() const { return zo_mixing_ != ZoMixing::kMean; }

  // The replay of the mean seed scalars, validated against the global state.
  absl::StatusOr<Replay> ReplaySeeds(const std::vector<float>& mean_scalars) {
    TensorMap zo;
    absl::Status s = context_.seed_replay->Apply(context_.seed_pool, mean_scalars, zo);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("seed replay failed: ", s.message()));
    }
    for (const auto& [name, t] : zo) {
      const Tensor* g = global_.Find(name);
      if (g == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("seed replay produced tensor \"", name, "\", which is not part of the global state"));
      }
      if (t.dtype() != DType::kF32 || t.shape() != g->shape()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "seed replay produced tensor \"", name, "\" as ", protocols::DTypeName(t.dtype()), " ",
            protocols::ShapeString(t.shape()), ", expected F32 ", protocols::ShapeString(g->shape())));
      }
      for (float x : t.floats()) {
        if (!std::isfinite(x)) {
          return absl::InvalidArgumentError(
              absl::StrCat("seed replay produced a non-finite value in tensor \"", name, "\""));
        }
      }
    }
    const double signal = zo_mixing_ == ZoMixing::kSnr ? ReplaySignal(mean_scalars, zo) : 1.0;
    return Replay{std::move(zo), signal};
  }

  AggregationOptions options_;
  TensorMap global_;
  RoundContext context_;
  std::unique_ptr<ServerOptimizer> owned_optimizer_;
  ServerOptimizer* optimizer_;
  DpSettings dp_;
  ZoMixing zo_mixing_;               // aggregation.zo_mixing
  std::vector<std::string> names_;   // global tensor order
  std::vector<int64_t> offsets_;     // flat offset of each tensor (DP noise index)
  std::unordered_map<std::string, size_t> index_;
  int64_t total_elements_ = 0;

 private:
  // Everything about `u` that does not depend on the round's other updates
  // (those are checked under mu_). Reads only immutable state.
  absl::Status ValidateContent(const Update& u) const {
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat("update from client \"", u.client_id, "\": ", what));
    };
    if (u.kind == UpdateKind::kDense) {
      FEDFM_RETURN_IF_ERROR(protocols::ValidateDenseUpdate(u, global_));
      if (u.coverage.tensors.empty()) return bad("covers no tensor");
      for (size_t a = 0; a < u.coverage.tensors.size(); ++a) {
        for (size_t b = 0; b < a; ++b) {
          if (u.coverage.tensors[a].name == u.coverage.tensors[b].name) {
            return bad(absl::StrCat("coverage lists tensor \"", u.coverage.tensors[a].name, "\" twice"));
          }
        }
      }
      return absl::OkStatus();
    }
    if (K() == 0) return bad("a seed-scalar update in a round without a seed pool");
    if (u.num_examples == 0) return bad("num_examples is 0");
    if (u.seed_scalars.size() != K()) {
      return bad(absl::StrCat("holds ", u.seed_scalars.size(), " seed scalars, the round's pool has ", K()));
    }
    for (size_t k = 0; k < u.seed_scalars.size(); ++k) {
      if (!std::isfinite(u.seed_scalars[k])) return bad(absl::StrCat("seed scalar ", k, " is not finite"));
    }
    return absl::OkStatus();
  }

  absl::Status ValidateSecureSum(const SecureSum& sum) const {
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat("secure sum of ", sum.contributors.size(), " clients: ", what));
    };
    if (sum.contributors.empty()) return bad("no contributors");
    if (sum.weight_unit == 0) return bad("weight_unit is 0");
    if (dp_.enabled && sum.weight_unit != 1) {
      return bad(absl::StrCat("weight_unit is ", sum.weight_unit, ", but under DP every client weighs 1"));
    }
    std::set<std::string> ids;
    for (const SecureSumContributor& c : sum.contributors) {
      if (seen_.contains(c.client_id) || !ids.insert(c.client_id).second) {
        return bad(absl::StrCat("client \"", c.client_id, "\" contributed twice in the same round"));
      }
      if (c.num_examples == 0) return bad(absl::StrCat("client \"", c.client_id, "\" has num_examples 0"));
    }
    if (sum.kind == UpdateKind::kSeedScalars) {
      if (K() == 0) return bad("a seed-scalar sum in a round without a seed pool");
      if (sum.seed_scalars.size() != K()) {
        return bad(absl::StrCat("holds ", sum.seed_scalars.size(), " seed scalars, the round's pool has ", K()));
      }
      for (size_t k = 0; k < K(); ++k) {
        if (!std::isfinite(sum.seed_scalars[k])) return bad(absl::StrCat("seed scalar ", k, " is not finite"));
      }
      return absl::OkStatus();
    }
    for (const auto& [name, t] : sum.delta) {
      const Tensor* g = global_.Find(name);
      if (g == nullptr) return bad(absl::StrCat("tensor \"", name, "\" is not part of the global state"));
      if (t.dtype() != DType::kF32 || t.shape() != g->shape()) {
        return bad(absl::StrCat("tensor \"", name, "\" is ", protocols::DTypeName(t.dtype()), " ",
                                protocols::ShapeString(t.shape()), ", expected F32 ",
                                protocols::ShapeString(g->shape())));
      }
      std::span<const float> v = t.floats();
      for (size_t i = 0; i < v.size(); ++i) {
        if (!std::isfinite(v[i])) return bad(absl::StrCat("tensor \"", name, "\" element ", i, " is not finite"));
      }
    }
    for (const SecureSumContributor& c : sum.contributors) {
      if (c.coverage.tensors.empty()) return bad(absl::StrCat("client \"", c.client_id, "\" covers no tensor"));
      std::set<std::string> names;
      for (const TensorCoverage& tc : c.coverage.tensors) {
        const Tensor* g = global_.Find(tc.name);
        if (g == nullptr) {
          return bad(absl::StrCat("client \"", c.client_id, "\" covers tensor \"", tc.name,
                                  "\", which is not part of the global state"));
        }
        if (tc.rank_dim >= 0 && (tc.rank_dim >= static_cast<int>(g->shape().size()) || tc.rank < 1 ||
                                 tc.rank > g->shape()[tc.rank_dim])) {
          return bad(absl::StrCat("client \"", c.client_id, "\": tensor \"", tc.name, "\": coverage rank ",
                                  tc.rank, " along dim ", tc.rank_dim, " is outside shape ",
                                  protocols::ShapeString(g->shape())));
        }
        if (!names.insert(tc.name).second) {
          return bad(absl::StrCat("client \"", c.client_id, "\" lists tensor \"", tc.name, "\" twice"));
        }
        if (sum.delta.Find(tc.name) == nullptr) {
          return bad(absl::StrCat("tensor \"", tc.name, "\" is covered by client \"", c.client_id,
                                  "\" but missing from the sum"));
        }
      }
    }
    return absl::OkStatus();
  }

  // Guards the round's bookkeeping during Accept (stats_, seen_, finished_
  // and the subclasses' Reserve state); Finish and AcceptSecureSum run alone.
  std::mutex mu_;
  AggregationStats stats_;
  std::set<std::string> seen_;
  bool finished_ = false;
};

// FedAvg and the server optimizers: exact streaming sums, O(model) memory.
class MeanAggregator final : public RoundAggregator {
 public:
  using RoundAggregator::RoundAggregator;

 private:
  // Coordinates per stripe lock of a tensor's sum: whole blocks of the exact
  // sum, so concurrent AddValues never share one.
  static constexpr int64_t kStripe = 64 * internal::ExactSumVector::kBlock;

  struct TensorSums {
    internal::ExactSumVector sum;               // allocated on first cover
    std::map<CoverageKey, uint64_t> profile;    // dense clients' weights
    std::unique_ptr<std::mutex[]> stripes;      // one per kStripe coordinates; null until first cover
  };

  absl::Status Reserve(const Update& u) override {
    const uint64_t w = WeightOf(u);
    uint64_t total;
    if (__builtin_add_overflow(total_weight_, w, &total)) {
      return absl::InvalidArgumentError(
          absl::StrCat("update from client \"", u.client_id, "\": num_examples ", u.num_examples,
                       " overflows the round's total weight"));
    }
    total_weight_ = total;
    if (u.kind == UpdateKind::kSeedScalars) {  // K values: added right here
      if (seed_sum_.size() == 0) seed_sum_ = internal::ExactSumVector(static_cast<int64_t>(K()));
      std::vector<float> scratch;
      seed_sum_.AddRange(0, Scaled(u.seed_scalars, ClipFactor(u), &scratch), w);
      seed_weight_ += w;
      return absl::OkStatus();
    }
    for (const TensorCoverage& c : u.coverage.tensors) {
      TensorSums& s = Sums(index_.at(c.name));
      s.profile[KeyOf(c, u.delta.Find(c.name)->shape())] += w;
    }
    return absl::OkStatus();
  }

  void AddValues(const Update& u) override {
    if (u.kind == UpdateKind::kSeedScalars) return;
    const uint64_t w = WeightOf(u);
    const double factor = ClipFactor(u);
    std::vector<float> scratch;  // one tensor at a time, only under central DP
    for (const TensorCoverage& c : u.coverage.tensors) {
      const Tensor& t = *u.delta.Find(c.name);
      // Allocated by Reserve; sums_ itself never changes shape during Accept.
      TensorSums& s = sums_[index_.at(c.name)];
      std::span<const float> v = Scaled(t.floats(), factor, &scratch);
      // Runs come in increasing order, often several per stripe (a low-rank
      // lora_B is one short run per row): lock each stripe once.
      std::unique_lock<std::mutex> lock;
      int64_t held = -1;
      ForEachCoveredRun(t.shape(), KeyOf(c, t.shape()), [&](int64_t begin, int64_t length) {
        for (int64_t at = begin; at < begin + length;) {
          const int64_t stripe = at / kStripe;
          const int64_t end = std::min(begin + length, (stripe + 1) * kStripe);
          if (stripe != held) {
            if (lock.owns_lock()) lock.unlock();
            lock = std::unique_lock<std::mutex>(s.stripes[stripe]);
            held = stripe;
          }
          s.sum.AddRange(at, v.subspan(at, end - at), w);
          at = end;
        }
      });
    }
  }

  // The sum holds Σ_i (w_i / unit) x_i; the accumulators hold Σ_i w_i x_i,
  // so the sum enters with the integer weight `unit` (exact, like AddValues), and
  // each contributor's coverage with its own weight w_i.
  absl::Status AddSecureSum(const SecureSum& sum) override {
    uint64_t total = total_weight_;
    for (const SecureSumContributor& c : sum.contributors) {
      const uint64_t w = dp_.enabled ? 1 : c.num_examples;
      if (__builtin_add_overflow(total, w, &total)) {
        return absl::InvalidArgumentError(absl::StrCat("secure sum: num_examples ", c.num_examples, " of client \"",
                                                       c.client_id, "\" overflows the round's total weight"));
      }
    }
    total_weight_ = total;
    if (sum.kind == UpdateKind::kSeedScalars) {
      if (seed_sum_.size() == 0) seed_sum_ = internal::ExactSumVector(static_cast<int64_t>(K()));
      seed_sum_.AddRange(0, sum.seed_scalars, sum.weight_unit);
      for (const SecureSumContributor& c : sum.contributors) seed_weight_ += dp_.enabled ? 1 : c.num_examples;
      return absl::OkStatus();
    }
    std::set<std::string> covered;
    for (const SecureSumContributor& c : sum.contributors) {
      const uint64_t w = dp_.enabled ? 1 : c.num_examples;
      for (const TensorCoverage& tc : c.coverage.tensors) {
        Sums(index_.at(tc.name)).profile[KeyOf(tc, global_.at(tc.name).shape())] += w;
        covered.insert(tc.name);
      }
    }
    // Elements outside every contributor's coverage are zero in a well-formed
    // sum; they get weight 0 below, so a tensor nobody covered is skipped.
    for (const auto& [name, t] : sum.delta) {
      if (covered.contains(name)) Sums(index_.at(name)).sum.AddRange(0, t.floats(), sum.weight_unit);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<TensorMap> PseudoGradient() override {
    const double noise_stddev = dp_.central ? dp_.sigma * dp_.clip : 0.0;
    GaussianStream noise(context_.noise_seed);
    Replay replay;
    if (seed_weight_ > 0) {
      std::vector<float> mean(K());
      for (size_t k = 0; k < K(); ++k) {
        double s = seed_sum_.Get(static_cast<int64_t>(k));
        if (noise_stddev > 0) s += noise_stddev * noise.At(static_cast<uint64_t>(total_elements_) + k);
        mean[k] = static_cast<float>(s / static_cast<double>(seed_weight_));
      }
      FEDFM_ASSIGN_OR_RETURN(replay, ReplaySeeds(mean));
      // "mean": linear replay, Σ_i n_i replay(s_i) = W · replay(mean s), is
      // one more exact contribution of weight W to the tensor's sum.
      // "share" / "snr": the replay stays apart and is added below.
      if (!ReplayApart()) {
        for (const auto& [name, t] : replay.delta) Sums(index_.at(name)).sum.AddRange(0, t.floats(), seed_weight_);
      }
    }
    TensorMap delta;
    for (size_t ti = 0; ti < names_.size(); ++ti) {
      const Tensor& g = global_.at(names_[ti]);
      // The replay covers the tensors it wrote, whole, with weight W.
      const Tensor* z = replay.delta.Find(names_[ti]);
      TensorSums& s = sums_[ti];
      if (s.stripes == nullptr) {  // no dense client covered it (and, under "mean", no replay)
        delta.Set(names_[ti], z != nullptr ? *z : Tensor::Zeros(DType::kF32, g.shape()));
        continue;
      }
      Tensor d = Tensor::Zeros(DType::kF32, g.shape());
      std::span<float> out = d.mutable_floats();
      const std::vector<uint64_t> dense_w = ElementWeights(g.shape(), g.numel(), s.profile);
      const uint64_t extra = z != nullptr ? seed_weight_ : 0;
      const std::span<const float> zv = ReplayApart() && z != nullptr ? z->floats() : std::span<const float>();
      for (int64_t i = 0; i < g.numel(); ++i) {
        const uint64_t w = dense_w[i] + extra;
        if (w == 0) continue;
        double sum = s.sum.Get(i);
        if (noise_stddev > 0 && dense_w[i] > 0) {
          sum += noise_stddev * noise.At(static_cast<uint64_t>(offsets_[ti] + i));
        }
        if (zv.empty()) {
          out[i] = static_cast<float>(sum / static_cast<double>(w));
        } else {
          const double dense_mean = dense_w[i] > 0 ? sum / static_cast<double>(dense_w[i]) : 0.0;
          out[i] = ShareMix(dense_mean, static_cast<double>(dense_w[i]), zv[i], static_cast<double>(seed_weight_),
                            replay.signal);
        }
      }
      s = TensorSums();  // release the accumulator as soon as it is read
      delta.Set(names_[ti], std::move(d));
    }
    return delta;
  }

  TensorSums& Sums(size_t ti) {
    TensorSums& s = sums_[ti];
    if (s.stripes == nullptr) {
      const int64_t numel = global_.at(names_[ti]).numel();
      s.sum = internal::ExactSumVector(numel);
      s.stripes = std::make_unique<std::mutex[]>(static_cast<size_t>((numel + kStripe - 1) / kStripe));
    }
    return s;
  }

  // By global tensor index; sized once, so that concurrent AddValues may
  // index it while Reserve allocates other entries.
  std::vector<TensorSums> sums_ = std::vector<TensorSums>(names_.size());
  internal::ExactSumVector seed_sum_;
  uint64_t seed_weight_ = 0;
  uint64_t total_weight_ = 0;
};

// Median, trimmed mean, Krum, multi-Krum: buffers every update (O(clients ×
// model)) and processes them in client-id order. Unweighted (see robust.h).
class RobustAggregator final : public RoundAggregator {
 public:
  RobustAggregator(Robust rule, const AggregationOptions& options, const TensorMap& global,
                   const RoundContext& context, std::unique_ptr<ServerOptimizer> owned, DpSettings dp)
      : RoundAggregator(options, global, context, std::move(owned), dp), rule_(rule) {}

 private:
  absl::Status Reserve(const Update& u) override {
    (u.kind == UpdateKind::kDense ? dense_ : seeds_).emplace(u.client_id, u);
    return absl::OkStatus();
  }
  void AddValues(const Update&) override {}

  absl::Status AddSecureSum(const SecureSum&) override {
    return absl::FailedPreconditionError(absl::StrCat("aggregation.robust = \"", options_.robust,
                                                      "\" needs every update in the clear; it cannot take a secure sum"));
  }

  // Δ per element as a (value, count) pair: the robust value over `count`
  // covering clients; combined with the seed-scalar group at the end.
  struct Partial {
    std::vector<Tensor> value;            // per global tensor, F32
    std::vector<std::vector<uint32_t>> count;
  };

  absl::StatusOr<TensorMap> PseudoGradient() override {
    std::vector<const Update*> dense;
    for (const auto& [id, u] : dense_) dense.push_back(&u);
    std::vector<const Update*> seeds;
    for (const auto& [id, u] : seeds_) seeds.push_back(&u);

    FEDFM_ASSIGN_OR_RETURN(Partial part, rule_ == Robust::kKrum || rule_ == Robust::kMultiKrum
                                             ? KrumDense(dense)
                                             : CoordinateDense(dense));
    uint64_t zo_count = 0;
    Replay replay;
    if (!seeds.empty()) {
      FEDFM_ASSIGN_OR_RETURN(auto seed_result, RobustSeeds(seeds));
      zo_count = seed_result.second;
      FEDFM_ASSIGN_OR_RETURN(replay, ReplaySeeds(seed_result.first));
    }
    TensorMap delta;
    for (size_t ti = 0; ti < names_.size(); ++ti) {
      const Tensor* z = replay.delta.Find(names_[ti]);
      std::span<float> v = part.value[ti].mutable_floats();
      if (z != nullptr) {
        std::span<const float> zv = z->floats();
        const double zw = static_cast<double>(zo_count);
        for (size_t i = 0; i < v.size(); ++i) {
          const double c = part.count[ti][i];
          v[i] = ReplayApart() ? ShareMix(v[i], c, zv[i], zw, replay.signal)
                               : static_cast<float>((c * v[i] + zw * zv[i]) / (c + zw));
        }
      }
      delta.Set(names_[ti], std::move(part.value[ti]));
    }
    return delta;
  }

  Partial EmptyPartial() const {
    Partial p;
    for (const std::string& name : names_) {
      const Tensor& g = global_.at(name);
      p.value.push_back(Tensor::Zeros(DType::kF32, g.shape()));
      p.count.emplace_back(g.numel(), 0);
    }
    return p;
  }

  absl::StatusOr<Partial> CoordinateDense(const std::vector<const Update*>& dense) const {
    Partial p = EmptyPartial();
    struct Source {
      std::span<const float> values;
      CoverageKey key;
      int64_t inner;
    };
    std::vector<float> column;
    for (size_t ti = 0; ti < names_.size(); ++ti) {
      const Shape& shape = global_.at(names_[ti]).shape();
      std::vector<Source> sources;  // client-id order
      for (const Update* u : dense) {
        const TensorCoverage* c = u->coverage.Find(names_[ti]);
        if (c == nullptr) continue;
        const CoverageKey key = KeyOf(*c, shape);
        sources.push_back({u->delta.at(names_[ti]).floats(), key, key.first < 0 ? 1 : InnerSize(shape, key.first)});
      }
      if (sources.empty()) continue;
      std::span<float> out = p.value[ti].mutable_floats();
      for (size_t i = 0; i < out.size(); ++i) {
        column.clear();
        for (const Source& s : sources) {
          if (IsCovered(shape, s.key, s.inner, static_cast<int64_t>(i))) column.push_back(s.values[i]);
        }
        if (column.empty()) continue;
        out[i] = static_cast<float>(Combine(column));
        p.count[ti][i] = static_cast<uint32_t>(column.size());
      }
    }
    return p;
  }

  double Combine(std::vector<float>& column) const {
    return rule_ == Robust::kMedian ? Median(column) : TrimmedMean(column, options_.trim_fraction);
  }

  int KrumM(int n) const {
    if (rule_ == Robust::kKrum) return 1;
    const int m = options_.multi_krum_m > 0 ? options_.multi_krum_m : n - options_.byzantine;
    return std::min(m, n);
  }

  absl::StatusOr<Partial> KrumDense(const std::vector<const Update*>& dense) const {
    Partial p = EmptyPartial();
    const int n = static_cast<int>(dense.size());
    if (n == 0) return p;
    std::vector<double> dist(static_cast<size_t>(n) * n, 0.0);
    for (int a = 0; a < n; ++a) {
      for (int b = a + 1; b < n; ++b) {
        double s = 0.0;
        for (const std::string& name : names_) {
          const Tensor* ta = dense[a]->delta.Find(name);
          const Tensor* tb = dense[b]->delta.Find(name);
          if (ta == nullptr && tb == nullptr) continue;
          std::span<const float> va = ta ? ta->floats() : std::span<const float>();
          std::span<const float> vb = tb ? tb->floats() : std::span<const float>();
          const size_t len = std::max(va.size(), vb.size());
          for (size_t i = 0; i < len; ++i) {
            const double x = (va.empty() ? 0.0 : va[i]) - (vb.empty() ? 0.0 : vb[i]);
            s += x * x;
          }
        }
        dist[static_cast<size_t>(a) * n + b] = dist[static_cast<size_t>(b) * n + a] = s;
      }
    }
    absl::StatusOr<std::vector<int>> chosen = KrumSelect(dist, n, options_.byzantine, KrumM(n));
    if (!chosen.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("dense updates: ", chosen.status().message()));
    }
    std::vector<int> selected = *chosen;
    std::sort(selected.begin(), selected.end());  // sum in client-id order
    for (size_t ti = 0; ti < names_.size(); ++ti) {
      std::span<float> out = p.value[ti].mutable_floats();
      std::vector<double> sum(out.size(), 0.0);
      for (int k : selected) {
        const TensorCoverage* c = dense[k]->coverage.Find(names_[ti]);
        if (c == nullptr) continue;
        std::span<const float> v = dense[k]->delta.at(names_[ti]).floats();
        protocols::ForEachCovered(dense[k]->delta.at(names_[ti]), *c, [&](int64_t i) {
          sum[i] += v[i];
          ++p.count[ti][i];
        });
      }
      for (size_t i = 0; i < out.size(); ++i) {
        if (p.count[ti][i] > 0) out[i] = static_cast<float>(sum[i] / p.count[ti][i]);
      }
    }
    return p;
  }

  // The robust K-vector of the seed-scalar group and how many clients it stands for.
  absl::StatusOr<std::pair<std::vector<float>, uint64_t>> RobustSeeds(const std::vector<const Update*>& seeds) const {
    const int n = static_cast<int>(seeds.size());
    std::vector<float> out(K(), 0.0f);
    if (rule_ == Robust::kMedian || rule_ == Robust::kTrimmedMean) {
      std::vector<float> column(n);
      for (size_t k = 0; k < K(); ++k) {
        for (int i = 0; i < n; ++i) column[i] = seeds[i]->seed_scalars[k];
        out[k] = static_cast<float>(Combine(column));
      }
      return std::make_pair(out, static_cast<uint64_t>(n));
    }
    std::vector<double> dist(static_cast<size_t>(n) * n, 0.0);
    for (int a = 0; a < n; ++a) {
      for (int b = a + 1; b < n; ++b) {
        double s = 0.0;
        for (size_t k = 0; k < K(); ++k) {
          const double x = static_cast<double>(seeds[a]->seed_scalars[k]) - seeds[b]->seed_scalars[k];
          s += x * x;
        }
        dist[static_cast<size_t>(a) * n + b] = dist[static_cast<size_t>(b) * n + a] = s;
      }
    }
    absl::StatusOr<std::vector<int>> chosen = KrumSelect(dist, n, options_.byzantine, KrumM(n));
    if (!chosen.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("seed-scalar updates: ", chosen.status().message()));
    }
    std::vector<int> selected = *chosen;
    std::sort(selected.begin(), selected.end());
    for (size_t k = 0; k < K(); ++k) {
      double s = 0.0;
      for (int i : selected) s += seeds[i]->seed_scalars[k];
      out[k] = static_cast<float>(s / static_cast<double>(selected.size()));
    }
    return std::make_pair(out, static_cast<uint64_t>(selected.size()));
  }

  Robust rule_;
  std::map<std::string, Update> dense_;  // by client id
  std::map<std::string, Update> seeds_;
};

absl::StatusOr<Robust> ParseRobust(const AggregationOptions& o) {
  static const std::pair<const char*, Robust> kRules[] = {{"none", Robust::kNone},
                                                          {"median", Robust::kMedian},
                                                          {"trimmed_mean", Robust::kTrimmedMean},
                                                          {"krum", Robust::kKrum},
                                                          {"multi_krum", Robust::kMultiKrum}};
  for (const auto& [name, rule] : kRules) {
    if (o.robust == name) return rule;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "aggregation.robust must be one of none, median, trimmed_mean, krum, multi_krum; got \"", o.robust, "\""));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Aggregator>> MakeAggregator(const AggregationOptions& options,
                                                           const TensorMap& global_state,
                                                           const RoundContext& context) {
  FEDFM_ASSIGN_OR_RETURN(Robust rule, ParseRobust(options));
  if (global_state.empty()) return absl::InvalidArgumentError("the global state to aggregate into is empty");
  if (!(options.trim_fraction >= 0 && options.trim_fraction < 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregation.trim_fraction must be in [0, 0.5), got ", options.trim_fraction));
  }
  if (options.byzantine < 0 || options.multi_krum_m < 0) {
    return absl::InvalidArgumentError(absl::StrCat("aggregation.byzantine (", options.byzantine,
                                                   ") and aggregation.multi_krum_m (", options.multi_krum_m,
                                                   ") must be >= 0"));
  }
  std::unique_ptr<ServerOptimizer> owned;
  if (context.optimizer == nullptr) {
    if (options.algorithm != "fedavg") {
      return absl::InvalidArgumentError(absl::StrCat("aggregation.algorithm = \"", options.algorithm,
                                                     "\" keeps state across rounds: pass the run's ServerOptimizer "
                                                     "in RoundContext::optimizer"));
    }
    FEDFM_ASSIGN_OR_RETURN(owned, MakeServerOptimizer(options));
  } else if (options.algorithm != context.optimizer->name()) {
    return absl::InvalidArgumentError(absl::StrCat("aggregation.algorithm = \"", options.algorithm,
                                                   "\" but the server optimizer given is \"",
                                                   context.optimizer->name(), "\""));
  }
  if (!context.seed_pool.empty() && context.seed_replay == nullptr) {
    return absl::InvalidArgumentError("the round has a seed pool but no SeedReplay to expand seed scalars");
  }
  DpSettings dp;
  if (context.dp != nullptr && context.dp->enabled) {
    const protocols::DpOptions& o = *context.dp;
    if (o.mode != "central" && o.mode != "distributed") {
      return absl::InvalidArgumentError(
          absl::StrCat("dp.mode must be \"central\" or \"distributed\", got \"", o.mode, "\""));
    }
    if (!(o.clip_norm > 0) || !(o.noise_multiplier >= 0) || std::isinf(o.clip_norm) ||
        std::isinf(o.noise_multiplier)) {
      return absl::InvalidArgumentError(absl::StrCat("dp.clip_norm must be > 0 (got ", o.clip_norm,
                                                     ") and dp.noise_multiplier >= 0 (got ", o.noise_multiplier,
                                                     "), both finite"));
    }
    if (rule != Robust::kNone) {
      return absl::InvalidArgumentError(absl::StrCat("aggregation.robust = \"", options.robust,
                                                     "\" cannot be combined with dp.enabled = true: the DP "
                                                     "guarantee covers the clipped, noised mean only"));
    }
    dp = {true, o.mode == "central", o.clip_norm, o.noise_multiplier};
  }
  if (rule == Robust::kNone) {
    return std::unique_ptr<Aggregator>(new MeanAggregator(options, global_state, context, std::move(owned), dp));
  }
  return std::unique_ptr<Aggregator>(
      new RobustAggregator(rule, options, global_state, context, std::move(owned), dp));
}

}  // namespace fedfm::aggregation
