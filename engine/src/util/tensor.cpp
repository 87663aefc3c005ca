// tensor and tensor_view: shapes, strides, slicing and dtype conversion of whole tensors.
#include "qls/tensor.h"

#include <cstdlib>
#include <cstring>

namespace qls {

int64_t shape_numel(const shape_t& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
}

std::string shape_str(const shape_t& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

std::vector<int64_t> contiguous_strides(const shape_t& s) {
    std::vector<int64_t> st(s.size());
    int64_t acc = 1;
    for (size_t i = s.size(); i-- > 0;) {
        st[i] = acc;
        acc *= s[i];
    }
    return st;
}

bool tensor_view::is_contiguous() const { return strides == contiguous_strides(shape); }

tensor_view tensor_view::slice(int64_t d, int64_t begin, int64_t end) const {
    if (d < 0) d += dim();
    QLS_ASSERT(d >= 0 && d < dim() && 0 <= begin && begin <= end && end <= shape[size_t(d)]);
    tensor_view v = *this;
    v.data = static_cast<std::byte*>(data) + begin * strides[size_t(d)] * int64_t(dtype_size(type));
    v.shape[size_t(d)] = end - begin;
    return v;
}

tensor_view tensor_view::select(int64_t d, int64_t i) const {
    if (d < 0) d += dim();
    QLS_ASSERT(d >= 0 && d < dim() && 0 <= i && i < shape[size_t(d)]);
    tensor_view v = *this;
    v.data = static_cast<std::byte*>(data) + i * strides[size_t(d)] * int64_t(dtype_size(type));
    v.shape.erase(v.shape.begin() + d);
    v.strides.erase(v.strides.begin() + d);
    return v;
}

tensor_view tensor_view::reshape(shape_t new_shape) const {
    QLS_ASSERT(is_contiguous() && shape_numel(new_shape) == numel());
    tensor_view v = *this;
    v.strides = contiguous_strides(new_shape);
    v.shape = std::move(new_shape);
    return v;
}

tensor::tensor(qls::dtype t, shape_t shape) : type_(t), shape_(std::move(shape)) {
    for (int64_t d : shape_)
        if (d < 0) throw error(error_code::invalid_argument, "negative dimension in shape " + shape_str(shape_));
    size_t bytes = nbytes();
    size_t alloc = ((bytes + 63) / 64) * 64;
    if (alloc == 0) alloc = 64;
    void* p = std::aligned_alloc(64, alloc);
    if (!p)
        throw error(error_code::io,
                    "out of host memory allocating " + std::to_string(bytes) + " bytes for a tensor " +
                        shape_str(shape_),
                    "close other programs or use a smaller model");
    std::memset(p, 0, alloc);
    storage_ = std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { std::free(q); });
}

tensor tensor::from_f32(const std::vector<float>& values, shape_t shape) {
    tensor t(qls::dtype::f32, std::move(shape));
    QLS_ASSERT(int64_t(values.size()) == t.numel());
    if (t.nbytes() > 0) std::memcpy(t.raw(), values.data(), t.nbytes()); // empty: the pointers may be null
    return t;
}

tensor tensor::clone() const {
    tensor t(type_, shape_);
    if (nbytes() > 0) std::memcpy(t.raw(), raw(), nbytes());
    return t;
}

tensor tensor::to(qls::dtype t) const {
    if (t == type_) return clone();
    tensor out(t, shape_);
    size_t n = size_t(numel());
    if (type_ == qls::dtype::f32) {
        convert_from_f32(out.raw(), f32(), t, n);
    } else if (t == qls::dtype::f32) {
        convert_to_f32(out.f32(), raw(), type_, n);
    } else {
        std::vector<float> tmp(n);
        convert_to_f32(tmp.data(), raw(), type_, n);
        convert_from_f32(out.raw(), tmp.data(), t, n);
    }
    return out;
}

tensor tensor::reshaped(shape_t new_shape) const {
    QLS_ASSERT(shape_numel(new_shape) == numel());
    tensor t = *this;
    t.shape_ = std::move(new_shape);
    return t;
}

} // namespace qls
