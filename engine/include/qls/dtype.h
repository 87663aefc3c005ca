// Element types the engine stores and reads (safetensors names), with exact f16/bf16 <-> f32 conversion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace qls {

enum class dtype : uint8_t { f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean };

size_t dtype_size(dtype t);
// The safetensors spelling: "F32", "BF16", "U8", ...
const char* dtype_name(dtype t);
std::optional<dtype> dtype_from_name(std::string_view name);
bool dtype_is_float(dtype t);

// ---- bit-exact conversions -------------------------------------------------------------------------
// Round-to-nearest-even on narrowing; NaN stays NaN (quiet), infinities and signed zeros are kept.
// bf16 is the top 16 bits of an IEEE-754 binary32. Reference: the bfloat16 format as defined in
// https://cloud.google.com/tpu/docs/bfloat16 and PyTorch c10/util/BFloat16.h (round_to_nearest_even).
inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float f32_from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u); // NaN: keep sign, force quiet
    uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
    return uint16_t((u + rounding_bias) >> 16);
}

// IEEE-754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; subnormals handled exactly.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of type `from` at src to f32 at dst (any float dtype; integers convert by value).
void convert_to_f32(float* dst, const void* src, dtype from, size_t n);
// Converts n f32 values to `to` (f64/f32/f16/bf16 only).
void convert_from_f32(void* dst, const float* src, dtype to, size_t n);

} // namespace qls
