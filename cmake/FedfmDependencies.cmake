# Every find_package / pkg-config lookup of the project lives here; the rest of
# the build links only the imported targets defined below (fedfm::dep::*).

find_package(Threads REQUIRED)
find_package(PkgConfig)

# --- Abseil (Status / StatusOr; comes with gRPC on Debian) -----------------
find_package(absl CONFIG REQUIRED)
add_library(fedfm_dep_absl INTERFACE)
target_link_libraries(fedfm_dep_absl INTERFACE absl::status absl::statusor absl::strings absl::str_format)
add_library(fedfm::dep::absl ALIAS fedfm_dep_absl)

# --- Protocol Buffers (Debian ships no protobuf CMake config: FindProtobuf) --
find_package(Protobuf REQUIRED)
add_library(fedfm_dep_protobuf INTERFACE)
if(TARGET protobuf::libprotobuf)
  target_link_libraries(fedfm_dep_protobuf INTERFACE protobuf::libprotobuf)
else()
  target_include_directories(fedfm_dep_protobuf INTERFACE ${Protobuf_INCLUDE_DIRS})
  target_link_libraries(fedfm_dep_protobuf INTERFACE ${Protobuf_LIBRARIES})
endif()
add_library(fedfm::dep::protobuf ALIAS fedfm_dep_protobuf)

# --- gRPC (CONFIG needs protobuf-compiler-grpc; pkg-config as fallback) -----
if(FEDFM_GRPC)
  find_package(gRPC CONFIG QUIET)
  add_library(fedfm_dep_grpc INTERFACE)
  if(gRPC_FOUND)
    target_link_libraries(fedfm_dep_grpc INTERFACE gRPC::grpc++)
    if(TARGET gRPC::grpc_cpp_plugin)
      get_target_property(FEDFM_GRPC_CPP_PLUGIN gRPC::grpc_cpp_plugin LOCATION)
    endif()
  elseif(PkgConfig_FOUND)
    pkg_check_modules(GRPCPP REQUIRED IMPORTED_TARGET grpc++)
    target_link_libraries(fedfm_dep_grpc INTERFACE PkgConfig::GRPCPP)
  else()
    message(FATAL_ERROR "gRPC not found: install libgrpc++-dev protobuf-compiler-grpc, or configure with -DFEDFM_GRPC=OFF")
  endif()
  if(NOT FEDFM_GRPC_CPP_PLUGIN)
    find_program(FEDFM_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
  endif()
  add_library(fedfm::dep::grpc ALIAS fedfm_dep_grpc)
endif()

# --- LibTorch (Debian 1.13 CPU, or a 2.x CUDA build via CMAKE_PREFIX_PATH) --
find_package(Torch CONFIG REQUIRED)
add_library(fedfm_dep_torch INTERFACE)
# PyTorch's pip wheels export copies of libstdc++ symbols that they link
# statically, std::filesystem among them (pytorch/pytorch#133437). A program
# linked with those libraries ahead of libstdc++ binds its own std::filesystem
# calls to the copies, built against another libstdc++, and crashes (seen:
# segfaults in every test that builds paths). Naming libstdc++ first fixes
# both linkings: a shared libstdc++.so.6 comes first in DT_NEEDED, and a
# static one (the GPU image's compiler links it so) is searched before
# LibTorch, so the program's references resolve to its own copy. Elsewhere it
# changes nothing.
target_link_libraries(fedfm_dep_torch INTERFACE stdc++ ${TORCH_LIBRARIES})
target_include_directories(fedfm_dep_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
add_library(fedfm::dep::torch ALIAS fedfm_dep_torch)
# The wheels also carry an old copy of protobuf's headers (torch/include/
# google/protobuf) that would shadow the protobuf we link in LibTorch
# translation units including generated .pb.h files. TORCH targets then see
# the linked protobuf's headers first, through a link in the build tree
# (_fedfm_use_torch in cmake/FedfmHelpers.cmake).
set(FEDFM_TORCH_PROTOBUF_FIRST "")
foreach(_dir IN LISTS TORCH_INCLUDE_DIRS)
  if(EXISTS "${_dir}/google/protobuf" AND NOT _dir IN_LIST Protobuf_INCLUDE_DIRS)
    set(FEDFM_TORCH_PROTOBUF_FIRST "${PROJECT_BINARY_DIR}/protobuf_first")
  endif()
endforeach()
if(FEDFM_TORCH_PROTOBUF_FIRST)
  list(GET Protobuf_INCLUDE_DIRS 0 _protobuf_include)
  file(MAKE_DIRECTORY "${FEDFM_TORCH_PROTOBUF_FIRST}/google")
  file(CREATE_LINK "${_protobuf_include}/google/protobuf" "${FEDFM_TORCH_PROTOBUF_FIRST}/google/protobuf" SYMBOLIC)
  message(STATUS "LibTorch carries protobuf headers: TORCH targets read ${_protobuf_include}/google/protobuf first")
endif()
set(FEDFM_TORCH_VERSION "${Torch_VERSION}")
if(NOT FEDFM_TORCH_VERSION)
  set(FEDFM_TORCH_VERSION "unknown")
endif()

# --- CUDA: ON by default only with a CUDA toolkit and a CUDA LibTorch -------
set(_fedfm_cuda_default OFF)
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER AND (TARGET torch_cuda OR TORCH_CUDA_LIBRARIES))
  set(_fedfm_cuda_default ON)
endif()
option(FEDFM_CUDA "Build CUDA kernels (needs nvcc and a CUDA LibTorch)" ${_fedfm_cuda_default})
if(FEDFM_CUDA)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  if(NOT CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
endif()

# --- OpenSSL, SQLite, Asio --------------------------------------------------
find_package(OpenSSL 3 REQUIRED)
add_library(fedfm_dep_openssl INTERFACE)
target_link_libraries(fedfm_dep_openssl INTERFACE OpenSSL::Crypto OpenSSL::SSL)
add_library(fedfm::dep::openssl ALIAS fedfm_dep_openssl)

find_package(SQLite3 REQUIRED)
add_library(fedfm_dep_sqlite INTERFACE)
# CMake 4 renamed the target (the old name warns as deprecated).
if(TARGET SQLite3::SQLite3)
  target_link_libraries(fedfm_dep_sqlite INTERFACE SQLite3::SQLite3)
else()
  target_link_libraries(fedfm_dep_sqlite INTERFACE SQLite::SQLite3)
endif()
add_library(fedfm::dep::sqlite ALIAS fedfm_dep_sqlite)

find_path(FEDFM_ASIO_INCLUDE asio.hpp REQUIRED)
add_library(fedfm_dep_asio INTERFACE)
target_include_directories(fedfm_dep_asio SYSTEM INTERFACE ${FEDFM_ASIO_INCLUDE})
target_compile_definitions(fedfm_dep_asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED)
target_link_libraries(fedfm_dep_asio INTERFACE Threads::Threads)
add_library(fedfm::dep::asio ALIAS fedfm_dep_asio)

# --- zlib (gzip-compressed data sets) ----------------------------------------
find_package(ZLIB REQUIRED)
add_library(fedfm_dep_zlib INTERFACE)
target_link_libraries(fedfm_dep_zlib INTERFACE ZLIB::ZLIB)
add_library(fedfm::dep::zlib ALIAS fedfm_dep_zlib)

# --- Header-ish libraries: CLI11, toml++, spdlog, nlohmann_json -------------
find_package(CLI11 CONFIG REQUIRED)
add_library(fedfm_dep_cli11 INTERFACE)
target_link_libraries(fedfm_dep_cli11 INTERFACE CLI11::CLI11)
add_library(fedfm::dep::cli11 ALIAS fedfm_dep_cli11)

find_package(tomlplusplus CONFIG QUIET)
add_library(fedfm_dep_toml INTERFACE)
if(tomlplusplus_FOUND)
  target_link_libraries(fedfm_dep_toml INTERFACE tomlplusplus::tomlplusplus)
else()
  pkg_check_modules(TOMLPP REQUIRED IMPORTED_TARGET tomlplusplus)
  target_link_libraries(fedfm_dep_toml INTERFACE PkgConfig::TOMLPP)
endif()
add_library(fedfm::dep::toml ALIAS fedfm_dep_toml)

find_package(spdlog CONFIG REQUIRED)
add_library(fedfm_dep_spdlog INTERFACE)
target_link_libraries(fedfm_dep_spdlog INTERFACE spdlog::spdlog)
add_library(fedfm::dep::spdlog ALIAS fedfm_dep_spdlog)

find_package(nlohmann_json CONFIG REQUIRED)
add_library(fedfm_dep_json INTERFACE)
target_link_libraries(fedfm_dep_json INTERFACE nlohmann_json::nlohmann_json)
add_library(fedfm::dep::json ALIAS fedfm_dep_json)

# --- Tests and benchmarks ----------------------------------------------------
if(FEDFM_TESTS)
  find_package(GTest CONFIG REQUIRED)
  add_library(fedfm_dep_gtest INTERFACE)
  target_link_libraries(fedfm_dep_gtest INTERFACE GTest::gtest GTest::gmock GTest::gtest_main)
  add_library(fedfm::dep::gtest ALIAS fedfm_dep_gtest)
endif()

# --- ccache where present -----------------------------------------------------
find_program(FEDFM_CCACHE ccache)
if(FEDFM_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${FEDFM_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${FEDFM_CCACHE})
endif()

if(FEDFM_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
