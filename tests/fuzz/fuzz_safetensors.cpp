// Fuzz target: a .safetensors file (header and data) through safetensors_file::open, then every tensor read as stored,
// as f32 and as a model weight. The reader memory-maps a path, so the input is written to a scratch file first.
#include "fuzz_util.h"
#include "qls/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = qls_fuzz::write_scratch("model.safetensors", qls_fuzz::as_text(data, size));
    qls_fuzz::expect_only_user_errors([&] {
        const qls::safetensors_file f = qls::safetensors_file::open(path);
        (void)f.metadata();
        for (const qls::safetensors_entry& e : f.entries()) {
            (void)f.find(e.name);
            qls_fuzz::expect_only_user_errors([&] { (void)f.read(e.name); });
            qls_fuzz::expect_only_user_errors([&] { (void)f.read_f32(e.name); });
            qls_fuzz::expect_only_user_errors([&] { (void)f.read_weight_f32(e.name); });
        }
    });
    return 0;
}
