# The coordinator's HTTP dashboard: a library of its own, free of LibTorch and
# of the store, so the CLI, the simulation and the tests link it alone. Asio
# is reached only from http_server.cc. Included from coordinator/CMakeLists.txt.
include(EmbedFiles)

# dygraphs (Debian: libjs-dygraphs) is embedded into the binary so the page
# works offline.
find_path(FEDFM_DYGRAPHS_DIR dygraph.min.js
  PATHS /usr/share/javascript/dygraphs /usr/local/share/javascript/dygraphs
  PATH_SUFFIXES share/javascript/dygraphs javascript/dygraphs
  DOC "Directory holding dygraph.min.js and dygraph.min.css")
if(NOT FEDFM_DYGRAPHS_DIR OR NOT EXISTS "${FEDFM_DYGRAPHS_DIR}/dygraph.min.css")
  message(FATAL_ERROR
    "dygraphs not found (dygraph.min.js and dygraph.min.css, needed by the coordinator dashboard): "
    "install libjs-dygraphs (Debian/Ubuntu), or pass -DFEDFM_DYGRAPHS_DIR=<directory holding both files>")
endif()

set(_fedfm_dashboard_embedded)
fedfm_embed_file(_fedfm_dashboard_embedded
  FILE ${CMAKE_CURRENT_SOURCE_DIR}/dashboard_page.html
  NAMESPACE fedfm::coordinator::embedded FUNCTION DashboardPageHtml)
fedfm_embed_file(_fedfm_dashboard_embedded
  FILE ${FEDFM_DYGRAPHS_DIR}/dygraph.min.js
  NAMESPACE fedfm::coordinator::embedded FUNCTION DygraphMinJs)
fedfm_embed_file(_fedfm_dashboard_embedded
  FILE ${FEDFM_DYGRAPHS_DIR}/dygraph.min.css
  NAMESPACE fedfm::coordinator::embedded FUNCTION DygraphMinCss)

fedfm_library(coordinator_http
  SOURCES
    http_server.cc
    dashboard.cc
    ${_fedfm_dashboard_embedded}
  DEPS fedfm::protocols
  PRIVATE_DEPS fedfm::dep::asio fedfm::dep::json)

fedfm_test(coordinator_http_test
  SOURCES
    http_server_test.cc
    dashboard_test.cc
  DEPS fedfm::coordinator_http fedfm::dep::json)

# Starts the dashboard and renders it in headless Chromium (skipped without
# /usr/bin/chromium).
fedfm_test(coordinator_dashboard_browser_test
  SOURCES dashboard_browser_test.cc
  DEPS fedfm::coordinator_http
  LABELS integration)

# For looking at the page by hand: a synthetic run whose rounds advance on a
# timer (coordinator_dashboard_demo [ADDRESS] [PREFILL_ROUNDS] [INTERVAL_MS]).
if(FEDFM_TESTS)
  add_executable(coordinator_dashboard_demo dashboard_demo.cc)
  target_link_libraries(coordinator_dashboard_demo PRIVATE fedfm::coordinator_http)
endif()
