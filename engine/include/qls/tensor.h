// tensor (owning, contiguous, row-major bytes of one dtype) and tensor_view (non-owning, strided) for the CPU reference.
#pragma once

#include "qls/dtype.h"
#include "qls/error.h"

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace qls {

using shape_t = std::vector<int64_t>;

int64_t shape_numel(const shape_t& s);
std::string shape_str(const shape_t& s); // "[512, 64]"

// Non-owning window onto memory: data points at element (0, ..., 0); strides are in elements.
struct tensor_view {
    void* data = nullptr;
    qls::dtype type = qls::dtype::f32;
    shape_t shape;
    std::vector<int64_t> strides;

    int64_t numel() const { return shape_numel(shape); }
    int64_t dim() const { return int64_t(shape.size()); }
    int64_t size(int64_t d) const { return shape.at(size_t(d < 0 ? d + dim() : d)); }
    bool is_contiguous() const;

    // Sub-range [begin, end) along dimension d (same rank).
    tensor_view slice(int64_t d, int64_t begin, int64_t end) const;
    // Index i along dimension d (rank drops by one).
    tensor_view select(int64_t d, int64_t i) const;
    // Same data, new shape; requires a contiguous view.
    tensor_view reshape(shape_t new_shape) const;

    template <class T> T* ptr() const { return static_cast<T*>(data); }
    template <class T> T& at(std::initializer_list<int64_t> idx) const {
        int64_t off = 0, k = 0;
        for (int64_t i : idx) off += i * strides[size_t(k++)];
        return static_cast<T*>(data)[off];
    }
};

std::vector<int64_t> contiguous_strides(const shape_t& s);

// Owning, contiguous, 64-byte aligned storage. Copies share storage (like a shared_ptr); use clone() to copy bytes.
class tensor {
public:
    tensor() = default;
    tensor(qls::dtype t, shape_t shape); // zero-filled
    static tensor zeros(qls::dtype t, shape_t shape) { return tensor(t, std::move(shape)); }
    static tensor from_f32(const std::vector<float>& values, shape_t shape);

    qls::dtype type() const { return type_; }
    const shape_t& shape() const { return shape_; }
    int64_t dim() const { return int64_t(shape_.size()); }
    int64_t size(int64_t d) const { return shape_.at(size_t(d < 0 ? d + dim() : d)); }
    int64_t numel() const { return shape_numel(shape_); }
    size_t nbytes() const { return size_t(numel()) * dtype_size(type_); }
    bool empty() const { return !storage_; }

    void* raw() const { return storage_.get(); }
    template <class T> T* data() const { return static_cast<T*>(raw()); }
    float* f32() const {
        QLS_ASSERT(type_ == qls::dtype::f32);
        return data<float>();
    }

    tensor_view view() const { return {raw(), type_, shape_, contiguous_strides(shape_)}; }
    tensor clone() const;
    tensor to(qls::dtype t) const;            // float dtypes only; same dtype → clone
    tensor reshaped(shape_t new_shape) const; // shares storage

private:
    qls::dtype type_ = qls::dtype::f32;
    shape_t shape_;
    std::shared_ptr<std::byte> storage_;
};

} // namespace qls
