// CoordinatorService: the coordinator's gRPC service (protocols/fedfm.proto)
// over a RoundEngine. Thin: each RPC authenticates the caller, applies the
// per-client rate limit, converts the message (protocols/wire.h) and makes
// one RoundEngine call; the engine's status (code and reason) is what the
// client receives. Uses the gRPC callback API: a stream in flight costs no
// thread, and engine calls (which may wait on a store fsync or on the round
// lock) run on the service's own worker pool, never on gRPC's event threads.
//
// Authentication (see fedfm.proto): a client request is accepted when the
// TLS peer's verified certificate has CN = binding.client_id, or when its
// HMAC-SHA256 under the client's secret (Store ClientRecord::auth_secret)
// verifies. Otherwise Unauthenticated; unknown clients are NotFound, revoked
// ones PermissionDenied (the engine decides both for round messages; the
// service for downloads). Replays are refused by the engine's sequence check.
// Admin RPCs need the admin token (PermissionDenied otherwise).
//
// Uploads (UploadUpdate) are decoded as they arrive: the header is
// authenticated before any data is taken, data goes through
// protocols::StreamDecoder (dense updates) with the announced size as its
// limit, and the trailing MAC is checked before the engine sees the update.
// Refused at once: a header announcing more than max_update_bytes
// (ResourceExhausted), a chunk above max_chunk_bytes, more or less data than
// announced, bytes that do not decode, a bad MAC. At most max_active_uploads
// uploads are read at a time; the others wait (HTTP/2 flow control holds
// their data on the client), so memory stays O(max_active_uploads x update)
// whatever the number of clients, and the engine aggregates each update as
// it completes. Downloads likewise (max_active_downloads, one chunk each).
//
// Rate limits: rate_limit_per_s requests a second per client (a token
// bucket of rate_limit_burst); a request over the limit is Unavailable with
// "rate limited ... retry after N ms", which clients treat as a transport
// failure and back off from.
//
// Every refusal is logged in one line (spdlog, warn) with the client and the
// reason. Thread-safe; must outlive the grpc::Server it is registered with.
#ifndef FEDFM_COORDINATOR_GRPC_SERVICE_H_
#define FEDFM_COORDINATOR_GRPC_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/grpc_server.h"
#include "coordinator/internal/grpc_support.h"
#include "coordinator/round_engine.h"
#include "coordinator/store.h"
#include "protocols/fedfm.grpc.pb.h"

namespace fedfm::coordinator {

class CoordinatorService final : public fedfm::v1::Coordinator::CallbackService {
 public:
  // `engine` and `store` (the engine's store, for client secrets) must
  // outlive the service.
  CoordinatorService(RoundEngine& engine, Store& store, CoordinatorServiceOptions options);
  ~CoordinatorService() override;

  grpc::ServerUnaryReactor* Enroll(grpc::CallbackServerContext* context, const v1::EnrollRequest* request,
                                   v1::EnrollResponse* response) override;
  grpc::ServerUnaryReactor* PollTask(grpc::CallbackServerContext* context, const v1::PollTaskRequest* request,
                                     v1::PollTaskResponse* response) override;
  grpc::ServerWriteReactor<v1::ModelChunk>* DownloadModel(grpc::CallbackServerContext* context,
                                                          const v1::DownloadModelRequest* request) override;
  grpc::ServerReadReactor<v1::UploadChunk>* UploadUpdate(grpc::CallbackServerContext* context,
                                                         v1::UploadResponse* response) override;
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* context, const v1::ReportRequest* request,
                                   v1::Ack* response) override;
  grpc::ServerUnaryReactor* GetRunConfig(grpc::CallbackServerContext* context, const v1::RunConfigRequest* request,
                                         v1::RunConfigResponse* response) override;

  grpc::ServerUnaryReactor* AdvertiseKeys(grpc::CallbackServerContext* context, const v1::SecAggRequest* request,
                                          v1::Ack* response) override;
  grpc::ServerUnaryReactor* FetchNeighborKeys(grpc::CallbackServerContext* context,
                                              const v1::SecAggFetchRequest* request,
                                              v1::SecAggFetchResponse* response) override;
  grpc::ServerUnaryReactor* ShareKeys(grpc::CallbackServerContext* context, const v1::SecAggRequest* request,
                                      v1::Ack* response) override;
  grpc::ServerUnaryReactor* FetchRoutedShares(grpc::CallbackServerContext* context,
                                              const v1::SecAggFetchRequest* request,
                                              v1::SecAggFetchResponse* response) override;
  grpc::ServerUnaryReactor* FetchUnmaskRequest(grpc::CallbackServerContext* context,
                                               const v1::SecAggFetchRequest* request,
                                               v1::SecAggFetchResponse* response) override;
  grpc::ServerUnaryReactor* Unmask(grpc::CallbackServerContext* context, const v1::SecAggRequest* request,
                                   v1::Ack* response) override;

  grpc::ServerUnaryReactor* CreateToken(grpc::CallbackServerContext* context, const v1::CreateTokenRequest* request,
                                        v1::CreateTokenResponse* response) override;
  grpc::ServerUnaryReactor* ListClients(grpc::CallbackServerContext* context, const v1::ListClientsRequest* request,
                                        v1::ListClientsResponse* response) override;
  grpc::ServerUnaryReactor* RevokeClient(grpc::CallbackServerContext* context,
                                         const v1::RevokeClientRequest* request, v1::Ack* response) override;
  grpc::ServerUnaryReactor* RunStatus(grpc::CallbackServerContext* context, const v1::RunStatusRequest* request,
                                      v1::RunStatusResponse* response) override;

  CoordinatorServiceStats stats();

 private:
  class UploadReactor;
  class DownloadReactor;

  // Runs `handler` (returning absl::Status) on the worker pool and finishes
  // the call with its status, logging a refusal.
  template <typename Handler>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context, const char* rpc, const std::string& client,
                                  Handler handler);
  // Unary() for a request bound to a client (request->binding()):
  // authenticates it as `rpc` first, then runs `handler`.
  template <typename Request, typename Handler>
  grpc::ServerUnaryReactor* ClientUnary(grpc::CallbackServerContext* context, const char* rpc,
                                        const Request* request, Handler handler);
  // A SecAgg+ message from a client: `parse` (bytes -> StatusOr<Message>)
  // reads request->message(), then the RoundEngine method `submit`
  // (binding, message) -> Status takes it.
  template <typename Parse, typename Submit>
  grpc::ServerUnaryReactor* SecAggSubmit(grpc::CallbackServerContext* context, const char* rpc,
                                         const v1::SecAggRequest* request, Parse parse, Submit submit);
  // A SecAgg+ fetch: the RoundEngine method `fetch` (binding) ->
  // StatusOr<Routed<T>> answers, serialized into *response.
  template <typename Fetch>
  grpc::ServerUnaryReactor* SecAggFetch(grpc::CallbackServerContext* context, const char* rpc,
                                        const v1::SecAggFetchRequest* request, v1::SecAggFetchResponse* response,
                                        Fetch fetch);

  // Whether `request`, naming `client_id`, may be accepted (see the file
  // comment), after the client's rate limit. *by_certificate (when not
  // null): the TLS peer certificate, not the MAC, vouched for it.
  template <typename Request>
  absl::Status Authenticate(grpc::CallbackServerContext* context, const char* rpc, const std::string& client_id,
                            const Request& request, bool* by_certificate = nullptr);
  // The client's secret (cached after the first store read). NotFound for
  // an unknown client.
  absl::StatusOr<std::string> SecretOf(const std::string& client_id);
  // True when the TLS peer's verified certificate names `client_id`; sets
  // *has_certificate when it presented one at all.
  static bool PeerIs(grpc::CallbackServerContext* context, const std::string& client_id, bool* has_certificate);
  absl::Status RateLimit(const std::string& client_id);
  absl::Status CheckAdmin(const v1::AdminAuth& auth);
  void LogRefusal(const char* rpc, const std::string& client, const absl::Status& status);

  RoundEngine& engine_;
  Store& store_;
  const CoordinatorServiceOptions options_;
  internal::RateLimiter limiter_;
  internal::AdmissionGate upload_gate_;
  internal::AdmissionGate download_gate_;
  std::atomic<uint64_t> next_ticket_{1};

  std::mutex secrets_mu_;
  std::unordered_map<std::string, std::string> secrets_;

  std::mutex stats_mu_;
  CoordinatorServiceStats stats_;

  // Last member: destroyed (drained and joined) first.
  internal::WorkerPool pool_;
};

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_GRPC_SERVICE_H_
