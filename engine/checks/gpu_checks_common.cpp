// What `qlora check-gpu` needs in every build, with or without CUDA: where the source tree's family models are.
#include "qls/gpu_checks.h"

namespace qls {

std::string default_families_dir() {
#ifdef QLS_SOURCE_FAMILIES_DIR
    return QLS_SOURCE_FAMILIES_DIR;
#else
    return "";
#endif
}

} // namespace qls
