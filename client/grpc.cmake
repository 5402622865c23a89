# The device's gRPC link (client/grpc_link.h), built only with FEDFM_GRPC=ON;
# gRPC is reached only from grpc_link.cc. Included from client/CMakeLists.txt.
fedfm_library(client_grpc
  SOURCES grpc_link.cc
  DEPS fedfm::client_runtime
  PRIVATE_DEPS fedfm::protocols_grpc fedfm::protocols_wire fedfm::protocols_tls fedfm::secagg)
