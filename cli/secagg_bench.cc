// fedfm bench secagg: one whole SecAgg+ round in process (every message
// serialized and parsed), printing one JSON object: client and server time
// per round, mask expansion throughput, bytes per client against sending
// fp32 in the clear, and whether the secure sum equals the plain sum.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "aggregation/secagg/crypto.h"
#include "aggregation/secagg/fixed_point.h"
#include "aggregation/secagg/in_process.h"
#include "aggregation/secagg/round_config.h"
#include "cli/command.h"

namespace fedfm::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct SecAggBenchFlags {
  int clients = 100;
  int64_t params = 1000000;
  double dropout = 0.1;
  std::string drop_point = "after_masked_input";
  int neighbors = 0;
  double threshold = 0.5;
  int threads = 1;
  uint64_t seed = 1;
  double clip = 1.0;
  int fraction_bits = 16;
};

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Client u's update: uniform in [-1.25 c, 1.25 c] (a fifth of it clipped),
// from a counter-based hash so any client can be regenerated for checking.
void ClientValues(uint64_t seed, uint32_t client, double clip, std::vector<float>& out) {
  const uint64_t base = SplitMix64(seed ^ (uint64_t{client} << 32));
  for (size_t i = 0; i < out.size(); ++i) {
    const double unit = static_cast<double>(SplitMix64(base + i) >> 11) * 0x1.0p-53;  // [0, 1)
    out[i] = static_cast<float>((2.0 * unit - 1.0) * 1.25 * clip);
  }
}

secagg::Key KeyFromSeed(uint64_t seed, const std::string& purpose) {
  std::string material = "fedfm bench secagg " + purpose + " ";
  for (int b = 0; b < 8; ++b) material.push_back(static_cast<char>(seed >> (8 * b)));
  return secagg::Sha256(secagg::ByteSpan(reinterpret_cast<const uint8_t*>(material.data()),
                                         material.size()));
}

// Single-core AES-256-CTR mask expansion into a params-sized vector.
absl::StatusOr<double> MaskExpansionGbps(int64_t params, uint64_t seed) {
  std::vector<uint32_t> out(static_cast<size_t>(std::max<int64_t>(params, 1 << 20)));
  const double target_bytes = 2e9;
  double bytes = 0;
  const Clock::time_point start = Clock::now();
  for (int rep = 0; bytes < target_bytes; ++rep) {
    absl::StatusOr<secagg::MaskPrg> prg =
        secagg::MaskPrg::Create(KeyFromSeed(seed + rep, "prg"));
    if (!prg.ok()) return prg.status();
    absl::Status status = prg->Generate(out);
    if (!status.ok()) return status;
    bytes += static_cast<double>(out.size()) * sizeof(uint32_t);
  }
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  return bytes / s / 1e9;
}

int RunSecAggBench(const SecAggBenchFlags& f) {
  const char* kCommand = "bench secagg";
  const Clock::time_point wall_start = Clock::now();
  absl::StatusOr<secagg::FixedPointCodec> codec =
      secagg::FixedPointCodec::Create(f.clip, f.fraction_bits, f.clients);
  if (!codec.ok()) return Fail(kCommand, codec.status());

  secagg::SecAggParams params;
  params.round_id = 1;
  params.num_clients = f.clients;
  params.num_neighbors = f.neighbors;
  params.threshold = f.threshold;
  params.vector_length = f.params;
  params.graph_seed = KeyFromSeed(f.seed, "graph");
  absl::StatusOr<secagg::RoundConfig> config = secagg::MakeRoundConfig(params);
  if (!config.ok()) return Fail(kCommand, config.status());

  static const std::map<std::string, secagg::DropPoint> kDropPoints = {
      {"before_advertise", secagg::DropPoint::kBeforeAdvertise},
      {"after_advertise", secagg::DropPoint::kAfterAdvertise},
      {"after_share_keys", secagg::DropPoint::kAfterShareKeys},
      {"after_masked_input", secagg::DropPoint::kAfterMaskedInput},
  };
  const int num_dropped = static_cast<int>(std::lround(f.dropout * f.clients));
  std::vector<uint32_t> order(f.clients);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 gen(f.seed);
  std::shuffle(order.begin(), order.end(), gen);
  std::vector<secagg::DropPoint> drops(f.clients, secagg::DropPoint::kNever);
  for (int i = 0; i < num_dropped; ++i) drops[order[i]] = kDropPoints.at(f.drop_point);

  std::vector<float> values(f.params);
  secagg::InputFn input = [&](uint32_t u, std::span<uint32_t> encoded) {
    ClientValues(f.seed, u, f.clip, values);
    return codec->Encode(values, encoded);
  };
  secagg::InProcessOptions options;
  options.server_threads = f.threads;
  options.client_seed = KeyFromSeed(f.seed, "clients");
  absl::StatusOr<secagg::InProcessReport> report =
      secagg::RunSecAggInProcess(*config, input, drops, options);
  if (!report.ok()) return Fail(kCommand, report.status());

  // Reference: the plain sum of the same encoded inputs, and the float sum.
  std::vector<uint32_t> plain(f.params, 0);
  std::vector<uint32_t> encoded(f.params);
  std::vector<double> float_sum(f.params, 0.0);
  for (uint32_t u : report->result.included) {
    ClientValues(f.seed, u, f.clip, values);
    absl::Status status = codec->Encode(values, encoded);
    if (!status.ok()) return Fail(kCommand, status);
    for (int64_t i = 0; i < f.params; ++i) {
      plain[i] += encoded[i];
      float_sum[i] += std::clamp(static_cast<double>(values[i]), -f.clip, f.clip);
    }
  }
  const bool equal = plain == report->result.sum;
  double max_abs_error = 0;
  for (int64_t i = 0; i < f.params; ++i) {
    max_abs_error =
        std::max(max_abs_error, std::fabs(codec->DecodeOne(report->result.sum[i]) - float_sum[i]));
  }

  absl::StatusOr<double> gbps = MaskExpansionGbps(f.params, f.seed);
  if (!gbps.ok()) return Fail(kCommand, gbps.status());

  // Bytes of a client that took part in all four rounds.
  double up = 0, down = 0;
  int full = 0;
  for (int u = 0; u < f.clients; ++u) {
    if (drops[u] != secagg::DropPoint::kNever || report->bytes_up[u] == 0) continue;
    up += static_cast<double>(report->bytes_up[u]);
    down += static_cast<double>(report->bytes_down[u]);
    ++full;
  }
  if (full > 0) {
    up /= full;
    down /= full;
  }
  const double fp32 = 4.0 * static_cast<double>(f.params);

  static const char* kRounds[4] = {"advertise_keys", "share_keys", "masked_input", "unmask"};
  nlohmann::json client_mean, client_max, server_ms, clients_per_round;
  double server_total = 0;
  for (int r = 0; r < 4; ++r) {
    const secagg::PhaseStats& p = report->phases[r];
    client_mean[kRounds[r]] = p.clients > 0 ? p.client_ms_total / p.clients : 0.0;
    client_max[kRounds[r]] = p.client_ms_max;
    server_ms[kRounds[r]] = p.server_ms;
    clients_per_round[kRounds[r]] = p.clients;
    server_total += p.server_ms;
  }

  nlohmann::json out;
  out["bench"] = "secagg";
  out["clients"] = f.clients;
  out["params"] = f.params;
  out["neighbors"] = config->num_neighbors();
  out["threshold"] = config->threshold;
  out["dropout"] = f.dropout;
  out["drop_point"] = f.drop_point;
  out["dropped"] = num_dropped;
  out["included"] = report->result.included.size();
  out["clients_per_round"] = clients_per_round;
  out["server_threads"] = f.threads;
  out["seed"] = f.seed;
  out["clip"] = f.clip;
  out["fraction_bits"] = f.fraction_bits;
  out["client_ms_mean"] = client_mean;
  out["client_ms_max"] = client_max;
  out["server_ms"] = server_ms;
  out["server_ms_total"] = server_total;
  out["server_masks_removed"] = report->result.num_masks_removed;
  out["mask_expansion_gbps"] = *gbps;
  out["client_masking_gbps"] = report->mask_ms_total > 0
                                   ? static_cast<double>(report->mask_bytes_total) /
                                         (report->mask_ms_total * 1e6)
                                   : 0.0;
  out["bytes_up_per_client"] = up;
  out["bytes_down_per_client"] = down;
  out["fp32_bytes_per_client"] = fp32;
  out["ratio_up_vs_fp32"] = up / fp32;
  out["ratio_up_down_vs_fp32"] = (up + down) / fp32;
  out["equals_plain_sum"] = equal;
  out["max_abs_error_vs_float_sum"] = max_abs_error;
  out["wall_s"] = std::chrono::duration<double>(Clock::now() - wall_start).count();
  std::printf("%s\n", out.dump().c_str());
  return equal ? kExitOk : kExitRuntimeError;
}

}  // namespace

void RegisterSecAggBench(CLI::App& bench, Action& action, const GlobalFlags&) {
  CLI::App* sub = bench.add_subcommand(
      "secagg", "SecAgg+ round in process: time per round, mask throughput, bytes per client");
  auto f = std::make_shared<SecAggBenchFlags>();
  sub->add_option("--clients", f->clients, "Clients in the round (n)")
      ->check(CLI::Range(2, 1000000))
      ->capture_default_str();
  sub->add_option("--params", f->params, "Parameters per update (P)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 31))
      ->capture_default_str();
  sub->add_option("--dropout", f->dropout, "Fraction of clients that drop out, [0, 1)")
      ->check(CLI::Range(0.0, 0.999))
      ->capture_default_str();
  sub->add_option("--drop-point", f->drop_point, "Where they drop out")
      ->check(CLI::IsMember(
          {"before_advertise", "after_advertise", "after_share_keys", "after_masked_input"}))
      ->capture_default_str();
  sub->add_option("--neighbors", f->neighbors, "Neighbours k per client (0 = O(log n) default)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  sub->add_option("--threshold", f->threshold, "Shamir threshold t as a fraction of k, (0, 1]")
      ->check(CLI::Range(1e-9, 1.0))
      ->capture_default_str();
  sub->add_option("--threads", f->threads, "Server threads for unmasking")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  sub->add_option("--seed", f->seed, "Seed for inputs, dropouts, graph and client randomness")
      ->capture_default_str();
  sub->add_option("--clip", f->clip, "Fixed-point clipping range +-c")->capture_default_str();
  sub->add_option("--fraction-bits", f->fraction_bits, "Fixed-point fraction bits q")
      ->check(CLI::Range(1, 30))
      ->capture_default_str();
  sub->callback([&action, f] { action = [f] { return RunSecAggBench(*f); }; });
}

}  // namespace fedfm::cli
