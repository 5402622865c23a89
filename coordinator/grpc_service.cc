#include "coordinator/grpc_service.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregation/secagg/crypto.h"
#include "aggregation/secagg/messages.h"
#include "coordinator/ids.h"
#include "protocols/status_macros.h"
#include "protocols/tensor_codec.h"
#include "protocols/wire.h"

namespace fedfm::coordinator {
namespace {

namespace wire = protocols::wire;
using protocols::Binding;

std::string MethodName(const char* rpc) { return absl::StrCat("/fedfm.v1.Coordinator/", rpc); }

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

secagg::ByteSpan AsSpan(const std::string& s) {
  return secagg::ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int DefaultWorkers(int requested) {
  if (requested > 0) return requested;
  return std::max(4, 2 * static_cast<int>(std::thread::hardware_concurrency()));
}

template <typename T>
void SetRouted(const protocols::Routed<T>& routed, v1::SecAggFetchResponse* out) {
  if (routed.message.has_value()) {
    secagg::Bytes bytes = secagg::Serialize(*routed.message);
    out->set_message(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  out->set_retry_after_ms(routed.retry_after_ms);
}

}  // namespace

// ---------------------------------------------------------------------------
// Upload: header, data chunks, trailing MAC.

class CoordinatorService::UploadReactor final : public grpc::ServerReadReactor<v1::UploadChunk> {
 public:
  UploadReactor(CoordinatorService* service, grpc::CallbackServerContext* context, v1::UploadResponse* response)
      : service_(service), context_(context), response_(response), ticket_(service->next_ticket_++) {
    if (service_->upload_gate_.Enter(ticket_, [this] { Admitted(); })) {
      admitted_ = true;
      StartRead(&chunk_);
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Complete(absl::CancelledError(absl::StrCat("upload stream from client \"", client_, "\" ended after ",
                                                 received_, " of ", total_, " bytes, before its MAC")));
      return;
    }
    service_->pool_.Post([this] {
      const auto start = std::chrono::steady_clock::now();
      absl::Status status = Consume();
      const auto decoded = std::chrono::steady_clock::now();
      decode_seconds_ += std::chrono::duration<double>(decoded - start).count();
      if (!status.ok()) {
        Complete(status);
      } else if (complete_) {
        status = Submit();
        engine_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - decoded).count();
        Complete(status);
      } else {
        StartRead(&chunk_);
      }
    });
  }

  void OnCancel() override {
    if (service_->upload_gate_.Withdraw(ticket_)) {
      Complete(absl::CancelledError("upload cancelled while waiting for its turn"));
    }
    // Otherwise a read in flight fails, or the worker's next read does.
  }

  void OnDone() override { delete this; }

 private:
  void Admitted() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      admitted_ = true;
    }
    StartRead(&chunk_);
  }

  absl::Status Consume() {
    switch (chunk_.part_case()) {
      case v1::UploadChunk::kHeader:
        if (have_header_) return absl::InvalidArgumentError("an upload carries one header, this one a second");
        return Start(chunk_.header());
      case v1::UploadChunk::kData: {
        if (!have_header_) return absl::InvalidArgumentError("upload data before the upload header");
        const std::string& data = chunk_.data();
        if (static_cast<int64_t>(data.size()) > service_->options_.chunk_bytes) {
          return absl::InvalidArgumentError(absl::StrCat("upload chunk of ", data.size(), " bytes from client \"",
                                                         client_, "\", above max_chunk_bytes = ",
                                                         service_->options_.chunk_bytes));
        }
        if (received_ + data.size() > total_) {
          return absl::InvalidArgumentError(absl::StrCat("upload from client \"", client_,
                                                         "\" sends more than the ", total_,
                                                         " bytes its header announced"));
        }
        received_ += data.size();
        if (mac_.has_value()) mac_->Update(AsSpan(data));
        if (kind_ == v1::UPDATE_KIND_MASKED) {
          masked_bytes_.insert(masked_bytes_.end(), data.begin(), data.end());
          return absl::OkStatus();
        }
        absl::Status s = decoder_->Append(
            std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));
        if (!s.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("update from client \"", client_, "\": ", s.message()));
        }
        return absl::OkStatus();
      }
      case v1::UploadChunk::kMac: {
        if (!have_header_) return absl::InvalidArgumentError("upload MAC before the upload header");
        if (received_ != total_) {
          return absl::InvalidArgumentError(absl::StrCat("upload from client \"", client_, "\" ended after ",
                                                         received_, " of the ", total_, " bytes announced"));
        }
        // A client authenticated by its certificate is not hashed: TLS
        // already authenticates and protects every byte it sends.
        if (mac_.has_value() && !secagg::ConstantTimeEquals(mac_->Finish(), AsSpan(chunk_.mac()))) {
          return absl::UnauthenticatedError(absl::StrCat("bad MAC over the upload of client \"", client_,
                                                         "\" (wrong secret, or the data was altered)"));
        }
        complete_ = true;
        return absl::OkStatus();
      }
      case v1::UploadChunk::PART_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError("empty upload message");
  }

  absl::Status Start(const v1::UploadHeader& header) {
    client_ = header.binding().client_id();
    bool by_certificate = false;
    FEDFM_RETURN_IF_ERROR(service_->Authenticate(context_, "UploadUpdate", client_, header, &by_certificate));
    FEDFM_ASSIGN_OR_RETURN(binding_, wire::FromProto(header.binding()));
    total_ = header.total_bytes();
    const int64_t max = service_->options_.max_update_bytes;
    if (total_ > static_cast<uint64_t>(max)) {
      return absl::ResourceExhaustedError(absl::StrCat("update from client \"", client_, "\" announces ", total_,
                                                       " bytes, above coordinator.max_update_bytes = ", max));
    }
    kind_ = header.kind();
    switch (kind_) {
      case v1::UPDATE_KIND_DENSE: {
        FEDFM_ASSIGN_OR_RETURN(update_, wire::UpdateFromHeader(header));
        protocols::DecodeLimits limits;
        limits.max_total_bytes = total_;
        decoder_.emplace(limits);
        break;
      }
      case v1::UPDATE_KIND_SEED_SCALARS: {
        if (total_ != 0) {
          return absl::InvalidArgumentError(absl::StrCat("seed-scalar update from client \"", client_,
                                                         "\" announces ", total_, " data bytes; it carries none"));
        }
        FEDFM_ASSIGN_OR_RETURN(update_, wire::UpdateFromHeader(header));
        break;
      }
      case v1::UPDATE_KIND_MASKED:
        info_ = wire::UploadInfoFromProto(header);
        masked_bytes_.reserve(total_);
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("upload from client \"", client_, "\" has unknown kind ", static_cast<int>(kind_)));
    }
    if (!by_certificate) {
      FEDFM_ASSIGN_OR_RETURN(std::string secret, service_->SecretOf(client_));
      mac_.emplace(AsSpan(secret));
      mac_->Update(AsSpan(wire::SigningBytes(MethodName("UploadUpdate#data"), header)));
    }
    have_header_ = true;
    return absl::OkStatus();
  }

  absl::Status Submit() {
    response_->set_bytes_received(received_);
    switch (kind_) {
      case v1::UPDATE_KIND_DENSE: {
        absl::StatusOr<protocols::TensorMap> delta = decoder_->Finish();
        decoder_.reset();
        if (!delta.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("update from client \"", client_, "\": ", delta.status().message()));
        }
        update_.delta = *std::move(delta);
        return service_->engine_.SubmitUpdate(binding_, update_);
      }
      case v1::UPDATE_KIND_SEED_SCALARS:
        return service_->engine_.SubmitUpdate(binding_, update_);
      default: {
        absl::StatusOr<secagg::MaskedInput> input = secagg::ParseMaskedInput(masked_bytes_);
        masked_bytes_ = {};
        if (!input.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("masked input from client \"", client_, "\": ", input.status().message()));
        }
        return service_->engine_.SubmitMaskedInput(binding_, *input, info_);
      }
    }
  }

  // Finishes the call once, releasing the slot and the buffers first.
  void Complete(const absl::Status& status) {
    bool leave = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
      leave = admitted_;
    }
    decoder_.reset();
    masked_bytes_ = {};
    update_ = {};
    {
      std::lock_guard<std::mutex> lock(service_->stats_mu_);
      if (status.ok()) {
        ++service_->stats_.uploads_accepted;
        service_->stats_.upload_bytes += static_cast<int64_t>(received_);
      } else {
        ++service_->stats_.uploads_refused;
      }
      service_->stats_.upload_decode_seconds += decode_seconds_;
      service_->stats_.upload_engine_seconds += engine_seconds_;
    }
    if (!status.ok()) service_->LogRefusal("UploadUpdate", client_, status);
    if (leave) service_->upload_gate_.Leave();
    Finish(ToGrpc(status));
  }

  CoordinatorService* const service_;
  grpc::CallbackServerContext* const context_;
  v1::UploadResponse* const response_;
  const uint64_t ticket_;

  std::mutex mu_;  // admitted_, finished_
  bool admitted_ = false;
  bool finished_ = false;

  // Touched by one worker at a time (reads are serialized by the stream).
  v1::UploadChunk chunk_;
  bool have_header_ = false;
  bool complete_ = false;
  std::string client_;
  Binding binding_;
  v1::UpdateKind kind_ = v1::UPDATE_KIND_DENSE;
  uint64_t total_ = 0;
  uint64_t received_ = 0;
  double decode_seconds_ = 0;
  double engine_seconds_ = 0;
  std::optional<secagg::HmacSha256Stream> mac_;  // MAC-authenticated clients only
  std::optional<protocols::StreamDecoder> decoder_;
  protocols::Update update_;
  protocols::UploadInfo info_;
  std::vector<uint8_t> masked_bytes_;
};

// ---------------------------------------------------------------------------
// Download: safetensors bytes of a model version, from an offset, in chunks.

class CoordinatorService::DownloadReactor final : public grpc::ServerWriteReactor<v1::ModelChunk> {
 public:
  DownloadReactor(CoordinatorService* service, grpc::CallbackServerContext* context,
                  const v1::DownloadModelRequest* request)
      : service_(service), context_(context), request_(*request), ticket_(service->next_ticket_++) {
    if (service_->download_gate_.Enter(ticket_, [this] { Admitted(); })) {
      admitted_ = true;
      service_->pool_.Post([this] { Begin(); });
    }
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Complete(absl::CancelledError("the client stopped reading the download"));
      return;
    }
    WriteNext();
  }

  void OnCancel() override {
    if (service_->download_gate_.Withdraw(ticket_)) {
      Complete(absl::CancelledError("download cancelled while waiting for its turn"));
    }
  }

  void OnDone() override { delete this; }

 private:
  void Admitted() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      admitted_ = true;
    }
    service_->pool_.Post([this] { Begin(); });
  }

  absl::Status Prepare() {
    const std::string& client = request_.binding().client_id();
    FEDFM_RETURN_IF_ERROR(service_->Authenticate(context_, "DownloadModel", client, request_));
    if (service_->engine_.IsRevoked(client)) {
      return absl::PermissionDeniedError(absl::StrCat("client \"", client, "\" is revoked"));
    }
    FEDFM_ASSIGN_OR_RETURN(protocols::ModelSnapshot snapshot, service_->engine_.GetModel(request_.model_version()));
    bytes_ = snapshot.safetensors;
    if (bytes_ == nullptr) return absl::InternalError("model version without bytes");
    if (request_.offset() > bytes_->size()) {
      return absl::OutOfRangeError(absl::StrCat("download offset ", request_.offset(), " is past the end of model ",
                                                request_.model_version(), " (", bytes_->size(), " bytes)"));
    }
    offset_ = request_.offset();
    return absl::OkStatus();
  }

  void Begin() {
    absl::Status status = Prepare();
    if (!status.ok()) {
      Complete(status);
      return;
    }
    WriteNext();
  }

  void WriteNext() {
    if (offset_ >= bytes_->size()) {
      Complete(absl::OkStatus());
      return;
    }
    const size_t n = std::min<size_t>(bytes_->size() - offset_, static_cast<size_t>(service_->options_.chunk_bytes));
    chunk_.set_model_version(request_.model_version());
    chunk_.set_total_bytes(bytes_->size());
    chunk_.set_offset(offset_);
    chunk_.set_data(reinterpret_cast<const char*>(bytes_->data()) + offset_, n);
    offset_ += n;
    sent_ += n;
    StartWrite(&chunk_);
  }

  void Complete(const absl::Status& status) {
    bool leave = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
      leave = admitted_;
    }
    bytes_.reset();
    chunk_.clear_data();
    {
      std::lock_guard<std::mutex> lock(service_->stats_mu_);
      if (status.ok()) ++service_->stats_.downloads;
      service_->stats_.download_bytes += static_cast<int64_t>(sent_);
    }
    if (!status.ok()) service_->LogRefusal("DownloadModel", request_.binding().client_id(), status);
    if (leave) service_->download_gate_.Leave();
    Finish(ToGrpc(status));
  }

  CoordinatorService* const service_;
  grpc::CallbackServerContext* const context_;
  const v1::DownloadModelRequest request_;
  const uint64_t ticket_;

  std::mutex mu_;
  bool admitted_ = false;
  bool finished_ = false;

  std::shared_ptr<const std::vector<std::byte>> bytes_;
  uint64_t offset_ = 0;
  uint64_t sent_ = 0;
  v1::ModelChunk chunk_;
};

// ---------------------------------------------------------------------------

CoordinatorService::CoordinatorService(RoundEngine& engine, Store& store, CoordinatorServiceOptions options)
    : engine_(engine),
      store_(store),
      options_(std::move(options)),
      limiter_(options_.rate_limit_per_s,
               options_.rate_limit_burst > 0 ? options_.rate_limit_burst : std::max(10.0, options_.rate_limit_per_s)),
      upload_gate_(std::max(1, options_.max_active_uploads)),
      download_gate_(std::max(1, options_.max_active_downloads)),
      pool_(DefaultWorkers(options_.worker_threads)) {}

CoordinatorService::~CoordinatorService() = default;

CoordinatorServiceStats CoordinatorService::stats() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

void CoordinatorService::LogRefusal(const char* rpc, const std::string& client, const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    ++stats_.requests_refused;
  }
  spdlog::warn("{} from client {} refused ({}): {}", rpc, client.empty() ? "-" : client,
               absl::StatusCodeToString(status.code()), std::string(status.message()));
}

absl::StatusOr<std::string> CoordinatorService::SecretOf(const std::string& client_id) {
  {
    std::lock_guard<std::mutex> lock(secrets_mu_);
    auto it = secrets_.find(client_id);
    if (it != secrets_.end()) return it->second;
  }
  absl::StatusOr<ClientRecord> record = store_.GetClient(client_id);
  if (!record.ok()) {
    if (record.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("unknown client \"", client_id, "\""));
    }
    return record.status();
  }
  std::lock_guard<std::mutex> lock(secrets_mu_);
  secrets_[client_id] = record->auth_secret;
  return record->auth_secret;
}

bool CoordinatorService::PeerIs(grpc::CallbackServerContext* context, const std::string& client_id,
                                bool* has_certificate) {
  *has_certificate = false;
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return false;
  std::vector<grpc::string_ref> names = auth->FindPropertyValues("x509_common_name");
  if (names.empty()) return false;
  *has_certificate = true;
  return std::any_of(names.begin(), names.end(), [&](const grpc::string_ref& name) {
    return name.size() == client_id.size() && std::memcmp(name.data(), client_id.data(), name.size()) == 0;
  });
}

absl::Status CoordinatorService::RateLimit(const std::string& client_id) {
  int64_t retry_after_ms = 0;
  if (limiter_.Allow(client_id, SteadyMs(), &retry_after_ms)) return absl::OkStatus();
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    ++stats_.rate_limited;
  }
  return absl::UnavailableError(absl::StrCat("rate limited: client \"", client_id, "\" exceeds ",
                                             options_.rate_limit_per_s, " requests/s; retry after ", retry_after_ms,
                                             " ms"));
}

template <typename Request>
absl::Status CoordinatorService::Authenticate(grpc::CallbackServerContext* context, const char* rpc,
                                              const std::string& client_id, const Request& request,
                                              bool* by_certificate) {
  if (by_certificate != nullptr) *by_certificate = false;
  if (client_id.empty()) return absl::InvalidArgumentError(absl::StrCat(rpc, ": binding.client_id is empty"));
  FEDFM_ASSIGN_OR_RETURN(std::string secret, SecretOf(client_id));
  FEDFM_RETURN_IF_ERROR(RateLimit(client_id));
  bool has_certificate = false;
  if (PeerIs(context, client_id, &has_certificate)) {
    if (by_certificate != nullptr) *by_certificate = true;
    return absl::OkStatus();
  }
  if (has_certificate) {
    return absl::UnauthenticatedError(
        absl::StrCat(rpc, ": the client certificate names another client than \"", client_id, "\""));
  }
  if (request.mac().empty()) {
    return absl::UnauthenticatedError(absl::StrCat(rpc, " from client \"", client_id,
                                                   "\" carries neither a client certificate nor a MAC"));
  }
  const secagg::Key mac = secagg::HmacSha256(AsSpan(secret), AsSpan(wire::SigningBytes(MethodName(rpc), request)));
  if (!secagg::ConstantTimeEquals(mac, AsSpan(request.mac()))) {
    return absl::UnauthenticatedError(absl::StrCat("bad MAC on ", rpc, " from client \"", client_id,
                                                   "\" (wrong secret, or the request was altered)"));
  }
  return absl::OkStatus();
}

absl::Status CoordinatorService::CheckAdmin(const v1::AdminAuth& auth) {
  if (options_.admin_token.empty()) return absl::PermissionDeniedError("admin requests are disabled");
  if (!ConstantTimeEquals(options_.admin_token, auth.admin_token())) {
    return absl::PermissionDeniedError("bad admin token");
  }
  return absl::OkStatus();
}

template <typename Handler>
grpc::ServerUnaryReactor* CoordinatorService::Unary(grpc::CallbackServerContext* context, const char* rpc,
                                                    const std::string& client, Handler handler) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  pool_.Post([this, reactor, rpc, client, handler = std::move(handler)]() mutable {
    absl::Status status = handler();
    if (!status.ok()) LogRefusal(rpc, client, status);
    reactor->Finish(ToGrpc(status));
  });
  return reactor;
}

template <typename Request, typename Handler>
grpc::ServerUnaryReactor* CoordinatorService::ClientUnary(grpc::CallbackServerContext* context, const char* rpc,
                                                          const Request* request, Handler handler) {
  const std::string& client = request->binding().client_id();
  return Unary(context, rpc, client,
               [this, context, rpc, request, client, handler = std::move(handler)]() mutable -> absl::Status {
                 FEDFM_RETURN_IF_ERROR(Authenticate(context, rpc, client, *request));
                 return handler();
               });
}

template <typename Parse, typename Submit>
grpc::ServerUnaryReactor* CoordinatorService::SecAggSubmit(grpc::CallbackServerContext* context, const char* rpc,
                                                           const v1::SecAggRequest* request, Parse parse,
                                                           Submit submit) {
  return ClientUnary(context, rpc, request, [this, request, parse, submit]() -> absl::Status {
    FEDFM_ASSIGN_OR_RETURN(Binding binding, wire::FromProto(request->binding()));
    FEDFM_ASSIGN_OR_RETURN(auto message, parse(AsSpan(request->message())));
    return (engine_.*submit)(binding, message);
  });
}

template <typename Fetch>
grpc::ServerUnaryReactor* CoordinatorService::SecAggFetch(grpc::CallbackServerContext* context, const char* rpc,
                                                          const v1::SecAggFetchRequest* request,
                                                          v1::SecAggFetchResponse* response, Fetch fetch) {
  return ClientUnary(context, rpc, request, [this, request, response, fetch]() -> absl::Status {
    FEDFM_ASSIGN_OR_RETURN(Binding binding, wire::FromProto(request->binding()));
    FEDFM_ASSIGN_OR_RETURN(auto routed, (engine_.*fetch)(binding));
    SetRouted(routed, response);
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------
// RPCs

grpc::ServerUnaryReactor* CoordinatorService::Enroll(grpc::CallbackServerContext* context,
                                                     const v1::EnrollRequest* request, v1::EnrollResponse* response) {
  return Unary(context, "Enroll", "", [this, request, response]() -> absl::Status {
    FEDFM_ASSIGN_OR_RETURN(protocols::EnrollRequest enroll, wire::FromProto(*request));
    // Without a CA key (plaintext, or TLS with certificates from elsewhere)
    // no certificate is issued: the device authenticates with its secret.
    const std::string csr = options_.ca.has_value() ? request->certificate_signing_request() : std::string();
    if (!csr.empty()) FEDFM_RETURN_IF_ERROR(protocols::tls::CheckCertificateSigningRequest(csr));
    FEDFM_ASSIGN_OR_RETURN(protocols::EnrollResponse enrolled, engine_.Enroll(enroll));
    response->set_client_id(enrolled.client_id);
    response->set_client_secret(enrolled.client_secret);
    response->set_run_id(enrolled.run_id);
    response->set_max_chunk_bytes(options_.chunk_bytes);
    if (options_.ca.has_value()) response->set_ca_certificate(options_.ca->certificate_pem);
    if (!csr.empty()) {
      absl::StatusOr<std::string> cert = protocols::tls::SignClientCertificate(
          *options_.ca, csr, enrolled.client_id, options_.client_certificate_days);
      if (!cert.ok()) {
        // The token is spent; do not leave a client behind that never got its identity.
        engine_.RevokeClient(enrolled.client_id).IgnoreError();
        return cert.status();
      }
      response->set_client_certificate(*cert);
    }
    spdlog::info("enrolled client {} (\"{}\"{})", enrolled.client_id, enroll.name,
                 csr.empty() ? "" : ", with a client certificate");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorService::PollTask(grpc::CallbackServerContext* context,
                                                       const v1::PollTaskRequest* request,
                                                       v1::PollTaskResponse* response) {
  return ClientUnary(context, "PollTask", request, [this, request, response]() -> absl::Status {
    FEDFM_ASSIGN_OR_RETURN(protocols::PollResponse poll,
                           engine_.Poll({request->binding().client_id(), request->have_model_version()}));
    wire::ToProto(poll, response);
    response->set_max_chunk_bytes(options_.chunk_bytes);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::ModelChunk>* CoordinatorService::DownloadModel(grpc::CallbackServerContext* context,
                                                                            const v1::DownloadModelRequest* request) {
  return new DownloadReactor(this, context, request);
}

grpc::ServerReadReactor<v1::UploadChunk>* CoordinatorService::UploadUpdate(grpc::CallbackServerContext* context,
                                                                           v1::UploadResponse* response) {
  return new UploadReactor(this, context, response);
}

grpc::ServerUnaryReactor* CoordinatorService::Report(grpc::CallbackServerContext* context,
                                                     const v1::ReportRequest* request, v1::Ack*) {
  return ClientUnary(context, "Report", request, [this, request]() -> absl::Status {
    FEDFM_ASSIGN_OR_RETURN(Binding binding, wire::FromProto(request->binding()));
    protocols::EvalReport report;
    report.metrics = wire::MetricsFromProto(request->metrics());
    report.num_examples = request->num_examples();
    return engine_.Report(binding, report);
  });
}

grpc::ServerUnaryReactor* CoordinatorService::GetRunConfig(grpc::CallbackServerContext* context,
                                                           const v1::RunConfigRequest* request,
                                                           v1::RunConfigResponse* response) {
  return ClientUnary(context, "GetRunConfig", request, [this, response]() -> absl::Status {
    FEDFM_ASSIGN_OR_RETURN(RunRecord run, store_.GetRun(engine_.run_id()));
    response->set_run_id(run.id);
    response->set_config_toml(run.config_toml);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorService::AdvertiseKeys(grpc::CallbackServerContext* context,
                                                            const v1::SecAggRequest* request, v1::Ack*) {
  return SecAggSubmit(context, "AdvertiseKeys", request, &secagg::ParseClientKeys, &RoundEngine::SubmitKeys);
}

grpc::ServerUnaryReactor* CoordinatorService::FetchNeighborKeys(grpc::CallbackServerContext* context,
                                                                const v1::SecAggFetchRequest* request,
                                                                v1::SecAggFetchResponse* response) {
  return SecAggFetch(context, "FetchNeighborKeys", request, response, &RoundEngine::FetchNeighborKeys);
}

grpc::ServerUnaryReactor* CoordinatorService::ShareKeys(grpc::CallbackServerContext* context,
                                                        const v1::SecAggRequest* request, v1::Ack*) {
  return SecAggSubmit(context, "ShareKeys", request, &secagg::ParseClientShares, &RoundEngine::SubmitShares);
}

grpc::ServerUnaryReactor* CoordinatorService::FetchRoutedShares(grpc::CallbackServerContext* context,
                                                                const v1::SecAggFetchRequest* request,
                                                                v1::SecAggFetchResponse* response) {
  return SecAggFetch(context, "FetchRoutedShares", request, response, &RoundEngine::FetchRoutedShares);
}

grpc::ServerUnaryReactor* CoordinatorService::FetchUnmaskRequest(grpc::CallbackServerContext* context,
                                                                 const v1::SecAggFetchRequest* request,
                                                                 v1::SecAggFetchResponse* response) {
  return SecAggFetch(context, "FetchUnmaskRequest", request, response, &RoundEngine::FetchUnmaskRequest);
}

grpc::ServerUnaryReactor* CoordinatorService::Unmask(grpc::CallbackServerContext* context,
                                                     const v1::SecAggRequest* request, v1::Ack*) {
  return SecAggSubmit(context, "Unmask", request, &secagg::ParseUnmaskResponse, &RoundEngine::SubmitUnmask);
}

grpc::ServerUnaryReactor* CoordinatorService::CreateToken(grpc::CallbackServerContext* context,
                                                          const v1::CreateTokenRequest* request,
                                                          v1::CreateTokenResponse* response) {
  return Unary(context, "CreateToken", "admin", [this, request, response]() -> absl::Status {
    FEDFM_RETURN_IF_ERROR(CheckAdmin(request->auth()));
    const int64_t uses = std::max<int64_t>(1, request->uses());
    const int64_t expires_in_ms =
        static_cast<int64_t>(std::min<uint64_t>(request->expires_in_s(), uint64_t{1} << 40)) * 1000;
    FEDFM_ASSIGN_OR_RETURN(std::string token, engine_.CreateToken(uses, expires_in_ms));
    response->set_token(token);
    spdlog::info("created an enrollment token for {} enrollment(s), valid {} s", uses, expires_in_ms / 1000);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorService::ListClients(grpc::CallbackServerContext* context,
                                                          const v1::ListClientsRequest* request,
                                                          v1::ListClientsResponse* response) {
  return Unary(context, "ListClients", "admin", [this, request, response]() -> absl::Status {
    FEDFM_RETURN_IF_ERROR(CheckAdmin(request->auth()));
    FEDFM_ASSIGN_OR_RETURN(std::vector<ClientInfo> clients, engine_.ListClients());
    for (const ClientInfo& c : clients) {
      v1::ClientInfo* out = response->add_clients();
      out->set_client_id(c.client_id);
      out->set_name(c.name);
      wire::ToProto(c.profile, out->mutable_profile());
      out->set_revoked(c.revoked);
      out->set_enrolled_at_ms(c.enrolled_at_ms);
      out->set_last_seen_ms(c.last_seen_ms);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorService::RevokeClient(grpc::CallbackServerContext* context,
                                                           const v1::RevokeClientRequest* request, v1::Ack*) {
  return Unary(context, "RevokeClient", "admin", [this, request]() -> absl::Status {
    FEDFM_RETURN_IF_ERROR(CheckAdmin(request->auth()));
    FEDFM_RETURN_IF_ERROR(engine_.RevokeClient(request->client_id()));
    spdlog::info("revoked client {}", request->client_id());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CoordinatorService::RunStatus(grpc::CallbackServerContext* context,
                                                        const v1::RunStatusRequest* request,
                                                        v1::RunStatusResponse* response) {
  return Unary(context, "RunStatus", "admin", [this, request, response]() -> absl::Status {
    FEDFM_RETURN_IF_ERROR(CheckAdmin(request->auth()));
    RoundEngineStatus s = engine_.Status();
    response->set_run_id(s.run_id);
    response->set_round(s.round);
    response->set_total_rounds(s.total_rounds);
    response->set_phase(wire::ToProto(s.phase));
    response->set_model_version(s.model_version);
    response->set_finished(s.finished);
    response->set_finish_reason(s.finish_reason);
    response->set_training_rounds_done(s.training_rounds_done);
    response->set_clients_available(s.clients_available);
    for (const std::string& id : s.selected) response->add_selected(id);
    response->set_last_failure(s.last_failure);
    return absl::OkStatus();
  });
}

}  // namespace fedfm::coordinator
