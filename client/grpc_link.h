// GrpcLink: the CoordinatorLink of a deployed device, over the coordinator's
// gRPC service (protocols/fedfm.proto). This header is free of gRPC.
//
// Security. With `ca_pem` the channel is TLS and the coordinator's
// certificate must chain to that CA (and name the target host, or
// `tls_server_name`). Enroll then sends a certificate signing request for a
// key made on the device (protocols/tls_certs.h) and, once the coordinator
// returns the certificate (CN = the new client id), reconnects with it: mutual
// TLS. Every client request also carries an HMAC-SHA256 under the client
// secret, so a plaintext link (no `ca_pem`: loopback or --insecure) is still
// authenticated, just not confidential.
//
// Retries. The link does not retry calls itself (CoordinatorLink's
// contract): transport failures come back as Unavailable / DeadlineExceeded
// and ClientRuntime backs off with jitter and tries again, with a fresh
// sequence number. The one exception is reading: a model download broken
// mid-stream resumes at once from the bytes already received, as long as
// each stream makes progress (streams that bring nothing are retried after
// short jittered pauses, at most `download_resume_attempts` in a row), and
// bytes received survive a failed call, so the runtime's next DownloadModel
// of the same version resumes too.
//
// Deadlines. Unary calls get `call_timeout_ms`; streams get call_timeout_ms
// plus their size at `min_stream_bytes_per_s`.
//
// Streams. Uploads go out in chunks of min(chunk_bytes, the coordinator's
// max_chunk_bytes): header (with its MAC), data, trailing MAC. Downloads
// arrive in the coordinator's chunks and are checked against the version's
// SHA-256 (DataLoss on a mismatch).
//
// Not thread-safe (one runtime, one thread), like every CoordinatorLink.
#ifndef FEDFM_CLIENT_GRPC_LINK_H_
#define FEDFM_CLIENT_GRPC_LINK_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/coordinator_link.h"

namespace fedfm::client {

// A device's mTLS identity (PEM).
struct ClientCertificate {
  std::string key_pem;
  std::string certificate_pem;
};

struct GrpcLinkOptions {
  std::string target;  // "host:port" of the coordinator
  // The CA of the coordinator's certificate (`fedfm coordinator` prints its
  // path). Absent: plaintext.
  std::optional<std::string> ca_pem;
  // An identity from an earlier enrollment (with UseIdentity).
  std::optional<ClientCertificate> certificate;
  // The name the coordinator's certificate must carry; "" = the target host.
  std::string tls_server_name;
  // With TLS: Enroll asks for a client certificate and switches to mTLS.
  bool request_certificate = true;

  int64_t call_timeout_ms = 30'000;
  double min_stream_bytes_per_s = 1 << 20;
  int64_t chunk_bytes = int64_t{4} << 20;
  int download_resume_attempts = 3;  // consecutive streams without progress
  // gRPC's reconnect backoff ceiling (after a coordinator restart the
  // channel reconnects within this).
  int64_t max_reconnect_backoff_ms = 5'000;
  // false: this link has a TCP connection of its own even when other links
  // in the process talk to the same coordinator (as separate devices do);
  // true: gRPC may share one connection between them.
  bool share_connection = false;
  // Seeds the jitter of download resumption.
  uint64_t jitter_seed = 0;
};

class GrpcLink final : public CoordinatorLink {
 public:
  // Builds the channel (connecting lazily). InvalidArgument for an empty
  // target or a certificate without its key.
  static absl::StatusOr<std::unique_ptr<GrpcLink>> Create(GrpcLinkOptions options);
  ~GrpcLink() override;

  absl::StatusOr<protocols::EnrollResponse> Enroll(const protocols::EnrollRequest& request) override;
  absl::Status UseIdentity(const protocols::EnrollResponse& identity) override;
  absl::StatusOr<protocols::PollResponse> Poll(const protocols::PollRequest& request) override;
  absl::StatusOr<protocols::ModelSnapshot> DownloadModel(const std::string& version) override;
  absl::Status UploadUpdate(const protocols::Binding& binding, const protocols::Update& update) override;
  absl::Status AdvertiseKeys(const protocols::Binding& binding, const secagg::ClientKeys& keys) override;
  absl::StatusOr<Routed<secagg::NeighborKeys>> FetchNeighborKeys(const protocols::Binding& binding) override;
  absl::Status ShareKeys(const protocols::Binding& binding, const secagg::ClientShares& shares) override;
  absl::StatusOr<Routed<secagg::RoutedShares>> FetchRoutedShares(const protocols::Binding& binding) override;
  absl::Status UploadMaskedInput(const protocols::Binding& binding, const secagg::MaskedInput& input,
                                 const protocols::UploadInfo& info) override;
  absl::StatusOr<Routed<secagg::UnmaskRequest>> FetchUnmaskRequest(const protocols::Binding& binding) override;
  absl::Status Unmask(const protocols::Binding& binding, const secagg::UnmaskResponse& response) override;
  absl::Status Report(const protocols::Binding& binding, const protocols::EvalReport& report) override;

  // The run's configuration as TOML (protocols/config/config.h), after
  // Enroll or UseIdentity.
  absl::StatusOr<std::string> GetRunConfigToml();

  // The mTLS identity Enroll obtained (or the one given), to keep for a
  // restart; nullopt without one.
  const std::optional<ClientCertificate>& certificate() const;
  // Payload bytes sent and received (update data, model bytes).
  uint64_t bytes_up() const;
  uint64_t bytes_down() const;
  // Download streams resumed from an offset after a broken one.
  int64_t download_resumptions() const;

 private:
  class Impl;
  explicit GrpcLink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_GRPC_LINK_H_
