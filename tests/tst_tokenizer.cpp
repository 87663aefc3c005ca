// Qt Test: the stories260K SentencePiece tokenizer (encode/decode, byte fallback) and the streaming detokenizer.
#include "testutil.h"

#include "qls/error.h"
#include "qls/tokenizer.h"

#include <algorithm>
#include <fstream>

namespace {

std::string tok_path() { return testutil::model_dir() + "/tokenizer.model"; }

// Strict UTF-8 validation (RFC 3629): true when s is complete, well-formed UTF-8.
bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) n = 1;
        else if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return false;
        if (i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k) {
            unsigned char d = static_cast<unsigned char>(s[i + k]);
            if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return false;
        }
        i += n;
    }
    return true;
}

const std::string k_replacement = "\xEF\xBF\xBD"; // U+FFFD

bool is_byte_piece(const qls::tokenizer& t, int id) {
    std::string p = t.piece(id);
    return p.size() == 6 && p.rfind("<0x", 0) == 0 && p[5] == '>';
}

} // namespace

class tst_tokenizer : public QObject {
    Q_OBJECT
private slots:
    void vocabulary() {
        QLS_REQUIRE_MODEL();
        qls::tokenizer t = qls::tokenizer::load(tok_path());
        QCOMPARE(t.vocab_size(), 512);
        QCOMPARE(t.bos_id(), 1);
        QCOMPARE(t.eos_id(), 2);
        QCOMPARE(t.unk_id(), 0);
        QCOMPARE(t.path(), tok_path());
        QCOMPARE(t.piece(403), std::string("\xE2\x96\x81Once")); // "▁Once"
        QCOMPARE(t.piece(13), std::string("<0x0A>"));
        QCOMPARE(t.piece(3), std::string("<0x00>"));
        QCOMPARE(t.piece(258), std::string("<0xFF>"));
    }

    void encode_known_ids() {
        QLS_REQUIRE_MODEL();
        qls::tokenizer t = qls::tokenizer::load(tok_path());
        QCOMPARE(t.encode("Once upon a time", false), (std::vector<int>{403, 407, 261, 378}));
        QCOMPARE(t.encode("Once upon a time", true), (std::vector<int>{1, 403, 407, 261, 378}));
        QCOMPARE(t.encode("Once upon a time", true, true), (std::vector<int>{1, 403, 407, 261, 378, 2}));
        QCOMPARE(t.encode("Zoo", false), (std::vector<int>{410, 469, 347}));
        QCOMPARE(t.encode("", false), std::vector<int>{});
    }

    void decode_round_trip() {
        QLS_REQUIRE_MODEL();
        qls::tokenizer t = qls::tokenizer::load(tok_path());
        const std::string text = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
        QCOMPARE(t.decode(t.encode(text, false)), text);
        QCOMPARE(t.decode(t.encode(text, true, true)), text); // BOS/EOS produce no text
        QCOMPARE(t.decode({1, 403, 407, 261, 378, 2}), std::string("Once upon a time"));
        QCOMPARE(t.decode({}), std::string());
        // SOURCE.md reference 4's first ids decode to its text (leading dummy-prefix space dropped).
        QCOMPARE(t.decode({1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395}),
                 std::string("Once upon a time, there was a little girl named"));
    }

    void newline_byte_fallback() {
        QLS_REQUIRE_MODEL();
        qls::tokenizer t = qls::tokenizer::load(tok_path());
        std::vector<int> ids = t.encode("Lily smiled.\nThe end.", false);
        QVERIFY(std::find(ids.begin(), ids.end(), 13) != ids.end()); // <0x0A>
        QCOMPARE(t.decode(ids), std::string("Lily smiled.\nThe end."));
        QCOMPARE(t.decode({13}), std::string("\n"));
        QCOMPARE(t.decode({403, 13, 403}), std::string("Once\n Once"));
    }

    void non_ascii_round_trip() {
        QLS_REQUIRE_MODEL();
        qls::tokenizer t = qls::tokenizer::load(tok_path());
        for (std::string text : {std::string("caf\xC3\xA9 \xE2\x98\x83"), // "café ☃"
                                 std::string("\xF0\x9F\x99\x82 \xC3\xBC"
                                             "ber \xE6\x97\xA5\xE6\x9C\xAC")}) { // "🙂 über 日本"
            std::vector<int> ids = t.encode(text, true);
            int bytes = 0;
            for (int id : ids) bytes += is_byte_piece(t, id);
            QVERIFY2(bytes >= 3, "expected byte-fallback pieces for characters outside the 512-piece vocabulary");
            QCOMPARE(t.decode(ids), text);
        }
        // "☃" is exactly the three byte pieces E2 98 83.
        std::vector<int> snow = t.encode("a \xE2\x98\x83", false);
        QCOMPARE(std::vector<int>(snow.end() - 3, snow.end()), (std::vector<int>{3 + 0xE2, 3 + 0x98, 3 + 0x83}));
    }

    void detokenizer_streams_whole_characters() {
        QLS_REQUIRE_MODEL();
        qls::tokenizer t = qls::tokenizer::load(tok_path());
        const std::string text =
            "Tom said \xE2\x98\x83 and \xF0\x9F\x99\x82!\nThe caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E.";
        std::vector<int> ids = t.encode(text, true);
        qls::detokenizer d(t);
        std::string out;
        int empty_pushes = 0;
        for (size_t i = 0; i < ids.size(); ++i) {
            std::string delta = d.push(ids[i]);
            QVERIFY2(valid_utf8(delta), qPrintable(QString("partial UTF-8 emitted at id %1").arg(i)));
            QVERIFY2(delta.find(k_replacement) == std::string::npos, "U+FFFD emitted while streaming");
            empty_pushes += delta.empty();
            out += delta;
            // What has been emitted is always a prefix of the final text.
            QVERIFY(text.compare(0, out.size(), out) == 0);
        }
        out += d.flush();
        QCOMPARE(out, t.decode(ids));
        QCOMPARE(out, text);
        QVERIFY(empty_pushes >= 5); // BOS and the leading bytes of each multi-byte character were held back
        QCOMPARE(d.flush(), std::string());
    }

    void detokenizer_flushes_unfinished_bytes() {
        QLS_REQUIRE_MODEL();
        qls::tokenizer t = qls::tokenizer::load(tok_path());
        qls::detokenizer d(t);
        std::string out = d.push(403);
        QCOMPARE(out, std::string("Once"));
        QCOMPARE(d.push(3 + 0xE2), std::string()); // first two bytes of "☃": held back
        QCOMPARE(d.push(3 + 0x98), std::string());
        // At the end, flush emits the unfinished bytes as the decoder renders them (one U+FFFD per byte).
        std::string rest = d.flush();
        QCOMPARE(rest, k_replacement + k_replacement);
        QCOMPARE(out + rest, t.decode({403, 3 + 0xE2, 3 + 0x98}));

        qls::detokenizer d2(t);
        d2.push(403);
        QCOMPARE(d2.push(3 + 0x98), k_replacement); // invalid on its own: final at once
        QCOMPARE(d2.push(407), std::string(" upon"));
    }

    void errors() {
        QLS_REQUIRE_MODEL();
        qls::tokenizer t = qls::tokenizer::load(tok_path());
        try {
            t.decode({403, 512});
            QFAIL("decode of id 512 did not throw");
        } catch (const qls::error& e) {
            QCOMPARE(e.code(), qls::error_code::invalid_argument);
            QVERIFY(std::string(e.what()).find("512") != std::string::npos);
        }
        try {
            qls::tokenizer::load("/nonexistent/tokenizer.model");
            QFAIL("missing file did not throw");
        } catch (const qls::error& e) {
            QCOMPARE(e.code(), qls::error_code::io);
            QVERIFY(std::string(e.what()).find("/nonexistent/tokenizer.model") != std::string::npos);
        }
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        std::string garbage = tmp.path().toStdString() + "/tokenizer.model";
        {
            std::ofstream f(garbage, std::ios::binary);
            for (int i = 0; i < 4096; ++i) f.put(char((i * 2654435761u) >> 13));
        }
        try {
            qls::tokenizer::load(garbage);
            QFAIL("garbage file did not throw");
        } catch (const qls::error& e) {
            QCOMPARE(e.code(), qls::error_code::format);
            QVERIFY(std::string(e.what()).find(garbage) != std::string::npos);
            QVERIFY(std::string(e.what()).find("not a SentencePiece model") != std::string::npos);
        }
    }
};

QTEST_APPLESS_MAIN(tst_tokenizer)
#include "tst_tokenizer.moc"
