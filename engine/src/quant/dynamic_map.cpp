// bnb's 8-bit dynamic quantization maps and 8-bit blockwise (de)quantization with a map, bit for bit as bitsandbytes.
// Sources: bitsandbytes/functional.py create_dynamic_map; csrc/cuda/blockwise_quantization.cu dQuantize<0> and
// kQuantizeBlockwise<float, BS, NUM_PER_TH, 0, General8bit>; csrc/kernels.cu kDequantizeBlockwise (General8bit);
// torch aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp linspace_kernel.
#include "qls/quant.h"

#include "qls/error.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

namespace qls {

namespace {

// torch.linspace(start, end, steps, dtype=float32) on the CPU (linspace_kernel, scalar path only):
//   step = (end - start) / (steps - 1)                       (float32)
//   v[i] = start + step * i            for i <  steps / 2
//   v[i] = end - step * (steps - 1 - i) for i >= steps / 2
// torch's AVX2/AVX512 builds of that kernel compile `a + b * c` to one fused multiply-add (GCC's default
// -ffp-contract=fast with -mfma), so each element is rounded once: std::fma reproduces it exactly.
std::vector<float> torch_linspace_f32(float start, float end, int64_t steps) {
    std::vector<float> v(static_cast<size_t>(steps));
    const float step = (end - start) / float(steps - 1);
    const int64_t halfway = steps / 2;
    for (int64_t i = 0; i < steps; ++i)
        v[size_t(i)] = i < halfway ? std::fma(step, float(i), start) : std::fma(-step, float(steps - i - 1), end);
    return v;
}

} // namespace

std::array<float, 256> dynamic_map(bool is_signed) {
    // create_dynamic_map(signed, max_exponent_bits=7, total_bits=8): non_sign_bits = 7, additional_items =
    // 2^(7-7) - 1 = 0, so only the 7 decades contribute.
    constexpr int max_exponent_bits = 7;
    // Python's 10 ** (-6 + i) (a double), then torch casts the scalar to float32 for `scalar * float32_tensor`.
    static constexpr double decade[max_exponent_bits] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    std::vector<float> data;
    data.reserve(256);
    for (int i = 0; i < max_exponent_bits; ++i) {
        const int64_t fraction_items = is_signed ? (int64_t(1) << i) + 1 : (int64_t(1) << (i + 1)) + 1;
        const std::vector<float> b = torch_linspace_f32(float(0.1), 1.0f, fraction_items);
        const float scale = float(decade[i]);
        for (size_t j = 0; j + 1 < b.size(); ++j) {
            const float mean = (b[j] + b[j + 1]) / 2.0f; // (boundaries[:-1] + boundaries[1:]) / 2.0 in float32
            data.push_back(scale * mean);
            if (is_signed) data.push_back(-scale * mean); // (-(10**k)) * means: the same magnitude, negated
        }
    }
    data.push_back(0.0f);
    data.push_back(1.0f);
    QLS_ASSERT(data.size() == 256);
    std::sort(data.begin(), data.end());
    std::array<float, 256> map{};
    std::copy(data.begin(), data.end(), map.begin());
    return map;
}

size_t blockwise_blocks(size_t n, int blocksize) {
    QLS_ASSERT(blocksize > 0);
    return (n + size_t(blocksize) - 1) / size_t(blocksize);
}

uint8_t blockwise8_encode(float x, const std::array<float, 256>& code) {
    // dQuantize<0> (csrc/cuda/blockwise_quantization.cu), statement for statement.
    int pivot = 127;
    int upper_pivot = 255;
    int lower_pivot = 0;
    float lower = -1.0f;
    float upper = 1.0f;
    float val = code[size_t(pivot)];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = code[size_t(pivot)];
    }
    if (upper_pivot == 255) upper = code[size_t(upper_pivot)];
    if (lower_pivot == 0) lower = code[size_t(lower_pivot)];
    if (x > val) {
        const float midpoint = (upper + val) * 0.5f;
        return uint8_t(x > midpoint ? upper_pivot : pivot);
    }
    const float midpoint = (lower + val) * 0.5f;
    return uint8_t(x < midpoint ? lower_pivot : pivot);
}

void blockwise8_quantize(const float* x, size_t n, int blocksize, const std::array<float, 256>& map, uint8_t* codes,
                         float* absmax) {
    if (blocksize <= 0)
        throw error(error_code::invalid_argument,
                    "blockwise8_quantize: blocksize must be positive, got " + std::to_string(blocksize),
                    "bitsandbytes uses 256 for optimizer states and for the nested NF4 absmax");
    const size_t bs = size_t(blocksize);
    const size_t nb = blockwise_blocks(n, blocksize);
    for (size_t b = 0; b < nb; ++b) {
        const size_t begin = b * bs, end = std::min(n, begin + bs);
        float m = -FLT_MAX; // kQuantizeBlockwise: local_abs_max = -FLT_MAX, fmaxf(local, fabsf(v)), block max
        for (size_t i = begin; i < end; ++i) m = std::fmax(m, std::fabs(x[i]));
        absmax[b] = m;
        // smem_absmax_value = 1.0f / local_abs_max; values are multiplied by it. (bnb's build uses --use_fast_math,
        // so on the GPU this reciprocal is rcp.approx, at most 1 ulp off this correctly rounded one: qls/quant.h.)
        const float s = 1.0f / m;
        for (size_t i = begin; i < end; ++i) codes[i] = blockwise8_encode(x[i] * s, map);
    }
}

void blockwise8_dequantize(const uint8_t* codes, const float* absmax, size_t n, int blocksize,
                           const std::array<float, 256>& map, float* out) {
    if (blocksize <= 0)
        throw error(error_code::invalid_argument,
                    "blockwise8_dequantize: blocksize must be positive, got " + std::to_string(blocksize));
    const size_t bs = size_t(blocksize);
    for (size_t i = 0; i < n; ++i) out[i] = map[codes[i]] * absmax[i / bs];
}

} // namespace qls
