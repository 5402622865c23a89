// The SQLite implementation of Store (coordinator/store.h).
//
// Files: the database at `db_path` (WAL mode: also `<db_path>-wal` and
// `<db_path>-shm` while open) and the model directory `<db_path>.models/`,
// which holds one "<sha256>.safetensors" file per model version and belongs
// to the store (RemoveOrphanFiles deletes what no row references there).
//
// Durability: synchronous=FULL, so a round is on disk when CommitRound
// returns (one fsync of the WAL per commit). synchronous=NORMAL would keep the
// database consistent in WAL mode but could lose the last commits on a power
// failure, and a committed round is exactly what must not be lost.
//
// Thread safety: one SQLite connection guarded by a mutex; any number of
// threads may call. Model files are written and hashed outside that mutex,
// so a large CommitRound does not stall heartbeats.
//
// One process at a time: a second process opening the same database works
// (SQLite locks it) but must not call RemoveOrphanFiles while the first runs.
#ifndef FEDFM_COORDINATOR_SQLITE_STORE_H_
#define FEDFM_COORDINATOR_SQLITE_STORE_H_

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "coordinator/store.h"

namespace fedfm::coordinator {

// Pass as `db_path` for a store that lives in memory only (tests,
// simulation): same behaviour, no files, nothing survives the object.
inline constexpr char kInMemoryStore[] = ":memory:";

// The schema version this binary creates and migrates to.
inline constexpr int kSqliteStoreSchemaVersion = 2;

// Opens the store at `db_path`, creating the database, its parent directory
// and the model directory when missing, and migrating an older schema to
// kSqliteStoreSchemaVersion in one transaction. FailedPrecondition naming the
// file for a database written by a newer fedfm (a higher schema version) or
// for an SQLite file that is not a fedfm store; Unavailable when another
// process holds it locked for longer than the 5 s busy timeout.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::filesystem::path& db_path);

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_SQLITE_STORE_H_
