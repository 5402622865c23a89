// Rényi-DP accountant for the Poisson-sampled Gaussian mechanism: the privacy
// of client-level DP rounds (aggregation/dp.h) where each client takes part in
// a round with probability q and the clipped sum gets N(0, σ²C²) noise.
//
// RDP of one step (Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of
// the Sampled Gaussian Mechanism"): ε(α) = log(A_α) / (α - 1), with A_α from
//   - integer α: the binomial expansion (Sec. 3.3, Eq. for integer α)
//     A_α = Σ_{i=0..α} C(α,i) q^i (1-q)^(α-i) exp((i² - i) / (2σ²));
//   - fractional α: the two-sided series of Sec. 3.3 with erfc tails and
//     signed binomial coefficients C(α, i), summed until its terms fall 30
//     nats below the total (as TF-Privacy does).
// q = 1 is the plain Gaussian mechanism, ε(α) = α / (2σ²) exactly; q = 0 gives
// 0; σ = 0 or α = ∞ give ∞. T rounds compose additively: T·ε(α).
//
// Conversion to (ε, δ)-DP, minimised over the orders:
//   kImproved (default): ε = rdp + log((α-1)/α) - (log δ + log α) / (α - 1),
//     Canonne, Kamath, Steinke 2020 Prop. 12 (also Balle et al. 2020), with the
//     KL shortcut ε = 0 when δ² > 1 - exp(-rdp); orders <= 1.01 are skipped.
//     This is what TF-Privacy and dp_accounting report today.
//   kClassic: ε = rdp + log(1/δ) / (α - 1) (Mironov 2017, Prop. 3), as in
//     Abadi et al.'s moments accountant era; always >= kImproved.
// Tested against TF-Privacy's published values (rdp_accountant_test.py,
// compute_dp_sgd_privacy_test.py).
#ifndef FEDFM_AGGREGATION_RDP_ACCOUNTANT_H_
#define FEDFM_AGGREGATION_RDP_ACCOUNTANT_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "protocols/config/options.h"

namespace fedfm::aggregation {

// RDP of one step at `order` (> 1, may be +inf). q in [0, 1], σ >= 0
// (FEDFM_CHECKed: validated inputs only).
double SampledGaussianRdp(double sampling_rate, double noise_multiplier, double order);

// TF-Privacy's compute_dp_sgd_privacy orders: 1.25, 1.5, 1.75, 2, 2.25, 2.5,
// 3, 3.5, 4, 4.5, 5..63, 128, 256, 512.
std::vector<double> DefaultRdpOrders();

enum class RdpConversion { kImproved, kClassic };

struct DpGuarantee {
  double epsilon = 0.0;  // may be +inf
  double delta = 0.0;
  double order = 0.0;    // the order that gave epsilon
};

// (ε, δ) from per-order RDP values (same length as `orders`, each order >= 1).
// Ties go to the first order listed.
DpGuarantee RdpToDp(std::span<const double> orders, std::span<const double> rdp, double delta,
                    RdpConversion conversion = RdpConversion::kImproved);

// Accumulates rounds of one sampled Gaussian mechanism. Cheap to copy; not
// thread-safe.
class RdpAccountant {
 public:
  // InvalidArgument for q outside [0, 1], σ < 0 or not finite, no orders, or an
  // order <= 1.
  static absl::StatusOr<RdpAccountant> Create(double sampling_rate, double noise_multiplier,
                                              std::vector<double> orders = DefaultRdpOrders());

  // Records `steps` more rounds (>= 0).
  void Compose(int64_t steps = 1);
  int64_t steps() const { return steps_; }
  double sampling_rate() const { return q_; }
  double noise_multiplier() const { return sigma_; }

  // The guarantee of all rounds so far.
  DpGuarantee Spent(double delta, RdpConversion conversion = RdpConversion::kImproved) const;
  // The guarantee of one round on its own.
  DpGuarantee PerStep(double delta, RdpConversion conversion = RdpConversion::kImproved) const;

  const std::vector<double>& orders() const { return orders_; }
  // RDP of one step at each order.
  const std::vector<double>& step_rdp() const { return step_rdp_; }

 private:
  RdpAccountant(double q, double sigma, std::vector<double> orders);

  double q_;
  double sigma_;
  std::vector<double> orders_;
  std::vector<double> step_rdp_;
  int64_t steps_ = 0;
};

// The accountant of a federated run: q = clients_per_round / population
// (capped at 1), σ = dp.noise_multiplier. InvalidArgument naming the value if
// clients_per_round < 1 or population < 1.
absl::StatusOr<RdpAccountant> MakeRoundAccountant(const protocols::DpOptions& dp, int clients_per_round,
                                                  int64_t population);

}  // namespace fedfm::aggregation

#endif  // FEDFM_AGGREGATION_RDP_ACCOUNTANT_H_
