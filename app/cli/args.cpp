// Flag parsing for the qlora CLI: values are checked and converted with messages that name the flag.
#include "args.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace qlora_cli {

args::args(int argc, char** argv, int first, const std::vector<std::string>& value_flags,
           const std::vector<std::string>& switch_flags) {
    auto known = [](const std::vector<std::string>& v, const std::string& s) {
        return std::find(v.begin(), v.end(), s) != v.end();
    };
    for (int i = first; i < argc; ++i) {
        std::string a = argv[i];
        if (a.rfind("--", 0) != 0 || a == "--") {
            // an empty word is never a run folder, model or file: most often an unset shell variable ("$RUN")
            if (a.empty())
                throw usage_error("argument " + std::to_string(positional_.size() + 1) +
                                  " is empty where a folder, file or name is expected (an unset shell variable?)");
            positional_.push_back(a);
            continue;
        }
        std::string name = a.substr(2), value;
        bool inline_value = false;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
            inline_value = true;
        }
        if (known(switch_flags, name)) {
            if (inline_value) throw usage_error("--" + name + " takes no value");
            switches_[name] = true;
        } else if (known(value_flags, name)) {
            if (!inline_value) {
                if (i + 1 >= argc) throw usage_error("--" + name + " needs a value");
                value = argv[++i];
            }
            values_[name] = value;
        } else {
            std::string list;
            for (const auto& f : value_flags) list += " --" + f;
            for (const auto& f : switch_flags) list += " --" + f;
            throw usage_error("unknown option --" + name, "this command takes:" + list);
        }
    }
}

std::optional<std::string> args::get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
}

std::string args::get_or(const std::string& name, const std::string& fallback) const {
    return get(name).value_or(fallback);
}

long long args::get_int64(const std::string& name, long long fallback) const {
    auto v = get(name);
    if (!v) return fallback;
    errno = 0;
    char* end = nullptr;
    long long r = std::strtoll(v->c_str(), &end, 10);
    if (v->empty() || *end != '\0' || errno == ERANGE)
        throw usage_error("--" + name + " expects an integer, got '" + *v + "'");
    return r;
}

int args::get_int(const std::string& name, int fallback) const {
    long long r = get_int64(name, fallback);
    if (r < -2147483647LL || r > 2147483647LL)
        throw usage_error("--" + name + " is out of range: " + std::to_string(r));
    return int(r);
}

double args::get_double(const std::string& name, double fallback) const {
    auto v = get(name);
    if (!v) return fallback;
    errno = 0;
    char* end = nullptr;
    double r = std::strtod(v->c_str(), &end);
    if (v->empty() || *end != '\0' || errno == ERANGE)
        throw usage_error("--" + name + " expects a number, got '" + *v + "'");
    return r;
}

} // namespace qlora_cli
