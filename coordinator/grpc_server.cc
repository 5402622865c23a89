#include "coordinator/grpc_server.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/grpc_service.h"

namespace fedfm::coordinator {
namespace {

class GrpcCoordinatorServer final : public CoordinatorServer {
 public:
  GrpcCoordinatorServer(std::unique_ptr<CoordinatorService> service, std::unique_ptr<grpc::Server> server, int port)
      : service_(std::move(service)), server_(std::move(server)), port_(port) {}
  ~GrpcCoordinatorServer() override { Shutdown(5'000); }

  int port() const override { return port_; }

  void Shutdown(int64_t grace_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
    server_->Wait();
    server_.reset();
    stats_ = service_->stats();
    service_.reset();  // drains and joins the workers
  }

  CoordinatorServiceStats stats() override {
    std::lock_guard<std::mutex> lock(mu_);
    return service_ != nullptr ? service_->stats() : stats_;
  }

 private:
  std::mutex mu_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  const int port_;
  CoordinatorServiceStats stats_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(const CoordinatorServerOptions& options,
                                                                            RoundEngine& engine, Store& store) {
  if (options.service.chunk_bytes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_bytes must be >= 1, got ", options.service.chunk_bytes));
  }
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (options.tls.has_value()) {
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = options.tls->client_ca_pem;
    ssl.pem_key_cert_pairs.push_back({options.tls->server_key_pem, options.tls->server_certificate_pem});
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }
  auto service = std::make_unique<CoordinatorService>(engine, store, options.service);
  const int64_t max_message = options.service.chunk_bytes + kMessageSlackBytes;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, credentials, &port);
  builder.RegisterService(service.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(max_message, INT32_MAX)));
  builder.SetMaxSendMessageSize(static_cast<int>(std::min<int64_t>(max_message, INT32_MAX)));
  // Streams waiting for their turn (the service's admission gate) would
  // otherwise have the transport buffer megabytes each: the quota makes gRPC
  // shrink their flow-control windows under memory pressure.
  const int64_t transport_bytes =
      options.transport_memory_bytes > 0 ? options.transport_memory_bytes
                                         : std::max<int64_t>(int64_t{64} << 20, 4 * max_message);
  grpc::ResourceQuota quota("fedfm-coordinator");
  quota.Resize(static_cast<size_t>(transport_bytes));
  builder.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen,
                                               " (address in use, not local, or bad TLS credentials)"));
  }
  spdlog::info("coordinator listening on {} (port {}, {})", options.listen, port,
               options.tls.has_value() ? "TLS" : "plaintext");
  return std::unique_ptr<CoordinatorServer>(new GrpcCoordinatorServer(std::move(service), std::move(server), port));
}

}  // namespace fedfm::coordinator
