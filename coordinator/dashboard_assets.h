// Files embedded into the binary at build time (cmake/EmbedFiles.cmake, see
// coordinator/dashboard.cmake), so that the dashboard works offline and
// without files beside the binary. Each view is valid for the program's
// lifetime.
#ifndef FEDFM_COORDINATOR_DASHBOARD_ASSETS_H_
#define FEDFM_COORDINATOR_DASHBOARD_ASSETS_H_

#include <string_view>

namespace fedfm::coordinator::embedded {

std::string_view DashboardPageHtml();  // coordinator/dashboard_page.html
std::string_view DygraphMinJs();       // dygraphs 2.x, dygraph.min.js (MIT)
std::string_view DygraphMinCss();      // dygraphs 2.x, dygraph.min.css (MIT)

}  // namespace fedfm::coordinator::embedded

#endif  // FEDFM_COORDINATOR_DASHBOARD_ASSETS_H_
