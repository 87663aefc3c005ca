// The batcher: examples → rows of T tokens (best-fit-decreasing packing or one padded example per row) → seeded
// per-epoch row order → (B, T) batches of tokens, next-token targets, positions and segment ids; its position is a
// small value that resumes the exact batch sequence.
#include "qls/dataset.h"
#include "qls/error.h"

#include "data/data_internal.h"

#include <algorithm>
#include <numeric>
#include <set>

namespace qls {

batcher::batcher(std::vector<data_example> examples, const batch_options& opt)
    : examples_(std::move(examples)), opt_(opt) {
    if (examples_.empty())
        throw error(error_code::invalid_argument, "the batcher needs at least one example", "load a non-empty dataset");
    if (opt_.B < 1)
        throw error(error_code::invalid_argument, "the batch size must be at least 1, got " + std::to_string(opt_.B));
    if (opt_.T < 2)
        throw error(error_code::invalid_argument,
                    "the sequence length must be at least 2, got " + std::to_string(opt_.T));
    if (examples_.size() > size_t(UINT32_MAX))
        throw error(error_code::invalid_argument, "more than 2^32 examples are not supported");
    const size_t T = size_t(opt_.T);
    for (size_t i = 0; i < examples_.size(); ++i) {
        const data_example& ex = examples_[i];
        if (ex.ids.size() != ex.loss.size())
            throw error(error_code::invalid_argument, "example " + std::to_string(i) + " (" + ex.source +
                                                          ") has ids and a loss mask of different lengths");
        if (ex.ids.empty())
            throw error(error_code::invalid_argument, "example " + std::to_string(i) + " (" + ex.source + ") is empty");
        if (ex.ids.size() > T)
            throw error(error_code::invalid_argument,
                        "example " + std::to_string(i) + " (" + ex.source + ") has " + std::to_string(ex.ids.size()) +
                            " tokens, more than the batch's sequence length " + std::to_string(T),
                        "load the dataset with a sequence length no larger than the batcher's");
    }

    if (opt_.packing) {
        // Best-fit decreasing (Johnson 1973): longest first, each into the open row with the least room that still
        // fits it. Ties: by example index, then by row index, so the layout is deterministic.
        std::vector<uint32_t> by_length(examples_.size());
        std::iota(by_length.begin(), by_length.end(), 0u);
        std::stable_sort(by_length.begin(), by_length.end(),
                         [&](uint32_t a, uint32_t b) { return examples_[a].ids.size() > examples_[b].ids.size(); });
        std::set<std::pair<size_t, uint32_t>> room; // (free tokens, row) of rows with free tokens
        for (uint32_t e : by_length) {
            const size_t len = examples_[e].ids.size();
            auto it = room.lower_bound({len, 0u});
            uint32_t row;
            size_t left;
            if (it != room.end()) {
                row = it->second;
                left = it->first - len;
                room.erase(it);
            } else {
                row = uint32_t(rows_.size());
                rows_.emplace_back();
                left = T - len;
            }
            rows_[row].push_back(e);
            if (left > 0) room.insert({left, row});
        }
    } else {
        rows_.resize(examples_.size());
        for (size_t i = 0; i < examples_.size(); ++i) rows_[i] = {uint32_t(i)};
    }
    pos_.seed = opt_.seed;
}

size_t batcher::batches_per_epoch() const { return (rows_.size() + size_t(opt_.B) - 1) / size_t(opt_.B); }

void batcher::set_position(const batcher_position& p) {
    if (p.cursor > batches_per_epoch())
        throw error(error_code::invalid_argument,
                    "batcher position cursor " + std::to_string(p.cursor) + " is past the " +
                        std::to_string(batches_per_epoch()) + " batches of an epoch",
                    "the position was saved for another dataset or other batch options; resume with the same data, "
                    "batch size, sequence length and packing setting");
    pos_ = p;
    if (pos_.cursor == batches_per_epoch()) {
        ++pos_.epoch;
        pos_.cursor = 0;
    }
}

void batcher::prepare_epoch() {
    if (order_epoch_ == pos_.epoch && order_seed_ == pos_.seed && order_.size() == rows_.size()) return;
    order_.resize(rows_.size());
    std::iota(order_.begin(), order_.end(), 0u);
    if (opt_.shuffle) data::seeded_shuffle(order_, data::derive_seed(pos_.seed, 2, pos_.epoch));
    order_epoch_ = pos_.epoch;
    order_seed_ = pos_.seed;
}

batch batcher::next() {
    prepare_epoch();
    const size_t B = size_t(opt_.B), T = size_t(opt_.T);
    batch b;
    b.B = opt_.B;
    b.T = opt_.T;
    b.epoch = pos_.epoch;
    b.index = pos_.cursor;
    b.tokens.assign(B * T, opt_.pad_id);
    b.targets.assign(B * T, -1);
    b.positions.assign(B * T, 0);
    b.segments.assign(B * T, 0);
    for (size_t r = 0; r < B; ++r) {
        const size_t row_slot = size_t(pos_.cursor) * B + r;
        int* tok = b.tokens.data() + r * T;
        int* tgt = b.targets.data() + r * T;
        int* pos = b.positions.data() + r * T;
        int* seg = b.segments.data() + r * T;
        size_t t = 0;
        if (row_slot < rows_.size()) {
            int segment = 1;
            for (uint32_t e : rows_[order_[row_slot]]) {
                const data_example& ex = examples_[e];
                const size_t L = ex.ids.size();
                for (size_t i = 0; i < L; ++i) {
                    tok[t + i] = ex.ids[i];
                    pos[t + i] = int(i);
                    seg[t + i] = segment;
                    // target of token i is token i+1 of the same example, when that one is trained
                    if (i + 1 < L && ex.loss[i + 1]) {
                        tgt[t + i] = ex.ids[i + 1];
                        ++b.counted_targets;
                    }
                }
                t += L;
                b.real_tokens += int(L);
                ++segment;
                ++b.examples;
            }
        }
        for (size_t i = t; i < T; ++i) pos[i] = int(i - t); // the padding run: segment 0, positions from 0
    }
    if (++pos_.cursor >= batches_per_epoch()) {
        ++pos_.epoch;
        pos_.cursor = 0;
    }
    return b;
}

} // namespace qls
