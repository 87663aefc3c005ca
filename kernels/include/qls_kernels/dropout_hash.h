// LoRA dropout keep-decision: the one definition of the counter-based hash, for host (engine) and device (kernels).
//
// Plain C++17 when not compiled by nvcc, like nf4_codebook.h, so qls_engine includes it too.
// splitmix64: Steele, Lea, Flood 2014 (http://prng.di.unimi.it/splitmix64.c), used as a hash of
// (seed, layer, target, element index) so every backend reproduces a step's mask without storing it.
#pragma once
#include "qls_kernels/host_device.h"
#include <cstdint>

namespace qls_kernels {

QLS_HD uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Keep element i of the input of adapter (layer, target) when a uniform in [0, 1) (24 bits) is >= p.
QLS_HD bool dropout_keep(uint64_t seed, int layer, int target, uint64_t i, float p) {
    if (p <= 0.0f) return true;
    const uint64_t h = splitmix64(seed ^ splitmix64((uint64_t(layer) << 8 | uint64_t(target)) ^ splitmix64(i)));
    const float u = float(h >> 40) * (1.0f / 16777216.0f);
    return u >= p;
}

} // namespace qls_kernels
