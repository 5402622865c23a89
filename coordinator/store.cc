#include "coordinator/store.h"

#include "protocols/check.h"

namespace fedfm::coordinator {

const char* RunStatusName(RunStatus status) {
  switch (status) {
    case RunStatus::kRunning: return "running";
    case RunStatus::kFinished: return "finished";
    case RunStatus::kFailed: return "failed";
    case RunStatus::kStopped: return "stopped";
  }
  FEDFM_CHECK_MSG(false, "unknown RunStatus");
}

const char* RoundStatusName(RoundStatus status) {
  switch (status) {
    case RoundStatus::kStarted: return "started";
    case RoundStatus::kCommitted: return "committed";
    case RoundStatus::kFailed: return "failed";
  }
  FEDFM_CHECK_MSG(false, "unknown RoundStatus");
}

const char* ParticipantStatusName(ParticipantStatus status) {
  switch (status) {
    case ParticipantStatus::kSelected: return "selected";
    case ParticipantStatus::kUploaded: return "uploaded";
    case ParticipantStatus::kDropped: return "dropped";
    case ParticipantStatus::kRejected: return "rejected";
  }
  FEDFM_CHECK_MSG(false, "unknown ParticipantStatus");
}

const char* BlobKindName(BlobKind kind) {
  switch (kind) {
    case BlobKind::kModel: return "model";
    case BlobKind::kOptimizerState: return "optimizer_state";
  }
  FEDFM_CHECK_MSG(false, "unknown BlobKind");
}

}  // namespace fedfm::coordinator
