#include "coordinator/grpc_bench.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "protocols/fedfm.grpc.pb.h"

namespace fedfm::coordinator {
namespace {

class DiscardReactor final : public grpc::ServerReadReactor<v1::UploadChunk> {
 public:
  DiscardReactor(v1::UploadResponse* response, std::atomic<int64_t>* bytes, std::atomic<int64_t>* streams)
      : response_(response), bytes_(bytes), streams_(streams) {
    StartRead(&chunk_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      response_->set_bytes_received(received_);
      bytes_->fetch_add(received_);
      streams_->fetch_add(1);
      Finish(grpc::Status::OK);
      return;
    }
    received_ += chunk_.data().size();
    StartRead(&chunk_);
  }
  void OnDone() override { delete this; }

 private:
  v1::UploadResponse* response_;
  std::atomic<int64_t>* bytes_;
  std::atomic<int64_t>* streams_;
  v1::UploadChunk chunk_;
  uint64_t received_ = 0;
};

class DiscardService final : public v1::Coordinator::CallbackService {
 public:
  grpc::ServerReadReactor<v1::UploadChunk>* UploadUpdate(grpc::CallbackServerContext*,
                                                         v1::UploadResponse* response) override {
    return new DiscardReactor(response, &bytes, &streams);
  }
  std::atomic<int64_t> bytes{0};
  std::atomic<int64_t> streams{0};
};

class GrpcBareUploadSink final : public BareUploadSink {
 public:
  GrpcBareUploadSink(std::unique_ptr<DiscardService> service, std::unique_ptr<grpc::Server> server, int port)
      : service_(std::move(service)), server_(std::move(server)), port_(port) {}
  ~GrpcBareUploadSink() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
  int port() const override { return port_; }
  int64_t bytes_received() override { return service_->bytes.load(); }
  int64_t streams_completed() override { return service_->streams.load(); }

 private:
  std::unique_ptr<DiscardService> service_;
  std::unique_ptr<grpc::Server> server_;
  const int port_;
};

class GrpcBareUploadClient final : public BareUploadClient {
 public:
  explicit GrpcBareUploadClient(const BareUploadClientOptions& options) : options_(options) {
    grpc::ChannelArguments args;
    if (!options_.share_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (options_.ca_pem.has_value()) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = *options_.ca_pem;
      credentials = grpc::SslCredentials(ssl);
      if (!options_.tls_server_name.empty()) args.SetSslTargetNameOverride(options_.tls_server_name);
    }
    channel_ = grpc::CreateCustomChannel(options_.target, credentials, args);
    stub_ = v1::Coordinator::NewStub(channel_);
  }

  absl::Status Connect(int64_t timeout_ms) override {
    if (!channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms))) {
      return absl::UnavailableError(absl::StrCat("bare sink ", options_.target, ": not connected"));
    }
    return absl::OkStatus();
  }

  absl::Status Upload(const std::string& data) override {
    grpc::ClientContext context;
    v1::UploadResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::UploadChunk>> writer = stub_->UploadUpdate(&context, &response);
    v1::UploadChunk chunk;
    const size_t step = static_cast<size_t>(std::max<int64_t>(1, options_.chunk_bytes));
    bool open = true;
    for (size_t offset = 0; offset < data.size() && open; offset += step) {
      chunk.set_data(data.data() + offset, std::min(step, data.size() - offset));
      open = writer->Write(chunk);
    }
    if (open) writer->WritesDone();
    grpc::Status s = writer->Finish();
    if (!s.ok()) return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    return absl::OkStatus();
  }

 private:
  const BareUploadClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BareUploadSink>> BareUploadSink::Start(
    const std::string& listen, const std::optional<CoordinatorServerOptions::Tls>& tls, int64_t max_message_bytes) {
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (tls.has_value()) {
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = tls->client_ca_pem;
    ssl.pem_key_cert_pairs.push_back({tls->server_key_pem, tls->server_certificate_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  auto service = std::make_unique<DiscardService>();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, credentials, &port);
  builder.RegisterService(service.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(max_message_bytes, INT32_MAX)));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  return std::unique_ptr<BareUploadSink>(new GrpcBareUploadSink(std::move(service), std::move(server), port));
}

absl::StatusOr<std::unique_ptr<BareUploadClient>> BareUploadClient::Create(const BareUploadClientOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("empty target");
  return std::unique_ptr<BareUploadClient>(new GrpcBareUploadClient(options));
}

}  // namespace fedfm::coordinator
