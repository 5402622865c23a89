#include "aggregation/secagg/in_process.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/secagg/client.h"
#include "aggregation/secagg/messages.h"
#include "protocols/status_macros.h"

namespace fedfm::secagg {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// The last round a client with this drop point sends a message in (-1: none).
int LastRound(DropPoint d) {
  switch (d) {
    case DropPoint::kBeforeAdvertise: return -1;
    case DropPoint::kAfterAdvertise: return kAdvertiseRound;
    case DropPoint::kAfterShareKeys: return kShareKeysRound;
    case DropPoint::kAfterMaskedInput: return kMaskedInputRound;
    case DropPoint::kNever: return kUnmaskRound;
  }
  return -1;
}

absl::Status ClientError(uint32_t index, int round, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat("client ", index, " in round ", round, ": ",
                                                  status.message()));
}

void Record(PhaseStats& stats, double ms) {
  ++stats.clients;
  stats.client_ms_total += ms;
  stats.client_ms_max = std::max(stats.client_ms_max, ms);
}

}  // namespace

const char* DropPointName(DropPoint point) {
  switch (point) {
    case DropPoint::kNever: return "never";
    case DropPoint::kBeforeAdvertise: return "before_advertise";
    case DropPoint::kAfterAdvertise: return "after_advertise";
    case DropPoint::kAfterShareKeys: return "after_share_keys";
    case DropPoint::kAfterMaskedInput: return "after_masked_input";
  }
  return "unknown";
}

absl::StatusOr<InProcessReport> RunSecAggInProcess(const RoundConfig& config, const InputFn& input,
                                                   std::span<const DropPoint> drops,
                                                   const InProcessOptions& options) {
  const int n = config.num_clients;
  if (static_cast<int>(drops.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("secagg in-process run: ", drops.size(),
                                                   " drop points for ", n, " clients"));
  }
  ServerOptions server_options;
  server_options.num_threads = options.server_threads;
  FEDFM_ASSIGN_OR_RETURN(std::unique_ptr<SecAggServer> server,
                         SecAggServer::Create(config, server_options));

  std::vector<std::unique_ptr<RandomSource>> rngs(n);
  std::vector<std::unique_ptr<SecAggClient>> clients(n);
  ClientOptions client_options;
  client_options.num_threads = options.client_threads;
  for (int u = 0; u < n; ++u) {
    if (options.client_seed) {
      static constexpr char kSalt[] = "fedfm-secagg-v1/simulated-client";
      uint8_t info[4];
      for (int b = 0; b < 4; ++b) info[b] = static_cast<uint8_t>(static_cast<uint32_t>(u) >> (8 * b));
      FEDFM_ASSIGN_OR_RETURN(
          Key key, HkdfSha256Key(*options.client_seed,
                                 ByteSpan(reinterpret_cast<const uint8_t*>(kSalt), sizeof(kSalt) - 1),
                                 info));
      rngs[u] = NewSeededRandom(key);
    } else {
      rngs[u] = NewSystemRandom();
    }
    FEDFM_ASSIGN_OR_RETURN(clients[u],
                           SecAggClient::Create(config, static_cast<uint32_t>(u), rngs[u].get(),
                                                client_options));
  }

  InProcessReport report;
  report.bytes_up.assign(n, 0);
  report.bytes_down.assign(n, 0);
  auto sends_in = [&](int u, int round) { return LastRound(drops[u]) >= round; };

  // Round 0: AdvertiseKeys.
  {
    PhaseStats& stats = report.phases[kAdvertiseRound];
    for (int u = 0; u < n; ++u) {
      if (!sends_in(u, kAdvertiseRound)) continue;
      Clock::time_point start = Clock::now();
      absl::StatusOr<ClientKeys> msg = clients[u]->AdvertiseKeys();
      if (!msg.ok()) return ClientError(u, kAdvertiseRound, msg.status());
      Bytes wire = Serialize(*msg);
      Record(stats, MsSince(start));
      report.bytes_up[u] += wire.size();

      start = Clock::now();
      FEDFM_ASSIGN_OR_RETURN(ClientKeys parsed, ParseClientKeys(wire));
      FEDFM_RETURN_IF_ERROR(server->AcceptKeys(parsed));
      stats.server_ms += MsSince(start);
    }
  }

  // Round 1: ShareKeys.
  std::vector<Bytes> down(n);
  {
    PhaseStats& stats = report.phases[kShareKeysRound];
    Clock::time_point start = Clock::now();
    FEDFM_ASSIGN_OR_RETURN(std::vector<NeighborKeys> keys, server->CloseAdvertise());
    for (const NeighborKeys& m : keys) down[m.index] = Serialize(m);
    report.phases[kAdvertiseRound].server_ms += MsSince(start);

    for (int u = 0; u < n; ++u) {
      if (down[u].empty() || !sends_in(u, kShareKeysRound)) continue;
      report.bytes_down[u] += down[u].size();
      start = Clock::now();
      FEDFM_ASSIGN_OR_RETURN(NeighborKeys parsed, ParseNeighborKeys(down[u]));
      absl::StatusOr<ClientShares> msg = clients[u]->ShareKeys(parsed);
      if (!msg.ok()) return ClientError(u, kShareKeysRound, msg.status());
      Bytes wire = Serialize(*msg);
      Record(stats, MsSince(start));
      report.bytes_up[u] += wire.size();

      start = Clock::now();
      FEDFM_ASSIGN_OR_RETURN(ClientShares shares, ParseClientShares(wire));
      FEDFM_RETURN_IF_ERROR(server->AcceptShares(shares));
      stats.server_ms += MsSince(start);
    }
  }

  // Round 2: MaskedInputCollection.
  {
    PhaseStats& stats = report.phases[kMaskedInputRound];
    std::fill(down.begin(), down.end(), Bytes());
    Clock::time_point start = Clock::now();
    FEDFM_ASSIGN_OR_RETURN(std::vector<RoutedShares> routed, server->CloseShareKeys());
    for (const RoutedShares& m : routed) down[m.index] = Serialize(m);
    report.phases[kShareKeysRound].server_ms += MsSince(start);

    std::vector<uint32_t> encoded(config.vector_length);
    for (int u = 0; u < n; ++u) {
      if (down[u].empty() || !sends_in(u, kMaskedInputRound)) continue;
      report.bytes_down[u] += down[u].size();
      FEDFM_RETURN_IF_ERROR(input(static_cast<uint32_t>(u), encoded));  // training: not timed
      start = Clock::now();
      FEDFM_ASSIGN_OR_RETURN(RoutedShares parsed, ParseRoutedShares(down[u]));
      const Clock::time_point mask_start = Clock::now();
      absl::StatusOr<MaskedInput> msg = clients[u]->MaskInput(parsed, encoded);
      if (!msg.ok()) return ClientError(u, kMaskedInputRound, msg.status());
      report.mask_ms_total += MsSince(mask_start);
      report.mask_bytes_total += (parsed.shares.size() + 1) * encoded.size() * sizeof(uint32_t);
      Bytes wire = Serialize(*msg);
      msg->masked = std::vector<uint32_t>();
      Record(stats, MsSince(start));
      report.bytes_up[u] += wire.size();

      start = Clock::now();
      FEDFM_ASSIGN_OR_RETURN(MaskedInput masked, ParseMaskedInput(wire));
      FEDFM_RETURN_IF_ERROR(server->AcceptMaskedInput(masked));
      stats.server_ms += MsSince(start);
    }
  }

  // Round 3: Unmasking.
  {
    PhaseStats& stats = report.phases[kUnmaskRound];
    std::fill(down.begin(), down.end(), Bytes());
    Clock::time_point start = Clock::now();
    FEDFM_ASSIGN_OR_RETURN(std::vector<UnmaskRequest> requests, server->CloseMaskedInput());
    for (const UnmaskRequest& m : requests) down[m.index] = Serialize(m);
    report.phases[kMaskedInputRound].server_ms += MsSince(start);

    for (int u = 0; u < n; ++u) {
      if (down[u].empty() || !sends_in(u, kUnmaskRound)) continue;
      report.bytes_down[u] += down[u].size();
      start = Clock::now();
      FEDFM_ASSIGN_OR_RETURN(UnmaskRequest parsed, ParseUnmaskRequest(down[u]));
      absl::StatusOr<UnmaskResponse> msg = clients[u]->Unmask(parsed);
      if (!msg.ok()) return ClientError(u, kUnmaskRound, msg.status());
      Bytes wire = Serialize(*msg);
      Record(stats, MsSince(start));
      report.bytes_up[u] += wire.size();

      start = Clock::now();
      FEDFM_ASSIGN_OR_RETURN(UnmaskResponse response, ParseUnmaskResponse(wire));
      FEDFM_RETURN_IF_ERROR(server->AcceptUnmask(response));
      stats.server_ms += MsSince(start);
    }
    start = Clock::now();
    FEDFM_ASSIGN_OR_RETURN(report.result, server->Finish());
    stats.server_ms += MsSince(start);
  }
  return report;
}

}  // namespace fedfm::secagg
