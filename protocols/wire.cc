#include "protocols/wire.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "protocols/status_macros.h"

namespace fedfm::protocols::wire {

// --- Enums --------------------------------------------------------------------

v1::Phase ToProto(Phase phase) { return static_cast<v1::Phase>(static_cast<int>(phase)); }

absl::StatusOr<Phase> FromProto(v1::Phase phase) {
  const int v = static_cast<int>(phase);
  if (v < static_cast<int>(Phase::kUnspecified) || v > static_cast<int>(Phase::kDone)) {
    return absl::InvalidArgumentError(absl::StrCat("binding.phase: unknown phase ", v));
  }
  return static_cast<Phase>(v);
}

v1::Method ToProto(Method method) {
  switch (method) {
    case Method::kAuto: return v1::METHOD_AUTO;
    case Method::kLora: return v1::METHOD_LORA;
    case Method::kPartial: return v1::METHOD_PARTIAL;
    case Method::kZerothOrder: return v1::METHOD_ZEROTH_ORDER;
  }
  return v1::METHOD_AUTO;
}

absl::StatusOr<Method> FromProto(v1::Method method) {
  switch (method) {
    case v1::METHOD_AUTO: return Method::kAuto;
    case v1::METHOD_LORA: return Method::kLora;
    case v1::METHOD_PARTIAL: return Method::kPartial;
    case v1::METHOD_ZEROTH_ORDER: return Method::kZerothOrder;
    default: break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown method ", static_cast<int>(method)));
}

// --- Binding, coverage, profile -------------------------------------------------

void ToProto(const Binding& binding, v1::Binding* out) {
  out->set_protocol_version(kProtocolVersion);
  out->set_run_id(binding.run_id);
  out->set_round(binding.round);
  out->set_client_id(binding.client_id);
  out->set_phase(ToProto(binding.phase));
  out->set_sequence(binding.sequence);
}

absl::StatusOr<Binding> FromProto(const v1::Binding& binding) {
  if (binding.protocol_version() != kProtocolVersion) {
    return absl::InvalidArgumentError(absl::StrCat("binding.protocol_version: this coordinator speaks version ",
                                                   kProtocolVersion, ", got ", binding.protocol_version()));
  }
  Binding out;
  out.run_id = binding.run_id();
  out.round = binding.round();
  out.client_id = binding.client_id();
  FEDFM_ASSIGN_OR_RETURN(out.phase, FromProto(binding.phase()));
  out.sequence = binding.sequence();
  return out;
}

void ToProto(const Coverage& coverage, v1::Coverage* out) {
  out->clear_tensors();
  for (const TensorCoverage& t : coverage.tensors) {
    v1::TensorCoverage* c = out->add_tensors();
    c->set_name(t.name);
    c->set_rank_dim(t.rank_dim);
    c->set_rank(t.rank);
  }
}

Coverage FromProto(const v1::Coverage& coverage) {
  Coverage out;
  out.tensors.reserve(coverage.tensors_size());
  for (const v1::TensorCoverage& t : coverage.tensors()) {
    out.tensors.push_back({t.name(), t.rank_dim(), t.rank()});
  }
  return out;
}

void ToProto(const DeviceProfile& profile, v1::DeviceProfile* out) {
  out->set_name(profile.name);
  out->set_accelerator(profile.accelerator);
  out->set_memory_bytes(profile.memory_bytes);
  out->set_flops_per_s(profile.flops_per_s);
  out->set_uplink_bytes_per_s(profile.uplink_bytes_per_s);
  out->set_downlink_bytes_per_s(profile.downlink_bytes_per_s);
  out->set_availability(profile.availability);
  out->set_dropout(profile.dropout);
  out->clear_methods();
  for (Method m : profile.methods) out->add_methods(ToProto(m));
}

absl::StatusOr<DeviceProfile> FromProto(const v1::DeviceProfile& profile) {
  DeviceProfile out;
  out.name = profile.name();
  out.accelerator = profile.accelerator();
  out.memory_bytes = profile.memory_bytes();
  out.flops_per_s = profile.flops_per_s();
  out.uplink_bytes_per_s = profile.uplink_bytes_per_s();
  out.downlink_bytes_per_s = profile.downlink_bytes_per_s();
  out.availability = profile.availability();
  out.dropout = profile.dropout();
  for (int m : profile.methods()) {
    absl::StatusOr<Method> method = FromProto(static_cast<v1::Method>(m));
    if (!method.ok()) return absl::InvalidArgumentError(absl::StrCat("profile.methods: ", method.status().message()));
    out.methods.push_back(*method);
  }
  return out;
}

// --- Task -----------------------------------------------------------------------

namespace {

void ToProto(const SecAggTask& s, v1::SecAggTask* out) {
  out->set_enabled(s.enabled);
  out->set_group(s.group == SecAggTask::Group::kDense ? v1::SecAggTask::GROUP_DENSE
                                                      : v1::SecAggTask::GROUP_SEED_SCALARS);
  out->set_round_id(s.round_id);
  out->set_index(s.index);
  out->set_num_clients(s.num_clients);
  out->set_num_neighbors(s.num_neighbors);
  out->set_threshold(s.threshold);
  out->set_threshold_count(s.threshold_count);
  out->set_vector_length(s.vector_length);
  out->set_graph_seed(reinterpret_cast<const char*>(s.graph_seed.data()), s.graph_seed.size());
  out->set_clip(s.clip);
  out->set_fraction_bits(s.fraction_bits);
  out->clear_layout();
  for (const std::string& name : s.layout) out->add_layout(name);
  out->set_weight_unit(s.weight_unit);
  out->set_weight_by_examples(s.weight_by_examples);
}

absl::StatusOr<SecAggTask> FromProto(const v1::SecAggTask& s) {
  SecAggTask out;
  out.enabled = s.enabled();
  switch (s.group()) {
    case v1::SecAggTask::GROUP_DENSE: out.group = SecAggTask::Group::kDense; break;
    case v1::SecAggTask::GROUP_SEED_SCALARS: out.group = SecAggTask::Group::kSeedScalars; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("task.secagg.group: unknown group ", s.group()));
  }
  out.round_id = s.round_id();
  out.index = s.index();
  out.num_clients = s.num_clients();
  out.num_neighbors = s.num_neighbors();
  out.threshold = s.threshold();
  out.threshold_count = s.threshold_count();
  out.vector_length = s.vector_length();
  if (s.enabled() || !s.graph_seed().empty()) {
    if (s.graph_seed().size() != out.graph_seed.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("task.secagg.graph_seed: must be 32 bytes, got ", s.graph_seed().size()));
    }
    std::copy(s.graph_seed().begin(), s.graph_seed().end(), reinterpret_cast<char*>(out.graph_seed.data()));
  }
  out.clip = s.clip();
  out.fraction_bits = s.fraction_bits();
  out.layout.assign(s.layout().begin(), s.layout().end());
  out.weight_unit = s.weight_unit();
  out.weight_by_examples = s.weight_by_examples();
  return out;
}

}  // namespace

void ToProto(const Task& task, v1::Task* out) {
  out->set_round(task.round);
  out->set_evaluate_only(task.evaluate_only);
  out->set_method(ToProto(task.method));
  out->set_lora_rank(task.lora_rank);
  out->set_top_blocks(task.top_blocks);
  out->set_partial_full_weights(task.partial_full_weights);
  out->set_local_steps(task.local_steps);
  out->set_batch_size(task.batch_size);
  out->set_grad_accumulation(task.grad_accumulation);
  out->set_seq_len(task.seq_len);
  out->set_learning_rate(task.learning_rate);
  out->set_weight_decay(task.weight_decay);
  out->set_grad_clip(task.grad_clip);
  out->set_fedprox_mu(task.fedprox_mu);
  out->clear_seed_pool();
  for (uint64_t seed : task.seed_pool) out->add_seed_pool(seed);
  out->set_zo_epsilon(task.zo_epsilon);
  out->set_zo_learning_rate(task.zo_learning_rate);
  out->set_zo_perturbations(task.zo_perturbations);
  out->set_round_seed(task.round_seed);
  ToProto(task.coverage, out->mutable_coverage());
  out->set_model_version(task.model_version);
  v1::DpTask* dp = out->mutable_dp();
  dp->set_enabled(task.dp.enabled);
  dp->set_mode(task.dp.mode);
  dp->set_clip_norm(task.dp.clip_norm);
  dp->set_noise_multiplier(task.dp.noise_multiplier);
  dp->set_delta(task.dp.delta);
  out->set_dp_noise_clients(task.dp_noise_clients);
  ToProto(task.secagg, out->mutable_secagg());
}

absl::StatusOr<Task> FromProto(const v1::Task& task) {
  Task out;
  out.round = task.round();
  out.evaluate_only = task.evaluate_only();
  FEDFM_ASSIGN_OR_RETURN(out.method, FromProto(task.method()));
  out.lora_rank = task.lora_rank();
  out.top_blocks = task.top_blocks();
  out.partial_full_weights = task.partial_full_weights();
  out.local_steps = task.local_steps();
  out.batch_size = task.batch_size();
  out.grad_accumulation = task.grad_accumulation();
  out.seq_len = task.seq_len();
  out.learning_rate = task.learning_rate();
  out.weight_decay = task.weight_decay();
  out.grad_clip = task.grad_clip();
  out.fedprox_mu = task.fedprox_mu();
  out.seed_pool.assign(task.seed_pool().begin(), task.seed_pool().end());
  out.zo_epsilon = task.zo_epsilon();
  out.zo_learning_rate = task.zo_learning_rate();
  out.zo_perturbations = task.zo_perturbations();
  out.round_seed = task.round_seed();
  out.coverage = FromProto(task.coverage());
  out.model_version = task.model_version();
  out.dp.enabled = task.dp().enabled();
  out.dp.mode = task.dp().mode();
  out.dp.clip_norm = task.dp().clip_norm();
  out.dp.noise_multiplier = task.dp().noise_multiplier();
  out.dp.delta = task.dp().delta();
  out.dp_noise_clients = task.dp_noise_clients();
  FEDFM_ASSIGN_OR_RETURN(out.secagg, FromProto(task.secagg()));
  return out;
}

// --- Poll, enroll ---------------------------------------------------------------

void ToProto(const PollResponse& response, v1::PollTaskResponse* out) {
  switch (response.kind) {
    case PollKind::kWait: out->set_kind(v1::PollTaskResponse::KIND_WAIT); break;
    case PollKind::kTrain: out->set_kind(v1::PollTaskResponse::KIND_TRAIN); break;
    case PollKind::kStop: out->set_kind(v1::PollTaskResponse::KIND_STOP); break;
  }
  if (response.kind == PollKind::kTrain) {
    ToProto(response.binding, out->mutable_binding());
    ToProto(response.task, out->mutable_task());
  }
  out->set_model_version(response.model_version);
  out->set_deadline_ms(response.deadline_ms);
  out->set_retry_after_ms(response.retry_after_ms);
  out->set_reason(response.reason);
}

absl::StatusOr<PollResponse> FromProto(const v1::PollTaskResponse& response) {
  PollResponse out;
  switch (response.kind()) {
    case v1::PollTaskResponse::KIND_WAIT: out.kind = PollKind::kWait; break;
    case v1::PollTaskResponse::KIND_TRAIN: out.kind = PollKind::kTrain; break;
    case v1::PollTaskResponse::KIND_STOP: out.kind = PollKind::kStop; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("poll response: unknown kind ", response.kind()));
  }
  if (out.kind == PollKind::kTrain) {
    FEDFM_ASSIGN_OR_RETURN(out.binding, FromProto(response.binding()));
    FEDFM_ASSIGN_OR_RETURN(out.task, FromProto(response.task()));
  }
  out.model_version = response.model_version();
  out.deadline_ms = response.deadline_ms();
  out.retry_after_ms = response.retry_after_ms();
  out.reason = response.reason();
  return out;
}

void ToProto(const EnrollRequest& request, v1::EnrollRequest* out) {
  out->set_protocol_version(kProtocolVersion);
  out->set_token(request.token);
  out->set_name(request.name);
  ToProto(request.profile, out->mutable_profile());
}

absl::StatusOr<EnrollRequest> FromProto(const v1::EnrollRequest& request) {
  if (request.protocol_version() != kProtocolVersion) {
    return absl::InvalidArgumentError(absl::StrCat("enroll: this coordinator speaks protocol version ",
                                                   kProtocolVersion, ", the client ", request.protocol_version()));
  }
  EnrollRequest out;
  out.token = request.token();
  out.name = request.name();
  FEDFM_ASSIGN_OR_RETURN(out.profile, FromProto(request.profile()));
  return out;
}

// --- Uploads --------------------------------------------------------------------

void MetricsToProto(const std::map<std::string, double>& metrics,
                    google::protobuf::Map<std::string, double>* out) {
  out->clear();
  for (const auto& [name, value] : metrics) (*out)[name] = value;
}

std::map<std::string, double> MetricsFromProto(const google::protobuf::Map<std::string, double>& metrics) {
  return std::map<std::string, double>(metrics.begin(), metrics.end());
}

void UpdateHeaderToProto(const Update& update, v1::UploadHeader* out) {
  out->set_kind(update.kind == UpdateKind::kDense ? v1::UPDATE_KIND_DENSE : v1::UPDATE_KIND_SEED_SCALARS);
  if (update.kind == UpdateKind::kDense) ToProto(update.coverage, out->mutable_coverage());
  out->set_num_examples(update.num_examples);
  MetricsToProto(update.metrics, out->mutable_metrics());
  out->set_peak_memory_bytes(update.peak_memory_bytes);
  out->clear_seed_scalars();
  if (update.kind == UpdateKind::kSeedScalars) {
    out->mutable_seed_scalars()->Add(update.seed_scalars.begin(), update.seed_scalars.end());
  }
}

absl::StatusOr<Update> UpdateFromHeader(const v1::UploadHeader& header) {
  Update out;
  switch (header.kind()) {
    case v1::UPDATE_KIND_DENSE: out.kind = UpdateKind::kDense; break;
    case v1::UPDATE_KIND_SEED_SCALARS: out.kind = UpdateKind::kSeedScalars; break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("upload header: kind ", static_cast<int>(header.kind()), " is not a plaintext update"));
  }
  out.client_id = header.binding().client_id();
  out.num_examples = header.num_examples();
  out.coverage = FromProto(header.coverage());
  out.seed_scalars.assign(header.seed_scalars().begin(), header.seed_scalars().end());
  out.metrics = MetricsFromProto(header.metrics());
  out.peak_memory_bytes = header.peak_memory_bytes();
  return out;
}

void UploadInfoToProto(const UploadInfo& info, v1::UploadHeader* out) {
  out->set_kind(v1::UPDATE_KIND_MASKED);
  out->set_num_examples(info.num_examples);
  MetricsToProto(info.metrics, out->mutable_metrics());
  out->set_peak_memory_bytes(info.peak_memory_bytes);
}

UploadInfo UploadInfoFromProto(const v1::UploadHeader& header) {
  UploadInfo out;
  out.num_examples = header.num_examples();
  out.metrics = MetricsFromProto(header.metrics());
  out.peak_memory_bytes = header.peak_memory_bytes();
  return out;
}

std::string DeterministicBytes(const google::protobuf::MessageLite& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

}  // namespace fedfm::protocols::wire
