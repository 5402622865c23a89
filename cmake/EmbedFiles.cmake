# fedfm_embed_file(<sources_var> FILE <path> NAMESPACE <ns> FUNCTION <name>)
#   Turns the bytes of <path> into a C++ source in the build tree that defines
#     std::string_view <ns>::<name>();
#   (declare it in a header of your own) and appends that source to
#   <sources_var>. The source is regenerated at build time when <path>
#   changes. Generated code never enters the source tree.
#
# The same file, run as a script (cmake -P) with FEDFM_EMBED_INPUT,
# FEDFM_EMBED_OUTPUT, FEDFM_EMBED_NAMESPACE and FEDFM_EMBED_FUNCTION set, does
# the conversion: file(READ ... HEX), one byte literal per byte, 16 per line.

if(CMAKE_SCRIPT_MODE_FILE AND DEFINED FEDFM_EMBED_INPUT)
  get_filename_component(_name "${FEDFM_EMBED_INPUT}" NAME)
  file(READ "${FEDFM_EMBED_INPUT}" _hex HEX)
  string(LENGTH "${_hex}" _hex_length)
  math(EXPR _size "${_hex_length} / 2")
  # 32 hex digits (16 bytes) a line, then each pair as a byte literal.
  string(REGEX REPLACE "(................................)" "\\1\n" _hex "${_hex}")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _bytes "${_hex}")
  file(WRITE "${FEDFM_EMBED_OUTPUT}.tmp"
"// Generated from ${_name} by cmake/EmbedFiles.cmake. Do not edit.
#include <string_view>

namespace ${FEDFM_EMBED_NAMESPACE} {
namespace {
// One extra NUL so that an empty file still makes a valid array.
const unsigned char kData[] = {
${_bytes}0x00};
}  // namespace

std::string_view ${FEDFM_EMBED_FUNCTION}() {
  return std::string_view(reinterpret_cast<const char*>(kData), ${_size});
}

}  // namespace ${FEDFM_EMBED_NAMESPACE}
")
  file(COPY_FILE "${FEDFM_EMBED_OUTPUT}.tmp" "${FEDFM_EMBED_OUTPUT}" ONLY_IF_DIFFERENT)
  file(REMOVE "${FEDFM_EMBED_OUTPUT}.tmp")
  return()
endif()

set(_FEDFM_EMBED_SCRIPT "${CMAKE_CURRENT_LIST_FILE}")

function(fedfm_embed_file sources_var)
  cmake_parse_arguments(ARG "" "FILE;NAMESPACE;FUNCTION" "" ${ARGN})
  if(NOT ARG_FILE OR NOT ARG_NAMESPACE OR NOT ARG_FUNCTION)
    message(FATAL_ERROR "fedfm_embed_file needs FILE, NAMESPACE and FUNCTION")
  endif()
  get_filename_component(_input "${ARG_FILE}" ABSOLUTE)
  set(_output "${CMAKE_CURRENT_BINARY_DIR}/embedded/${ARG_FUNCTION}.cc")
  add_custom_command(
    OUTPUT "${_output}"
    COMMAND ${CMAKE_COMMAND} -E make_directory "${CMAKE_CURRENT_BINARY_DIR}/embedded"
    COMMAND ${CMAKE_COMMAND}
      "-DFEDFM_EMBED_INPUT=${_input}"
      "-DFEDFM_EMBED_OUTPUT=${_output}"
      "-DFEDFM_EMBED_NAMESPACE=${ARG_NAMESPACE}"
      "-DFEDFM_EMBED_FUNCTION=${ARG_FUNCTION}"
      -P "${_FEDFM_EMBED_SCRIPT}"
    DEPENDS "${_input}" "${_FEDFM_EMBED_SCRIPT}"
    COMMENT "Embedding ${ARG_FILE}"
    VERBATIM)
  set(${sources_var} ${${sources_var}} "${_output}" PARENT_SCOPE)
endfunction()
