// CoordinatorServer: the coordinator's gRPC endpoint. Listens on an address
// with TLS (mutual when clients present certificates of the coordinator's
// CA) or plaintext, and serves CoordinatorService (coordinator/
// grpc_service.h) over a RoundEngine. This header is free of gRPC, so the
// CLI and the benchmark include it without the generated code.
//
// Message sizes: the server accepts messages of at most
// service.chunk_bytes + kMessageSlackBytes (1 MiB); streams carry larger
// payloads in chunks, so no payload meets gRPC's 2 GiB message limit, and a
// larger message is refused by gRPC (ResourceExhausted) before it is read.
//
// Memory: O(model) besides a small per-connection cost (TLS and HTTP/2
// state, ~0.2 MiB per connected client): at most service.max_active_uploads
// updates are decoded at once, and transport buffers are bounded by
// transport_memory_bytes.
//
// Thread safety: Shutdown and the accessors may be called from any thread.
#ifndef FEDFM_COORDINATOR_GRPC_SERVER_H_
#define FEDFM_COORDINATOR_GRPC_SERVER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/round_engine.h"
#include "coordinator/store.h"
#include "protocols/tls_certs.h"

namespace fedfm::coordinator {

struct CoordinatorServiceOptions {
  // Largest update (encoded delta or masked input) accepted, bytes
  // (coordinator.max_update_bytes).
  int64_t max_update_bytes = int64_t{4} << 30;
  // Download chunk size and the largest upload data chunk accepted
  // (coordinator.chunk_bytes).
  int64_t chunk_bytes = int64_t{4} << 20;
  // Requests a second per client (coordinator.rate_limit_per_s); <= 0: off.
  double rate_limit_per_s = 50;
  // Requests a client may make at once after a quiet spell; 0: max(10, rate).
  double rate_limit_burst = 0;
  // Streams served at once; more wait their turn (memory bound).
  int max_active_uploads = 8;
  int max_active_downloads = 16;
  // Threads for engine calls; 0: 2 x hardware threads, at least 4.
  int worker_threads = 0;
  // The admin credential (`fedfm enroll`, `fedfm clients`); empty: admin
  // requests are refused.
  std::string admin_token;
  // Signs the CSRs of enrolling clients (CN = client id). Absent: no
  // certificates are issued (a CSR is ignored); clients use HMAC secrets.
  std::optional<protocols::tls::KeyAndCertificate> ca;
  int client_certificate_days = 365;
};

// Room for everything of a message besides its data chunk (headers, seed
// scalars up to 65,536 floats, coverage names).
inline constexpr int64_t kMessageSlackBytes = int64_t{1} << 20;

struct CoordinatorServiceStats {
  int64_t uploads_accepted = 0;
  int64_t uploads_refused = 0;
  int64_t upload_bytes = 0;      // data bytes of accepted uploads
  int64_t downloads = 0;         // download streams completed
  int64_t download_bytes = 0;
  int64_t requests_refused = 0;  // every refusal, uploads included
  int64_t rate_limited = 0;
  // Worker time on uploads: authenticating, MAC-checking and decoding their
  // chunks, and in the engine's SubmitUpdate / SubmitMaskedInput (waiting
  // for the round lock, validating and aggregating included).
  double upload_decode_seconds = 0;
  double upload_engine_seconds = 0;
};

struct CoordinatorServerOptions {
  // "HOST:PORT"; port 0 picks a free port (see port()).
  std::string listen = "127.0.0.1:7443";
  // TLS credentials; absent: plaintext (the caller decides when that is
  // acceptable).
  struct Tls {
    std::string server_key_pem;
    std::string server_certificate_pem;
    // Client certificates are verified against this CA when presented
    // (requested, not required: enrolling devices have none yet).
    std::string client_ca_pem;
  };
  std::optional<Tls> tls;
  CoordinatorServiceOptions service;
  // gRPC's memory quota for transport buffers (a gRPC ResourceQuota):
  // under pressure gRPC shrinks flow-control windows, so uploads waiting for
  // the admission gate cost little. 0: max(64 MiB, 4 x the message limit).
  int64_t transport_memory_bytes = 0;
};

class CoordinatorServer {
 public:
  // Starts serving. InvalidArgument for options gRPC refuses (bad
  // credentials); Unavailable when the address cannot be bound (in use, not
  // local, no permission). `engine` and `store` must outlive the server.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorServerOptions& options,
                                                                  RoundEngine& engine, Store& store);
  virtual ~CoordinatorServer() = default;

  // The bound port (the chosen one when the address asked for port 0).
  virtual int port() const = 0;

  // Stops accepting calls, lets calls in flight finish for up to
  // `grace_ms`, cancels the rest, and waits for the service's workers.
  // Idempotent. Not async-signal-safe. The destructor calls it.
  virtual void Shutdown(int64_t grace_ms = 5'000) = 0;

  virtual CoordinatorServiceStats stats() = 0;
};

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_GRPC_SERVER_H_
