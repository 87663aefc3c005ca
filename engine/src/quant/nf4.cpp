// NF4 quantization with optional double quantization, byte-compatible with bnb quantize_4bit/dequantize_4bit, and the reader for pre-quantized bitsandbytes checkpoints.
// Sources: bitsandbytes/functional.py (quantize_4bit, dequantize_4bit, QuantState.as_dict/from_dict),
// bitsandbytes/utils.py (pack_dict_to_tensor), bitsandbytes/nn/modules.py (Linear4bit._save_to_state_dict),
// csrc/cuda/blockwise_quantization.cu (kQuantizeBlockwise<T, 64, 2, 0, NF4>), csrc/kernels.cu (kDequantizeBlockwise).
#include "qls/quant.h"

#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/json_input.h"
#include "qls_kernels/nf4_codebook.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace qls {

namespace {

bool valid_nf4_blocksize(int bs) {
    for (int v = 32; v <= 4096; v *= 2)
        if (bs == v) return true;
    return false;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Throws invalid_argument when the vectors of t do not have the sizes its rows/cols/blocksize imply.
void check_layout(const nf4_tensor& t, const char* who) {
    auto fail = [&](const std::string& what) {
        throw error(error_code::invalid_argument, std::string(who) + ": inconsistent nf4_tensor: " + what,
                    "build nf4_tensor with nf4_quantize or read_bnb_nf4");
    };
    if (t.rows <= 0 || t.cols <= 0) fail("rows and cols must be positive");
    if (!valid_nf4_blocksize(t.blocksize)) fail("blocksize " + std::to_string(t.blocksize));
    const int64_t n = t.numel(), nb = t.nblocks();
    if (int64_t(t.packed.size()) != ceil_div(n, 2)) fail("packed has " + std::to_string(t.packed.size()) + " bytes");
    if (t.double_quant) {
        if (t.nested_blocksize <= 0) fail("nested_blocksize " + std::to_string(t.nested_blocksize));
        if (int64_t(t.absmax_codes.size()) != nb) fail("absmax_codes has " + std::to_string(t.absmax_codes.size()));
        if (int64_t(t.absmax_scale.size()) != ceil_div(nb, t.nested_blocksize))
            fail("absmax_scale has " + std::to_string(t.absmax_scale.size()));
    } else if (int64_t(t.absmax.size()) != nb) {
        fail("absmax has " + std::to_string(t.absmax.size()));
    }
}

} // namespace

int64_t nf4_tensor::nblocks() const { return ceil_div(numel(), blocksize); }

size_t nf4_storage_bytes(int64_t numel, bool double_quant, int blocksize, int nested_blocksize) {
    QLS_ASSERT(numel >= 0 && blocksize > 0 && nested_blocksize > 0);
    const int64_t nb = ceil_div(numel, blocksize);
    size_t bytes = size_t(ceil_div(numel, 2)) + 16 * sizeof(float); // packed + quant_map
    if (double_quant)
        bytes += size_t(nb) + size_t(ceil_div(nb, nested_blocksize)) * sizeof(float) + 256 * sizeof(float) +
                 sizeof(float); // absmax codes, nested absmax, nested map, offset
    else bytes += size_t(nb) * sizeof(float);
    return bytes;
}

size_t nf4_tensor::nbytes() const { return nf4_storage_bytes(numel(), double_quant, blocksize, nested_blocksize); }

nf4_tensor nf4_quantize(const float* w, int64_t rows, int64_t cols, bool double_quant, int blocksize) {
    if (rows <= 0 || cols <= 0)
        throw error(error_code::invalid_argument,
                    "nf4_quantize: shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "] must be positive",
                    "pass the weight's [out_features, in_features] from config.json");
    if (!valid_nf4_blocksize(blocksize))
        throw error(error_code::invalid_argument,
                    "nf4_quantize: blocksize " + std::to_string(blocksize) +
                        " is not one of bitsandbytes' 4-bit block "
                        "sizes",
                    "use 32, 64 (the QLoRA default), 128, 256, 512, 1024, 2048 or 4096");
    nf4_tensor t;
    t.rows = rows;
    t.cols = cols;
    t.blocksize = blocksize;
    t.double_quant = double_quant;
    const int64_t n = rows * cols, nb = t.nblocks();
    t.packed.assign(size_t(ceil_div(n, 2)), 0);
    std::vector<float> absmax(static_cast<size_t>(nb));
    // blocks are independent and even-sized, so each writes its own bytes of `packed` (any thread count, same bytes)
#pragma omp parallel for schedule(static) if (nb > 4096)
    for (int64_t b = 0; b < nb; ++b) {
        const int64_t begin = b * blocksize, end = std::min(n, begin + blocksize);
        // kQuantizeBlockwise: local_abs_max = -FLT_MAX; fmaxf(local_abs_max, fabsf(v)); CUB block max.
        float m = -FLT_MAX;
        for (int64_t i = begin; i < end; ++i) m = std::fmax(m, std::fabs(w[i]));
        absmax[size_t(b)] = m;
        // The kernel multiplies by the reciprocal (0 -> inf -> NaN -> code 0); bnb's is the GPU's approximate
        // reciprocal under --use_fast_math, this one is correctly rounded (see qls/quant.h).
        const float s = 1.0f / m;
        // Pairs (2j, 2j+1); the kernel loads a missing element of an odd n as 0.0f and quantizes it too.
        for (int64_t i = begin; i < end; i += 2) {
            const float hi = w[i] * s;
            const float lo = (i + 1 < end ? w[i + 1] : 0.0f) * s;
            t.packed[size_t(i / 2)] = uint8_t((qls_kernels::nf4_encode(hi) << 4) | qls_kernels::nf4_encode(lo));
        }
    }
    if (!double_quant) {
        t.absmax = std::move(absmax);
        return t;
    }
    // compress_statistics: offset = absmax.mean(); quantize_blockwise(absmax - offset, blocksize=256) with the
    // signed dynamic map. torch's CUDA mean is fl(sum * fl(1/n)); our sum is exact to double, rounded once.
    double sum = 0.0;
    for (float a : absmax) sum += double(a);
    const float factor = 1.0f / float(nb);
    t.absmax_offset = float(sum) * factor;
    t.nested_blocksize = 256;
    t.nested_map = dynamic_map(true);
    std::vector<float> centered(absmax.size());
    for (size_t i = 0; i < absmax.size(); ++i) centered[i] = absmax[i] - t.absmax_offset;
    t.absmax_codes.resize(absmax.size());
    t.absmax_scale.resize(blockwise_blocks(absmax.size(), t.nested_blocksize));
    blockwise8_quantize(centered.data(), centered.size(), t.nested_blocksize, t.nested_map, t.absmax_codes.data(),
                        t.absmax_scale.data());
    return t;
}

std::vector<float> nf4_absmax(const nf4_tensor& t) {
    check_layout(t, "nf4_absmax");
    if (!t.double_quant) return t.absmax;
    std::vector<float> a(t.absmax_codes.size());
    blockwise8_dequantize(t.absmax_codes.data(), t.absmax_scale.data(), a.size(), t.nested_blocksize, t.nested_map,
                          a.data());
    // A separate pass, as bnb's separate `absmax += offset` kernel: the product above is rounded before the add
    // (never an FMA).
    for (float& v : a) v += t.absmax_offset;
    return a;
}

void nf4_dequantize(const nf4_tensor& t, float* out) {
    const std::vector<float> absmax = nf4_absmax(t);
    const int64_t n = t.numel();
    const int64_t bs = t.blocksize;
#pragma omp parallel for schedule(static) if (n > (int64_t(1) << 18))
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t byte = t.packed[size_t(i / 2)];
        const unsigned q = (i % 2 == 0) ? unsigned(byte >> 4) : unsigned(byte & 0x0F);
        out[i] = qls_kernels::nf4_code[q] * absmax[size_t(i / bs)];
    }
}

// ---- pre-quantized checkpoints --------------------------------------------------------------------------------------

namespace {

const char* const kHintRequantize =
    "re-download the checkpoint, or load the unquantized model and let QLoRA Studio quantize it to NF4";

struct bnb_reader {
    const hf_checkpoint& ckpt;
    const std::string& name;
    std::string where; // the file holding the quant state (for messages)

    std::string file_of(const std::string& t) const { return ckpt.has(t) ? ckpt.file_of(t).path() : where; }

    const safetensors_entry& require(const std::string& t, const std::string& why) const {
        if (!ckpt.has(t))
            throw error(error_code::format,
                        where + ": tensor '" + t + "' is missing: the bitsandbytes 4-bit weight '" + name + "' needs " +
                            why,
                        kHintRequantize);
        return ckpt.entry(t);
    }

    std::vector<uint8_t> bytes(const std::string& t) const {
        const safetensors_entry& e = ckpt.entry(t);
        const std::byte* p = ckpt.file_of(t).bytes(e);
        std::vector<uint8_t> v(size_t(e.end - e.begin));
        if (!v.empty()) std::memcpy(v.data(), p, v.size());
        return v;
    }

    void expect_dtype(const std::string& t, dtype want, const std::string& layout) const {
        const safetensors_entry& e = ckpt.entry(t);
        if (e.type != want)
            throw error(error_code::format,
                        file_of(t) + ": tensor '" + t + "' has dtype " + dtype_name(e.type) + ", expected " +
                            dtype_name(want) + " (" + layout + ")",
                        kHintRequantize);
    }

    void expect_numel(const std::string& t, int64_t want, const std::string& layout) const {
        const safetensors_entry& e = ckpt.entry(t);
        if (shape_numel(e.shape) != want)
            throw error(error_code::shape_mismatch,
                        file_of(t) + ": tensor '" + t + "' has shape " + shape_str(e.shape) + " (" +
                            std::to_string(shape_numel(e.shape)) + " elements), expected " + std::to_string(want) +
                            " elements (" + layout + ")",
                        kHintRequantize);
    }

    std::vector<float> f32(const std::string& t, int64_t numel, const std::string& layout) const {
        expect_dtype(t, dtype::f32, layout);
        expect_numel(t, numel, layout);
        std::vector<uint8_t> b = bytes(t);
        std::vector<float> v(static_cast<size_t>(numel));
        std::memcpy(v.data(), b.data(), b.size());
        return v;
    }
};

} // namespace

bool bnb_nf4_present(const hf_checkpoint& ckpt, const std::string& weight_name) {
    return ckpt.has(weight_name + ".quant_state.bitsandbytes__nf4") ||
           ckpt.has(weight_name + ".quant_state.bitsandbytes__fp4");
}

nf4_tensor read_bnb_nf4(const hf_checkpoint& ckpt, const std::string& weight_name, int64_t rows, int64_t cols) {
    const std::string& name = weight_name;
    const std::string qs_key = name + ".quant_state.bitsandbytes__nf4";
    const std::string fp4_key = name + ".quant_state.bitsandbytes__fp4";
    if (!ckpt.has(qs_key)) {
        if (ckpt.has(fp4_key))
            throw error(error_code::unsupported,
                        ckpt.file_of(fp4_key).path() + ": weight '" + name +
                            "' is quantized by bitsandbytes as FP4 ('" + fp4_key + "'); only NF4 is supported",
                        "use a checkpoint quantized with bnb_4bit_quant_type=\"nf4\" (the QLoRA default), or the "
                        "unquantized model");
        throw error(error_code::format,
                    ckpt.dir() + ": tensor '" + qs_key + "' is missing: weight '" + name +
                        "' has no bitsandbytes NF4 quant state",
                    "check bnb_nf4_present() first; an unquantized weight is read with read_f32");
    }
    bnb_reader r{ckpt, name, ckpt.file_of(qs_key).path()};
    const std::string& where = r.where;

    // quant_state.bitsandbytes__nf4: bytes of json.dumps({...}) (bitsandbytes/utils.py pack_dict_to_tensor).
    r.expect_dtype(qs_key, dtype::u8, "UTF-8 bytes of the quant-state JSON");
    const std::vector<uint8_t> js = r.bytes(qs_key);
    const json_parse_result pr = try_parse_json(std::string_view(reinterpret_cast<const char*>(js.data()), js.size()));
    if (!pr.ok)
        throw error(error_code::format, where + ": tensor '" + qs_key + "' is not valid JSON: " + pr.problem,
                    kHintRequantize);
    const nlohmann::json& q = pr.value;
    auto bad_field = [&](const std::string& field, const std::string& what) {
        return error(error_code::format,
                     where + ": tensor '" + qs_key + "': field '" + field + "' " + what + " (got " +
                         (q.contains(field) ? q[field].dump() : std::string("nothing")) + ")",
                     kHintRequantize);
    };
    if (!q.is_object()) throw bad_field("(root)", "must be a JSON object");
    if (!q.contains("quant_type") || !q["quant_type"].is_string()) throw bad_field("quant_type", "must be a string");
    const std::string quant_type = q["quant_type"].get<std::string>();
    if (quant_type != "nf4")
        throw error(error_code::unsupported,
                    where + ": tensor '" + qs_key + "' says weight '" + name + "' is quantized as \"" + quant_type +
                        "\"; only \"nf4\" is supported",
                    "use a checkpoint quantized with bnb_4bit_quant_type=\"nf4\" (the QLoRA default), or the "
                    "unquantized model");
    if (!q.contains("blocksize") || !q["blocksize"].is_number_integer())
        throw bad_field("blocksize", "must be an integer");
    const int64_t blocksize = q["blocksize"].get<int64_t>();
    if (blocksize > 4096 || !valid_nf4_blocksize(int(blocksize)))
        throw error(error_code::unsupported,
                    where + ": tensor '" + qs_key + "': blocksize " + std::to_string(blocksize) +
                        " is not one of bitsandbytes' 4-bit block sizes (32, 64, ..., 4096)",
                    kHintRequantize);
    if (!q.contains("shape") || !q["shape"].is_array()) throw bad_field("shape", "must be an array of integers");
    shape_t shape;
    for (const auto& d : q["shape"]) {
        if (!d.is_number_integer()) throw bad_field("shape", "must be an array of integers");
        shape.push_back(d.get<int64_t>());
    }
    const shape_t expected{rows, cols};
    if (shape != expected)
        throw error(error_code::shape_mismatch,
                    where + ": tensor '" + qs_key + "' says weight '" + name + "' has shape " + shape_str(shape) +
                        ", but " + path_join(ckpt.dir(), "config.json") + " implies " + shape_str(expected),
                    "config.json disagrees with the quantized weights: make sure config.json belongs to this "
                    "checkpoint (hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, head_dim)");

    nf4_tensor t;
    t.rows = rows;
    t.cols = cols;
    t.blocksize = int(blocksize);
    const int64_t n = t.numel(), nb = t.nblocks();

    // The packed codes: ceil(n/2) bytes in whatever quant_storage dtype (uint8 by default).
    const safetensors_entry& pe = r.require(name, "its packed 4-bit codes");
    if (int64_t(pe.end - pe.begin) != ceil_div(n, 2))
        throw error(error_code::shape_mismatch,
                    r.file_of(name) + ": tensor '" + name + "' has " + std::to_string(pe.end - pe.begin) + " bytes (" +
                        dtype_name(pe.type) + " " + shape_str(pe.shape) + "), but a packed NF4 weight of " + "shape " +
                        shape_str(expected) + " has ceil(" + std::to_string(n) +
                        "/2) = " + std::to_string(ceil_div(n, 2)) + " bytes",
                    kHintRequantize);
    {
        std::vector<uint8_t> b = r.bytes(name);
        t.packed = std::move(b);
    }

    // quant_map: must be the NF4 codebook (bnb get_4bit_type("nf4")).
    const std::string qmap_key = name + ".quant_map";
    r.require(qmap_key, "the 16-entry NF4 code table");
    const std::vector<float> qmap = r.f32(qmap_key, 16, "F32 [16], the NF4 code values");
    for (size_t i = 0; i < 16; ++i)
        if (f32_bits(qmap[i]) != f32_bits(qls_kernels::nf4_code[i]))
            throw error(error_code::unsupported,
                        r.file_of(qmap_key) + ": tensor '" + qmap_key + "' entry " + std::to_string(i) + " is " +
                            std::to_string(qmap[i]) + ", not the NF4 code value " +
                            std::to_string(qls_kernels::nf4_code[i]) + ": a custom 4-bit code table is not supported",
                        kHintRequantize);

    // Double quantization: bnb QuantState.from_dict treats the state as nested when "nested_absmax" is present.
    const std::string absmax_key = name + ".absmax";
    const std::string nabs_key = name + ".nested_absmax";
    const std::string nmap_key = name + ".nested_quant_map";
    const bool nested = ckpt.has(nabs_key) || q.contains("nested_offset");
    r.require(absmax_key, nested ? "its 8-bit block absmax codes" : "its fp32 block absmax");
    if (!nested) {
        t.double_quant = false;
        t.absmax = r.f32(absmax_key, nb,
                         "F32 [" + std::to_string(nb) + "], one absmax per block of " + std::to_string(blocksize));
        return t;
    }
    t.double_quant = true;
    r.require(nabs_key, "the fp32 scales of its double-quantized absmax");
    r.require(nmap_key, "the 256-entry map of its double-quantized absmax");
    if (!q.contains("nested_offset") || !q["nested_offset"].is_number())
        throw bad_field("nested_offset", "must be a number for a double-quantized weight");
    {
        // a float32 in bitsandbytes (QuantState.offset); a JSON number past float range would become inf here
        const double offset = q["nested_offset"].get<double>();
        if (!std::isfinite(offset) || std::fabs(offset) > double(std::numeric_limits<float>::max()))
            throw bad_field("nested_offset", "must be a finite float32 value (the mean of the block absmax)");
        t.absmax_offset = float(offset);
    }
    if (q.contains("nested_blocksize")) {
        if (!q["nested_blocksize"].is_number_integer() || q["nested_blocksize"].get<int64_t>() <= 0 ||
            q["nested_blocksize"].get<int64_t>() > (int64_t(1) << 20))
            throw bad_field("nested_blocksize", "must be a positive integer");
        t.nested_blocksize = int(q["nested_blocksize"].get<int64_t>());
    } else {
        t.nested_blocksize = 256;
    }
    r.expect_dtype(absmax_key, dtype::u8, "U8 [" + std::to_string(nb) + "], 8-bit codes of the block absmax");
    r.expect_numel(absmax_key, nb,
                   "U8 [" + std::to_string(nb) + "], one code per block of " + std::to_string(blocksize));
    t.absmax_codes = r.bytes(absmax_key);
    const int64_t nscale = ceil_div(nb, t.nested_blocksize);
    t.absmax_scale = r.f32(nabs_key, nscale,
                           "F32 [" + std::to_string(nscale) + "], one per " + std::to_string(t.nested_blocksize) +
                               " absmax codes");
    const std::vector<float> nmap = r.f32(nmap_key, 256, "F32 [256], the nested 8-bit map");
    std::copy(nmap.begin(), nmap.end(), t.nested_map.begin());
    return t;
}

} // namespace qls
