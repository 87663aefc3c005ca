// gpu_nf4_quantizer — NF4 + double quantization of host weights on the GPU, byte-identical to the CPU nf4_quantize.
#include "gpu_train_impl.h"

#include "qls/quant.h"                // defines: nf4_tensor, dynamic_map, blockwise_blocks
#include "qls_kernels/nf4_quantize.h" // defines: nf4_quantize_blocks, nf4_double_quantize

#include <string>
#include <type_traits>

namespace qls {

namespace {

bool valid_blocksize(int bs) {
    for (int v = 32; v <= 4096; v *= 2)
        if (bs == v) return true;
    return false;
}

// Grows a device buffer to at least `bytes` (contents not kept).
void reserve(void*& p, size_t& cap, size_t bytes) {
    if (bytes <= cap) return;
    if (p) QLS_CUDA_CHECK(cudaFree(p));
    p = nullptr;
    cap = 0;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        throw error(error_code::out_of_memory,
                    "quantizing a weight on the GPU needs " + std::to_string(bytes >> 20) +
                        " MiB of device memory, which cannot be allocated",
                    "free the GPU (another process may hold it) or quantize on the CPU");
    }
    cap = bytes;
}

} // namespace

struct gpu_nf4_quantizer::impl {
    int device = 0;
    cudaStream_t stream = nullptr;
    void* w = nullptr;      // the weight, fp32 or bf16
    void* packed = nullptr; // codes
    void* absmax = nullptr; // fp32 block absmax
    void* nested = nullptr; // nested codes then nested scales
    void* map = nullptr;    // 256 fp32: the signed dynamic map
    size_t w_cap = 0, packed_cap = 0, absmax_cap = 0, nested_cap = 0;
    std::array<float, 256> map_host = dynamic_map(true);

    ~impl() {
        for (void* p : {w, packed, absmax, nested, map})
            if (p) cudaFree(p);
        if (stream) cudaStreamDestroy(stream);
    }

    template <class E> nf4_tensor run(const E* host, int64_t rows, int64_t cols, bool double_quant, int blocksize) {
        if (rows <= 0 || cols <= 0)
            throw error(error_code::invalid_argument,
                        "gpu_nf4_quantizer: shape [" + std::to_string(rows) + ", " + std::to_string(cols) +
                            "] must be positive",
                        "pass the weight's [out_features, in_features] from config.json");
        if (!valid_blocksize(blocksize))
            throw error(error_code::invalid_argument,
                        "gpu_nf4_quantizer: blocksize " + std::to_string(blocksize) +
                            " is not one of bitsandbytes' 4-bit block sizes",
                        "use 32, 64 (the QLoRA default), 128, 256, 512, 1024, 2048 or 4096");
        QLS_CUDA_CHECK(cudaSetDevice(device));
        nf4_tensor t;
        t.rows = rows;
        t.cols = cols;
        t.blocksize = blocksize;
        t.double_quant = double_quant;
        const int64_t n = rows * cols, nb = t.nblocks();
        const size_t npacked = size_t((n + 1) / 2);
        reserve(w, w_cap, size_t(n) * sizeof(E));
        reserve(packed, packed_cap, npacked);
        reserve(absmax, absmax_cap, size_t(nb) * sizeof(float));
        QLS_CUDA_CHECK(cudaMemcpyAsync(w, host, size_t(n) * sizeof(E), cudaMemcpyHostToDevice, stream));
        using dev_t = std::conditional_t<std::is_same_v<E, float>, float, bf16>;
        K::nf4_quantize_blocks(static_cast<uint8_t*>(packed), static_cast<float*>(absmax), static_cast<const dev_t*>(w),
                               n, blocksize, stream);
        t.packed.resize(npacked);
        std::vector<float> am(static_cast<size_t>(nb));
        QLS_CUDA_CHECK(cudaMemcpyAsync(t.packed.data(), packed, npacked, cudaMemcpyDeviceToHost, stream));
        QLS_CUDA_CHECK(cudaMemcpyAsync(am.data(), absmax, am.size() * 4, cudaMemcpyDeviceToHost, stream));
        QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
        if (!double_quant) {
            t.absmax = std::move(am);
            return t;
        }
        // The offset exactly as nf4_quantize computes it (engine/src/quant/nf4.cpp): the block absmax summed in
        // order in double, rounded once to float, times fl(1 / nblocks).
        double sum = 0.0;
        for (float a : am) sum += double(a);
        const float factor = 1.0f / float(nb);
        t.absmax_offset = float(sum) * factor;
        t.nested_blocksize = 256;
        t.nested_map = map_host;
        const size_t nscale = blockwise_blocks(size_t(nb), t.nested_blocksize);
        reserve(nested, nested_cap, size_t(nb) + 16 + nscale * sizeof(float));
        if (!map) {
            QLS_CUDA_CHECK(cudaMalloc(&map, 256 * sizeof(float)));
            QLS_CUDA_CHECK(cudaMemcpy(map, map_host.data(), 256 * sizeof(float), cudaMemcpyHostToDevice));
        }
        uint8_t* codes = static_cast<uint8_t*>(nested);
        float* scale = reinterpret_cast<float*>(codes + ((size_t(nb) + 15) / 16) * 16);
        K::nf4_double_quantize(codes, scale, static_cast<const float*>(absmax), t.absmax_offset,
                               static_cast<const float*>(map), nb, t.nested_blocksize, stream);
        t.absmax_codes.resize(size_t(nb));
        t.absmax_scale.resize(nscale);
        QLS_CUDA_CHECK(cudaMemcpyAsync(t.absmax_codes.data(), codes, size_t(nb), cudaMemcpyDeviceToHost, stream));
        QLS_CUDA_CHECK(cudaMemcpyAsync(t.absmax_scale.data(), scale, nscale * 4, cudaMemcpyDeviceToHost, stream));
        QLS_CUDA_CHECK(cudaStreamSynchronize(stream));
        return t;
    }
};

gpu_nf4_quantizer::gpu_nf4_quantizer(int device) : p_(std::make_unique<impl>()) {
    p_->device = device;
    device_call("gpu_nf4_quantizer", [&] {
        QLS_CUDA_CHECK(cudaSetDevice(device));
        QLS_CUDA_CHECK(cudaStreamCreateWithFlags(&p_->stream, cudaStreamNonBlocking));
    });
}

gpu_nf4_quantizer::~gpu_nf4_quantizer() = default;

nf4_tensor gpu_nf4_quantizer::quantize(const float* w, int64_t rows, int64_t cols, bool double_quant, int blocksize) {
    return device_call("gpu_nf4_quantizer", [&] { return p_->run(w, rows, cols, double_quant, blocksize); });
}

nf4_tensor gpu_nf4_quantizer::quantize_bf16(const uint16_t* w, int64_t rows, int64_t cols, bool double_quant,
                                            int blocksize) {
    return device_call("gpu_nf4_quantizer", [&] { return p_->run(w, rows, cols, double_quant, blocksize); });
}

} // namespace qls
