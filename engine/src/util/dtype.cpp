// dtype sizes, names and the f16 conversions (bf16 lives inline in the header).
#include "qls/dtype.h"
#include "qls/error.h"

#include <string>

namespace qls {

size_t dtype_size(dtype t) {
    switch (t) {
    case dtype::f64:
    case dtype::i64: return 8;
    case dtype::f32:
    case dtype::i32: return 4;
    case dtype::f16:
    case dtype::bf16:
    case dtype::i16: return 2;
    case dtype::i8:
    case dtype::u8:
    case dtype::boolean: return 1;
    }
    return 0;
}

const char* dtype_name(dtype t) {
    switch (t) {
    case dtype::f64: return "F64";
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::i64: return "I64";
    case dtype::i32: return "I32";
    case dtype::i16: return "I16";
    case dtype::i8: return "I8";
    case dtype::u8: return "U8";
    case dtype::boolean: return "BOOL";
    }
    return "?";
}

std::optional<dtype> dtype_from_name(std::string_view name) {
    static constexpr dtype all[] = {dtype::f64, dtype::f32, dtype::f16, dtype::bf16, dtype::i64,
                                    dtype::i32, dtype::i16, dtype::i8,  dtype::u8,   dtype::boolean};
    for (dtype t : all)
        if (name == dtype_name(t)) return t;
    return std::nullopt;
}

bool dtype_is_float(dtype t) { return t == dtype::f64 || t == dtype::f32 || t == dtype::f16 || t == dtype::bf16; }

// Reference for the bit manipulation: IEEE 754-2008 binary16 layout; the rounding mirrors
// what hardware F16C (vcvtps2ph with round-to-nearest-even) produces, which the tests check exhaustively.
float f16_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13)); // inf / nan
    if (exp == 0) {
        if (mant == 0) return f32_from_bits(sign); // signed zero
        // subnormal: value = mant * 2^-24
        float v = float(mant) * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((abs >> 13) & 0x3ffu)); // NaN, quiet
    if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);                         // rounds to >= 65520: inf
    if (abs < 0x38800000u) {                                                         // below 2^-14: subnormal or zero
        if (abs < 0x33000000u) return sign;                                          // < 2^-25 rounds to zero
        uint32_t exp = abs >> 23;                                                    // 102..112
        uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - exp; // 14..24
        uint32_t half = 1u << (shift - 1);
        uint32_t rem = mant & ((1u << shift) - 1u);
        uint32_t q = mant >> shift;
        if (rem > half || (rem == half && (q & 1u))) ++q;
        return uint16_t(sign | q);
    }
    // normal: rebias exponent (127 -> 15) and round 23 -> 10 mantissa bits to nearest even
    uint32_t r = abs - 0x38000000u; // exponent - 112
    uint32_t rem = r & 0x1fffu;
    uint32_t q = r >> 13;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q; // carry may bump exponent: fine
    return uint16_t(sign | q);
}

namespace {

// dst[i] = to(src[i]) for the n elements of type S at src.
template <class S, class To> void convert_each(float* dst, const void* src, size_t n, To to) {
    auto s = static_cast<const S*>(src);
    for (size_t i = 0; i < n; ++i) dst[i] = to(s[i]);
}

// dst[i] = float(src[i]) for the n elements of type S at src.
template <class S> void cast_each(float* dst, const void* src, size_t n) {
    convert_each<S>(dst, src, n, [](S v) { return float(v); });
}

} // namespace

void convert_to_f32(float* dst, const void* src, dtype from, size_t n) {
    if (n == 0) return; // an empty tensor may have null pointers, which memcpy must not get even for 0 bytes
    switch (from) {
    case dtype::f32: std::memcpy(dst, src, n * 4); return;
    case dtype::f64: return cast_each<double>(dst, src, n);
    case dtype::f16: return convert_each<uint16_t>(dst, src, n, f16_to_f32);
    case dtype::bf16: return convert_each<uint16_t>(dst, src, n, bf16_to_f32);
    case dtype::i64: return cast_each<int64_t>(dst, src, n);
    case dtype::i32: return cast_each<int32_t>(dst, src, n);
    case dtype::i16: return cast_each<int16_t>(dst, src, n);
    case dtype::i8: return cast_each<int8_t>(dst, src, n);
    case dtype::u8:
    case dtype::boolean: return cast_each<uint8_t>(dst, src, n);
    }
}

void convert_from_f32(void* dst, const float* src, dtype to, size_t n) {
    if (n == 0) return; // as convert_to_f32
    switch (to) {
    case dtype::f32: std::memcpy(dst, src, n * 4); return;
    case dtype::f64: {
        auto d = static_cast<double*>(dst);
        for (size_t i = 0; i < n; ++i) d[i] = src[i];
        return;
    }
    case dtype::f16: {
        auto d = static_cast<uint16_t*>(dst);
        for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
        return;
    }
    case dtype::bf16: {
        auto d = static_cast<uint16_t*>(dst);
        for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
        return;
    }
    default:
        throw error(error_code::unsupported, std::string("cannot convert f32 to ") + dtype_name(to),
                    "only F64, F32, F16 and BF16 are float targets");
    }
}

} // namespace qls
