#include "client/runtime.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "aggregation/dp.h"
#include "aggregation/secagg/client.h"
#include "aggregation/secagg/crypto.h"
#include "aggregation/secagg/fixed_point.h"
#include "aggregation/secagg/round_config.h"
#include "model/dataset_rng.h"
#include "protocols/status_macros.h"
#include "protocols/tensor_codec.h"

namespace fedfm::client {
namespace {

using protocols::Binding;
using protocols::Phase;
using protocols::PollKind;
using protocols::Task;
using protocols::Update;
using protocols::UpdateKind;

class SystemEnv final : public ClientEnv {
 public:
  int64_t NowMs() override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  void SleepMs(int64_t ms) override {
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
};

// Where the runtime is in its loop.
enum class State {
  kEnroll,
  kPoll,
  kDownload,
  kWork,          // train or evaluate the task in hand
  kUpload,        // plaintext update
  kAdvertise,     // SecAgg+ round 0
  kFetchKeys,
  kShare,         // round 1
  kFetchShares,
  kMask,          // train, encode, mask and upload (round 2)
  kFetchUnmask,
  kUnmask,        // round 3
  kReport,
  kStopped,
};

}  // namespace

ClientEnv& SystemClientEnv() {
  static SystemEnv* env = new SystemEnv();
  return *env;
}

const char* StepEventName(StepEvent event) {
  switch (event) {
    case StepEvent::kEnrolled: return "enrolled";
    case StepEvent::kWaiting: return "waiting";
    case StepEvent::kTaskReceived: return "task_received";
    case StepEvent::kDownloaded: return "downloaded";
    case StepEvent::kSecAggProgress: return "secagg_progress";
    case StepEvent::kUploaded: return "uploaded";
    case StepEvent::kRoundDone: return "round_done";
    case StepEvent::kRefused: return "refused";
    case StepEvent::kLinkFailure: return "link_failure";
    case StepEvent::kStopped: return "stopped";
  }
  return "unknown";
}

class ClientRuntime::Impl {
 public:
  Impl(CoordinatorLink& link, Trainer& trainer, Dataset& data, ClientEnv& env, ClientRuntimeOptions options)
      : link_(link), trainer_(trainer), data_(data), env_(env), options_(std::move(options)) {
    sequence_ = options_.sequence_start != 0 ? options_.sequence_start
                                             : static_cast<uint64_t>(std::max<int64_t>(1, env_.NowMs())) * 1000;
    jitter_state_ = options_.jitter_seed ^ 0x6A09E667F3BCC908ull;
    dp_seed_ = options_.dp_seed;
    if (dp_seed_ == 0) {
      std::unique_ptr<secagg::RandomSource> rng = secagg::NewSystemRandom();
      std::array<uint8_t, 8> b{};
      if (rng->Fill(b).ok()) {
        for (int i = 0; i < 8; ++i) dp_seed_ |= static_cast<uint64_t>(b[i]) << (8 * i);
      }
      if (dp_seed_ == 0) dp_seed_ = 1;
    }
    if (options_.identity.has_value()) identity_ = options_.identity;
  }

  absl::StatusOr<StepResult> Step();
  const std::optional<protocols::EnrollResponse>& identity() const { return identity_; }
  const ClientRuntimeStats& stats() const { return stats_; }
  bool stopped() const { return state_ == State::kStopped; }
  void Stop() { state_ = State::kStopped; }
  ClientEnv& env() { return env_; }

 private:
  // The binding of the next message of the round in hand.
  Binding NextBinding(Phase phase) {
    Binding b = poll_.binding;
    b.client_id = identity_->client_id;
    b.phase = phase;
    b.sequence = ++sequence_;
    return b;
  }
  // A transport failure: stay in the state, wait the backoff.
  absl::StatusOr<StepResult> LinkFailure(const absl::Status& status);
  // A refusal (or a local failure) ends the round in hand.
  StepResult Abandon(const std::string& what, const absl::Status& status);
  // Handles a link call's status: OK -> nullopt (go on); a transport failure
  // or a refusal -> the step's result. AlreadyExists after a resend counts as
  // delivered.
  std::optional<absl::StatusOr<StepResult>> Check(const absl::Status& status, const char* what);
  void ResetRound() {
    update_.reset();
    report_.reset();
    secagg_.reset();
    secagg_rng_.reset();
    keys_.reset();
    shares_.reset();
    routed_.reset();
    masked_.reset();
    unmask_.reset();
    resent_ = false;
  }
  StepResult RoundDone(const std::string& detail) {
    ResetRound();
    state_ = State::kPoll;
    return {StepEvent::kRoundDone, 0, detail};
  }
  absl::StatusOr<StepResult> FetchFailure(const absl::Status& status, const char* what) {
    if (IsTransportFailure(status)) return LinkFailure(status);
    failures_ = 0;
    return Abandon(what, status);
  }
  absl::Status ApplyDp(Update& update, bool secure);
  absl::StatusOr<std::vector<uint32_t>> EncodeForSecAgg(const Update& update);
  absl::Status StartSecAgg();
  // Trains (once) and returns the update, with client id and DP applied.
  absl::StatusOr<bool> EnsureUpdate(bool secure);

  CoordinatorLink& link_;
  Trainer& trainer_;
  Dataset& data_;
  ClientEnv& env_;
  ClientRuntimeOptions options_;

  State state_ = State::kEnroll;
  std::optional<protocols::EnrollResponse> identity_;
  ClientRuntimeStats stats_;
  uint64_t sequence_ = 0;
  uint64_t jitter_state_ = 0;
  uint64_t dp_seed_ = 0;
  int failures_ = 0;
  bool resent_ = false;  // the message of the current state was sent before a transport failure

  std::optional<protocols::ModelSnapshot> model_;
  protocols::PollResponse poll_;
  std::optional<Update> update_;
  std::optional<protocols::EvalReport> report_;
  std::unique_ptr<secagg::RandomSource> secagg_rng_;
  std::unique_ptr<secagg::SecAggClient> secagg_;
  std::optional<secagg::ClientKeys> keys_;
  std::optional<secagg::ClientShares> shares_;
  std::optional<secagg::RoutedShares> routed_;
  std::optional<secagg::MaskedInput> masked_;
  std::optional<secagg::UnmaskResponse> unmask_;
};

absl::StatusOr<StepResult> ClientRuntime::Impl::LinkFailure(const absl::Status& status) {
  ++failures_;
  ++stats_.link_failures;
  resent_ = true;
  if (options_.max_consecutive_failures > 0 && failures_ > options_.max_consecutive_failures) {
    return absl::UnavailableError(absl::StrCat("coordinator unreachable after ", failures_,
                                               " consecutive failures; last: ", status.message()));
  }
  double delay = static_cast<double>(options_.backoff_initial_ms) *
                 std::pow(std::max(1.0, options_.backoff_multiplier), failures_ - 1);
  delay = std::min(delay, static_cast<double>(options_.backoff_max_ms));
  const double jitter = std::clamp(options_.backoff_jitter, 0.0, 1.0);
  const double u = static_cast<double>(model::SplitMix64(jitter_state_) >> 11) * 0x1.0p-53;  // [0, 1)
  const auto ms = static_cast<int64_t>(delay * (1.0 - jitter * u));
  stats_.backoff_ms_total += ms;
  return StepResult{StepEvent::kLinkFailure, ms, std::string(status.message())};
}

StepResult ClientRuntime::Impl::Abandon(const std::string& what, const absl::Status& status) {
  ++stats_.refusals;
  stats_.last_refusal = absl::StrCat(what, ": ", status.ToString());
  ResetRound();
  state_ = State::kPoll;
  return {StepEvent::kRefused, options_.backoff_initial_ms, stats_.last_refusal};
}

std::optional<absl::StatusOr<StepResult>> ClientRuntime::Impl::Check(const absl::Status& status, const char* what) {
  if (status.ok() || (resent_ && status.code() == absl::StatusCode::kAlreadyExists)) {
    failures_ = 0;
    resent_ = false;
    return std::nullopt;
  }
  if (IsTransportFailure(status)) return LinkFailure(status);
  failures_ = 0;
  return absl::StatusOr<StepResult>(Abandon(what, status));
}

absl::Status ClientRuntime::Impl::ApplyDp(Update& update, bool secure) {
  const protocols::DpOptions& dp = poll_.task.dp;
  if (!dp.enabled) return absl::OkStatus();
  if (dp.mode == "distributed") {
    uint64_t s = dp_seed_ ^ (static_cast<uint64_t>(poll_.task.round) * 0x9E3779B97F4A7C15ull);
    const uint64_t seed = model::SplitMix64(s);
    return aggregation::ClipAndAddDistributedNoise(update, dp, std::max(1, poll_.task.dp_noise_clients), seed)
        .status();
  }
  if (secure) aggregation::ClipUpdate(update, dp.clip_norm);  // the server cannot clip a masked input
  return absl::OkStatus();
}

absl::StatusOr<bool> ClientRuntime::Impl::EnsureUpdate(bool secure) {
  if (update_.has_value()) return false;
  protocols::TensorMap state = model_->state;  // copy-on-write: the trainer may scratch it
  absl::StatusOr<Update> update = trainer_.Train(poll_.task, state, data_);
  if (!update.ok()) return update.status();
  update->client_id = identity_->client_id;
  FEDFM_RETURN_IF_ERROR(ApplyDp(*update, secure));
  update_ = *std::move(update);
  ++stats_.rounds_trained;
  return true;
}

absl::StatusOr<std::vector<uint32_t>> ClientRuntime::Impl::EncodeForSecAgg(const Update& update) {
  const protocols::SecAggTask& s = poll_.task.secagg;
  std::vector<float> values(static_cast<size_t>(s.vector_length), 0.0f);
  if (s.group == protocols::SecAggTask::Group::kSeedScalars) {
    if (update.kind != UpdateKind::kSeedScalars || static_cast<int64_t>(update.seed_scalars.size()) != s.vector_length) {
      return absl::InvalidArgumentError(absl::StrCat("the seed-scalar SecAgg group needs ", s.vector_length,
                                                     " seed scalars, the trainer gave ", update.seed_scalars.size()));
    }
    std::copy(update.seed_scalars.begin(), update.seed_scalars.end(), values.begin());
  } else {
    if (update.kind != UpdateKind::kDense) {
      return absl::InvalidArgumentError("the dense SecAgg group needs a dense update");
    }
    int64_t offset = 0;
    for (const std::string& name : s.layout) {
      const protocols::Tensor* g = model_->state.Find(name);
      if (g == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("SecAgg layout names tensor \"", name, "\", which the global state lacks"));
      }
      const protocols::Tensor* d = update.delta.Find(name);
      if (d != nullptr && update.coverage.Find(name) != nullptr) {
        if (d->numel() != g->numel()) {
          return absl::InvalidArgumentError(absl::StrCat("update tensor \"", name, "\" has ", d->numel(),
                                                         " elements, the global state ", g->numel()));
        }
        const std::vector<float> v = d->ToFloat32();
        std::copy(v.begin(), v.end(), values.begin() + offset);
      }
      offset += g->numel();
    }
    if (offset != s.vector_length) {
      return absl::InvalidArgumentError(
          absl::StrCat("SecAgg layout spans ", offset, " elements, the task says ", s.vector_length));
    }
  }
  const double weight = s.weight_by_examples ? static_cast<double>(update.num_examples) : 1.0;
  const double factor = weight / static_cast<double>(std::max<uint64_t>(1, s.weight_unit));
  for (float& x : values) x = static_cast<float>(x * factor);
  FEDFM_ASSIGN_OR_RETURN(secagg::FixedPointCodec codec,
                         secagg::FixedPointCodec::Create(s.clip, s.fraction_bits, s.num_clients));
  std::vector<uint32_t> encoded(values.size());
  FEDFM_RETURN_IF_ERROR(codec.Encode(values, encoded));
  return encoded;
}

absl::Status ClientRuntime::Impl::StartSecAgg() {
  const protocols::SecAggTask& s = poll_.task.secagg;
  secagg::SecAggParams params;
  params.round_id = s.round_id;
  params.num_clients = s.num_clients;
  params.num_neighbors = s.num_neighbors;
  params.threshold = s.threshold;
  params.vector_length = s.vector_length;
  params.graph_seed = s.graph_seed;
  FEDFM_ASSIGN_OR_RETURN(secagg::RoundConfig config, secagg::MakeRoundConfig(params));
  if (options_.secagg_seed.has_value()) {
    // Per client and round: HKDF(seed, client id | round id).
    const std::string info = absl::StrCat(identity_->client_id, "|", s.round_id);
    FEDFM_ASSIGN_OR_RETURN(
        secagg::Key key,
        secagg::HkdfSha256Key(*options_.secagg_seed, {},
                              secagg::ByteSpan(reinterpret_cast<const uint8_t*>(info.data()), info.size())));
    secagg_rng_ = secagg::NewSeededRandom(key);
  } else {
    secagg_rng_ = secagg::NewSystemRandom();
  }
  FEDFM_ASSIGN_OR_RETURN(secagg_, secagg::SecAggClient::Create(std::move(config), s.index, secagg_rng_.get(),
                                                               {.num_threads = std::max(1, options_.secagg_threads)}));
  return absl::OkStatus();
}

absl::StatusOr<StepResult> ClientRuntime::Impl::Step() {
  switch (state_) {
    case State::kStopped:
      return StepResult{StepEvent::kStopped, 0, "stopped"};

    case State::kEnroll: {
      if (identity_.has_value()) {
        absl::Status s = link_.UseIdentity(*identity_);
        if (IsTransportFailure(s)) return LinkFailure(s);
        FEDFM_RETURN_IF_ERROR(s);
        failures_ = 0;
        state_ = State::kPoll;
        return StepResult{StepEvent::kEnrolled, 0, identity_->client_id};
      }
      absl::StatusOr<protocols::EnrollResponse> r =
          link_.Enroll({.token = options_.token, .name = options_.name, .profile = options_.profile});
      if (!r.ok()) {
        if (IsTransportFailure(r.status())) return LinkFailure(r.status());
        return absl::Status(r.status().code(), absl::StrCat("enrollment refused: ", r.status().message()));
      }
      failures_ = 0;
      identity_ = *std::move(r);
      state_ = State::kPoll;
      return StepResult{StepEvent::kEnrolled, 0, identity_->client_id};
    }

    case State::kPoll: {
      ++stats_.polls;
      absl::StatusOr<protocols::PollResponse> r = link_.Poll(
          {.client_id = identity_->client_id, .have_model_version = model_.has_value() ? model_->version : ""});
      if (!r.ok()) {
        if (IsTransportFailure(r.status())) return LinkFailure(r.status());
        if (r.status().code() == absl::StatusCode::kPermissionDenied ||
            r.status().code() == absl::StatusCode::kNotFound) {
          state_ = State::kStopped;
          return absl::Status(r.status().code(), absl::StrCat("the coordinator refuses this device: ",
                                                              r.status().message()));
        }
        return Abandon("poll", r.status());
      }
      failures_ = 0;
      if (r->kind == PollKind::kStop) {
        state_ = State::kStopped;
        return StepResult{StepEvent::kStopped, 0, r->reason};
      }
      if (r->kind == PollKind::kWait) {
        const int64_t wait = std::clamp<int64_t>(r->retry_after_ms, 1, options_.max_poll_wait_ms);
        return StepResult{StepEvent::kWaiting, wait, r->reason};
      }
      ResetRound();
      poll_ = *std::move(r);
      const std::string& want = poll_.task.model_version.empty() ? poll_.model_version : poll_.task.model_version;
      state_ = model_.has_value() && model_->version == want ? State::kWork : State::kDownload;
      return StepResult{StepEvent::kTaskReceived, 0, absl::StrCat("round ", poll_.task.round)};
    }

    case State::kDownload: {
      const std::string& want = poll_.task.model_version.empty() ? poll_.model_version : poll_.task.model_version;
      absl::StatusOr<protocols::ModelSnapshot> m = link_.DownloadModel(want);
      if (!m.ok()) {
        if (IsTransportFailure(m.status())) return LinkFailure(m.status());
        return Abandon("download", m.status());
      }
      failures_ = 0;
      ++stats_.downloads;
      stats_.bytes_down += m->safetensors != nullptr ? m->safetensors->size() : m->state.TotalBytes();
      model_ = *std::move(m);
      state_ = State::kWork;
      return StepResult{StepEvent::kDownloaded, 0, model_->version};
    }

    case State::kWork: {
      if (poll_.task.evaluate_only) {
        absl::StatusOr<protocols::EvalReport> r = trainer_.Evaluate(poll_.task, model_->state, data_);
        if (!r.ok()) {
          if (r.status().code() == absl::StatusCode::kResourceExhausted) return Abandon("evaluate", r.status());
          return r.status();
        }
        ++stats_.rounds_evaluated;
        report_ = *std::move(r);
        state_ = State::kReport;
        return StepResult{StepEvent::kSecAggProgress, 0, "evaluated"};
      }
      if (poll_.task.secagg.enabled) {
        absl::Status s = StartSecAgg();
        if (!s.ok()) return Abandon("secagg setup", s);
        state_ = State::kAdvertise;
        return StepResult{StepEvent::kSecAggProgress, 0, "secagg started"};
      }
      absl::StatusOr<bool> trained = EnsureUpdate(/*secure=*/false);
      if (!trained.ok()) {
        if (trained.status().code() == absl::StatusCode::kResourceExhausted) return Abandon("train", trained.status());
        return trained.status();
      }
      state_ = State::kUpload;
      return StepResult{StepEvent::kSecAggProgress, 0, "trained"};
    }

    case State::kUpload: {
      absl::Status s = link_.UploadUpdate(NextBinding(Phase::kCollect), *update_);
      if (auto r = Check(s, "upload")) return *r;
      ++stats_.updates_accepted;
      stats_.bytes_up += update_->kind == UpdateKind::kDense ? protocols::EncodedSize(update_->delta)
                                                             : update_->seed_scalars.size() * sizeof(float);
      if (options_.report_after_training) {
        absl::StatusOr<protocols::EvalReport> r = trainer_.Evaluate(poll_.task, model_->state, data_);
        if (r.ok()) {
          report_ = *std::move(r);
          state_ = State::kReport;
          return StepResult{StepEvent::kUploaded, 0, "update accepted"};
        }
      }
      StepResult done = RoundDone(absl::StrCat("round ", poll_.task.round, ": update accepted"));
      done.event = StepEvent::kUploaded;
      return done;
    }

    case State::kAdvertise: {
      if (!keys_.has_value()) {
        absl::StatusOr<secagg::ClientKeys> k = secagg_->AdvertiseKeys();
        if (!k.ok()) return Abandon("secagg advertise", k.status());
        keys_ = *std::move(k);
      }
      absl::Status s = link_.AdvertiseKeys(NextBinding(Phase::kAdvertiseKeys), *keys_);
      if (auto r = Check(s, "secagg advertise")) return *r;
      stats_.bytes_up += secagg::SerializedSize(*keys_);
      state_ = State::kFetchKeys;
      return StepResult{StepEvent::kSecAggProgress, 0, "keys advertised"};
    }

    case State::kFetchKeys: {
      absl::StatusOr<Routed<secagg::NeighborKeys>> r = link_.FetchNeighborKeys(NextBinding(Phase::kAdvertiseKeys));
      if (!r.ok()) return FetchFailure(r.status(), "secagg neighbour keys");
      failures_ = 0;
      if (!r->message.has_value()) {
        return StepResult{StepEvent::kSecAggProgress, std::max<int64_t>(1, r->retry_after_ms), "waiting for keys"};
      }
      stats_.bytes_down += secagg::SerializedSize(*r->message);
      absl::StatusOr<secagg::ClientShares> shares = secagg_->ShareKeys(*r->message);
      if (!shares.ok()) return Abandon("secagg share keys", shares.status());
      shares_ = *std::move(shares);
      state_ = State::kShare;
      return StepResult{StepEvent::kSecAggProgress, 0, "neighbour keys received"};
    }

    case State::kShare: {
      absl::Status s = link_.ShareKeys(NextBinding(Phase::kShareKeys), *shares_);
      if (auto r = Check(s, "secagg share keys")) return *r;
      stats_.bytes_up += secagg::SerializedSize(*shares_);
      state_ = State::kFetchShares;
      return StepResult{StepEvent::kSecAggProgress, 0, "shares sent"};
    }

    case State::kFetchShares: {
      absl::StatusOr<Routed<secagg::RoutedShares>> r = link_.FetchRoutedShares(NextBinding(Phase::kShareKeys));
      if (!r.ok()) return FetchFailure(r.status(), "secagg routed shares");
      failures_ = 0;
      if (!r->message.has_value()) {
        return StepResult{StepEvent::kSecAggProgress, std::max<int64_t>(1, r->retry_after_ms), "waiting for shares"};
      }
      stats_.bytes_down += secagg::SerializedSize(*r->message);
      routed_ = *std::move(r->message);
      state_ = State::kMask;
      return StepResult{StepEvent::kSecAggProgress, 0, "shares received"};
    }

    case State::kMask: {
      if (!masked_.has_value()) {
        absl::StatusOr<bool> trained = EnsureUpdate(/*secure=*/true);
        if (!trained.ok()) {
          if (trained.status().code() == absl::StatusCode::kResourceExhausted) {
            return Abandon("train", trained.status());
          }
          return trained.status();
        }
        absl::StatusOr<std::vector<uint32_t>> encoded = EncodeForSecAgg(*update_);
        if (!encoded.ok()) return Abandon("secagg encode", encoded.status());
        absl::StatusOr<secagg::MaskedInput> masked = secagg_->MaskInput(*routed_, *encoded);
        if (!masked.ok()) return Abandon("secagg mask", masked.status());
        masked_ = *std::move(masked);
      }
      protocols::UploadInfo info{.num_examples = update_->num_examples,
                                 .metrics = update_->metrics,
                                 .peak_memory_bytes = update_->peak_memory_bytes};
      absl::Status s = link_.UploadMaskedInput(NextBinding(Phase::kCollect), *masked_, info);
      if (auto r = Check(s, "secagg masked input")) return *r;
      ++stats_.updates_accepted;
      stats_.bytes_up += secagg::SerializedSize(*masked_);
      state_ = State::kFetchUnmask;
      return StepResult{StepEvent::kUploaded, 0, "masked input accepted"};
    }

    case State::kFetchUnmask: {
      absl::StatusOr<Routed<secagg::UnmaskRequest>> r = link_.FetchUnmaskRequest(NextBinding(Phase::kUnmask));
      if (!r.ok()) return FetchFailure(r.status(), "secagg unmask request");
      failures_ = 0;
      if (!r->message.has_value()) {
        return StepResult{StepEvent::kSecAggProgress, std::max<int64_t>(1, r->retry_after_ms),
                          "waiting for the unmask request"};
      }
      stats_.bytes_down += secagg::SerializedSize(*r->message);
      absl::StatusOr<secagg::UnmaskResponse> u = secagg_->Unmask(*r->message);
      if (!u.ok()) return Abandon("secagg unmask", u.status());
      unmask_ = *std::move(u);
      state_ = State::kUnmask;
      return StepResult{StepEvent::kSecAggProgress, 0, "unmask request received"};
    }

    case State::kUnmask: {
      absl::Status s = link_.Unmask(NextBinding(Phase::kUnmask), *unmask_);
      if (auto r = Check(s, "secagg unmask")) return *r;
      stats_.bytes_up += secagg::SerializedSize(*unmask_);
      if (options_.report_after_training) {
        absl::StatusOr<protocols::EvalReport> r = trainer_.Evaluate(poll_.task, model_->state, data_);
        if (r.ok()) {
          report_ = *std::move(r);
          state_ = State::kReport;
          return StepResult{StepEvent::kSecAggProgress, 0, "unmasked"};
        }
      }
      return RoundDone(absl::StrCat("round ", poll_.task.round, ": unmasked"));
    }

    case State::kReport: {
      absl::Status s = link_.Report(NextBinding(poll_.task.evaluate_only ? Phase::kEvaluate : Phase::kCollect),
                                    *report_);
      if (auto r = Check(s, "report")) return *r;
      return RoundDone(absl::StrCat("round ", poll_.task.round, ": reported"));
    }
  }
  return absl::InternalError("client runtime in an unknown state");
}

ClientRuntime::ClientRuntime(CoordinatorLink& link, Trainer& trainer, Dataset& data, ClientEnv& env,
                             ClientRuntimeOptions options)
    : impl_(std::make_unique<Impl>(link, trainer, data, env, std::move(options))) {}

ClientRuntime::~ClientRuntime() = default;

absl::StatusOr<StepResult> ClientRuntime::Step() {
  if (stop_requested_.load()) {
    impl_->Stop();
    return StepResult{StepEvent::kStopped, 0, "stop requested"};
  }
  return impl_->Step();
}

absl::Status ClientRuntime::Run() {
  while (true) {
    FEDFM_ASSIGN_OR_RETURN(StepResult r, Step());
    if (r.event == StepEvent::kStopped) return absl::OkStatus();
    impl_->env().SleepMs(r.next_in_ms);
  }
}

const std::optional<protocols::EnrollResponse>& ClientRuntime::identity() const { return impl_->identity(); }
const ClientRuntimeStats& ClientRuntime::stats() const { return impl_->stats(); }
bool ClientRuntime::stopped() const { return impl_->stopped(); }

}  // namespace fedfm::client
