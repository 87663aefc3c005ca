// Fuzz target: a training file in every format the engine reads, through the two paths that read one: the studio's
// analyze_dataset (never throws) and the trainer's load_dataset + batcher. Input: byte 0 picks the format and the
// file extension, byte 1 the template, prompt training, the bad-record policy and seq_len; the rest is the file.
#include "fuzz_util.h"
#include "qls/dataset.h"
#include "qls/dataset_analysis.h"
#include "qls/tokenizer.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace {

const std::shared_ptr<const qls::tokenizer>& stories_tokenizer() {
    static const std::shared_ptr<const qls::tokenizer> tok = std::make_shared<const qls::tokenizer>(
        qls::tokenizer::load(std::string(QLS_TEST_MODEL_DIR) + "/tokenizer.model"));
    return tok;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    static const char* const exts[] = {".jsonl", ".json", ".txt", ""};
    static const int seq_lens[] = {2, 8, 32, 256};
    qls::data_options opt;
    opt.format = qls::dataset_format(data[0] % 6);
    const std::string ext = exts[(data[0] / 6) % 4];
    opt.tmpl = qls::chat_template(data[1] % 5);
    opt.train_on_prompt = (data[1] & 0x08) != 0;
    opt.on_bad_record = (data[1] & 0x10) ? qls::bad_record_policy::fail : qls::bad_record_policy::skip;
    opt.seq_len = seq_lens[(data[1] >> 5) % 4];
    const std::string path = qls_fuzz::write_scratch("data/train" + ext, qls_fuzz::as_text(data + 2, size - 2));

    const std::shared_ptr<const qls::tokenizer>& tok = stories_tokenizer();
    qls::dataset_analysis_request req;
    req.train_file = path;
    req.validation_fraction = (data[1] & 0x80) ? 0.25 : 0.0;
    req.options = opt;
    req.seed = 7;
    req.model_dir = QLS_TEST_MODEL_DIR;
    req.tokenizer_dir = QLS_TEST_MODEL_DIR;
    req.tok = tok;
    req.preview_limit = 8;
    try {
        const qls::dataset_analysis a = qls::analyze_dataset(req);
        for (const auto& ex : a.preview)
            for (int id : ex.ids) (void)qls::dataset_token_text(*tok, id);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "analyze_dataset threw (it must report into its *_error fields): %s\n", e.what());
        std::abort();
    }

    qls_fuzz::expect_only_user_errors([&] { (void)qls::detect_format(path); });
    qls_fuzz::expect_only_user_errors([&] {
        qls::dataset ds = qls::load_dataset(path, *tok, opt);
        qls::batch_options bo;
        bo.B = 2;
        bo.T = opt.seq_len;
        bo.seed = 3;
        qls::batcher b(std::move(ds.examples), bo);
        for (int i = 0; i < 3; ++i) (void)b.next();
    });
    return 0;
}
