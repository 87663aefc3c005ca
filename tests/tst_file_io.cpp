// Qt Test: the file helper qls/file_io.h: path_join, path_is_file, read_file_text, write_file_atomic (both
// overloads), fsync_path and publish_dir_atomic, their errors and the temporary files they must not leave behind.
#include "testutil.h"

#include "qls/error.h"
#include "qls/file_io.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <sstream>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;

namespace {

// Reads and writes with the standard library, independent of the code under test.
std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

// The names in a folder, hidden ones included, sorted.
QStringList entries(const std::string& dir) {
    return QDir(QString::fromStdString(dir))
        .entryList(QDir::AllEntries | QDir::Hidden | QDir::System | QDir::NoDotAndDotDot, QDir::Name);
}

// A scratch folder for one test.
struct scratch_dir {
    QTemporaryDir tmp;
    std::string path() const { return tmp.path().toStdString(); }
    std::string file(const std::string& name) const { return path() + "/" + name; }
};

// Runs f and returns the qls::error it throws; nullopt (and a warning) when it throws nothing.
std::optional<qls::error> caught(const std::function<void()>& f) {
    try {
        f();
    } catch (const qls::error& e) {
        return e;
    }
    qWarning("no qls::error was thrown");
    return std::nullopt;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

} // namespace

class TestFileIo : public QObject {
    Q_OBJECT
private slots:
    void path_join_adds_one_slash() {
        QCOMPARE(qls::path_join("/a/b", "c.txt"), std::string("/a/b/c.txt"));
        QCOMPARE(qls::path_join("/a/b/", "c.txt"), std::string("/a/b/c.txt"));
        QCOMPARE(qls::path_join("rel", "x"), std::string("rel/x"));
        QCOMPARE(qls::path_join("/", "x"), std::string("/x"));
        QCOMPARE(qls::path_join("", "c.txt"), std::string("c.txt"));
        QCOMPARE(qls::path_join("", ""), std::string());
    }

    void path_is_file_only_for_regular_files() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        write_file(d.file("a.txt"), "x");
        fs::create_directory(d.file("sub"));
        QCOMPARE(qls::path_is_file(d.file("a.txt")), true);
        QCOMPARE(qls::path_is_file(d.path()), false);
        QCOMPARE(qls::path_is_file(d.file("sub")), false);
        QCOMPARE(qls::path_is_file(d.file("missing")), false);
        QCOMPARE(qls::path_is_file(""), false);
    }

    void read_file_text_round_trips_binary() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        std::string bytes("ab\0c\r\n\xff\x00\n", 9);
        for (int i = 0; i < 256; ++i) bytes.push_back(char(i));
        QCOMPARE(bytes.size(), size_t(9 + 256));
        write_file(d.file("b.bin"), bytes);
        const std::string got = qls::read_file_text(d.file("b.bin"));
        QCOMPARE(got.size(), bytes.size());
        QVERIFY(got == bytes);
        QCOMPARE(got[2], '\0');

        write_file(d.file("empty"), "");
        QCOMPARE(qls::read_file_text(d.file("empty")), std::string());

        // larger than the 64 KiB read buffer
        std::string big(200000, '\0');
        for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 31 + 7);
        write_file(d.file("big.bin"), big);
        QVERIFY(qls::read_file_text(d.file("big.bin")) == big);
    }

    void read_file_text_refuses_missing_file() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        const std::string missing = d.file("nope.txt");
        auto e = caught([&] { qls::read_file_text(missing, "my hint"); });
        QVERIFY(e.has_value());
        QCOMPARE(e->code(), qls::error_code::io);
        QVERIFY2(contains(e->what(), "cannot open " + missing), e->what());
        QCOMPARE(e->hint(), std::string("my hint"));

        // without a hint: the default one
        e = caught([&] { qls::read_file_text(missing); });
        QVERIFY(e.has_value());
        QCOMPARE(e->code(), qls::error_code::io);
        QVERIFY2(contains(e->what(), missing), e->what());
        QCOMPARE(e->hint(), std::string("check that the file exists and is readable"));
    }

    void read_file_text_refuses_folder() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        auto e = caught([&] { qls::read_file_text(d.path(), "my hint"); });
        QVERIFY(e.has_value());
        QCOMPARE(e->code(), qls::error_code::io);
        QVERIFY2(contains(e->what(), "cannot read " + d.path()), e->what());
        QVERIFY2(contains(e->what(), "folder"), e->what());
        QCOMPARE(e->hint(), std::string("my hint"));

        e = caught([&] { qls::read_file_text(d.path()); });
        QVERIFY(e.has_value());
        QCOMPARE(e->hint(), std::string("check that the file exists and is readable"));
    }

    void write_file_atomic_creates_and_replaces() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        const std::string path = qls::path_join(d.path(), "a.txt");
        qls::write_file_atomic(path, "hello");
        QCOMPARE(read_file(path), std::string("hello"));
        QCOMPARE(qls::read_file_text(path), std::string("hello"));
        QCOMPARE(entries(d.path()), QStringList{"a.txt"});
        QVERIFY((fs::status(path).permissions() & fs::perms::owner_read) != fs::perms::none);

        // a shorter replacement truncates: nothing of the old contents remains
        write_file(path, "a much longer old text");
        qls::write_file_atomic(path, std::string_view("new"));
        QCOMPARE(read_file(path), std::string("new"));
        QCOMPARE(entries(d.path()), QStringList{"a.txt"});

        // binary bytes with NUL
        const std::string bin("\0\x01\xfe\0", 4);
        qls::write_file_atomic(path, bin);
        QCOMPARE(read_file(path), bin);

        // an empty file
        qls::write_file_atomic(path, std::string_view());
        QCOMPARE(fs::file_size(path), uintmax_t(0));

        // a stale temporary file from an earlier crash is overwritten and gone afterwards
        write_file(path + ".tmp", "stale stale stale");
        qls::write_file_atomic(path, "fresh");
        QCOMPARE(read_file(path), std::string("fresh"));
        QVERIFY(!fs::exists(path + ".tmp"));
        QCOMPARE(entries(d.path()), QStringList{"a.txt"});
    }

    void write_file_atomic_parts() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        const std::string path = d.file("b.bin");
        const std::string_view parts[] = {"ab", std::string_view("\0c", 2), "", "xyz"};
        qls::write_file_atomic(path, std::span<const std::string_view>(parts));
        QCOMPARE(read_file(path), std::string("ab\0cxyz", 7));
        QVERIFY(!fs::exists(path + ".tmp"));

        // replace with other parts
        const std::vector<std::string_view> two = {"header|", "data"};
        qls::write_file_atomic(path, std::span<const std::string_view>(two));
        QCOMPARE(read_file(path), std::string("header|data"));

        // no parts at all: an empty file
        qls::write_file_atomic(path, std::span<const std::string_view>());
        QCOMPARE(read_file(path), std::string());
        QCOMPARE(entries(d.path()), QStringList{"b.bin"});
    }

    void write_file_atomic_missing_folder_fails() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        const std::string path = d.file("no/such/x.txt");
        auto e = caught([&] { qls::write_file_atomic(path, "1"); });
        QVERIFY(e.has_value());
        QCOMPARE(e->code(), qls::error_code::io);
        QVERIFY2(contains(e->what(), "cannot write '" + path + "'"), e->what());
        QVERIFY2(contains(e->what(), path + ".tmp"), e->what());
        QVERIFY(!e->hint().empty());
        QVERIFY(!fs::exists(path));
        QVERIFY(!fs::exists(path + ".tmp"));
        QVERIFY(!fs::exists(d.file("no")));
        QCOMPARE(entries(d.path()), QStringList());

        // the same through the parts overload
        const std::string_view parts[] = {"a", "b"};
        e = caught([&] { qls::write_file_atomic(path, std::span<const std::string_view>(parts)); });
        QVERIFY(e.has_value());
        QVERIFY2(contains(e->what(), path), e->what());
        QCOMPARE(entries(d.path()), QStringList());
    }

    void write_file_atomic_over_folder_fails_and_cleans_up() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        const std::string path = d.file("dir");
        fs::create_directory(path);
        write_file(path + "/inside", "keep");
        auto e = caught([&] { qls::write_file_atomic(path, "x"); });
        QVERIFY(e.has_value());
        QCOMPARE(e->code(), qls::error_code::io);
        QVERIFY2(contains(e->what(), "cannot write '" + path + "'"), e->what());
        QVERIFY(!fs::exists(path + ".tmp"));
        QVERIFY(fs::is_directory(path));
        QCOMPARE(read_file(path + "/inside"), std::string("keep"));
        QCOMPARE(entries(d.path()), QStringList{"dir"});
    }

    void fsync_path_reports_without_throwing() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        write_file(d.file("a.txt"), "x");
        bool r = false;
        try {
            QCOMPARE(qls::fsync_path(d.file("a.txt"), false), true);
            QCOMPARE(qls::fsync_path(d.path(), true), true);
            QCOMPARE(qls::fsync_path(d.path(), false), true); // a folder opened read-only without O_DIRECTORY
            QCOMPARE(qls::fsync_path(d.file("nope"), false), false);
            QCOMPARE(qls::fsync_path(d.file("nope"), true), false);
            QCOMPARE(qls::fsync_path(d.file("a.txt"), true), false); // not a folder
            r = qls::fsync_path("", false);
        } catch (...) {
            QFAIL("fsync_path threw");
        }
        QCOMPARE(r, false);
    }

    void publish_dir_atomic_new_folder() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        const std::string staged = d.file(".tmp-step-1"), final_dir = d.file("step-1");
        fs::create_directory(staged);
        qls::write_file_atomic(staged + "/f", "one");
        qls::publish_dir_atomic(staged, final_dir);
        QCOMPARE(read_file(final_dir + "/f"), std::string("one"));
        QCOMPARE(entries(final_dir), QStringList{"f"});
        QVERIFY(!fs::exists(staged));
        QCOMPARE(entries(d.path()), QStringList{"step-1"});
    }

    void publish_dir_atomic_replaces_existing() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        const std::string staged = d.file(".tmp-step-1"), final_dir = d.file("step-1");
        fs::create_directory(final_dir);
        write_file(final_dir + "/f", "one");
        write_file(final_dir + "/only-old", "old");
        fs::create_directory(final_dir + "/old-sub");
        write_file(final_dir + "/old-sub/g", "old");

        fs::create_directory(staged);
        write_file(staged + "/f", "two");
        write_file(staged + "/only-new", "new");
        qls::publish_dir_atomic(staged, final_dir);

        QCOMPARE(read_file(final_dir + "/f"), std::string("two"));
        QCOMPARE(read_file(final_dir + "/only-new"), std::string("new"));
        QCOMPARE(entries(final_dir), (QStringList{"f", "only-new"})); // the old contents are gone
        QVERIFY(!fs::exists(staged));
        QVERIFY(!fs::exists(d.file(".tmp-old-step-1")));
        QCOMPARE(entries(d.path()), QStringList{"step-1"});

        // a leftover .tmp-old-* folder from an earlier crash is cleared too
        fs::create_directory(d.file(".tmp-old-step-1"));
        write_file(d.file(".tmp-old-step-1/junk"), "junk");
        fs::create_directory(staged);
        write_file(staged + "/f", "three");
        qls::publish_dir_atomic(staged, final_dir);
        QCOMPARE(read_file(final_dir + "/f"), std::string("three"));
        QCOMPARE(entries(final_dir), QStringList{"f"});
        QCOMPARE(entries(d.path()), QStringList{"step-1"});
    }

    void publish_dir_atomic_missing_staged_fails() {
        scratch_dir d;
        QVERIFY(d.tmp.isValid());
        const std::string staged = d.file(".tmp-missing");

        // no final folder yet
        auto e = caught([&] { qls::publish_dir_atomic(staged, d.file("step-2")); });
        QVERIFY(e.has_value());
        QCOMPARE(e->code(), qls::error_code::io);
        QVERIFY2(contains(e->what(), d.file("step-2") + ": cannot move " + staged + " into place"), e->what());
        QVERIFY(!e->hint().empty());
        QVERIFY(!fs::exists(d.file("step-2")));
        QCOMPARE(entries(d.path()), QStringList());

        // an existing final folder stays whole
        const std::string final_dir = d.file("step-1");
        fs::create_directory(final_dir);
        write_file(final_dir + "/f", "keep me");
        e = caught([&] { qls::publish_dir_atomic(staged, final_dir); });
        QVERIFY(e.has_value());
        QCOMPARE(e->code(), qls::error_code::io);
        QVERIFY2(contains(e->what(), staged), e->what());
        QVERIFY2(contains(e->what(), final_dir), e->what());
        QVERIFY(fs::is_directory(final_dir));
        QCOMPARE(read_file(final_dir + "/f"), std::string("keep me"));
        QCOMPARE(entries(final_dir), QStringList{"f"});
        QCOMPARE(entries(d.path()), QStringList{"step-1"}); // no .tmp-old-step-1 left
    }
};

QTEST_GUILESS_MAIN(TestFileIo)
#include "tst_file_io.moc"
