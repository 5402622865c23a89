# The coordinator's gRPC transport, built only with FEDFM_GRPC=ON. gRPC is
# reached only from the *grpc*.cc files here; their public headers
# grpc_server.h and grpc_admin_client.h are free of it (grpc_service.h, for
# tests, is not). Included from coordinator/CMakeLists.txt.
fedfm_library(coordinator_grpc
  SOURCES
    grpc_service.cc
    grpc_server.cc
    grpc_admin_client.cc
    grpc_bench.cc
    internal/grpc_support.cc
  DEPS fedfm::coordinator fedfm::protocols_tls fedfm::protocols_grpc
  PRIVATE_DEPS fedfm::protocols_wire fedfm::secagg fedfm::dep::spdlog)

fedfm_test(coordinator_grpc_test
  SOURCES internal/grpc_support_test.cc
  DEPS fedfm::coordinator_grpc)
