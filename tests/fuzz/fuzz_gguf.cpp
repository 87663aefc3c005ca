// Fuzz target: a GGUF file through the GGUF model source — header, metadata, tensor infos, the config built from
// llama.* keys, the vocabulary, the chat template, and every weight dequantized in Hugging Face layout.
#include "fuzz_util.h"
#include "qls/gguf.h"
#include "qls/model_source.h"
#include "qls/tensor.h"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = qls_fuzz::write_scratch("model.gguf", qls_fuzz::as_text(data, size));
    qls_fuzz::expect_only_user_errors([&] {
        const qls::gguf_file f = qls::gguf_file::open(path);
        (void)qls::read_gguf_vocab(f);
    });
    qls_fuzz::expect_only_user_errors([&] {
        const std::unique_ptr<qls::model_source> src = qls::open_gguf_source(path);
        (void)src->chat_template();
        for (const qls::weight_info& w : src->weights()) {
            if (qls::shape_numel(w.shape) > (int64_t(1) << 22)) continue; // the fuzzer's inputs are small; stay so
            std::vector<float> out(size_t(qls::shape_numel(w.shape)));
            src->read_f32(w.name, w.shape, out.data());
        }
    });
    return 0;
}
