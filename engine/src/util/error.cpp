// Names for error codes and the user-facing rendering of qls::error.
#include "qls/error.h"

namespace qls {

const char* error_code_name(error_code code) {
    switch (code) {
    case error_code::io: return "io";
    case error_code::format: return "format";
    case error_code::config: return "config";
    case error_code::shape_mismatch: return "shape_mismatch";
    case error_code::unsupported: return "unsupported";
    case error_code::invalid_argument: return "invalid_argument";
    case error_code::device: return "device";
    case error_code::out_of_memory: return "out_of_memory";
    case error_code::cancelled: return "cancelled";
    case error_code::internal: return "internal";
    }
    return "unknown";
}

std::string error::describe() const {
    std::string s = what();
    if (!hint_.empty()) s += "\n  hint: " + hint_;
    return s;
}

} // namespace qls
