// Fuzz target: a tokenizer.json through tokenizer::load_json, then encoding and decoding a fixed text (added tokens,
// normalizers, pre-tokenizer regexes, BPE merges and the decoder all run).
#include "fuzz_util.h"
#include "qls/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = qls_fuzz::write_scratch("tok/tokenizer.json", qls_fuzz::as_text(data, size));
    qls_fuzz::expect_only_user_errors([&] {
        const qls::tokenizer tok = qls::tokenizer::load_json(path);
        const std::vector<int> ids = tok.encode_prompt("Hello <|im_end|> w\xC3\xB6rld 12345 \xF0\x9F\x98\x80\r\n  x");
        (void)tok.decode(ids);
        for (int id : ids) (void)tok.piece(id);
    });
    return 0;
}
