#include "client/grpc_link.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "aggregation/secagg/crypto.h"
#include "aggregation/secagg/messages.h"
#include "protocols/fedfm.grpc.pb.h"
#include "protocols/safetensors.h"
#include "protocols/status_macros.h"
#include "protocols/tensor_codec.h"
#include "protocols/tls_certs.h"
#include "protocols/wire.h"

namespace fedfm::client {
namespace {

namespace v1 = ::fedfm::v1;
namespace wire = protocols::wire;
using protocols::Binding;

// Room above the largest chunk for the rest of a message (as the server's
// kMessageSlackBytes).
constexpr int kReceiveLimitBytes = 256 << 20;

std::string MethodName(const char* rpc) { return absl::StrCat("/fedfm.v1.Coordinator/", rpc); }

secagg::ByteSpan AsSpan(const std::string& s) {
  return secagg::ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string ToHex(const secagg::Key& key) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
}

}  // namespace

class GrpcLink::Impl {
 public:
  static constexpr int kFreshChannelAfterFailures = 3;

  explicit Impl(GrpcLinkOptions options)
      : options_(std::move(options)), certificate_(options_.certificate), jitter_(options_.jitter_seed) {
    Connect();
  }

  void Connect() {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kReceiveLimitBytes);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options_.max_reconnect_backoff_ms));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                static_cast<int>(std::min<int64_t>(500, options_.max_reconnect_backoff_ms)));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                static_cast<int>(std::min<int64_t>(500, options_.max_reconnect_backoff_ms)));
    if (!options_.share_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    if (options_.ca_pem.has_value()) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = *options_.ca_pem;
      if (certificate_.has_value()) {
        ssl.pem_private_key = certificate_->key_pem;
        ssl.pem_cert_chain = certificate_->certificate_pem;
      }
      credentials = grpc::SslCredentials(ssl);
      if (!options_.tls_server_name.empty()) args.SetSslTargetNameOverride(options_.tls_server_name);
    } else {
      credentials = grpc::InsecureChannelCredentials();
    }
    channel_ = grpc::CreateCustomChannel(options_.target, credentials, args);
    stub_ = v1::Coordinator::NewStub(channel_);
  }

  // With a client certificate the TLS peer identity authenticates us and
  // requests go unsigned; otherwise each carries an HMAC (fedfm.proto).
  bool signs() const { return !(options_.ca_pem.has_value() && certificate_.has_value()) && !secret_.empty(); }

  template <typename Request>
  void Sign(const char* rpc, Request* request) {
    if (!signs()) return;
    const secagg::Key mac = secagg::HmacSha256(AsSpan(secret_), AsSpan(wire::SigningBytes(MethodName(rpc), *request)));
    request->set_mac(reinterpret_cast<const char*>(mac.data()), mac.size());
  }

  // Every call starts here.
  void SetDeadline(grpc::ClientContext& context, uint64_t stream_bytes = 0) {
    if (fresh_channel_) {
      fresh_channel_ = false;
      Connect();
    }
    const int64_t ms = options_.call_timeout_ms +
                       static_cast<int64_t>(static_cast<double>(stream_bytes) * 1000.0 /
                                            std::max(1.0, options_.min_stream_bytes_per_s));
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
  }

  // Transport failures come back as Unavailable / DeadlineExceeded. After
  // kFreshChannelAfterFailures of them in a row the channel is replaced: a
  // gRPC channel whose reconnect raced a coordinator restart can stay stuck
  // failing its TLS handshakes ("Handshake read failed") while a new channel
  // to the same address connects at once.
  absl::Status FromGrpc(const grpc::Status& s, const char* rpc) {
    const auto code = static_cast<absl::StatusCode>(s.error_code());
    if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded) {
      if (++transport_failures_ >= kFreshChannelAfterFailures) {
        transport_failures_ = 0;
        fresh_channel_ = true;  // at the next call, when no stream uses this one
      }
      return absl::Status(code, absl::StrCat(rpc, " to coordinator ", options_.target, ": ", s.error_message()));
    }
    transport_failures_ = 0;
    if (s.ok()) return absl::OkStatus();
    return absl::Status(code, s.error_message());
  }

  Binding ReadBinding(const std::string& client_id) const {
    return Binding{run_id_, 0, client_id.empty() ? client_id_ : client_id, protocols::Phase::kIdle, 0};
  }

  void NoteChunkLimit(uint64_t max_chunk_bytes) {
    if (max_chunk_bytes > 0) server_chunk_bytes_ = max_chunk_bytes;
  }

  size_t UploadChunkBytes() const {
    uint64_t n = static_cast<uint64_t>(std::max<int64_t>(1, options_.chunk_bytes));
    if (server_chunk_bytes_ > 0) n = std::min(n, server_chunk_bytes_);
    return static_cast<size_t>(n);
  }

  // --- Calls ----------------------------------------------------------------

  absl::StatusOr<protocols::EnrollResponse> Enroll(const protocols::EnrollRequest& request) {
    v1::EnrollRequest req;
    wire::ToProto(request, &req);
    std::optional<protocols::tls::KeyAndCsr> csr;
    if (options_.ca_pem.has_value() && options_.request_certificate) {
      FEDFM_ASSIGN_OR_RETURN(csr, protocols::tls::CreateKeyAndCsr("fedfm-device"));
      req.set_certificate_signing_request(csr->csr_pem);
    }
    grpc::ClientContext context;
    SetDeadline(context);
    v1::EnrollResponse resp;
    FEDFM_RETURN_IF_ERROR(FromGrpc(stub_->Enroll(&context, req, &resp), "Enroll"));
    client_id_ = resp.client_id();
    secret_ = resp.client_secret();
    run_id_ = resp.run_id();
    NoteChunkLimit(resp.max_chunk_bytes());
    if (csr.has_value() && !resp.client_certificate().empty()) {
      certificate_ = ClientCertificate{csr->key_pem, resp.client_certificate()};
      Connect();  // from now on: mutual TLS
    }
    return protocols::EnrollResponse{client_id_, secret_, run_id_};
  }

  absl::Status UseIdentity(const protocols::EnrollResponse& identity) {
    if (identity.client_id.empty()) return absl::InvalidArgumentError("identity without a client id");
    client_id_ = identity.client_id;
    secret_ = identity.client_secret;
    run_id_ = identity.run_id;
    return absl::OkStatus();
  }

  absl::StatusOr<protocols::PollResponse> Poll(const protocols::PollRequest& request) {
    v1::PollTaskRequest req;
    wire::ToProto(ReadBinding(request.client_id), req.mutable_binding());
    req.set_have_model_version(request.have_model_version);
    Sign("PollTask", &req);
    grpc::ClientContext context;
    SetDeadline(context);
    v1::PollTaskResponse resp;
    FEDFM_RETURN_IF_ERROR(FromGrpc(stub_->PollTask(&context, req, &resp), "PollTask"));
    NoteChunkLimit(resp.max_chunk_bytes());
    FEDFM_ASSIGN_OR_RETURN(protocols::PollResponse poll, wire::FromProto(resp));
    if (poll.kind == protocols::PollKind::kTrain && !poll.binding.run_id.empty()) run_id_ = poll.binding.run_id;
    return poll;
  }

  // One download stream from partial_.size() on, appending to partial_.
  absl::Status DownloadFrom(const std::string& version) {
    v1::DownloadModelRequest req;
    wire::ToProto(ReadBinding(""), req.mutable_binding());
    req.set_model_version(version);
    req.set_offset(partial_.size());
    Sign("DownloadModel", &req);
    grpc::ClientContext context;
    SetDeadline(context, partial_total_ > 0 ? partial_total_ - partial_.size() : uint64_t{256} << 20);
    std::unique_ptr<grpc::ClientReader<v1::ModelChunk>> reader = stub_->DownloadModel(&context, req);
    v1::ModelChunk chunk;
    absl::Status bad;
    while (bad.ok() && reader->Read(&chunk)) {
      if (chunk.model_version() != version || chunk.offset() != partial_.size() ||
          chunk.offset() + chunk.data().size() > chunk.total_bytes() ||
          (partial_total_ > 0 && chunk.total_bytes() != partial_total_)) {
        bad = absl::DataLossError(absl::StrCat("download of model ", version, ": chunk at offset ", chunk.offset(),
                                               " of ", chunk.total_bytes(), " bytes does not continue the ",
                                               partial_.size(), " bytes received"));
        context.TryCancel();
        break;
      }
      if (partial_total_ == 0) {
        partial_total_ = chunk.total_bytes();
        partial_.reserve(partial_total_);
      }
      const auto* data = reinterpret_cast<const std::byte*>(chunk.data().data());
      partial_.insert(partial_.end(), data, data + chunk.data().size());
      bytes_down_ += chunk.data().size();
    }
    absl::Status finished = FromGrpc(reader->Finish(), "DownloadModel");
    if (!bad.ok()) return bad;
    FEDFM_RETURN_IF_ERROR(finished);
    if (partial_total_ == 0 || partial_.size() != partial_total_) {
      return absl::DataLossError(absl::StrCat("download of model ", version, " ended after ", partial_.size(),
                                              " of ", partial_total_, " bytes"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<protocols::ModelSnapshot> DownloadModel(const std::string& version) {
    if (partial_version_ != version) {
      partial_.clear();
      partial_total_ = 0;
      partial_version_ = version;
    }
    // A stream that broke after making progress resumes at once; streams
    // that bring nothing back off (jittered) and count against the limit.
    absl::Status status;
    for (int idle = 0;;) {
      if (!partial_.empty()) ++resumptions_;
      const size_t before = partial_.size();
      status = DownloadFrom(version);
      if (status.ok() || !IsTransportFailure(status)) break;
      if (partial_.size() > before) {
        idle = 0;
        continue;
      }
      if (++idle > options_.download_resume_attempts) break;
      const int64_t base_ms = int64_t{100} << std::min(idle - 1, 6);
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(base_ms * jitter(jitter_))));
    }
    if (!status.ok()) {
      if (!IsTransportFailure(status)) ResetDownload();  // a refusal or corrupt bytes: start over next time
      return status;
    }
    const std::string digest = ToHex(secagg::Sha256(
        secagg::ByteSpan(reinterpret_cast<const uint8_t*>(partial_.data()), partial_.size())));
    if (digest != version) {
      ResetDownload();
      return absl::DataLossError(
          absl::StrCat("downloaded model hashes to ", digest, ", not to its version ", version));
    }
    auto bytes = std::make_shared<const std::vector<std::byte>>(std::move(partial_));
    ResetDownload();
    FEDFM_ASSIGN_OR_RETURN(protocols::Safetensors parsed, protocols::ParseSafetensors(*bytes, bytes));
    return protocols::ModelSnapshot{version, std::move(parsed.tensors), bytes};
  }

  void ResetDownload() {
    partial_ = {};
    partial_total_ = 0;
    partial_version_.clear();
  }

  // header (with its MAC), data in chunks, trailing MAC.
  absl::Status Upload(v1::UploadHeader header, std::span<const std::byte> data) {
    size_t at = 0;
    return Upload(std::move(header), data.size(), [&](std::span<std::byte> out) {
      std::memcpy(out.data(), data.data() + at, out.size());
      at += out.size();
    });
  }

  // As above, the `total` data bytes written chunk by chunk by `fill` (each
  // call fills its whole buffer, the next bytes in order), so that nothing
  // holds the whole encoding.
  absl::Status Upload(v1::UploadHeader header, uint64_t total,
                      const std::function<void(std::span<std::byte>)>& fill) {
    header.set_total_bytes(total);
    Sign("UploadUpdate", &header);
    std::optional<secagg::HmacSha256Stream> mac;
    if (signs()) {
      mac.emplace(AsSpan(secret_));
      mac->Update(AsSpan(wire::SigningBytes(MethodName("UploadUpdate#data"), header)));
    }
    grpc::ClientContext context;
    SetDeadline(context, total);
    v1::UploadResponse resp;
    std::unique_ptr<grpc::ClientWriter<v1::UploadChunk>> writer = stub_->UploadUpdate(&context, &resp);
    v1::UploadChunk chunk;
    *chunk.mutable_header() = std::move(header);
    bool open = writer->Write(chunk);
    const uint64_t step = UploadChunkBytes();
    for (uint64_t sent = 0; sent < total && open; ) {
      const auto n = static_cast<size_t>(std::min<uint64_t>(step, total - sent));
      std::string* piece = chunk.mutable_data();  // keeps its buffer from chunk to chunk
      piece->resize(n);
      fill(std::span<std::byte>(reinterpret_cast<std::byte*>(piece->data()), n));
      if (mac.has_value()) mac->Update(secagg::ByteSpan(reinterpret_cast<const uint8_t*>(piece->data()), n));
      sent += n;
      open = writer->Write(chunk);
    }
    if (open) {
      std::string tag;
      if (mac.has_value()) {
        const secagg::Key key = mac->Finish();
        tag.assign(reinterpret_cast<const char*>(key.data()), key.size());
      }
      chunk.set_mac(tag);
      open = writer->Write(chunk);
    }
    if (open) writer->WritesDone();
    absl::Status status = FromGrpc(writer->Finish(), "UploadUpdate");
    if (status.ok()) bytes_up_ += total;
    return status;
  }

  absl::Status UploadUpdate(const Binding& binding, const protocols::Update& update) {
    v1::UploadHeader header;
    wire::ToProto(binding, header.mutable_binding());
    wire::UpdateHeaderToProto(update, &header);
    if (update.kind != protocols::UpdateKind::kDense) return Upload(std::move(header), {});
    // Encoded chunk by chunk, straight into the messages.
    protocols::StreamEncoder encoder(update.delta);
    return Upload(std::move(header), encoder.size(), [&](std::span<std::byte> out) { encoder.Next(out); });
  }

  absl::Status UploadMaskedInput(const Binding& binding, const secagg::MaskedInput& input,
                                 const protocols::UploadInfo& info) {
    v1::UploadHeader header;
    wire::ToProto(binding, header.mutable_binding());
    wire::UploadInfoToProto(info, &header);
    const secagg::Bytes bytes = secagg::Serialize(input);
    return Upload(std::move(header),
                  std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
  }

  template <typename Message>
  v1::SecAggRequest SecAggRequestOf(const Binding& binding, const Message& message, const char* rpc) {
    v1::SecAggRequest req;
    wire::ToProto(binding, req.mutable_binding());
    const secagg::Bytes bytes = secagg::Serialize(message);
    req.set_message(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    Sign(rpc, &req);
    return req;
  }

  using SendFn = grpc::Status (v1::Coordinator::Stub::*)(grpc::ClientContext*, const v1::SecAggRequest&, v1::Ack*);
  template <typename Message>
  absl::Status SendSecAgg(const Binding& binding, const Message& message, const char* rpc, SendFn fn) {
    v1::SecAggRequest req = SecAggRequestOf(binding, message, rpc);
    grpc::ClientContext context;
    SetDeadline(context);
    v1::Ack ack;
    return FromGrpc((stub_.get()->*fn)(&context, req, &ack), rpc);
  }

  using FetchFn = grpc::Status (v1::Coordinator::Stub::*)(grpc::ClientContext*, const v1::SecAggFetchRequest&,
                                                          v1::SecAggFetchResponse*);
  template <typename Message, typename Parse>
  absl::StatusOr<Routed<Message>> FetchSecAgg(const Binding& binding, const char* rpc, FetchFn fn, Parse parse) {
    v1::SecAggFetchRequest req;
    wire::ToProto(binding, req.mutable_binding());
    Sign(rpc, &req);
    grpc::ClientContext context;
    SetDeadline(context);
    v1::SecAggFetchResponse resp;
    FEDFM_RETURN_IF_ERROR(FromGrpc((stub_.get()->*fn)(&context, req, &resp), rpc));
    Routed<Message> out;
    out.retry_after_ms = resp.retry_after_ms();
    if (!resp.message().empty()) {
      FEDFM_ASSIGN_OR_RETURN(out.message, parse(AsSpan(resp.message())));
      bytes_down_ += resp.message().size();
    }
    return out;
  }

  absl::Status Report(const Binding& binding, const protocols::EvalReport& report) {
    v1::ReportRequest req;
    wire::ToProto(binding, req.mutable_binding());
    wire::MetricsToProto(report.metrics, req.mutable_metrics());
    req.set_num_examples(report.num_examples);
    Sign("Report", &req);
    grpc::ClientContext context;
    SetDeadline(context);
    v1::Ack ack;
    return FromGrpc(stub_->Report(&context, req, &ack), "Report");
  }

  absl::StatusOr<std::string> GetRunConfigToml() {
    v1::RunConfigRequest req;
    wire::ToProto(ReadBinding(""), req.mutable_binding());
    Sign("GetRunConfig", &req);
    grpc::ClientContext context;
    SetDeadline(context);
    v1::RunConfigResponse resp;
    FEDFM_RETURN_IF_ERROR(FromGrpc(stub_->GetRunConfig(&context, req, &resp), "GetRunConfig"));
    return resp.config_toml();
  }

  const GrpcLinkOptions options_;
  std::optional<ClientCertificate> certificate_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::string client_id_;
  std::string secret_;
  std::string run_id_;
  uint64_t server_chunk_bytes_ = 0;

  std::string partial_version_;
  std::vector<std::byte> partial_;
  uint64_t partial_total_ = 0;

  std::mt19937_64 jitter_;
  uint64_t bytes_up_ = 0;
  uint64_t bytes_down_ = 0;
  int64_t resumptions_ = 0;
  int transport_failures_ = 0;  // in a row
  bool fresh_channel_ = false;
};

absl::StatusOr<std::unique_ptr<GrpcLink>> GrpcLink::Create(GrpcLinkOptions options) {
  if (options.target.empty()) return absl::InvalidArgumentError("the coordinator address is empty");
  if (options.certificate.has_value() &&
      (options.certificate->key_pem.empty() || options.certificate->certificate_pem.empty())) {
    return absl::InvalidArgumentError("a client certificate needs both its key and its certificate");
  }
  if (options.certificate.has_value() && !options.ca_pem.has_value()) {
    return absl::InvalidArgumentError("a client certificate needs TLS (the coordinator's CA)");
  }
  return std::unique_ptr<GrpcLink>(new GrpcLink(std::make_unique<Impl>(std::move(options))));
}

GrpcLink::GrpcLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GrpcLink::~GrpcLink() = default;

absl::StatusOr<protocols::EnrollResponse> GrpcLink::Enroll(const protocols::EnrollRequest& request) {
  return impl_->Enroll(request);
}
absl::Status GrpcLink::UseIdentity(const protocols::EnrollResponse& identity) { return impl_->UseIdentity(identity); }
absl::StatusOr<protocols::PollResponse> GrpcLink::Poll(const protocols::PollRequest& request) {
  return impl_->Poll(request);
}
absl::StatusOr<protocols::ModelSnapshot> GrpcLink::DownloadModel(const std::string& version) {
  return impl_->DownloadModel(version);
}
absl::Status GrpcLink::UploadUpdate(const Binding& binding, const protocols::Update& update) {
  return impl_->UploadUpdate(binding, update);
}
absl::Status GrpcLink::AdvertiseKeys(const Binding& binding, const secagg::ClientKeys& keys) {
  return impl_->SendSecAgg(binding, keys, "AdvertiseKeys", &v1::Coordinator::Stub::AdvertiseKeys);
}
absl::StatusOr<Routed<secagg::NeighborKeys>> GrpcLink::FetchNeighborKeys(const Binding& binding) {
  return impl_->FetchSecAgg<secagg::NeighborKeys>(binding, "FetchNeighborKeys",
                                                  &v1::Coordinator::Stub::FetchNeighborKeys, secagg::ParseNeighborKeys);
}
absl::Status GrpcLink::ShareKeys(const Binding& binding, const secagg::ClientShares& shares) {
  return impl_->SendSecAgg(binding, shares, "ShareKeys", &v1::Coordinator::Stub::ShareKeys);
}
absl::StatusOr<Routed<secagg::RoutedShares>> GrpcLink::FetchRoutedShares(const Binding& binding) {
  return impl_->FetchSecAgg<secagg::RoutedShares>(binding, "FetchRoutedShares",
                                                  &v1::Coordinator::Stub::FetchRoutedShares, secagg::ParseRoutedShares);
}
absl::Status GrpcLink::UploadMaskedInput(const Binding& binding, const secagg::MaskedInput& input,
                                         const protocols::UploadInfo& info) {
  return impl_->UploadMaskedInput(binding, input, info);
}
absl::StatusOr<Routed<secagg::UnmaskRequest>> GrpcLink::FetchUnmaskRequest(const Binding& binding) {
  return impl_->FetchSecAgg<secagg::UnmaskRequest>(
      binding, "FetchUnmaskRequest", &v1::Coordinator::Stub::FetchUnmaskRequest, secagg::ParseUnmaskRequest);
}
absl::Status GrpcLink::Unmask(const Binding& binding, const secagg::UnmaskResponse& response) {
  return impl_->SendSecAgg(binding, response, "Unmask", &v1::Coordinator::Stub::Unmask);
}
absl::Status GrpcLink::Report(const Binding& binding, const protocols::EvalReport& report) {
  return impl_->Report(binding, report);
}

absl::StatusOr<std::string> GrpcLink::GetRunConfigToml() { return impl_->GetRunConfigToml(); }

const std::optional<ClientCertificate>& GrpcLink::certificate() const { return impl_->certificate_; }
uint64_t GrpcLink::bytes_up() const { return impl_->bytes_up_; }
uint64_t GrpcLink::bytes_down() const { return impl_->bytes_down_; }
int64_t GrpcLink::download_resumptions() const { return impl_->resumptions_; }

}  // namespace fedfm::client
