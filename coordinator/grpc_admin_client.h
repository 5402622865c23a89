// AdminClient: the coordinator's admin requests over gRPC, for `fedfm
// enroll` and `fedfm clients`: enrollment tokens, the client list,
// revocation, the run's status. Each request carries the admin token that
// `fedfm coordinator` keeps in its state directory. Free of gRPC in this
// header. Not thread-safe.
#ifndef FEDFM_COORDINATOR_GRPC_ADMIN_CLIENT_H_
#define FEDFM_COORDINATOR_GRPC_ADMIN_CLIENT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/round_engine.h"

namespace fedfm::coordinator {

struct AdminClientOptions {
  std::string target;       // "host:port"
  std::string admin_token;
  // The coordinator's CA (TLS); absent: plaintext.
  std::optional<std::string> ca_pem;
  std::string tls_server_name;  // "" = the target host
  int64_t timeout_ms = 15'000;
};

class AdminClient {
 public:
  // InvalidArgument for an empty target or token.
  static absl::StatusOr<std::unique_ptr<AdminClient>> Connect(const AdminClientOptions& options);
  virtual ~AdminClient() = default;

  // Errors: the coordinator's (PermissionDenied for a bad admin token),
  // Unavailable / DeadlineExceeded when it cannot be reached.
  virtual absl::StatusOr<std::string> CreateToken(int64_t uses, int64_t expires_in_s) = 0;
  virtual absl::StatusOr<std::vector<ClientInfo>> ListClients() = 0;
  virtual absl::Status RevokeClient(const std::string& client_id) = 0;
  virtual absl::StatusOr<RoundEngineStatus> RunStatus() = 0;
};

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_GRPC_ADMIN_CLIENT_H_
