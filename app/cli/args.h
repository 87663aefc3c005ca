// A small command-line flag parser for the qlora subcommands (the design card fixes our dependencies, so no CLI library).
#pragma once

#include "qls/error.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qlora_cli {

// Parses "--name value" and "--name=value" flags plus positional arguments. Flags listed as switches take no value.
class args {
public:
    args(int argc, char** argv, int first, const std::vector<std::string>& value_flags,
         const std::vector<std::string>& switch_flags);

    bool has(const std::string& name) const { return values_.count(name) || switches_.count(name); }
    std::optional<std::string> get(const std::string& name) const;
    std::string get_or(const std::string& name, const std::string& fallback) const;
    int get_int(const std::string& name, int fallback) const;
    long long get_int64(const std::string& name, long long fallback) const;
    double get_double(const std::string& name, double fallback) const;
    const std::vector<std::string>& positional() const { return positional_; }

private:
    std::map<std::string, std::string> values_;
    std::map<std::string, bool> switches_;
    std::vector<std::string> positional_;
};

// Thrown for a usage mistake (exit status 2).
struct usage_error : qls::error {
    explicit usage_error(const std::string& msg, const std::string& hint = {})
        : qls::error(qls::error_code::invalid_argument, msg, hint) {}
};

} // namespace qlora_cli
