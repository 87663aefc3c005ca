// Fuzz target: tokenizer_config.json through its three readers: beside a tokenizer.json (tokenizer::load_json: the
// BOS/EOS policy), beside a tokenizer.model (load_tokenizer_for: the same policy for SentencePiece), and as the chat
// template's source (load_model_chat_template: "chat_template" as a string or a named list, the special tokens),
// whose template then renders a short conversation with the file's special tokens.
#include "fuzz_util.h"
#include "qls/chat_template.h"
#include "qls/hf_checkpoint.h"
#include "qls/tokenizer.h"

namespace {

// stories260K (tokenizer.model) and a small byte-level BPE tokenizer.json (tests/data/tokenizers/qwen2),
// copied once into folders of their own; the input becomes tokenizer_config.json in both.
const qls::hf_checkpoint& sentencepiece_model() {
    static const qls::hf_checkpoint ck = [] {
        for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
            qls_fuzz::copy_to_scratch(std::string(QLS_TEST_MODEL_DIR) + "/" + f, std::string("sp/") + f);
        return qls::hf_checkpoint::open(qls_fuzz::scratch_path("sp"));
    }();
    return ck;
}
const std::string& bpe_tokenizer() {
    static const std::string path = qls_fuzz::copy_to_scratch(
        std::string(QLS_SOURCE_DIR) + "/tests/data/tokenizers/qwen2/tokenizer.json", "bpe/tokenizer.json");
    return path;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const qls::hf_checkpoint& ck = sentencepiece_model();
    const std::string& bpe = bpe_tokenizer();
    const std::string_view text = qls_fuzz::as_text(data, size);
    qls_fuzz::write_scratch("sp/tokenizer_config.json", text);
    qls_fuzz::write_scratch("bpe/tokenizer_config.json", text);
    qls_fuzz::expect_only_user_errors([&] {
        const qls::tokenizer tok = qls::tokenizer::load_json(bpe);
        (void)tok.decode(tok.encode_prompt("Hello world"));
    });
    qls_fuzz::expect_only_user_errors([&] {
        const qls::tokenizer tok = qls::load_tokenizer_for(ck);
        (void)tok.decode(tok.encode("Once upon a time", true, true));
    });
    qls_fuzz::expect_only_user_errors([&] {
        const std::shared_ptr<const qls::model_chat_template> t =
            qls::load_model_chat_template(qls_fuzz::scratch_path("bpe"));
        if (!t) return;
        const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(
            R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])");
        qls::chat_request req;
        req.add_generation_prompt = true;
        req.variables = t->variables;
        qls::render_options opt;
        opt.now = qls_fuzz::fixed_date;
        (void)qls::render_chat(t->tmpl, messages, req, opt);
    });
    return 0;
}
