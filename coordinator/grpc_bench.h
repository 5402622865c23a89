// The bare-gRPC baseline of `fedfm bench coordinator`: a server that reads
// UploadUpdate streams of data chunks and discards them (no authentication,
// decoding or aggregation), and a client that sends such streams, over the
// same credentials and message types as the coordinator. What the real
// service ingests is compared with what gRPC alone moves on the same machine
// in the same run. Free of gRPC in this header.
#ifndef FEDFM_COORDINATOR_GRPC_BENCH_H_
#define FEDFM_COORDINATOR_GRPC_BENCH_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/grpc_server.h"

namespace fedfm::coordinator {

class BareUploadSink {
 public:
  // Listens on `listen` with `tls` (absent: plaintext) and a message limit
  // of max_message_bytes.
  static absl::StatusOr<std::unique_ptr<BareUploadSink>> Start(
      const std::string& listen, const std::optional<CoordinatorServerOptions::Tls>& tls, int64_t max_message_bytes);
  virtual ~BareUploadSink() = default;
  virtual int port() const = 0;
  virtual int64_t bytes_received() = 0;
  virtual int64_t streams_completed() = 0;
};

struct BareUploadClientOptions {
  std::string target;
  std::optional<std::string> ca_pem;  // TLS; absent: plaintext
  std::string tls_server_name;
  int64_t chunk_bytes = int64_t{1} << 20;
  bool share_connection = false;  // as GrpcLinkOptions
};

class BareUploadClient {
 public:
  static absl::StatusOr<std::unique_ptr<BareUploadClient>> Create(const BareUploadClientOptions& options);
  virtual ~BareUploadClient() = default;
  // Waits until the channel is connected (handshakes done), up to timeout_ms.
  virtual absl::Status Connect(int64_t timeout_ms) = 0;
  // One stream carrying `data` in chunks; returns when the server finished it.
  virtual absl::Status Upload(const std::string& data) = 0;
};

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_GRPC_BENCH_H_
