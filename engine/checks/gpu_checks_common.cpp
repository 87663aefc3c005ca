// What `qlora check-gpu` needs in every build, with or without CUDA: where the source tree's family models are.
#include "qls/gpu_checks.h"

#include <filesystem>
#include <system_error>

namespace qls {

std::string default_families_dir() {
    // the source tree the binary was built from; failing that (a binary copied to another machine and run from a
    // checkout there), tests/data/families under the current folder
#ifdef QLS_SOURCE_FAMILIES_DIR
    const std::string built = QLS_SOURCE_FAMILIES_DIR;
#else
    const std::string built;
#endif
    std::error_code ec;
    if (!built.empty() && std::filesystem::is_directory(built, ec)) return built;
    const std::filesystem::path here = std::filesystem::current_path(ec) / "tests" / "data" / "families";
    if (!ec && std::filesystem::is_directory(here, ec)) return here.string();
    return built;
}

} // namespace qls
