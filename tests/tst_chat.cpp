// tst_chat: chat through a model's own template on the real SmolLM2 GGUF — the prompt ids SOURCE.md lists, the
// greedy reply "The capital of France is Paris." from `qlora generate --chat`, end-of-turn ids, the GGUF vocabulary
// against the model's tokenizer.json, and the errors of a model without a template.
#include "testutil.h"

#include "qls/chat.h"
#include "qls/llama.h"
#include "qls/model_source.h"

#include <QtTest>

namespace {

std::string smollm_dir() { return testutil::model_dir() + "/../smollm2-135m-instruct"; }
std::string smollm_gguf() { return smollm_dir() + "/SmolLM2-135M-Instruct.Q4_1.gguf"; }

// SOURCE.md: the template rendered for "What is the capital of France?" with the default system prompt and the
// generation prompt.
const std::vector<int> k_prompt_ids = {1,   9690, 198, 2683, 359,   253,  5356, 5646, 11173, 3365, 3511, 308,  34519,
                                       28,  7018, 411, 407,  19712, 8182, 2,    198,  1,     4093, 198,  1780, 314,
                                       260, 3575, 282, 4649, 47,    2,    198,  1,    520,   9531, 198};

} // namespace

class tst_chat : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        if (!QFileInfo::exists(QString::fromStdString(smollm_gguf())))
            QFAIL(qPrintable("the SmolLM2 GGUF is not at " + QString::fromStdString(smollm_gguf())));
    }

    void prompt_ids_and_end_of_turn() {
        auto src = qls::open_model_source(smollm_gguf());
        const qls::tokenizer tok = src->load_tokenizer();
        auto tmpl = qls::load_model_chat_template(*src, tok);
        QVERIFY(tmpl);
        const std::vector<qls::chat_message> conv{{qls::chat_role::user, "What is the capital of France?"}};
        QCOMPARE(qls::render_generation_prompt(conv, tok, qls::chat_template::model, tmpl.get()), k_prompt_ids);
        // <|im_end|> (2) is the turn's end: the GGUF's EOS and a ChatML end-of-turn token
        const std::vector<int> eot = qls::end_of_turn_ids(tok, src->config());
        QVERIFY(std::find(eot.begin(), eot.end(), 2) != eot.end());
        QVERIFY(std::find(eot.begin(), eot.end(), tok.token_id("<|endoftext|>")) != eot.end());
        QVERIFY(std::find(eot.begin(), eot.end(), 1) == eot.end()); // <|im_start|> starts a turn
    }

    // The GGUF's own vocabulary (tokenizer.ggml.*) encodes like the model's tokenizer.json.
    void gguf_vocabulary_equals_tokenizer_json() {
        const qls::tokenizer from_gguf = qls::open_model_source(smollm_gguf())->load_tokenizer();
        const qls::tokenizer from_json = qls::tokenizer::load_json(smollm_dir() + "/hf-tokenizer/tokenizer.json");
        QCOMPARE(from_gguf.vocab_size(), from_json.vocab_size());
        const char* texts[] = {
            "What is the capital of France?",
            "<|im_start|>user\nHello <|im_end|>\n",
            "  leading spaces, tabs\t\tand\r\n\r\nnewlines  ",
            "Digits 1234567890 and 3.14159, contractions: I'M, we'Ve, they'LL, it's",
            "Unicode: caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD "
            "\xC2\xA0nbsp \xE2\x80\x83" "em-space",
            "Ahoy! The capital of France is Paris, a fine harbour of ideas on the river Seine.",
        };
        for (const char* t : texts) {
            QCOMPARE(from_gguf.encode_prompt(t), from_json.encode_prompt(t));
            QCOMPARE(from_gguf.decode(from_gguf.encode_prompt(t)), from_json.decode(from_json.encode_prompt(t)));
        }
    }

    // Done-when of the chat CLI: greedy on the CPU prints exactly the reference answer, and nothing else on stdout.
    void cli_chat_answers_paris() {
        const testutil::cli_result r = testutil::run_cli({"generate", "--model", QString::fromStdString(smollm_gguf()),
                                                          "--chat", "What is the capital of France?", "--temperature",
                                                          "0", "--device", "cpu", "--max-new-tokens", "32"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QCOMPARE(r.out, QString("The capital of France is Paris.\n"));
        QVERIFY2(r.err.contains("37 prompt + 7 new tokens"), qPrintable(r.err));
    }

    void cli_chat_errors() {
        // a model without a chat template (stories260K) refuses --chat, naming it and the fix
        testutil::cli_result r = testutil::run_cli({"generate", "--model",
                                                    QString::fromStdString(testutil::model_dir()), "--chat", "hi",
                                                    "--device", "cpu"});
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("has no chat template") && r.err.contains("--prompt"), qPrintable(r.err));
        r = testutil::run_cli({"generate", "--model", QString::fromStdString(smollm_gguf()), "--chat", "hi", "--prompt",
                               "x"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY2(r.err.contains("--chat and --prompt"), qPrintable(r.err));
        r = testutil::run_cli({"generate", "--model", QString::fromStdString(smollm_gguf()), "--system", "x"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY2(r.err.contains("--system needs --chat"), qPrintable(r.err));
    }
};

QTEST_GUILESS_MAIN(tst_chat)
#include "tst_chat.moc"
