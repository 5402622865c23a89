// Status helpers. Debian's Abseil (20220623) has no RETURN_IF_ERROR, so the
// project keeps its own two macros here.
#ifndef FEDFM_PROTOCOLS_STATUS_MACROS_H_
#define FEDFM_PROTOCOLS_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the current function with the status of `expr` when it is not OK.
#define FEDFM_RETURN_IF_ERROR(expr)                 \
  do {                                              \
    ::absl::Status fedfm_status_ = (expr);          \
    if (!fedfm_status_.ok()) return fedfm_status_;  \
  } while (0)

#define FEDFM_STATUS_CONCAT_INNER_(a, b) a##b
#define FEDFM_STATUS_CONCAT_(a, b) FEDFM_STATUS_CONCAT_INNER_(a, b)

// `lhs = value of rexpr` when `rexpr` (a StatusOr) holds a value; otherwise
// returns its status. `lhs` may be a declaration: `FEDFM_ASSIGN_OR_RETURN(auto x, F());`
#define FEDFM_ASSIGN_OR_RETURN(lhs, rexpr)                                          \
  FEDFM_ASSIGN_OR_RETURN_IMPL_(FEDFM_STATUS_CONCAT_(fedfm_statusor_, __LINE__), lhs, \
                               rexpr)
#define FEDFM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // FEDFM_PROTOCOLS_STATUS_MACROS_H_
