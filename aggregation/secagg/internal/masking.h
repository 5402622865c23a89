// Mask application shared by the SecAgg+ client (adding masks) and server
// (removing them). Private to secagg/.
#ifndef FEDFM_AGGREGATION_SECAGG_INTERNAL_MASKING_H_
#define FEDFM_AGGREGATION_SECAGG_INTERNAL_MASKING_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "aggregation/secagg/crypto.h"

namespace fedfm::secagg::internal {

struct MaskTerm {
  Key seed;
  int sign = +1;  // +1 adds PRG(seed), -1 subtracts it
};

// acc[i] += sum_j terms[j].sign * PRG(terms[j].seed)[i]  (mod 2^32).
// Walks `acc` in cache-sized chunks, applying every term to a chunk before
// moving on, so each word of `acc` is loaded once however many terms there
// are. num_threads > 1 splits `acc` into contiguous ranges, one thread each
// (every thread seeks its own PRG streams to its range).
absl::Status ApplyMasks(std::span<const MaskTerm> terms, std::span<uint32_t> acc,
                        int num_threads);

}  // namespace fedfm::secagg::internal

#endif  // FEDFM_AGGREGATION_SECAGG_INTERNAL_MASKING_H_
