# fedfm_library(<folder> SOURCES ... [DEPS ...] [PRIVATE_DEPS ...] [TORCH])
#   Defines fedfm_<folder> (alias fedfm::<folder>). TORCH links LibTorch and
#   reuses the one precompiled <torch/torch.h> header, so that each LibTorch
#   translation unit parses it once per build, not once per file.
# fedfm_test(<name> SOURCES ... DEPS ... [LABELS unit|integration|gpu] [TORCH])
#   A gtest binary registered with ctest through gtest_discover_tests.

# The precompiled LibTorch header. Every target reusing it must see the same
# compile definitions, so the dependencies that add definitions (spdlog) are
# linked here and by every TORCH target.
add_library(fedfm_torch_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/torch_pch.cc)
target_link_libraries(fedfm_torch_pch PUBLIC fedfm::dep::torch fedfm::dep::spdlog fedfm::dep::absl)
target_precompile_headers(fedfm_torch_pch PRIVATE <torch/torch.h>)
target_compile_options(fedfm_torch_pch PRIVATE -Winvalid-pch)
if(FEDFM_TORCH_PROTOBUF_FIRST)
  target_include_directories(fedfm_torch_pch SYSTEM BEFORE PRIVATE ${FEDFM_TORCH_PROTOBUF_FIRST})
endif()

function(_fedfm_use_torch target)
  target_link_libraries(${target} PUBLIC fedfm::dep::torch fedfm::dep::spdlog fedfm::dep::absl)
  if(FEDFM_TORCH_PROTOBUF_FIRST)
    target_include_directories(${target} SYSTEM BEFORE PRIVATE ${FEDFM_TORCH_PROTOBUF_FIRST})
  endif()
  target_precompile_headers(${target} REUSE_FROM fedfm_torch_pch)
  target_compile_options(${target} PRIVATE -Winvalid-pch)
endfunction()

function(fedfm_library folder)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  set(target fedfm_${folder})
  if(ARG_SOURCES)
    add_library(${target} STATIC ${ARG_SOURCES})
    target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
    target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
    target_compile_options(${target} PRIVATE -Wall -Wextra)
    if(ARG_TORCH)
      _fedfm_use_torch(${target})
    endif()
  else()
    add_library(${target} INTERFACE)
    target_include_directories(${target} INTERFACE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
    target_link_libraries(${target} INTERFACE ${ARG_DEPS})
  endif()
  add_library(fedfm::${folder} ALIAS ${target})
endfunction()

function(fedfm_test name)
  if(NOT FEDFM_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} fedfm::dep::gtest)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  if(ARG_TORCH)
    _fedfm_use_torch(${name})
  endif()
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES LABELS "${ARG_LABELS}" ENVIRONMENT "FEDFM_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
    DISCOVERY_TIMEOUT 60)
endfunction()
