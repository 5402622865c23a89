// Shared setup for tests that drive a RoundEngine (coordinator/round_engine_test.cc,
// tests/federation_test.cc, tests/grpc_federation_test.cc): a tiny two-block
// LoRA model's trainable state and dims, a short run config, and method rules
// that pin each client's method. No gtest, no LibTorch.
#ifndef FEDFM_COORDINATOR_TESTING_ENGINE_FIXTURE_H_
#define FEDFM_COORDINATOR_TESTING_ENGINE_FIXTURE_H_

#include <cstdint>

#include "coordinator/round_engine.h"
#include "protocols/config/options.h"
#include "protocols/device.h"
#include "protocols/tensor.h"

namespace fedfm::coordinator {

// Two blocks with a rank-4 LoRA pair on q_proj each, and a head; every
// element uniform in [-0.5, 0.5] from a fixed seed (5), drawn in this order:
//   layers.i.q_proj.lora_A: [r=4, in]   rank_dim 0
//   layers.i.q_proj.lora_B: [out, r=4]  rank_dim 1
//   head.weight:            [head]
protocols::TensorMap TwoBlockLoraState(int64_t in = 6, int64_t out = 5, int64_t head = 3);

// ModelDims of a two-layer model with vocabulary 32 and num_kv_heads =
// num_heads.
protocols::ModelDims TwoBlockDims(int64_t num_params = 1000, int64_t dim = 6, int64_t hidden_dim = 12,
                                  int64_t num_heads = 2);

// A short run: 3 rounds of `clients_per_round` (at least 2 updates), a
// 100 s collect deadline, no evaluation rounds, LoRA rank 4, 2 local steps
// of batch 4 at learning rate 0.1, no zeroth-order seed pool. Tests adjust
// the rest.
protocols::RunConfig SmallRunConfig(uint64_t seed, int clients_per_round);

// Pins each client's method by its id: "lora2-*" LoRA rank 2, "lora4-*"
// LoRA rank 4, "partial-*" partial (the run's partial.top_blocks, rank 4),
// "zo-*" zeroth order; any other id FailedPrecondition.
MethodRule PinnedMethods();

// Every client LoRA at `rank`.
MethodRule AllLora(int rank = 4);

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_TESTING_ENGINE_FIXTURE_H_
