// A CoordinatorLink that calls a RoundEngine directly, in memory: what the
// tests use to run the real client runtime against the real round engine
// without a transport. `fail_next` injects transport failures (Unavailable)
// on the next calls, as a dropped connection would.
#ifndef FEDFM_TESTS_ENGINE_LINK_H_
#define FEDFM_TESTS_ENGINE_LINK_H_

#include <string>

#include "client/coordinator_link.h"
#include "coordinator/round_engine.h"

namespace fedfm::test_support {

class EngineLink final : public client::CoordinatorLink {
 public:
  explicit EngineLink(coordinator::RoundEngine* engine) : engine_(engine) {}

  void set_engine(coordinator::RoundEngine* engine) { engine_ = engine; }
  int fail_next = 0;
  int calls = 0;

  absl::StatusOr<protocols::EnrollResponse> Enroll(const protocols::EnrollRequest& request) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->Enroll(request);
  }
  absl::Status UseIdentity(const protocols::EnrollResponse&) override { return Transport(); }
  absl::StatusOr<protocols::PollResponse> Poll(const protocols::PollRequest& request) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->Poll(request);
  }
  absl::StatusOr<protocols::ModelSnapshot> DownloadModel(const std::string& version) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->GetModel(version);
  }
  absl::Status UploadUpdate(const protocols::Binding& b, const protocols::Update& update) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->SubmitUpdate(b, update);
  }
  absl::Status AdvertiseKeys(const protocols::Binding& b, const secagg::ClientKeys& keys) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->SubmitKeys(b, keys);
  }
  absl::StatusOr<client::Routed<secagg::NeighborKeys>> FetchNeighborKeys(const protocols::Binding& b) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->FetchNeighborKeys(b);
  }
  absl::Status ShareKeys(const protocols::Binding& b, const secagg::ClientShares& shares) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->SubmitShares(b, shares);
  }
  absl::StatusOr<client::Routed<secagg::RoutedShares>> FetchRoutedShares(const protocols::Binding& b) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->FetchRoutedShares(b);
  }
  absl::Status UploadMaskedInput(const protocols::Binding& b, const secagg::MaskedInput& input,
                                 const protocols::UploadInfo& info) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->SubmitMaskedInput(b, input, info);
  }
  absl::StatusOr<client::Routed<secagg::UnmaskRequest>> FetchUnmaskRequest(const protocols::Binding& b) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->FetchUnmaskRequest(b);
  }
  absl::Status Unmask(const protocols::Binding& b, const secagg::UnmaskResponse& response) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->SubmitUnmask(b, response);
  }
  absl::Status Report(const protocols::Binding& b, const protocols::EvalReport& report) override {
    if (absl::Status s = Transport(); !s.ok()) return s;
    return engine_->Report(b, report);
  }

 private:
  absl::Status Transport() {
    ++calls;
    if (fail_next > 0) {
      --fail_next;
      return absl::UnavailableError("injected: connection refused");
    }
    return absl::OkStatus();
  }

  coordinator::RoundEngine* engine_;
};

}  // namespace fedfm::test_support

#endif  // FEDFM_TESTS_ENGINE_LINK_H_
