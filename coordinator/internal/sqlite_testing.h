// Test-only access to a store's database file without the Store: building a
// database of an old schema version by hand, inspecting or damaging one.
// Defined in coordinator/sqlite_store.cc (the one file that includes
// <sqlite3.h>). Not for production code.
#ifndef FEDFM_COORDINATOR_INTERNAL_SQLITE_TESTING_H_
#define FEDFM_COORDINATOR_INTERNAL_SQLITE_TESTING_H_

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedfm::coordinator::internal {

// Runs `sql` (any number of ;-separated statements) on the database at
// `db_path`, creating it when missing, on a fresh connection closed before
// returning.
absl::Status ExecSqlForTesting(const std::filesystem::path& db_path, const std::string& sql);

// The first column of the first row of `sql`, as an integer.
absl::StatusOr<int64_t> QueryInt64ForTesting(const std::filesystem::path& db_path,
                                             const std::string& sql);

}  // namespace fedfm::coordinator::internal

#endif  // FEDFM_COORDINATOR_INTERNAL_SQLITE_TESTING_H_
