// What safetensors_save (safetensors.cpp) and safetensors_stream_writer (safetensors_writer.cpp) share, so that both
// write the same bytes: the reference writer's tensor order and the header.
#pragma once

#include "qls/dtype.h"
#include "qls/tensor.h" // defines: shape_t

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace qls::safetensors_detail {

// True when tensor (a, name_a) comes before (b, name_b) in the reference writer's order (safetensors/src/tensor.rs):
// dtype rank descending ("descending dtype alignment"), then name ascending byte-wise. Sort stably with it.
bool written_before(dtype a, std::string_view name_a, dtype b, std::string_view name_b);

// One tensor as the header lists it: name, dtype, shape and the size of its data in bytes.
struct header_tensor {
    std::string_view name;
    dtype type = dtype::f32;
    const shape_t* shape = nullptr;
    uint64_t nbytes = 0;
};

// The header of a file holding `tensors` in this order with consecutive data_offsets from 0: compact JSON,
// "__metadata__" first (keys sorted), padded with spaces to a multiple of 8 bytes as the reference pads it. A tensor
// name or metadata string that is not valid UTF-8 throws error{invalid_argument} naming `path`, with `utf8_hint`.
std::string header_json(const std::string& path, const std::vector<header_tensor>& tensors,
                        const std::map<std::string, std::string>& metadata, const std::string& utf8_hint);

} // namespace qls::safetensors_detail
