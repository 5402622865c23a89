#include "simulation/in_process_link.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregation/secagg/messages.h"
#include "protocols/tensor_codec.h"

namespace fedfm::simulation {
namespace {

uint64_t UpdateBytes(const protocols::Update& update) {
  return update.kind == protocols::UpdateKind::kDense ? protocols::EncodedSize(update.delta)
                                                      : update.seed_scalars.size() * sizeof(float);
}

}  // namespace

InProcessLink::InProcessLink(coordinator::RoundEngine& engine, LinkTransport* transport)
    : engine_(engine), transport_(transport) {}

template <typename Call, typename AnswerBytes>
auto InProcessLink::Exchange(uint64_t bytes_up, Call&& call, AnswerBytes&& answer_bytes) -> decltype(call()) {
  if (transport_ != nullptr) {
    absl::Status sent = transport_->Send(bytes_up);
    if (!sent.ok()) return sent;
  }
  auto result = call();
  const uint64_t bytes_down = answer_bytes(result);
  if (transport_ != nullptr) transport_->Receive(bytes_down);
  stats_.bytes_up += bytes_up;
  stats_.bytes_down += bytes_down;
  ++stats_.messages;
  return result;
}

template <typename T, typename Call>
absl::StatusOr<Routed<T>> InProcessLink::Fetch(Call&& call) {
  if (transport_ != nullptr) {
    absl::Status sent = transport_->Send(0);
    if (!sent.ok()) return sent;
  }
  while (true) {
    absl::StatusOr<Routed<T>> r = call();
    if (transport_ != nullptr && r.ok() && !r->message.has_value()) {
      if (transport_->AwaitChange()) continue;
      return absl::UnavailableError("the simulation stopped while this client waited for the coordinator");
    }
    const uint64_t bytes = r.ok() && r->message.has_value() ? secagg::SerializedSize(*r->message) : 0;
    if (transport_ != nullptr) transport_->Receive(bytes);
    stats_.bytes_down += bytes;
    ++stats_.messages;
    return r;
  }
}

absl::StatusOr<protocols::EnrollResponse> InProcessLink::Enroll(const protocols::EnrollRequest& request) {
  absl::StatusOr<protocols::EnrollResponse> r =
      Exchange(0, [&] { return engine_.Enroll(request); }, [](const auto&) { return uint64_t{0}; });
  if (r.ok()) identity_ = *r;
  return r;
}

absl::Status InProcessLink::UseIdentity(const protocols::EnrollResponse& identity) {
  if (identity.client_id.empty()) return absl::InvalidArgumentError("an identity needs a client id");
  identity_ = identity;
  return absl::OkStatus();
}

absl::StatusOr<protocols::PollResponse> InProcessLink::Poll(const protocols::PollRequest& request) {
  absl::StatusOr<protocols::PollResponse> r =
      Exchange(0, [&] { return engine_.Poll(request); }, [](const auto&) { return uint64_t{0}; });
  if (r.ok() && r->kind == protocols::PollKind::kTrain) {
    task_ = r->task;
    task_deadline_ms_ = r->deadline_ms;
  }
  return r;
}

absl::StatusOr<protocols::ModelSnapshot> InProcessLink::DownloadModel(const std::string& version) {
  absl::StatusOr<protocols::ModelSnapshot> r = Exchange(
      0, [&] { return engine_.GetModel(version); },
      [](const absl::StatusOr<protocols::ModelSnapshot>& m) -> uint64_t {
        if (!m.ok()) return 0;
        return m->safetensors != nullptr ? m->safetensors->size() : m->state.TotalBytes();
      });
  if (r.ok() && r->version != version) {
    return absl::DataLossError(
        absl::StrCat("downloaded model version \"", r->version, "\" where \"", version, "\" was asked for"));
  }
  return r;
}

absl::Status InProcessLink::UploadUpdate(const protocols::Binding& binding, const protocols::Update& update) {
  return Exchange(UpdateBytes(update), [&] { return engine_.SubmitUpdate(binding, update); },
                  [](const auto&) { return uint64_t{0}; });
}

absl::Status InProcessLink::AdvertiseKeys(const protocols::Binding& binding, const secagg::ClientKeys& keys) {
  return Exchange(secagg::SerializedSize(keys), [&] { return engine_.SubmitKeys(binding, keys); },
                  [](const auto&) { return uint64_t{0}; });
}

absl::StatusOr<Routed<secagg::NeighborKeys>> InProcessLink::FetchNeighborKeys(const protocols::Binding& binding) {
  return Fetch<secagg::NeighborKeys>([&] { return engine_.FetchNeighborKeys(binding); });
}

absl::Status InProcessLink::ShareKeys(const protocols::Binding& binding, const secagg::ClientShares& shares) {
  return Exchange(secagg::SerializedSize(shares), [&] { return engine_.SubmitShares(binding, shares); },
                  [](const auto&) { return uint64_t{0}; });
}

absl::StatusOr<Routed<secagg::RoutedShares>> InProcessLink::FetchRoutedShares(const protocols::Binding& binding) {
  return Fetch<secagg::RoutedShares>([&] { return engine_.FetchRoutedShares(binding); });
}

absl::Status InProcessLink::UploadMaskedInput(const protocols::Binding& binding, const secagg::MaskedInput& input,
                                              const protocols::UploadInfo& info) {
  return Exchange(secagg::SerializedSize(input), [&] { return engine_.SubmitMaskedInput(binding, input, info); },
                  [](const auto&) { return uint64_t{0}; });
}

absl::StatusOr<Routed<secagg::UnmaskRequest>> InProcessLink::FetchUnmaskRequest(const protocols::Binding& binding) {
  return Fetch<secagg::UnmaskRequest>([&] { return engine_.FetchUnmaskRequest(binding); });
}

absl::Status InProcessLink::Unmask(const protocols::Binding& binding, const secagg::UnmaskResponse& response) {
  return Exchange(secagg::SerializedSize(response), [&] { return engine_.SubmitUnmask(binding, response); },
                  [](const auto&) { return uint64_t{0}; });
}

absl::Status InProcessLink::Report(const protocols::Binding& binding, const protocols::EvalReport& report) {
  return Exchange(0, [&] { return engine_.Report(binding, report); }, [](const auto&) { return uint64_t{0}; });
}

}  // namespace fedfm::simulation
