// The SQLite Store. The one file of the project that includes <sqlite3.h>.
//
// Layout: one connection, guarded by `mu_`; prepared statements cached per
// SQL text; every mutating call one `BEGIN IMMEDIATE` transaction (the write
// lock taken up front, so a transaction never fails half-way on a lock).
// Model files live in a BlobDir: a directory beside the database, or memory
// for ":memory:". `files_mu_` serialises file writes and orphan removal;
// the lock order is files_mu_ before mu_.
#include "coordinator/sqlite_store.h"

#include <sqlite3.h>

#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/ids.h"
#include "coordinator/internal/hash.h"
#include "coordinator/internal/sqlite_testing.h"
#include "protocols/check.h"
#include "protocols/config/config.h"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

namespace fedfm::coordinator {
namespace {

namespace fs = std::filesystem;

// PRAGMA application_id of a fedfm coordinator database: "fedm".
constexpr int32_t kApplicationId = 0x6665646d;

// Schema migrations, in order: kMigrations[i] takes a database from schema
// version i to i + 1. Append only; never edit a step that has shipped (a test
// builds a version-1 database from its own frozen copy of step 1).
constexpr const char* kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  config_toml TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'stopped'))
);
CREATE TABLE clients (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  profile_json TEXT NOT NULL,
  enrolled_at_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0,
  auth_secret BLOB NOT NULL
);
CREATE TABLE enrollment_tokens (
  token_hash TEXT PRIMARY KEY,
  uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
  expires_at_ms INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE model_versions (
  sha256 TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('model', 'optimizer_state')),
  file_name TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE rounds (
  run_id TEXT NOT NULL REFERENCES runs (id),
  round INTEGER NOT NULL CHECK (round >= 0),
  status TEXT NOT NULL CHECK (status IN ('started', 'committed', 'failed')),
  attempt INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL,
  committed_at_ms INTEGER NOT NULL DEFAULT 0,
  failed_at_ms INTEGER NOT NULL DEFAULT 0,
  failure_reason TEXT NOT NULL DEFAULT '',
  model_version TEXT REFERENCES model_versions (sha256),
  optimizer_state TEXT REFERENCES model_versions (sha256),
  PRIMARY KEY (run_id, round),
  CHECK (status != 'committed' OR model_version IS NOT NULL)
);
CREATE TABLE participants (
  run_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  client_id TEXT NOT NULL REFERENCES clients (id),
  method TEXT NOT NULL,
  rank INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('selected', 'uploaded', 'dropped', 'rejected')),
  reason TEXT NOT NULL,
  bytes_up INTEGER NOT NULL,
  bytes_down INTEGER NOT NULL,
  PRIMARY KEY (run_id, round, client_id),
  FOREIGN KEY (run_id, round) REFERENCES rounds (run_id, round)
);
CREATE TABLE metrics (
  run_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  client_id TEXT NOT NULL,  -- '' for a round-level metric
  name TEXT NOT NULL,
  value REAL,               -- NULL stands for NaN
  PRIMARY KEY (run_id, round, client_id, name),
  FOREIGN KEY (run_id, round) REFERENCES rounds (run_id, round)
);
)sql",
    // 2: replay protection, example counts, metric curves by name.
    R"sql(
ALTER TABLE clients ADD COLUMN last_sequence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE participants ADD COLUMN num_examples INTEGER NOT NULL DEFAULT 0;
CREATE INDEX metrics_by_name ON metrics (run_id, name, round);
)sql",
};
static_assert(std::size(kMigrations) == kSqliteStoreSchemaVersion);

// Maps an SQLite result code to the Status code a caller can act on.
absl::StatusCode CodeOf(int rc) {
  switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
      return absl::StatusCode::kAlreadyExists;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return absl::StatusCode::kNotFound;
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_NOTNULL:
      return absl::StatusCode::kInvalidArgument;
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_FULL:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return absl::StatusCode::kPermissionDenied;
    default:
      return absl::StatusCode::kInternal;
  }
}

// The first 12 hex characters of a token hash, enough to tell tokens apart
// in a message, never the whole stored value.
std::string HashPrefix(const std::string& hash) { return hash.substr(0, 12) + "..."; }

std::string Quote(const std::string& s) { return absl::StrCat("\"", s, "\""); }

std::string RoundKey(const std::string& run_id, int64_t round) {
  return absl::StrCat("(run ", Quote(run_id), ", round ", round, ")");
}

// Text <-> enum for the columns that hold an enum's name.
template <typename Enum, size_t N>
absl::StatusOr<Enum> ParseName(const std::string& text, const Enum (&values)[N],
                               const char* (*name_of)(Enum), const std::string& where) {
  for (Enum value : values) {
    if (text == name_of(value)) return value;
  }
  return absl::DataLossError(absl::StrCat(where, ": unknown value ", Quote(text)));
}
constexpr RunStatus kRunStatuses[] = {RunStatus::kRunning, RunStatus::kFinished, RunStatus::kFailed,
                                      RunStatus::kStopped};
constexpr RoundStatus kRoundStatuses[] = {RoundStatus::kStarted, RoundStatus::kCommitted,
                                          RoundStatus::kFailed};
constexpr ParticipantStatus kParticipantStatuses[] = {
    ParticipantStatus::kSelected, ParticipantStatus::kUploaded, ParticipantStatus::kDropped,
    ParticipantStatus::kRejected};
constexpr BlobKind kBlobKinds[] = {BlobKind::kModel, BlobKind::kOptimizerState};
constexpr protocols::Method kMethods[] = {protocols::Method::kAuto, protocols::Method::kLora,
                                          protocols::Method::kPartial,
                                          protocols::Method::kZerothOrder};

std::string FileNameOf(const std::string& sha256) { return sha256 + ".safetensors"; }

// ---------------------------------------------------------------------------
// Where model files live.

class BlobDir {
 public:
  virtual ~BlobDir() = default;
  // Durable when it returns: a crash afterwards cannot lose the file.
  virtual absl::Status Write(const std::string& file_name, std::span<const std::byte> bytes) = 0;
  // The bytes, unverified. NotFound naming the file when missing.
  virtual absl::StatusOr<ModelVersion> Read(const std::string& file_name) = 0;
  virtual fs::path PathOf(const std::string& file_name) const = 0;
  // Deletes every entry not named in `keep`; returns how many.
  virtual absl::StatusOr<int64_t> RemoveAllBut(const std::set<std::string>& keep) = 0;
};

class FileBlobDir final : public BlobDir {
 public:
  explicit FileBlobDir(fs::path dir) : dir_(std::move(dir)) {}

  absl::Status Write(const std::string& file_name, std::span<const std::byte> bytes) override {
    // WriteFileAtomic fsyncs the file and the directory: the file is on disk
    // before a database row may point at it.
    return protocols::WriteFileAtomic(dir_ / file_name, bytes);
  }

  absl::StatusOr<ModelVersion> Read(const std::string& file_name) override {
    fs::path path = dir_ / file_name;
    absl::StatusOr<std::shared_ptr<const protocols::MappedFile>> file = protocols::MappedFile::Open(path);
    if (!file.ok()) {
      if (absl::IsNotFound(file.status())) {
        return absl::NotFoundError(absl::StrCat("model file ", path.string(), " is missing"));
      }
      return file.status();
    }
    ModelVersion version;
    version.bytes = (*file)->bytes();
    version.owner = *file;
    return version;
  }

  fs::path PathOf(const std::string& file_name) const override { return dir_ / file_name; }

  absl::StatusOr<int64_t> RemoveAllBut(const std::set<std::string>& keep) override {
    int64_t removed = 0;
    std::error_code ec;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir_, ec)) {
      std::string name = entry.path().filename().string();
      if (keep.count(name) > 0 || !entry.is_regular_file()) continue;
      if (!fs::remove(entry.path(), ec) || ec) {
        return absl::InternalError(
            absl::StrCat("cannot remove orphan model file ", entry.path().string(), ": ", ec.message()));
      }
      ++removed;
    }
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot list model directory ", dir_.string(), ": ", ec.message()));
    }
    return removed;
  }

 private:
  const fs::path dir_;
};

class MemoryBlobDir final : public BlobDir {
 public:
  absl::Status Write(const std::string& file_name, std::span<const std::byte> bytes) override {
    auto copy = std::make_shared<const std::string>(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    std::lock_guard<std::mutex> lock(mu_);
    files_[file_name] = std::move(copy);
    return absl::OkStatus();
  }

  absl::StatusOr<ModelVersion> Read(const std::string& file_name) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(file_name);
    if (it == files_.end()) {
      return absl::NotFoundError(absl::StrCat("model file ", file_name, " (in memory) is missing"));
    }
    ModelVersion version;
    version.bytes = std::as_bytes(std::span(it->second->data(), it->second->size()));
    version.owner = it->second;
    return version;
  }

  fs::path PathOf(const std::string&) const override { return {}; }

  absl::StatusOr<int64_t> RemoveAllBut(const std::set<std::string>& keep) override {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t removed = 0;
    for (auto it = files_.begin(); it != files_.end();) {
      if (keep.count(it->first) > 0) {
        ++it;
      } else {
        it = files_.erase(it);
        ++removed;
      }
    }
    return removed;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const std::string>> files_;
};

// ---------------------------------------------------------------------------
// Statements.

// A cached prepared statement, borrowed for one use: reset and unbound when
// it goes out of scope. Binding a wrong index is a bug (FEDFM_CHECK).
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Stmt() {
    if (stmt_ == nullptr) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Stmt(Stmt&& other) noexcept : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;

  Stmt& Bind(int index, int64_t value) {
    Check(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  Stmt& Bind(int index, const std::string& text) {
    Check(sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& Bind(int index, const char* text) { return Bind(index, std::string(text)); }
  Stmt& BindBlob(int index, const std::string& bytes) {
    Check(sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT));
    return *this;
  }
  // NaN is stored as NULL (SQLite has no NaN).
  Stmt& BindDouble(int index, double value) {
    Check(std::isnan(value) ? sqlite3_bind_null(stmt_, index) : sqlite3_bind_double(stmt_, index, value));
    return *this;
  }
  // A SHA-256, or NULL for "".
  Stmt& BindOptional(int index, const std::string& text) {
    if (text.empty()) {
      Check(sqlite3_bind_null(stmt_, index));
      return *this;
    }
    return Bind(index, text);
  }

  // true: a row is ready; false: done. `what` names the table and row for
  // the error message.
  absl::StatusOr<bool> Step(const std::string& what) {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return absl::Status(CodeOf(sqlite3_extended_errcode(db_)),
                        absl::StrCat(what, ": ", sqlite3_errmsg(db_)));
  }
  // Runs a statement that returns no rows.
  absl::Status Run(const std::string& what) {
    FEDFM_ASSIGN_OR_RETURN(bool row, Step(what));
    FEDFM_CHECK_MSG(!row, "Stmt::Run on a statement that returns rows");
    return absl::OkStatus();
  }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const unsigned char* text = sqlite3_column_text(stmt_, col);
    if (text == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, col));
  }
  std::string Blob(int col) const {
    const void* blob = sqlite3_column_blob(stmt_, col);
    if (blob == nullptr) return {};
    return std::string(static_cast<const char*>(blob), sqlite3_column_bytes(stmt_, col));
  }
  double Double(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::numeric_limits<double>::quiet_NaN();
    return sqlite3_column_double(stmt_, col);
  }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  void Check(int rc) { FEDFM_CHECK_MSG(rc == SQLITE_OK, "sqlite3_bind_* failed (bad index or type)"); }
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

absl::Status ValidateId(const std::string& id, const char* what) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " must not be empty"));
  return absl::OkStatus();
}

absl::Status ValidateRound(int64_t round) {
  if (round < 0) return absl::InvalidArgumentError(absl::StrCat("round must be >= 0, got ", round));
  return absl::OkStatus();
}

// Participants at most once per client, metrics at most once per (client, name).
absl::Status ValidateRoundContents(const std::string& key, const std::vector<ParticipantRecord>& participants,
                                   const std::vector<MetricRecord>& metrics) {
  std::set<std::string> clients;
  for (const ParticipantRecord& p : participants) {
    FEDFM_RETURN_IF_ERROR(ValidateId(p.client_id, "participant client_id"));
    if (!clients.insert(p.client_id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("round ", key, ": client ", Quote(p.client_id), " listed twice as a participant"));
    }
  }
  std::set<std::pair<std::string, std::string>> names;
  for (const MetricRecord& m : metrics) {
    if (m.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("round ", key, ": a metric has an empty name"));
    }
    if (!names.insert({m.client_id, m.name}).second) {
      return absl::InvalidArgumentError(absl::StrCat("round ", key, ": metric ", Quote(m.name), " of client ",
                                                     Quote(m.client_id), " given twice"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string name, sqlite3* db, std::unique_ptr<BlobDir> blobs)
      : name_(std::move(name)), db_(db), blobs_(std::move(blobs)) {}

  ~SqliteStore() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }

  // Sets the connection up and migrates the schema. Called once, before the
  // store is shared.
  absl::Status Init(bool in_memory) {
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 5000);
    if (!in_memory) {
      FEDFM_ASSIGN_OR_RETURN(std::string mode, QueryText("PRAGMA journal_mode=WAL"));
      if (mode != "wal") {
        return absl::FailedPreconditionError(
            absl::StrCat(name_, ": cannot switch to WAL journal mode (got ", Quote(mode), ")"));
      }
    }
    FEDFM_RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL", "set synchronous=FULL"));
    FEDFM_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=ON", "enable foreign keys"));
    return Migrate();
  }

  // --- Clients ---------------------------------------------------------------

  absl::Status AddClient(const ClientRecord& client) override {
    FEDFM_RETURN_IF_ERROR(ValidateClient(client));
    std::lock_guard<std::mutex> lock(mu_);
    return InsertClient(client);
  }

  absl::Status AddEnrollmentToken(const EnrollmentTokenRecord& token) override {
    if (!IsSha256Hex(token.token_hash)) {
      return absl::InvalidArgumentError("enrollment token hash must be a lower-case SHA-256 hex (HashToken)");
    }
    if (token.uses_left < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("enrollment token ", HashPrefix(token.token_hash), ": uses must be >= 1, got ",
                       token.uses_left));
    }
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO enrollment_tokens (token_hash, uses_left, "
                                           "expires_at_ms, created_at_ms) VALUES (?1, ?2, ?3, ?4)"));
    s.Bind(1, token.token_hash).Bind(2, token.uses_left).Bind(3, token.expires_at_ms).Bind(4, token.created_at_ms);
    return s.Run(Where("enrollment_tokens", absl::StrCat("token ", HashPrefix(token.token_hash))));
  }

  absl::Status EnrollClient(const std::string& token_hash, int64_t now_ms, const ClientRecord& client) override {
    FEDFM_RETURN_IF_ERROR(ValidateClient(client));
    const std::string token_name = absl::StrCat("enrollment token ", HashPrefix(token_hash));
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_RETURN_IF_ERROR(Begin());
    Transaction txn(this);
    {
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT uses_left, expires_at_ms FROM enrollment_tokens "
                                             "WHERE token_hash = ?1"));
      s.Bind(1, token_hash);
      FEDFM_ASSIGN_OR_RETURN(bool found, s.Step(Where("enrollment_tokens", token_name)));
      if (!found) return absl::NotFoundError(absl::StrCat(name_, ": ", token_name, " is unknown"));
      if (s.Int(1) <= now_ms) {
        return absl::FailedPreconditionError(
            absl::StrCat(name_, ": ", token_name, " expired at ", s.Int(1), " ms (now ", now_ms, " ms)"));
      }
      if (s.Int(0) <= 0) {
        return absl::FailedPreconditionError(absl::StrCat(name_, ": ", token_name, " has no use left"));
      }
    }
    {
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE enrollment_tokens SET uses_left = uses_left - 1 "
                                             "WHERE token_hash = ?1"));
      s.Bind(1, token_hash);
      FEDFM_RETURN_IF_ERROR(s.Run(Where("enrollment_tokens", token_name)));
    }
    FEDFM_RETURN_IF_ERROR(InsertClient(client));
    return txn.Commit();
  }

  absl::StatusOr<ClientRecord> GetClient(const std::string& client_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat(kSelectClient, " WHERE id = ?1")));
    s.Bind(1, client_id);
    const std::string where = Where("clients", absl::StrCat("id ", Quote(client_id)));
    FEDFM_ASSIGN_OR_RETURN(bool found, s.Step(where));
    if (!found) return absl::NotFoundError(absl::StrCat(where, ": no such client"));
    return ReadClient(s);
  }

  absl::StatusOr<std::vector<ClientRecord>> ListClients() override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat(kSelectClient, " ORDER BY enrolled_at_ms, id")));
    std::vector<ClientRecord> out;
    while (true) {
      FEDFM_ASSIGN_OR_RETURN(bool row, s.Step(Where("clients", "all rows")));
      if (!row) break;
      out.push_back(ReadClient(s));
    }
    return out;
  }

  absl::Status RevokeClient(const std::string& client_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE clients SET revoked = 1 WHERE id = ?1"));
    s.Bind(1, client_id);
    const std::string where = Where("clients", absl::StrCat("id ", Quote(client_id)));
    FEDFM_RETURN_IF_ERROR(s.Run(where));
    if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat(where, ": no such client"));
    return absl::OkStatus();
  }

  absl::Status AcceptSequence(const std::string& client_id, uint64_t sequence, int64_t seen_at_ms) override {
    if (sequence > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat("client ", Quote(client_id), ": sequence ", sequence, " is above 2^63 - 1"));
    }
    const int64_t seq = static_cast<int64_t>(sequence);
    const std::string where = Where("clients", absl::StrCat("id ", Quote(client_id)));
    std::lock_guard<std::mutex> lock(mu_);
    {
      // One statement, so the check and the update are one atomic write.
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE clients SET last_sequence = ?2, last_seen_ms = ?3 "
                                             "WHERE id = ?1 AND revoked = 0 AND last_sequence < ?2"));
      s.Bind(1, client_id).Bind(2, seq).Bind(3, seen_at_ms);
      FEDFM_RETURN_IF_ERROR(s.Run(where));
      if (sqlite3_changes(db_) == 1) return absl::OkStatus();
    }
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT revoked, last_sequence FROM clients WHERE id = ?1"));
    s.Bind(1, client_id);
    FEDFM_ASSIGN_OR_RETURN(bool found, s.Step(where));
    if (!found) return absl::NotFoundError(absl::StrCat(where, ": no such client"));
    if (s.Int(0) != 0) return absl::PermissionDeniedError(absl::StrCat(where, ": client is revoked"));
    return absl::FailedPreconditionError(absl::StrCat(where, ": sequence ", sequence,
                                                      " replayed (last accepted ", s.Int(1), ")"));
  }

  // --- Runs ------------------------------------------------------------------

  absl::Status CreateRun(const RunRecord& run) override {
    FEDFM_RETURN_IF_ERROR(ValidateId(run.id, "run id"));
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO runs (id, name, config_toml, created_at_ms, status) "
                                           "VALUES (?1, ?2, ?3, ?4, ?5)"));
    s.Bind(1, run.id).Bind(2, run.name).Bind(3, run.config_toml).Bind(4, run.created_at_ms).Bind(5, RunStatusName(run.status));
    return s.Run(Where("runs", absl::StrCat("id ", Quote(run.id))));
  }

  absl::StatusOr<RunRecord> GetRun(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    return GetRunLocked(run_id);
  }

  absl::StatusOr<std::vector<RunRecord>> ListRuns() override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat(kSelectRun, " ORDER BY created_at_ms, id")));
    std::vector<RunRecord> out;
    while (true) {
      FEDFM_ASSIGN_OR_RETURN(bool row, s.Step(Where("runs", "all rows")));
      if (!row) break;
      FEDFM_ASSIGN_OR_RETURN(RunRecord run, ReadRun(s));
      out.push_back(std::move(run));
    }
    return out;
  }

  absl::Status SetRunStatus(const std::string& run_id, RunStatus status) override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE runs SET status = ?2 WHERE id = ?1"));
    s.Bind(1, run_id).Bind(2, RunStatusName(status));
    const std::string where = Where("runs", absl::StrCat("id ", Quote(run_id)));
    FEDFM_RETURN_IF_ERROR(s.Run(where));
    if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat(where, ": no such run"));
    return absl::OkStatus();
  }

  // --- Rounds ----------------------------------------------------------------

  absl::StatusOr<RoundRecord> StartRound(const std::string& run_id, int64_t round, int64_t started_at_ms) override {
    FEDFM_RETURN_IF_ERROR(ValidateId(run_id, "run id"));
    FEDFM_RETURN_IF_ERROR(ValidateRound(round));
    const std::string where = Where("rounds", RoundKey(run_id, round));
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_RETURN_IF_ERROR(Begin());
    Transaction txn(this);
    FEDFM_ASSIGN_OR_RETURN(RunRecord run, GetRunLocked(run_id));
    if (run.status != RunStatus::kRunning) {
      return absl::FailedPreconditionError(absl::StrCat(where, ": cannot start a round of run ", Quote(run_id),
                                                        ", which is ", RunStatusName(run.status)));
    }
    FEDFM_ASSIGN_OR_RETURN(std::optional<RoundRecord> latest, LatestCommittedLocked(run_id));
    const int64_t expected = latest.has_value() ? latest->round + 1 : 0;
    if (round != expected) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": rounds are contiguous; the next round of run ", Quote(run_id), " is ", expected));
    }
    FEDFM_ASSIGN_OR_RETURN(std::optional<RoundRecord> existing, GetRoundLocked(run_id, round));
    if (existing.has_value()) {
      // An earlier attempt failed or was cut off by a crash: start afresh.
      FEDFM_RETURN_IF_ERROR(DeleteRoundContents(run_id, round));
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(
          "UPDATE rounds SET status = 'started', attempt = attempt + 1, started_at_ms = ?3, "
          "committed_at_ms = 0, failed_at_ms = 0, failure_reason = '', model_version = NULL, "
          "optimizer_state = NULL WHERE run_id = ?1 AND round = ?2"));
      s.Bind(1, run_id).Bind(2, round).Bind(3, started_at_ms);
      FEDFM_RETURN_IF_ERROR(s.Run(where));
    } else {
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO rounds (run_id, round, status, attempt, started_at_ms) "
                                             "VALUES (?1, ?2, 'started', 1, ?3)"));
      s.Bind(1, run_id).Bind(2, round).Bind(3, started_at_ms);
      FEDFM_RETURN_IF_ERROR(s.Run(where));
    }
    FEDFM_ASSIGN_OR_RETURN(std::optional<RoundRecord> started, GetRoundLocked(run_id, round));
    FEDFM_CHECK(started.has_value());
    FEDFM_RETURN_IF_ERROR(txn.Commit());
    return *started;
  }

  absl::StatusOr<RoundRecord> CommitRound(const RoundCommit& commit) override {
    FEDFM_RETURN_IF_ERROR(ValidateId(commit.run_id, "run id"));
    FEDFM_RETURN_IF_ERROR(ValidateRound(commit.round));
    const std::string key = RoundKey(commit.run_id, commit.round);
    const std::string where = Where("rounds", key);
    if (commit.model.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": the model is empty"));
    FEDFM_RETURN_IF_ERROR(ValidateRoundContents(key, commit.participants, commit.metrics));

    // Hash outside every lock: large models take a while.
    struct Blob {
      BlobKind kind;
      std::span<const std::byte> bytes;
      std::string sha256;
    };
    std::vector<Blob> blobs = {{BlobKind::kModel, commit.model, internal::Sha256Hex(commit.model)}};
    if (!commit.optimizer_state.empty()) {
      blobs.push_back({BlobKind::kOptimizerState, commit.optimizer_state,
                       internal::Sha256Hex(commit.optimizer_state)});
    }

    std::lock_guard<std::mutex> files_lock(files_mu_);
    {
      // Fail early, before writing files, when the round cannot commit.
      std::lock_guard<std::mutex> lock(mu_);
      FEDFM_RETURN_IF_ERROR(RequireStarted(commit.run_id, commit.round, where));
    }
    // Files first, durable, then the one transaction that references them.
    for (const Blob& blob : blobs) {
      FEDFM_RETURN_IF_ERROR(blobs_->Write(FileNameOf(blob.sha256), blob.bytes));
    }
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_RETURN_IF_ERROR(Begin());
    Transaction txn(this);
    FEDFM_RETURN_IF_ERROR(RequireStarted(commit.run_id, commit.round, where));
    for (const Blob& blob : blobs) {
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT OR IGNORE INTO model_versions (sha256, kind, file_name, "
                                             "size_bytes, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)"));
      s.Bind(1, blob.sha256).Bind(2, BlobKindName(blob.kind)).Bind(3, FileNameOf(blob.sha256));
      s.Bind(4, static_cast<int64_t>(blob.bytes.size())).Bind(5, commit.committed_at_ms);
      FEDFM_RETURN_IF_ERROR(s.Run(Where("model_versions", absl::StrCat("sha256 ", blob.sha256))));
    }
    FEDFM_RETURN_IF_ERROR(InsertRoundContents(commit.run_id, commit.round, commit.participants, commit.metrics));
    {
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE rounds SET status = 'committed', committed_at_ms = ?3, "
                                             "model_version = ?4, optimizer_state = ?5 "
                                             "WHERE run_id = ?1 AND round = ?2"));
      s.Bind(1, commit.run_id).Bind(2, commit.round).Bind(3, commit.committed_at_ms).Bind(4, blobs[0].sha256);
      s.BindOptional(5, blobs.size() > 1 ? blobs[1].sha256 : std::string());
      FEDFM_RETURN_IF_ERROR(s.Run(where));
    }
    FEDFM_ASSIGN_OR_RETURN(std::optional<RoundRecord> committed, GetRoundLocked(commit.run_id, commit.round));
    FEDFM_CHECK(committed.has_value());
    FEDFM_RETURN_IF_ERROR(txn.Commit());
    return *committed;
  }

  absl::Status FailRound(const RoundFailure& failure) override {
    FEDFM_RETURN_IF_ERROR(ValidateId(failure.run_id, "run id"));
    FEDFM_RETURN_IF_ERROR(ValidateRound(failure.round));
    const std::string key = RoundKey(failure.run_id, failure.round);
    const std::string where = Where("rounds", key);
    FEDFM_RETURN_IF_ERROR(ValidateRoundContents(key, failure.participants, failure.metrics));
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_RETURN_IF_ERROR(Begin());
    Transaction txn(this);
    FEDFM_RETURN_IF_ERROR(RequireStarted(failure.run_id, failure.round, where));
    FEDFM_RETURN_IF_ERROR(InsertRoundContents(failure.run_id, failure.round, failure.participants, failure.metrics));
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("UPDATE rounds SET status = 'failed', failed_at_ms = ?3, "
                                           "failure_reason = ?4 WHERE run_id = ?1 AND round = ?2"));
    s.Bind(1, failure.run_id).Bind(2, failure.round).Bind(3, failure.failed_at_ms).Bind(4, failure.reason);
    FEDFM_RETURN_IF_ERROR(s.Run(where));
    return txn.Commit();
  }

  absl::StatusOr<RoundRecord> GetRound(const std::string& run_id, int64_t round) override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(std::optional<RoundRecord> record, GetRoundLocked(run_id, round));
    if (!record.has_value()) {
      return absl::NotFoundError(absl::StrCat(Where("rounds", RoundKey(run_id, round)), ": no such round"));
    }
    return *record;
  }

  absl::StatusOr<std::optional<RoundRecord>> LatestCommittedRound(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_RETURN_IF_ERROR(GetRunLocked(run_id).status());
    return LatestCommittedLocked(run_id);
  }

  absl::StatusOr<std::vector<RoundRecord>> ListRounds(const std::string& run_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_RETURN_IF_ERROR(GetRunLocked(run_id).status());
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat(kSelectRound, " WHERE run_id = ?1 ORDER BY round")));
    s.Bind(1, run_id);
    std::vector<RoundRecord> out;
    while (true) {
      FEDFM_ASSIGN_OR_RETURN(bool row, s.Step(Where("rounds", absl::StrCat("run ", Quote(run_id)))));
      if (!row) break;
      FEDFM_ASSIGN_OR_RETURN(RoundRecord record, ReadRound(s));
      out.push_back(std::move(record));
    }
    return out;
  }

  absl::StatusOr<std::vector<ParticipantRecord>> ListParticipants(const std::string& run_id, int64_t round) override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT client_id, method, rank, status, reason, num_examples, "
                                           "bytes_up, bytes_down FROM participants "
                                           "WHERE run_id = ?1 AND round = ?2 ORDER BY client_id"));
    s.Bind(1, run_id).Bind(2, round);
    std::vector<ParticipantRecord> out;
    const std::string where = Where("participants", RoundKey(run_id, round));
    while (true) {
      FEDFM_ASSIGN_OR_RETURN(bool row, s.Step(where));
      if (!row) break;
      ParticipantRecord p;
      p.client_id = s.Text(0);
      const std::string row_where = absl::StrCat(where, " client ", Quote(p.client_id));
      FEDFM_ASSIGN_OR_RETURN(p.method, ParseName(s.Text(1), kMethods, protocols::MethodName, row_where));
      p.rank = s.Int(2);
      FEDFM_ASSIGN_OR_RETURN(p.status, ParseName(s.Text(3), kParticipantStatuses, ParticipantStatusName, row_where));
      p.reason = s.Text(4);
      p.num_examples = s.Int(5);
      p.bytes_up = s.Int(6);
      p.bytes_down = s.Int(7);
      out.push_back(std::move(p));
    }
    return out;
  }

  absl::StatusOr<std::vector<MetricRecord>> ListMetrics(const std::string& run_id, int64_t round) override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT name, value, client_id FROM metrics "
                                           "WHERE run_id = ?1 AND round = ?2 ORDER BY client_id, name"));
    s.Bind(1, run_id).Bind(2, round);
    std::vector<MetricRecord> out;
    while (true) {
      FEDFM_ASSIGN_OR_RETURN(bool row, s.Step(Where("metrics", RoundKey(run_id, round))));
      if (!row) break;
      out.push_back(MetricRecord{s.Text(0), s.Double(1), s.Text(2)});
    }
    return out;
  }

  absl::StatusOr<std::vector<std::pair<int64_t, double>>> MetricSeries(const std::string& run_id,
                                                                       const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT m.round, m.value FROM metrics m JOIN rounds r "
                                           "ON r.run_id = m.run_id AND r.round = m.round "
                                           "WHERE m.run_id = ?1 AND m.name = ?2 AND m.client_id = '' "
                                           "AND r.status = 'committed' ORDER BY m.round"));
    s.Bind(1, run_id).Bind(2, name);
    std::vector<std::pair<int64_t, double>> out;
    while (true) {
      FEDFM_ASSIGN_OR_RETURN(bool row, s.Step(Where("metrics", absl::StrCat("run ", Quote(run_id), " name ", Quote(name)))));
      if (!row) break;
      out.emplace_back(s.Int(0), s.Double(1));
    }
    return out;
  }

  // --- Model versions --------------------------------------------------------

  absl::StatusOr<ModelVersion> LoadModelVersion(const std::string& sha256) override {
    if (!IsSha256Hex(sha256)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model version ", Quote(sha256), " is not a lower-case SHA-256 hex"));
    }
    ModelVersionRecord record;
    std::string file_name;
    {
      std::lock_guard<std::mutex> lock(mu_);
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT kind, file_name, size_bytes, created_at_ms "
                                             "FROM model_versions WHERE sha256 = ?1"));
      s.Bind(1, sha256);
      const std::string where = Where("model_versions", absl::StrCat("sha256 ", sha256));
      FEDFM_ASSIGN_OR_RETURN(bool found, s.Step(where));
      if (!found) return absl::NotFoundError(absl::StrCat(where, ": no such model version"));
      record.sha256 = sha256;
      FEDFM_ASSIGN_OR_RETURN(record.kind, ParseName(s.Text(0), kBlobKinds, BlobKindName, where));
      file_name = s.Text(1);
      record.size_bytes = s.Int(2);
      record.created_at_ms = s.Int(3);
    }
    // Files are immutable once referenced and never removed while
    // referenced: read and hash without holding the database.
    record.path = blobs_->PathOf(file_name);
    const std::string file_label = record.path.empty() ? file_name : record.path.string();
    absl::StatusOr<ModelVersion> loaded = blobs_->Read(file_name);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("model version ", sha256, ": ", loaded.status().message()));
    }
    if (static_cast<int64_t>(loaded->bytes.size()) != record.size_bytes) {
      return absl::DataLossError(absl::StrCat("model version ", sha256, ": file ", file_label, " has ",
                                              loaded->bytes.size(), " bytes, the store recorded ",
                                              record.size_bytes));
    }
    std::string actual = internal::Sha256Hex(loaded->bytes);
    if (actual != sha256) {
      return absl::DataLossError(absl::StrCat("model version ", sha256, ": file ", file_label,
                                              " is corrupt (its SHA-256 is ", actual, ")"));
    }
    loaded->record = std::move(record);
    return *std::move(loaded);
  }

  absl::StatusOr<int64_t> RemoveOrphanFiles() override {
    std::lock_guard<std::mutex> files_lock(files_mu_);
    std::set<std::string> keep;
    {
      std::lock_guard<std::mutex> lock(mu_);
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("SELECT file_name FROM model_versions"));
      while (true) {
        FEDFM_ASSIGN_OR_RETURN(bool row, s.Step(Where("model_versions", "all rows")));
        if (!row) break;
        keep.insert(s.Text(0));
      }
    }
    return blobs_->RemoveAllBut(keep);
  }

 private:
  static constexpr const char* kSelectClient =
      "SELECT id, name, profile_json, enrolled_at_ms, last_seen_ms, revoked, auth_secret, last_sequence "
      "FROM clients";
  static constexpr const char* kSelectRun = "SELECT id, name, config_toml, created_at_ms, status FROM runs";
  static constexpr const char* kSelectRound =
      "SELECT run_id, round, status, attempt, started_at_ms, committed_at_ms, failed_at_ms, failure_reason, "
      "ifnull(model_version, ''), ifnull(optimizer_state, '') FROM rounds";

  // Rolls back unless committed. Begin() must have succeeded.
  class Transaction {
   public:
    explicit Transaction(SqliteStore* store) : store_(store) {}
    ~Transaction() {
      if (!done_) store_->Exec("ROLLBACK", "roll back").IgnoreError();
    }
    absl::Status Commit() {
      FEDFM_RETURN_IF_ERROR(store_->Exec("COMMIT", "commit"));
      done_ = true;
      return absl::OkStatus();
    }

   private:
    SqliteStore* store_;
    bool done_ = false;
  };

  // "<db>: table <table>, <row>": the context of every message.
  std::string Where(const char* table, const std::string& row) const {
    return absl::StrCat(name_, ": table ", table, ", ", row);
  }

  absl::Status Begin() { return Exec("BEGIN IMMEDIATE", "begin transaction"); }

  absl::Status Exec(const char* sql, const std::string& what) {
    char* error = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
    if (rc == SQLITE_OK) return absl::OkStatus();
    absl::Status status(CodeOf(sqlite3_extended_errcode(db_)),
                        absl::StrCat(name_, ": ", what, ": ", error != nullptr ? error : sqlite3_errstr(rc)));
    sqlite3_free(error);
    return status;
  }

  absl::StatusOr<std::string> QueryText(const char* sql) {
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(sql));
    FEDFM_ASSIGN_OR_RETURN(bool row, s.Step(absl::StrCat(name_, ": ", sql)));
    if (!row) return absl::InternalError(absl::StrCat(name_, ": ", sql, " returned no row"));
    return s.Text(0);
  }

  // Statements are prepared once and cached for the connection's life.
  absl::StatusOr<Stmt> Prepare(const std::string& sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) {
      sqlite3_stmt* stmt = nullptr;
      int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                  &stmt, nullptr);
      if (rc != SQLITE_OK) {
        return absl::Status(CodeOf(rc), absl::StrCat(name_, ": cannot prepare ", Quote(sql), ": ", sqlite3_errmsg(db_)));
      }
      it = statements_.emplace(sql, stmt).first;
    }
    return Stmt(db_, it->second);
  }

  absl::Status Migrate() {
    FEDFM_RETURN_IF_ERROR(Begin());
    Transaction txn(this);
    FEDFM_ASSIGN_OR_RETURN(std::string app_text, QueryText("PRAGMA application_id"));
    FEDFM_ASSIGN_OR_RETURN(std::string version_text, QueryText("PRAGMA user_version"));
    FEDFM_ASSIGN_OR_RETURN(std::string tables_text, QueryText("SELECT count(*) FROM sqlite_master"));
    const int64_t app_id = std::stoll(app_text);
    const int64_t version = std::stoll(version_text);
    if (app_id != 0 && app_id != kApplicationId) {
      return absl::FailedPreconditionError(absl::StrCat(name_, ": not a fedfm coordinator database (application_id ",
                                                        app_id, ")"));
    }
    if (version == 0 && std::stoll(tables_text) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(name_, ": not a fedfm coordinator database (it has tables but no schema version)"));
    }
    if (version > kSqliteStoreSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          name_, ": schema version ", version, " is newer than this fedfm knows (", kSqliteStoreSchemaVersion,
          "); the database was written by a newer fedfm: upgrade fedfm to open it"));
    }
    if (version < 0) {
      return absl::FailedPreconditionError(absl::StrCat(name_, ": invalid schema version ", version));
    }
    if (version == kSqliteStoreSchemaVersion) return txn.Commit();
    for (int64_t v = version; v < kSqliteStoreSchemaVersion; ++v) {
      FEDFM_RETURN_IF_ERROR(Exec(kMigrations[v], absl::StrCat("migrate schema version ", v, " -> ", v + 1)));
    }
    FEDFM_RETURN_IF_ERROR(Exec(absl::StrCat("PRAGMA user_version = ", kSqliteStoreSchemaVersion).c_str(),
                               "set schema version"));
    FEDFM_RETURN_IF_ERROR(Exec(absl::StrCat("PRAGMA application_id = ", kApplicationId).c_str(),
                               "set application id"));
    return txn.Commit();
  }

  absl::Status ValidateClient(const ClientRecord& client) {
    FEDFM_RETURN_IF_ERROR(ValidateId(client.id, "client id"));
    if (client.last_sequence > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat("client ", Quote(client.id), ": last_sequence above 2^63 - 1"));
    }
    return absl::OkStatus();
  }

  absl::Status InsertClient(const ClientRecord& c) {
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO clients (id, name, profile_json, enrolled_at_ms, "
                                           "last_seen_ms, revoked, auth_secret, last_sequence) "
                                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
    s.Bind(1, c.id).Bind(2, c.name).Bind(3, c.profile_json).Bind(4, c.enrolled_at_ms).Bind(5, c.last_seen_ms);
    s.Bind(6, int64_t{c.revoked ? 1 : 0}).BindBlob(7, c.auth_secret).Bind(8, static_cast<int64_t>(c.last_sequence));
    return s.Run(Where("clients", absl::StrCat("id ", Quote(c.id))));
  }

  static ClientRecord ReadClient(const Stmt& s) {
    ClientRecord c;
    c.id = s.Text(0);
    c.name = s.Text(1);
    c.profile_json = s.Text(2);
    c.enrolled_at_ms = s.Int(3);
    c.last_seen_ms = s.Int(4);
    c.revoked = s.Int(5) != 0;
    c.auth_secret = s.Blob(6);
    c.last_sequence = static_cast<uint64_t>(s.Int(7));
    return c;
  }

  absl::StatusOr<RunRecord> ReadRun(const Stmt& s) {
    RunRecord run;
    run.id = s.Text(0);
    run.name = s.Text(1);
    run.config_toml = s.Text(2);
    run.created_at_ms = s.Int(3);
    FEDFM_ASSIGN_OR_RETURN(run.status, ParseName(s.Text(4), kRunStatuses, RunStatusName,
                                                 Where("runs", absl::StrCat("id ", Quote(run.id), " status"))));
    return run;
  }

  absl::StatusOr<RoundRecord> ReadRound(const Stmt& s) {
    RoundRecord r;
    r.run_id = s.Text(0);
    r.round = s.Int(1);
    FEDFM_ASSIGN_OR_RETURN(r.status, ParseName(s.Text(2), kRoundStatuses, RoundStatusName,
                                               Where("rounds", RoundKey(r.run_id, r.round))));
    r.attempt = s.Int(3);
    r.started_at_ms = s.Int(4);
    r.committed_at_ms = s.Int(5);
    r.failed_at_ms = s.Int(6);
    r.failure_reason = s.Text(7);
    r.model_version = s.Text(8);
    r.optimizer_state = s.Text(9);
    return r;
  }

  absl::StatusOr<RunRecord> GetRunLocked(const std::string& run_id) {
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat(kSelectRun, " WHERE id = ?1")));
    s.Bind(1, run_id);
    const std::string where = Where("runs", absl::StrCat("id ", Quote(run_id)));
    FEDFM_ASSIGN_OR_RETURN(bool found, s.Step(where));
    if (!found) return absl::NotFoundError(absl::StrCat(where, ": no such run"));
    return ReadRun(s);
  }

  absl::StatusOr<std::optional<RoundRecord>> GetRoundLocked(const std::string& run_id, int64_t round) {
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat(kSelectRound, " WHERE run_id = ?1 AND round = ?2")));
    s.Bind(1, run_id).Bind(2, round);
    FEDFM_ASSIGN_OR_RETURN(bool found, s.Step(Where("rounds", RoundKey(run_id, round))));
    if (!found) return std::optional<RoundRecord>();
    FEDFM_ASSIGN_OR_RETURN(RoundRecord record, ReadRound(s));
    return std::optional<RoundRecord>(std::move(record));
  }

  absl::StatusOr<std::optional<RoundRecord>> LatestCommittedLocked(const std::string& run_id) {
    FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat(kSelectRound, " WHERE run_id = ?1 AND status = 'committed' "
                                                                      "ORDER BY round DESC LIMIT 1")));
    s.Bind(1, run_id);
    FEDFM_ASSIGN_OR_RETURN(bool found, s.Step(Where("rounds", absl::StrCat("run ", Quote(run_id)))));
    if (!found) return std::optional<RoundRecord>();
    FEDFM_ASSIGN_OR_RETURN(RoundRecord record, ReadRound(s));
    return std::optional<RoundRecord>(std::move(record));
  }

  absl::Status RequireStarted(const std::string& run_id, int64_t round, const std::string& where) {
    FEDFM_ASSIGN_OR_RETURN(std::optional<RoundRecord> record, GetRoundLocked(run_id, round));
    if (!record.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(where, ": the round was never started (StartRound)"));
    }
    if (record->status != RoundStatus::kStarted) {
      return absl::FailedPreconditionError(
          absl::StrCat(where, ": the round is ", RoundStatusName(record->status), ", not started"));
    }
    return absl::OkStatus();
  }

  absl::Status DeleteRoundContents(const std::string& run_id, int64_t round) {
    for (const char* table : {"participants", "metrics"}) {
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat("DELETE FROM ", table, " WHERE run_id = ?1 AND round = ?2")));
      s.Bind(1, run_id).Bind(2, round);
      FEDFM_RETURN_IF_ERROR(s.Run(Where(table, RoundKey(run_id, round))));
    }
    return absl::OkStatus();
  }

  absl::Status InsertRoundContents(const std::string& run_id, int64_t round,
                                   const std::vector<ParticipantRecord>& participants,
                                   const std::vector<MetricRecord>& metrics) {
    for (const ParticipantRecord& p : participants) {
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO participants (run_id, round, client_id, method, rank, "
                                             "status, reason, num_examples, bytes_up, bytes_down) "
                                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"));
      s.Bind(1, run_id).Bind(2, round).Bind(3, p.client_id).Bind(4, protocols::MethodName(p.method));
      s.Bind(5, p.rank).Bind(6, ParticipantStatusName(p.status)).Bind(7, p.reason).Bind(8, p.num_examples);
      s.Bind(9, p.bytes_up).Bind(10, p.bytes_down);
      absl::Status status =
          s.Run(Where("participants", absl::StrCat(RoundKey(run_id, round), " client ", Quote(p.client_id))));
      if (absl::IsNotFound(status)) {
        return absl::NotFoundError(absl::StrCat(status.message(), " (client ", Quote(p.client_id),
                                                " is not enrolled)"));
      }
      FEDFM_RETURN_IF_ERROR(status);
    }
    for (const MetricRecord& m : metrics) {
      FEDFM_ASSIGN_OR_RETURN(Stmt s, Prepare("INSERT INTO metrics (run_id, round, client_id, name, value) "
                                             "VALUES (?1, ?2, ?3, ?4, ?5)"));
      s.Bind(1, run_id).Bind(2, round).Bind(3, m.client_id).Bind(4, m.name).BindDouble(5, m.value);
      FEDFM_RETURN_IF_ERROR(s.Run(Where("metrics", absl::StrCat(RoundKey(run_id, round), " name ", Quote(m.name)))));
    }
    return absl::OkStatus();
  }

  const std::string name_;  // the database path, for messages
  sqlite3* const db_;
  const std::unique_ptr<BlobDir> blobs_;
  std::mutex files_mu_;  // model file writes and orphan removal; taken before mu_
  std::mutex mu_;        // the connection and statements_
  std::map<std::string, sqlite3_stmt*> statements_;
};

// Opens a raw connection for the testing helpers.
absl::StatusOr<sqlite3*> OpenRaw(const fs::path& db_path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::Status(CodeOf(rc), absl::StrCat("cannot open ", db_path.string(), ": ", message));
  }
  return db;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const fs::path& db_path) {
  const bool in_memory = db_path == kInMemoryStore;
  std::unique_ptr<BlobDir> blobs;
  if (in_memory) {
    blobs = std::make_unique<MemoryBlobDir>();
  } else {
    if (db_path.empty()) return absl::InvalidArgumentError("store path is empty");
    fs::path models = db_path;
    models += ".models";
    std::error_code ec;
    if (db_path.has_parent_path()) fs::create_directories(db_path.parent_path(), ec);
    if (!ec) fs::create_directories(models, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create the store's directories for ", db_path.string(), ": ", ec.message()));
    }
    blobs = std::make_unique<FileBlobDir>(fs::absolute(models));
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(db_path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::Status(CodeOf(rc), absl::StrCat("cannot open store ", db_path.string(), ": ", message));
  }
  auto store = std::make_unique<SqliteStore>(db_path.string(), db, std::move(blobs));
  FEDFM_RETURN_IF_ERROR(store->Init(in_memory));
  return std::unique_ptr<Store>(std::move(store));
}

namespace internal {

absl::Status ExecSqlForTesting(const fs::path& db_path, const std::string& sql) {
  FEDFM_ASSIGN_OR_RETURN(sqlite3 * db, OpenRaw(db_path));
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  absl::Status status;
  if (rc != SQLITE_OK) {
    status = absl::Status(CodeOf(rc), absl::StrCat(db_path.string(), ": ", error != nullptr ? error : sqlite3_errstr(rc)));
  }
  sqlite3_free(error);
  sqlite3_close(db);
  return status;
}

absl::StatusOr<int64_t> QueryInt64ForTesting(const fs::path& db_path, const std::string& sql) {
  FEDFM_ASSIGN_OR_RETURN(sqlite3 * db, OpenRaw(db_path));
  sqlite3_stmt* stmt = nullptr;
  absl::StatusOr<int64_t> result = absl::InternalError(absl::StrCat(db_path.string(), ": ", sql, ": no row"));
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    result = absl::InternalError(absl::StrCat(db_path.string(), ": ", sqlite3_errmsg(db)));
  } else if (sqlite3_step(stmt) == SQLITE_ROW) {
    result = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

}  // namespace internal
}  // namespace fedfm::coordinator
