// The CLI's model-load progress line on stderr: tensors n/N, GB (MB below 1 GB) read, rate and ETA; redrawn in place with \r on a
// terminal, one line per ~10% otherwise (logs and pipes stay readable).
#pragma once

#include "qls/model_source.h"

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <unistd.h>

namespace qlora_cli {

// A progress callback for load_control::on_progress / train_callbacks::on_load; `what` names the model.
inline std::function<void(const qls::load_progress&)> terminal_load_progress(const std::string& what) {
    const bool tty = isatty(fileno(stderr));
    auto last_decile = std::make_shared<int>(-1);
    return [tty, what, last_decile](const qls::load_progress& p) {
        const double frac = p.bytes_total     ? double(p.bytes_done) / double(p.bytes_total)
                            : p.tensors_total ? double(p.tensors_done) / double(p.tensors_total)
                                              : 1.0;
        const bool last = p.tensors_done >= p.tensors_total;
        const int decile = int(frac * 10.0);
        if (!tty && !last && decile == *last_decile) return;
        *last_decile = decile;
        // GB for real checkpoints, MB below 1 GB (a test model would read "0.00 GB")
        const double unit = p.bytes_total >= 1000000000ull ? 1e9 : 1e6;
        const char* u = unit == 1e9 ? "GB" : "MB";
        const double done = double(p.bytes_done) / unit, total = double(p.bytes_total) / unit;
        const double rate = p.seconds > 0 ? done / p.seconds : 0.0;
        const double eta = rate > 0 ? (total - done) / rate : 0.0;
        std::fprintf(stderr, "%sloading %s: tensors %lld/%lld, %.2f/%.2f %s, %.2f %s/s, ETA %.0fs%s",
                     tty ? "\r\033[K" : "", what.c_str(), (long long)p.tensors_done, (long long)p.tensors_total, done,
                     total, u, rate, u, eta, (!tty || last) ? "\n" : "");
        std::fflush(stderr);
    };
}

} // namespace qlora_cli
