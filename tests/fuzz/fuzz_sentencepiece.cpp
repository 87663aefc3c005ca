// Fuzz target: tokenizer.model through load_tokenizer_for (qls::tokenizer::load, libsentencepiece, the vocabulary
// check against config.json), then encoding, decoding and streaming a text with whatever model was accepted.
#include "fuzz_util.h"
#include "qls/hf_checkpoint.h"
#include "qls/tokenizer.h"

namespace {

const qls::hf_checkpoint& checkpoint() {
    static const qls::hf_checkpoint ck = [] {
        for (const char* f : {"config.json", "model.safetensors"})
            qls_fuzz::copy_to_scratch(std::string(QLS_TEST_MODEL_DIR) + "/" + f, std::string("model/") + f);
        return qls::hf_checkpoint::open(qls_fuzz::scratch_path("model"));
    }();
    return ck;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const qls::hf_checkpoint& ck = checkpoint();
    qls_fuzz::write_scratch("model/tokenizer.model", qls_fuzz::as_text(data, size));
    qls_fuzz::expect_only_user_errors([&] {
        const qls::tokenizer tok = qls::load_tokenizer_for(ck);
        const std::vector<int> ids = tok.encode("Once upon a time, Pip saw a light. \xE2\x96\x81<0x0A>\n\xC3\xA9", true,
                                                true);
        (void)tok.decode(ids);
        qls::detokenizer d(tok);
        for (int id : ids) (void)d.push(id);
        (void)d.flush();
        for (int id = 0; id < tok.vocab_size() && id < 64; ++id) (void)tok.piece(id);
    });
    return 0;
}
