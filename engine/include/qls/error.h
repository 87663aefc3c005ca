// qls::error — the one recoverable-failure type the engine throws: a code, a message naming the file or field, and a hint for the user.
#pragma once

#include <stdexcept>
#include <string>

namespace qls {

enum class error_code {
    io,               // a file cannot be opened, read or written
    format,           // a file exists but its contents are malformed
    config,           // a config value is missing, of the wrong type or out of range
    shape_mismatch,   // tensors disagree with the model config
    unsupported,      // valid input this build does not handle (a dtype, an architecture)
    invalid_argument, // a caller/user argument is out of range
    device,           // a CUDA/driver failure
    out_of_memory,    // the device (or pinned host) memory a run needs is not there
    cancelled,        // the user asked to stop (a load, a generation) and it stopped cleanly
    internal,         // a bug: an invariant did not hold
};

const char* error_code_name(error_code code);

class error : public std::runtime_error {
public:
    error(error_code code, std::string message, std::string hint = {})
        : std::runtime_error(message), code_(code), hint_(std::move(hint)) {}

    error_code code() const noexcept { return code_; }
    const std::string& hint() const noexcept { return hint_; }
    // "message\n  hint: ..." ready for a terminal or a dialog
    std::string describe() const;

private:
    error_code code_;
    std::string hint_;
};

// Invariant check for programmer errors (not user input): throws error_code::internal with the condition text.
#define QLS_ASSERT(cond)                                                                                              \
    do {                                                                                                              \
        if (!(cond))                                                                                                  \
            throw ::qls::error(::qls::error_code::internal, std::string("internal check failed: ") + #cond + " at " + \
                                                                __FILE__ + ":" + std::to_string(__LINE__));           \
    } while (0)

} // namespace qls
