// CoordinatorLink: everything a device needs from a coordinator, one method
// per exchange, mirroring coordinator::RoundEngine's client calls (same
// structs, protocols/task.h; SecAgg+ messages from aggregation/secagg/
// messages.h). Implementations: the gRPC link (TLS/mTLS, request MACs,
// chunked streams; client/*grpc*.cc), the simulation's in-process link, and
// test links over a RoundEngine in memory.
//
// Errors. A link reports two kinds of failure, and the runtime treats them
// differently:
//   - transport failures (the coordinator could not be reached or did not
//     answer): Unavailable or DeadlineExceeded with the transport's message;
//     the runtime retries with exponential backoff and jitter;
//   - refusals by the coordinator, with its status code and reason (see
//     round_engine.h: NotFound, PermissionDenied, InvalidArgument,
//     FailedPrecondition, Aborted, AlreadyExists, ResourceExhausted); the
//     runtime logs them and moves on (a refused round is abandoned).
// A link must not retry state-changing calls itself: the runtime re-sends
// them with a fresh sequence number.
//
// Thread safety: one runtime uses one link from one thread at a time;
// implementations need not be thread-safe.
#ifndef FEDFM_CLIENT_COORDINATOR_LINK_H_
#define FEDFM_CLIENT_COORDINATOR_LINK_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregation/secagg/messages.h"
#include "protocols/task.h"
#include "protocols/update.h"

namespace fedfm::client {

using protocols::Routed;

class CoordinatorLink {
 public:
  virtual ~CoordinatorLink() = default;

  // Enrolls with a one-time token; on success the link authenticates every
  // later request as the new client.
  virtual absl::StatusOr<protocols::EnrollResponse> Enroll(const protocols::EnrollRequest& request) = 0;
  // Authenticates later requests as an identity enrolled earlier (a
  // restarted device).
  virtual absl::Status UseIdentity(const protocols::EnrollResponse& identity) = 0;

  virtual absl::StatusOr<protocols::PollResponse> Poll(const protocols::PollRequest& request) = 0;
  // The global state `version`; the link verifies that the bytes hash to
  // `version` (DataLoss otherwise).
  virtual absl::StatusOr<protocols::ModelSnapshot> DownloadModel(const std::string& version) = 0;

  // Plaintext rounds (the gRPC link streams it in chunks).
  virtual absl::Status UploadUpdate(const protocols::Binding& binding, const protocols::Update& update) = 0;

  // SecAgg+ rounds.
  virtual absl::Status AdvertiseKeys(const protocols::Binding& binding, const secagg::ClientKeys& keys) = 0;
  virtual absl::StatusOr<Routed<secagg::NeighborKeys>> FetchNeighborKeys(const protocols::Binding& binding) = 0;
  virtual absl::Status ShareKeys(const protocols::Binding& binding, const secagg::ClientShares& shares) = 0;
  virtual absl::StatusOr<Routed<secagg::RoutedShares>> FetchRoutedShares(const protocols::Binding& binding) = 0;
  virtual absl::Status UploadMaskedInput(const protocols::Binding& binding, const secagg::MaskedInput& input,
                                         const protocols::UploadInfo& info) = 0;
  virtual absl::StatusOr<Routed<secagg::UnmaskRequest>> FetchUnmaskRequest(const protocols::Binding& binding) = 0;
  virtual absl::Status Unmask(const protocols::Binding& binding, const secagg::UnmaskResponse& response) = 0;

  virtual absl::Status Report(const protocols::Binding& binding, const protocols::EvalReport& report) = 0;
};

// True for the failures a link reports when the coordinator could not be
// reached or did not answer: Unavailable, DeadlineExceeded.
bool IsTransportFailure(const absl::Status& status);

}  // namespace fedfm::client

#endif  // FEDFM_CLIENT_COORDINATOR_LINK_H_
