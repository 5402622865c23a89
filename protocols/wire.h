// Conversions between the plain structs both sides speak (protocols/task.h,
// update.h, device.h) and the generated messages of protocols/fedfm.proto,
// plus the exact bytes a request MAC covers. Shared by the coordinator's gRPC
// service and the client's gRPC link so the two cannot drift apart; free of
// gRPC itself (only protobuf).
//
// FromProto functions validate what the struct cannot represent: an enum
// value outside the known range (proto3 enums are open), a graph seed that is
// not 32 bytes; InvalidArgument naming the field.
#ifndef FEDFM_PROTOCOLS_WIRE_H_
#define FEDFM_PROTOCOLS_WIRE_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "protocols/device.h"
#include "protocols/fedfm.pb.h"
#include "protocols/task.h"
#include "protocols/update.h"

namespace fedfm::protocols::wire {

namespace v1 = ::fedfm::v1;

v1::Phase ToProto(Phase phase);
absl::StatusOr<Phase> FromProto(v1::Phase phase);

v1::Method ToProto(Method method);
absl::StatusOr<Method> FromProto(v1::Method method);

void ToProto(const Binding& binding, v1::Binding* out);
absl::StatusOr<Binding> FromProto(const v1::Binding& binding);

void ToProto(const Coverage& coverage, v1::Coverage* out);
Coverage FromProto(const v1::Coverage& coverage);

void ToProto(const DeviceProfile& profile, v1::DeviceProfile* out);
absl::StatusOr<DeviceProfile> FromProto(const v1::DeviceProfile& profile);

void ToProto(const Task& task, v1::Task* out);
absl::StatusOr<Task> FromProto(const v1::Task& task);

// Everything of a PollResponse; max_chunk_bytes is the service's to fill.
void ToProto(const PollResponse& response, v1::PollTaskResponse* out);
absl::StatusOr<PollResponse> FromProto(const v1::PollTaskResponse& response);

void ToProto(const EnrollRequest& request, v1::EnrollRequest* out);
absl::StatusOr<EnrollRequest> FromProto(const v1::EnrollRequest& request);

void MetricsToProto(const std::map<std::string, double>& metrics,
                    google::protobuf::Map<std::string, double>* out);
std::map<std::string, double> MetricsFromProto(const google::protobuf::Map<std::string, double>& metrics);

// The header of a plaintext upload: everything of `update` but its values
// (kind, coverage, examples, metrics, peak memory, seed scalars). The data
// (the delta, EncodeTensorMap) follows in chunks; total_bytes is set by the
// caller.
void UpdateHeaderToProto(const Update& update, v1::UploadHeader* out);
// The Update a header describes, without its delta (client_id from the
// binding). InvalidArgument for a kind other than dense / seed scalars.
absl::StatusOr<Update> UpdateFromHeader(const v1::UploadHeader& header);

// The header of a SecAgg+ masked-input upload.
void UploadInfoToProto(const UploadInfo& info, v1::UploadHeader* out);
UploadInfo UploadInfoFromProto(const v1::UploadHeader& header);

// The bytes a request MAC covers (see fedfm.proto): `label` (the full RPC
// method name), a zero byte, then the request serialized deterministically
// (map entries sorted) with its `mac` field cleared.
template <typename Request>
std::string SigningBytes(const std::string& label, const Request& request);

// The deterministic serialization used above.
std::string DeterministicBytes(const google::protobuf::MessageLite& message);

// ---------------------------------------------------------------------------

template <typename Request>
std::string SigningBytes(const std::string& label, const Request& request) {
  Request copy = request;
  copy.clear_mac();
  std::string out = label;
  out.push_back('\0');
  out += DeterministicBytes(copy);
  return out;
}

}  // namespace fedfm::protocols::wire

#endif  // FEDFM_PROTOCOLS_WIRE_H_
