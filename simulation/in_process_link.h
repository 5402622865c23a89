// InProcessLink: client::CoordinatorLink over a coordinator::RoundEngine in
// the same process. Each call is the engine's call with the same structs
// (protocols/task.h, SecAgg+ messages): nothing is serialized. Bytes are
// still counted as the wire would carry them: updates by their encoded size
// (protocols::EncodedSize; seed scalars 4 bytes each), model downloads by
// their safetensors size, SecAgg+ messages by secagg::SerializedSize.
// Control messages (poll, report) are counted as 0 bytes.
//
// A LinkTransport decides how a message travels. Without one, calls are
// instantaneous and a not-yet-ready fetch answers "not ready" (the runtime
// polls again). The simulation's transport puts each message on the virtual
// clock (transfer time over the device's bandwidth), makes a device that
// has gone offline unreachable, and long-polls fetches.
//
// Not thread-safe (one runtime, one thread), like every CoordinatorLink.
#ifndef FEDFM_SIMULATION_IN_PROCESS_LINK_H_
#define FEDFM_SIMULATION_IN_PROCESS_LINK_H_

#include <cstdint>
#include <optional>
#include <string>

#include "client/coordinator_link.h"
#include "coordinator/round_engine.h"

namespace fedfm::simulation {

using protocols::Routed;

class LinkTransport {
 public:
  virtual ~LinkTransport() = default;
  // Before the engine sees a message of `bytes_up` payload bytes: its
  // sending time passes and the caller waits for its turn. A non-OK status
  // (Unavailable: the device is offline) fails the call; the engine never
  // sees the message.
  virtual absl::Status Send(uint64_t bytes_up) = 0;
  // After the engine answered with `bytes_down` payload bytes: the turn
  // ends and the answer's transfer time passes.
  virtual void Receive(uint64_t bytes_down) = 0;
  // Instead of Receive, for a fetch whose message is not ready: gives up
  // the turn and waits until the coordinator's state changes, then holds
  // the turn again to retry. False: do not retry (answer "not ready").
  virtual bool AwaitChange() = 0;
};

// Bytes this link carried.
struct LinkStats {
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  int64_t messages = 0;
};

class InProcessLink final : public client::CoordinatorLink {
 public:
  // `engine` and `transport` (may be null) must outlive the link.
  explicit InProcessLink(coordinator::RoundEngine& engine, LinkTransport* transport = nullptr);

  absl::StatusOr<protocols::EnrollResponse> Enroll(const protocols::EnrollRequest& request) override;
  absl::Status UseIdentity(const protocols::EnrollResponse& identity) override;
  absl::StatusOr<protocols::PollResponse> Poll(const protocols::PollRequest& request) override;
  absl::StatusOr<protocols::ModelSnapshot> DownloadModel(const std::string& version) override;
  absl::Status UploadUpdate(const protocols::Binding& binding, const protocols::Update& update) override;
  absl::Status AdvertiseKeys(const protocols::Binding& binding, const secagg::ClientKeys& keys) override;
  absl::StatusOr<Routed<secagg::NeighborKeys>> FetchNeighborKeys(const protocols::Binding& binding) override;
  absl::Status ShareKeys(const protocols::Binding& binding, const secagg::ClientShares& shares) override;
  absl::StatusOr<Routed<secagg::RoutedShares>> FetchRoutedShares(const protocols::Binding& binding) override;
  absl::Status UploadMaskedInput(const protocols::Binding& binding, const secagg::MaskedInput& input,
                                 const protocols::UploadInfo& info) override;
  absl::StatusOr<Routed<secagg::UnmaskRequest>> FetchUnmaskRequest(const protocols::Binding& binding) override;
  absl::Status Unmask(const protocols::Binding& binding, const secagg::UnmaskResponse& response) override;
  absl::Status Report(const protocols::Binding& binding, const protocols::EvalReport& report) override;

  const LinkStats& stats() const { return stats_; }
  // The identity in use (after Enroll or UseIdentity).
  const std::optional<protocols::EnrollResponse>& identity() const { return identity_; }
  // The task and collect deadline (engine clock, ms) of the latest kTrain
  // answer; nullopt / 0 before one.
  const std::optional<protocols::Task>& last_task() const { return task_; }
  int64_t task_deadline_ms() const { return task_deadline_ms_; }

 private:
  // Runs `call` as one message of `bytes_up` bytes whose answer has
  // `answer_bytes(result)` bytes.
  template <typename Call, typename AnswerBytes>
  auto Exchange(uint64_t bytes_up, Call&& call, AnswerBytes&& answer_bytes) -> decltype(call());
  // The same for a fetch of a routed message: long-polls through the transport.
  template <typename T, typename Call>
  absl::StatusOr<Routed<T>> Fetch(Call&& call);

  coordinator::RoundEngine& engine_;
  LinkTransport* transport_;
  std::optional<protocols::EnrollResponse> identity_;
  LinkStats stats_;
  std::optional<protocols::Task> task_;
  int64_t task_deadline_ms_ = 0;
};

}  // namespace fedfm::simulation

#endif  // FEDFM_SIMULATION_IN_PROCESS_LINK_H_
