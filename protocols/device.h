// What the coordinator knows of a device (from enrollment, or from the
// simulation's catalog) and of the model's size: the inputs of the method
// policy and of the simulation's virtual clock.
#ifndef FEDFM_PROTOCOLS_DEVICE_H_
#define FEDFM_PROTOCOLS_DEVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "protocols/config/options.h"

namespace fedfm::protocols {

struct DeviceProfile {
  std::string name;                 // "h100", "rpi5", or the device's hostname
  std::string accelerator = "cpu";  // "cpu" | "cuda"
  uint64_t memory_bytes = 0;        // memory the client may use for training
  double flops_per_s = 0;           // sustained training throughput (measured or catalogued)
  double uplink_bytes_per_s = 0;
  double downlink_bytes_per_s = 0;
  double availability = 1.0;        // probability the device is online when sampled
  double dropout = 0.0;             // probability it drops out during a round
  std::vector<Method> methods;      // methods it supports; empty = all
};

// Sizes the cost model needs; model/ fills them from a loaded model.
struct ModelDims {
  int64_t num_params = 0;   // all parameters, embeddings included
  int64_t num_layers = 0;
  int64_t dim = 0;
  int64_t hidden_dim = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t vocab_size = 0;
  int64_t bytes_per_param = 4;  // 4 fp32, 2 bf16
};

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_DEVICE_H_
