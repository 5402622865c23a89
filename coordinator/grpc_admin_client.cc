#include "coordinator/grpc_admin_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "protocols/fedfm.grpc.pb.h"
#include "protocols/status_macros.h"
#include "protocols/wire.h"

namespace fedfm::coordinator {
namespace {

namespace wire = protocols::wire;

class GrpcAdminClient final : public AdminClient {
 public:
  explicit GrpcAdminClient(const AdminClientOptions& options) : options_(options) {
    grpc::ChannelArguments args;
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    if (options_.ca_pem.has_value()) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = *options_.ca_pem;
      credentials = grpc::SslCredentials(ssl);
      if (!options_.tls_server_name.empty()) args.SetSslTargetNameOverride(options_.tls_server_name);
    } else {
      credentials = grpc::InsecureChannelCredentials();
    }
    stub_ = v1::Coordinator::NewStub(grpc::CreateCustomChannel(options_.target, credentials, args));
  }

  absl::StatusOr<std::string> CreateToken(int64_t uses, int64_t expires_in_s) override {
    v1::CreateTokenRequest req;
    Auth(req.mutable_auth());
    req.set_uses(static_cast<uint32_t>(std::clamp<int64_t>(uses, 1, UINT32_MAX)));
    req.set_expires_in_s(static_cast<uint64_t>(std::max<int64_t>(1, expires_in_s)));
    v1::CreateTokenResponse resp;
    grpc::ClientContext context;
    SetDeadline(context);
    FEDFM_RETURN_IF_ERROR(FromGrpc(stub_->CreateToken(&context, req, &resp)));
    return resp.token();
  }

  absl::StatusOr<std::vector<ClientInfo>> ListClients() override {
    v1::ListClientsRequest req;
    Auth(req.mutable_auth());
    v1::ListClientsResponse resp;
    grpc::ClientContext context;
    SetDeadline(context);
    FEDFM_RETURN_IF_ERROR(FromGrpc(stub_->ListClients(&context, req, &resp)));
    std::vector<ClientInfo> out;
    for (const v1::ClientInfo& c : resp.clients()) {
      ClientInfo info;
      info.client_id = c.client_id();
      info.name = c.name();
      FEDFM_ASSIGN_OR_RETURN(info.profile, wire::FromProto(c.profile()));
      info.revoked = c.revoked();
      info.enrolled_at_ms = c.enrolled_at_ms();
      info.last_seen_ms = c.last_seen_ms();
      out.push_back(std::move(info));
    }
    return out;
  }

  absl::Status RevokeClient(const std::string& client_id) override {
    v1::RevokeClientRequest req;
    Auth(req.mutable_auth());
    req.set_client_id(client_id);
    v1::Ack ack;
    grpc::ClientContext context;
    SetDeadline(context);
    return FromGrpc(stub_->RevokeClient(&context, req, &ack));
  }

  absl::StatusOr<RoundEngineStatus> RunStatus() override {
    v1::RunStatusRequest req;
    Auth(req.mutable_auth());
    v1::RunStatusResponse resp;
    grpc::ClientContext context;
    SetDeadline(context);
    FEDFM_RETURN_IF_ERROR(FromGrpc(stub_->RunStatus(&context, req, &resp)));
    RoundEngineStatus s;
    s.run_id = resp.run_id();
    s.round = resp.round();
    s.total_rounds = resp.total_rounds();
    FEDFM_ASSIGN_OR_RETURN(s.phase, wire::FromProto(resp.phase()));
    s.model_version = resp.model_version();
    s.finished = resp.finished();
    s.finish_reason = resp.finish_reason();
    s.training_rounds_done = resp.training_rounds_done();
    s.clients_available = resp.clients_available();
    s.selected.assign(resp.selected().begin(), resp.selected().end());
    s.last_failure = resp.last_failure();
    return s;
  }

 private:
  void Auth(v1::AdminAuth* auth) const { auth->set_admin_token(options_.admin_token); }
  void SetDeadline(grpc::ClientContext& context) const {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(options_.timeout_ms));
  }
  absl::Status FromGrpc(const grpc::Status& s) const {
    if (s.ok()) return absl::OkStatus();
    const auto code = static_cast<absl::StatusCode>(s.error_code());
    if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded) {
      return absl::Status(code, absl::StrCat("coordinator ", options_.target, ": ", s.error_message()));
    }
    return absl::Status(code, s.error_message());
  }

  const AdminClientOptions options_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AdminClient>> AdminClient::Connect(const AdminClientOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("the coordinator address is empty");
  if (options.admin_token.empty()) return absl::InvalidArgumentError("the admin token is empty");
  return std::unique_ptr<AdminClient>(new GrpcAdminClient(options));
}

}  // namespace fedfm::coordinator
