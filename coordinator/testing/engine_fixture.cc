#include "coordinator/testing/engine_fixture.h"

#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace fedfm::coordinator {

using protocols::Method;

protocols::TensorMap TwoBlockLoraState(int64_t in, int64_t out, int64_t head) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  protocols::TensorMap g;
  auto add = [&](const std::string& name, protocols::Shape shape) {
    std::vector<float> v(protocols::NumElements(shape));
    for (float& x : v) x = u(rng);
    g.Set(name, protocols::Tensor::FromFloats(shape, v));
  };
  for (int i = 0; i < 2; ++i) {
    add("layers." + std::to_string(i) + ".q_proj.lora_A", {4, in});
    add("layers." + std::to_string(i) + ".q_proj.lora_B", {out, 4});
  }
  add("head.weight", {head});
  return g;
}

protocols::ModelDims TwoBlockDims(int64_t num_params, int64_t dim, int64_t hidden_dim, int64_t num_heads) {
  protocols::ModelDims d;
  d.num_params = num_params;
  d.num_layers = 2;
  d.dim = dim;
  d.hidden_dim = hidden_dim;
  d.num_heads = num_heads;
  d.num_kv_heads = num_heads;
  d.vocab_size = 32;
  return d;
}

protocols::RunConfig SmallRunConfig(uint64_t seed, int clients_per_round) {
  protocols::RunConfig c;
  c.run.seed = seed;
  c.run.rounds = 3;
  c.rounds.clients_per_round = clients_per_round;
  c.rounds.min_clients = 2;
  c.rounds.deadline_s = 100;
  c.rounds.eval_every = 0;
  c.lora.rank = 4;
  c.train.local_steps = 2;
  c.train.batch_size = 4;
  c.train.learning_rate = 0.1;
  c.zeroth_order.seed_pool = 0;
  return c;
}

MethodRule PinnedMethods() {
  return [](const std::string& id, const protocols::DeviceProfile&, const protocols::RunConfig& rc,
            const WorkloadShape&) -> absl::StatusOr<MethodChoice> {
    MethodChoice c;
    if (id.rfind("lora2", 0) == 0) {
      c.method = Method::kLora;
      c.lora_rank = 2;
    } else if (id.rfind("lora4", 0) == 0) {
      c.method = Method::kLora;
      c.lora_rank = 4;
    } else if (id.rfind("partial", 0) == 0) {
      c.method = Method::kPartial;
      c.lora_rank = 4;
      c.top_blocks = rc.partial.top_blocks;
    } else if (id.rfind("zo", 0) == 0) {
      c.method = Method::kZerothOrder;
    } else {
      return absl::FailedPreconditionError("no method fits " + id);
    }
    return c;
  };
}

MethodRule AllLora(int rank) {
  return [rank](const std::string&, const protocols::DeviceProfile&, const protocols::RunConfig&,
                const WorkloadShape&) -> absl::StatusOr<MethodChoice> {
    MethodChoice c;
    c.method = Method::kLora;
    c.lora_rank = rank;
    return c;
  };
}

}  // namespace fedfm::coordinator
