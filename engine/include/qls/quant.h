// Blockwise quantization byte-compatible with bitsandbytes (bnb 0.50.2): 8-bit dynamic maps, 8-bit blockwise
// (de)quantization, NF4 with double quantization, and pre-quantized bnb checkpoints.
//
// Sources (bitsandbytes-foundation/bitsandbytes): bitsandbytes/functional.py (create_dynamic_map, quantize_blockwise,
// dequantize_blockwise, quantize_4bit, dequantize_4bit, QuantState.as_dict/from_dict), csrc/kernels.cu and
// csrc/cuda/blockwise_quantization.cu (kQuantizeBlockwise, dQuantize, dQuantizeNF4, kDequantizeBlockwise).
// Checked byte for byte against the real library's CUDA kernels: tests/data/bnb/*.safetensors, tests/tst_quant.cpp.
//
// The one thing a CPU cannot reproduce bit for bit: bnb's CUDA library is built with --use_fast_math (its
// CMakeLists.txt), so the block scale 1.0f / absmax is the GPU's approximate reciprocal (rcp.approx, within 1 ulp of
// the correctly rounded one; e.g. 81.30081f instead of 81.30082f for absmax 0.0123f). These functions use the
// correctly rounded 1.0f / absmax. Codes can therefore differ by one step for values within about one ulp of a
// decision threshold, in blocks whose GPU reciprocal is not the correctly rounded one; on the fixtures' random data
// (about 40k NF4 and 2k 8-bit values) no code differs. Dequantization has no such step: it is bit-identical.
// A CUDA kernel that must match bnb exactly computes the scale the same way bnb does (1.0f / absmax under
// -use_fast_math, i.e. rcp.approx.ftz.f32).
#pragma once

#include "qls/hf_checkpoint.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace qls {

// ---- 8-bit dynamic maps ---------------------------------------------------------------------------------------------

// The 256-entry "dynamic" quantization map of bnb `create_dynamic_map(signed=is_signed, max_exponent_bits=7,
// total_bits=8)`, bit-identical to bnb's float32 table, ascending.
//   signed:   for decade i = 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1) times 10^(i-6), mirrored to
//             negative values, plus 0 and 1.0 (range [-0.99297, 1]);  used for Adam's m (state1) and for the
//             nested (double-quantized) NF4 absmax.
//   unsigned: 2^(i+1) midpoints per decade, plus 0 and 1.0 (range [0, 1]); used for Adam's v (state2).
// torch.linspace(float32) on the CPU computes start + step*i (i < steps/2) else end - step*(steps-1-i), which torch's
// AVX2/AVX512 kernels contract to one fused multiply-add; this function does the same with std::fma. (On a CPU that
// torch runs at capability "DEFAULT", without FMA, a few entries of bnb's table differ in the last bit.)
std::array<float, 256> dynamic_map(bool is_signed);

// ---- 8-bit blockwise quantization with a map (bnb quantize_blockwise / dequantize_blockwise) -------------------------

// Number of blocks for n elements: ceil(n / blocksize).
size_t blockwise_blocks(size_t n, int blocksize);

// The code of one value already normalized to [-1, 1] (x * (1/absmax)): bnb's dQuantize<STOCHASTIC=0>, i.e. a
// 7-step binary search over the sorted map followed by a round-to-nearest decided against the float32 midpoint
// (c[lo] + c[hi]) * 0.5f — strictly above the upper midpoint picks the upper code, strictly below the lower midpoint
// the lower one, a value exactly on a midpoint keeps the searched pivot. NaN gives code 0. `map` must be ascending
// (both dynamic maps are).
uint8_t blockwise8_encode(float x, const std::array<float, 256>& map);

// x: [n] fp32 → codes: [n] uint8, absmax: [ceil(n/blocksize)] fp32. Blocks are runs of `blocksize` consecutive
// elements (the last may be partial). Per block, as bnb's kQuantizeBlockwise<float, blocksize, ..., General8bit>:
//   absmax[b] = max |x| over the block;  s = 1.0f / absmax[b];  codes[i] = blockwise8_encode(x[i] * s, map)
// (bnb multiplies by the reciprocal; it does not divide — bnb's reciprocal is the GPU's approximate one, see the top
// of this file). An all-zero block gets absmax 0 and every code = 0
// (0 * inf = NaN → code 0), exactly as bnb stores it. blocksize > 0 (bnb's CUDA path allows 64..4096, powers of 2;
// the 8-bit optimizer states use 256); otherwise throws error_code::invalid_argument.
void blockwise8_quantize(const float* x, size_t n, int blocksize, const std::array<float, 256>& map, uint8_t* codes,
                         float* absmax);

// codes: [n], absmax: [ceil(n/blocksize)] → out: [n] fp32, out[i] = map[codes[i]] * absmax[i / blocksize]
// (one float32 multiply, as bnb's kDequantizeBlockwise General8bit).
void blockwise8_dequantize(const uint8_t* codes, const float* absmax, size_t n, int blocksize,
                           const std::array<float, 256>& map, float* out);

// ---- NF4 (bnb quantize_4bit(quant_type="nf4")) ----------------------------------------------------------------------

// A weight [rows, cols] (row-major, so blocks of `blocksize` consecutive elements run along cols) in NF4 as bnb
// stores it. n = rows*cols, nblocks = ceil(n / blocksize), nscale = ceil(nblocks / nested_blocksize).
struct nf4_tensor {
    int64_t rows = 0, cols = 0;
    int blocksize = 64; // bnb: 32, 64 (default), 128, ..., 4096
    // [ceil(n/2)] two 4-bit codes per byte: element 2j in the HIGH nibble, 2j+1 in the low nibble (bnb stores it as
    // a uint8 tensor of shape [(n+1)/2, 1]). For odd n the last low nibble encodes the zero padding bnb loads.
    std::vector<uint8_t> packed;
    bool double_quant = false; // bnb compress_statistics
    std::vector<float> absmax; // !double_quant: [nblocks] fp32 block absmax
    // double_quant: the block absmax, stored as 8-bit blockwise codes of (absmax - absmax_offset) in nested_map with
    // blocks of nested_blocksize; reconstruction absmax[i] = nested_map[absmax_codes[i]] * absmax_scale[i / 256]
    // + absmax_offset (bnb dequantize_4bit: dequantize_blockwise(...) then += offset).
    std::vector<uint8_t> absmax_codes; // [nblocks]
    std::vector<float> absmax_scale;   // [nscale] fp32 (bnb state2.absmax, "nested_absmax")
    float absmax_offset = 0.0f;        // bnb offset = absmax.mean() ("nested_offset")
    int nested_blocksize = 256;
    std::array<float, 256> nested_map{}; // bnb state2.code ("nested_quant_map"): dynamic_map(true) when we quantize

    int64_t numel() const { return rows * cols; }
    int64_t nblocks() const;
    // Bytes bnb keeps for this weight (numel * element_size of each QuantState tensor): packed ceil(n/2),
    // absmax (nblocks uint8 codes with double quant, else nblocks * 4), and with double quant nested absmax
    // nscale * 4 + nested map 1024 + offset 4; always the 16-entry fp32 quant_map (64). Checked against bnb's own
    // QuantState for the Llama-2-7B shapes in tests/data/bnb/llama2_7b_nf4_bytes.json.
    size_t nbytes() const;
};

// nf4_tensor::nbytes() of a weight with `numel` elements, without quantizing anything (for memory plans).
size_t nf4_storage_bytes(int64_t numel, bool double_quant, int blocksize = 64, int nested_blocksize = 256);

// Quantizes w: [rows, cols] fp32, row-major, as bnb quantize_4bit(w, blocksize, compress_statistics=double_quant,
// quant_type="nf4") does on CUDA:
//   absmax[b] = max |w| over block b;  s = 1.0f / absmax[b];  code = nf4_encode(w * s)  (qls_kernels/nf4_codebook.h)
// With double_quant: offset = mean(absmax), absmax_codes/absmax_scale = blockwise8_quantize(absmax - offset,
// nested_blocksize=256, dynamic_map(true)).
// Byte compatibility: absmax (plain) is identical to bnb, and so are the packed codes except for the approximate-
// reciprocal corner described at the top of this file. The offset is fl(fl(sum) * fl(1/nblocks)) — the
// formula of torch's CUDA mean — with the sum taken in double and rounded once; torch sums in float32 in a
// GPU-dependent tree order, so its offset can differ by a few ulps (2 ulps seen on a 20-block tensor; equal on the
// others). The nested codes/scales are then bnb's given that offset (they are identical whenever the offsets are).
// blocksize must be one of 32, 64, ..., 4096 and rows, cols > 0, else error_code::invalid_argument.
nf4_tensor nf4_quantize(const float* w, int64_t rows, int64_t cols, bool double_quant, int blocksize = 64);

// The fp32 block absmax, [nblocks]: `absmax` as is, or for double quant map[code] * scale (a float32 multiply) and
// then + offset (a separate float32 add, never fused), exactly as bnb's dequantize_4bit rebuilds it.
std::vector<float> nf4_absmax(const nf4_tensor& t);

// out: [rows, cols] fp32, out[i] = nf4_code[q_i] * absmax[i / blocksize] (bnb kDequantizeBlockwise NF4).
void nf4_dequantize(const nf4_tensor& t, float* out);

// ---- pre-quantized bnb checkpoints (*-bnb-4bit on the Hugging Face hub) -------------------------------------------

// True when the checkpoint stores `weight_name` quantized by bitsandbytes, i.e. it has the tensor
// "<weight_name>.quant_state.bitsandbytes__nf4" (or "...__fp4", which read_bnb_nf4 then rejects as unsupported).
bool bnb_nf4_present(const hf_checkpoint& ckpt, const std::string& weight_name);

// Reads a Linear4bit weight as bnb's Params4bit._save_to_state_dict writes it:
//   <name>                                   packed codes, U8 [ceil(n/2), 1] (any dtype/shape of ceil(n/2) bytes is
//                                            accepted: bnb's quant_storage only reinterprets the bytes)
//   <name>.absmax                            U8 [nblocks] with double quant, else F32 [nblocks]
//   <name>.quant_map                         F32 [16], must equal the NF4 codebook
//   <name>.nested_absmax                     F32 [ceil(nblocks/nested_blocksize)]   (double quant only)
//   <name>.nested_quant_map                  F32 [256]                              (double quant only)
//   <name>.quant_state.bitsandbytes__nf4     U8 bytes of JSON {quant_type, blocksize, dtype, shape,
//                                            [nested_blocksize, nested_dtype, nested_offset]}
// quant_type must be "nf4" (else error_code::unsupported), shape must equal [rows, cols] from config.json (else
// error_code::shape_mismatch), and every tensor must be present with the dtype and shape above (error_code::format
// or shape_mismatch). Every error names the file, the tensor and what to do.
nf4_tensor read_bnb_nf4(const hf_checkpoint& ckpt, const std::string& weight_name, int64_t rows, int64_t cols);

} // namespace qls
