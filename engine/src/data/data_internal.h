// Helpers shared by the dataset sources: the bad-record sink (skip or fail), UTF-8 validation and a portable
// seeded generator for shuffles that must give the same order on every platform.
#pragma once

#include "qls/dataset.h"
#include "qls/error.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qls::data {

constexpr size_t k_max_listed_warnings = 1000;

// Collects "file:line: problem" warnings under the skip policy, throws them under the fail policy.
class problem_sink {
public:
    explicit problem_sink(bad_record_policy policy) : policy_(policy) {}

    void report(const std::string& where, const std::string& problem, const std::string& hint) {
        std::string text = where + ": " + problem;
        if (policy_ == bad_record_policy::fail) throw error(error_code::format, text, hint);
        ++skipped_;
        if (warnings_.size() < k_max_listed_warnings) warnings_.push_back(std::move(text));
        else ++unlisted_;
    }
    // Appends the "N more" line once; call when reading is finished.
    std::vector<std::string> take_warnings() {
        if (unlisted_ > 0) warnings_.push_back("... and " + std::to_string(unlisted_) + " more problems not listed");
        unlisted_ = 0;
        return std::move(warnings_);
    }
    size_t skipped() const { return skipped_; }
    const std::vector<std::string>& warnings() const { return warnings_; }

private:
    bad_record_policy policy_;
    std::vector<std::string> warnings_;
    size_t skipped_ = 0, unlisted_ = 0;
};

// read_records without the final "no usable examples" check, reporting into a caller's sink (load_dataset adds
// its own problems to the same sink). Returns the resolved format.
dataset_format read_records_into(const std::string& path, const data_options& opt, problem_sink& sink,
                                 std::vector<data_record>& out);
// The error for a file that yielded no usable example; first_warning may be empty.
[[noreturn]] void throw_no_examples(const std::string& path, dataset_format format, size_t skipped,
                                    const std::string& first_warning, const std::string& hint = {});

// Offset of the first byte that is not part of well-formed UTF-8 (RFC 3629 section 4, no surrogates, no
// overlongs), or npos when s is valid.
inline size_t invalid_utf8_offset(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) n = 1;
        else if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return i;
        if (i + n > s.size()) return i;
        for (size_t k = 1; k < n; ++k) {
            const unsigned char d = static_cast<unsigned char>(s[i + k]);
            if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return i;
        }
        i += n;
    }
    return std::string_view::npos;
}

// splitmix64 (Steele, Lea, Flood 2014): a tiny generator whose output is fully specified, unlike the
// distributions of <random>, so shuffles and splits are identical on every platform and library.
class splitmix64 {
public:
    explicit splitmix64(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, n), n > 0, without modulo bias (rejection of the low 2^64 mod n values).
    uint64_t below(uint64_t n) {
        const uint64_t threshold = (0 - n) % n;
        for (;;) {
            const uint64_t r = next();
            if (r >= threshold) return r % n;
        }
    }

private:
    uint64_t state_;
};

// Fisher-Yates shuffle (Knuth, TAOCP vol. 2, algorithm P) with splitmix64.
template <class T> void seeded_shuffle(std::vector<T>& v, uint64_t seed) {
    splitmix64 rng(seed);
    for (size_t i = v.size(); i > 1; --i) {
        const size_t j = size_t(rng.below(i));
        std::swap(v[i - 1], v[j]);
    }
}

// A seed for one use (an epoch, the split) derived from the user's seed, so different uses never share a stream.
inline uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index) {
    splitmix64 a(seed ^ (stream * 0xD1B54A32D192ED03ull));
    splitmix64 b(a.next() + index);
    return b.next();
}

} // namespace qls::data
