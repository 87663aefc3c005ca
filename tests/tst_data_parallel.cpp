// The data-parallel deal (data_parallel.h): micro-batches dealt to ranks, layer ownership of the optimizer state, and a real checkpoint's state re-sharded from N to M ranks.
#include "testutil.h"

#include "qls/data_parallel.h"
#include "qls/error.h"
#include "qls/peft.h"
#include "qls/safetensors.h"
#include "qls/trainer.h"

#include <QTemporaryDir>

#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

using namespace qls;
namespace fs = std::filesystem;

namespace {

// The error a call throws (code and message), or nothing.
template <class F> std::optional<error> caught(F&& f) {
    try {
        f();
    } catch (const error& e) {
        return e;
    }
    return std::nullopt;
}

} // namespace

class TestDataParallel : public QObject {
    Q_OBJECT

private slots:
    // Every micro-batch of the step exactly once, on rank k mod N, in increasing order on each rank.
    void microBatchesAreDealtRoundRobin() {
        for (int ranks = 1; ranks <= 8; ++ranks)
            for (int per = 1; per <= 5; ++per) {
                const int g = ranks * per;
                const auto deal = deal_micro_batches(g, ranks);
                QCOMPARE(int(deal.size()), ranks);
                std::vector<int> seen(size_t(g), 0);
                for (int r = 0; r < ranks; ++r) {
                    QCOMPARE(int(deal[size_t(r)].size()), per);
                    for (size_t i = 0; i < deal[size_t(r)].size(); ++i) {
                        const int k = deal[size_t(r)][i];
                        QVERIFY(k >= 0 && k < g);
                        QCOMPARE(k % ranks, r);
                        if (i > 0) QVERIFY(k > deal[size_t(r)][i - 1]);
                        ++seen[size_t(k)];
                    }
                }
                for (int s : seen) QCOMPARE(s, 1);
            }
        // one GPU: the single-GPU order itself
        QCOMPARE(deal_micro_batches(3, 1), (std::vector<std::vector<int>>{{0, 1, 2}}));
        QCOMPARE(deal_micro_batches(4, 2), (std::vector<std::vector<int>>{{0, 2}, {1, 3}}));
    }

    // A grad_accum that does not divide among the GPUs is refused by name, with the multiples around it.
    void unevenGradAccumIsRefusedByName() {
        auto e = caught([] { deal_micro_batches(6, 4); });
        QVERIFY(e.has_value());
        QCOMPARE(e->code(), error_code::config);
        const QString what = QString::fromStdString(e->what()), hint = QString::fromStdString(e->hint());
        QVERIFY2(what.contains("training.grad_accum 6") && what.contains("device.gpus"), qPrintable(what));
        QVERIFY2(hint.contains("4 or 8"), qPrintable(hint));
        e = caught([] { deal_micro_batches(1, 2); });
        QVERIFY(e.has_value());
        QVERIFY2(QString::fromStdString(e->hint()).contains("grad_accum to 2,"), e->hint().c_str());
        QVERIFY(caught([] { deal_micro_batches(0, 1); }).has_value());
        QCOMPARE(caught([] { deal_micro_batches(4, 0); })->code(), error_code::invalid_argument);
    }

    // Contiguous ranges in rank order, sizes within one of each other, and layer_owner agreeing with them.
    void layersHaveExactlyOneOwner() {
        for (int layers = 1; layers <= 90; ++layers)
            for (int ranks = 1; ranks <= 9; ++ranks) {
                const auto owners = layer_owners(layers, ranks);
                QCOMPARE(int(owners.size()), ranks);
                int at = 0, lo = layers, hi = 0;
                for (int r = 0; r < ranks; ++r) {
                    const layer_range& o = owners[size_t(r)];
                    QCOMPARE(o.begin, at);
                    QVERIFY(o.end >= o.begin);
                    lo = std::min(lo, o.size());
                    hi = std::max(hi, o.size());
                    for (int l = o.begin; l < o.end; ++l) QCOMPARE(layer_owner(l, layers, ranks), r);
                    at = o.end;
                }
                QCOMPARE(at, layers);
                QVERIFY(hi - lo <= 1);
            }
        QCOMPARE(layer_owners(32, 2), (std::vector<layer_range>{{0, 16}, {16, 32}}));
        QCOMPARE(layer_owners(80, 3), (std::vector<layer_range>{{0, 27}, {27, 54}, {54, 80}}));
        QCOMPARE(layer_owners(2, 4), (std::vector<layer_range>{{0, 1}, {1, 2}, {2, 2}, {2, 2}}));
        QVERIFY(caught([] { layer_owner(32, 32, 2); }).has_value());
        QVERIFY(caught([] { layer_owner(-1, 32, 2); }).has_value());
        QVERIFY(caught([] { layer_owners(0, 2); }).has_value());
    }

    // The layer of a state tensor from its PEFT name; malformed layer numbers are format errors naming the tensor.
    void stateTensorLayersComeFromTheirNames() {
        for (int l : {0, 7, 79})
            for (lora_target t : all_lora_targets())
                QCOMPARE(state_tensor_layer(peft_tensor_name(l, t, true) + ".state1"), l);
        QCOMPARE(state_tensor_layer("optimizer.step"), -1);
        for (const char* bad : {"base_model.model.model.layers..q_proj.lora_A.weight.state1",
                                "base_model.model.model.layers.x.q_proj.lora_A.weight.state1",
                                "base_model.model.model.layers.3", "base_model.model.model.xlayers.3.q",
                                "base_model.model.model.layers.99999999999.q_proj.lora_A.weight.state1"}) {
            auto e = caught([&] { state_tensor_layer(bad); });
            QVERIFY2(e.has_value(), bad);
            QCOMPARE(e->code(), error_code::format);
            QVERIFY(QString::fromStdString(e->what()).contains(bad));
        }
    }

    // A real checkpoint's optimizer state (a CPU run on stories260K, paged AdamW 8-bit) re-sharded for 1..6 ranks:
    // every layer tensor on exactly its owner's shard, the step on every shard, the bytes untouched, and the shards
    // of any N put back together give the checkpoint's state again (what a resume on M != N relies on).
    void realCheckpointStateReshardsBetweenRankCounts() {
        QLS_REQUIRE_MODEL();
        QTemporaryDir tmp;
        train_config c = testutil::pip_run(tmp.filePath("runs").toStdString(), "dp");
        c.lora.rank = 4;
        c.optimizer = optimizer_kind::paged_adamw_8bit;
        c.seq_len = 64;
        c.micro_batch = 2;
        c.grad_accum = 2;
        c.max_steps = 2;
        c.eval_every = 0;
        c.checkpoint_every = 2;
        auto t = trainer::create(c);
        QCOMPARE(t->run(), train_outcome::completed);
        const int layers = t->model().config.num_layers;
        const fs::path file = fs::path(t->run_dir()) / "checkpoints" / "step-2" / "optimizer.safetensors";
        const safetensors_file f = safetensors_file::open(file.string());
        std::vector<std::pair<std::string, tensor>> state;
        for (const safetensors_entry& e : f.entries()) state.emplace_back(e.name, f.read(e.name));
        int global = 0;
        for (const auto& [name, ten] : state) global += state_tensor_layer(name) < 0;
        QVERIFY(global >= 1); // optimizer.step
        QVERIFY(int(state.size()) > global + layers);
        for (int ranks = 1; ranks <= 6; ++ranks) {
            const auto shards = shard_optimizer_state(state, layers, ranks);
            QCOMPARE(int(shards.size()), ranks);
            std::map<std::string, int> copies;
            for (int r = 0; r < ranks; ++r)
                for (const auto& [name, ten] : shards[size_t(r)]) {
                    const int l = state_tensor_layer(name);
                    if (l >= 0) QCOMPARE(layer_owner(l, layers, ranks), r);
                    ++copies[name];
                    const tensor& orig = f.read(name);
                    QCOMPARE(ten.nbytes(), orig.nbytes());
                    QVERIFY(std::memcmp(ten.raw(), orig.raw(), ten.nbytes()) == 0);
                }
            QCOMPARE(copies.size(), state.size());
            for (const auto& [name, n] : copies) QCOMPARE(n, state_tensor_layer(name) < 0 ? ranks : 1);
        }
        // a model with fewer layers than the state: refused, naming the tensor
        auto e = caught([&] { shard_optimizer_state(state, layers - 1, 2); });
        QVERIFY(e.has_value());
        QCOMPARE(e->code(), error_code::format);
        QVERIFY2(QString::fromStdString(e->what()).contains("layers.") &&
                     QString::fromStdString(e->what()).contains(QString::number(layers - 1) + " layers"),
                 e->what());
    }
};

QTEST_GUILESS_MAIN(TestDataParallel)
#include "tst_data_parallel.moc"
