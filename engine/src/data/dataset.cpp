// Dataset loading: records → rendered examples, truncation to the sequence length (with the skip/fail policy for
// examples left without a response token), statistics, and the seeded train/validation split.
#include "qls/dataset.h"
#include "qls/error.h"

#include "data/data_internal.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qls {

namespace {

// Index of the first trained token, or ids.size() when none.
size_t first_loss_index(const data_example& ex) {
    for (size_t i = 1; i < ex.loss.size(); ++i)
        if (ex.loss[i]) return i;
    return ex.loss.size();
}

dataset empty_like(const dataset& d) {
    dataset r;
    r.path = d.path;
    r.format = d.format;
    r.tmpl = d.tmpl;
    r.seq_len = d.seq_len;
    return r;
}

} // namespace

dataset_stats compute_stats(const std::vector<data_example>& examples, int seq_len, size_t skipped) {
    dataset_stats s;
    s.examples = examples.size();
    s.skipped = skipped;
    s.histogram.assign(k_length_histogram_bins, 0);
    size_t longest = 0;
    for (const data_example& ex : examples) longest = std::max(longest, ex.ids.size());
    const size_t range = seq_len > 0 ? size_t(seq_len) : std::max<size_t>(longest, 1);
    s.histogram_bin_width = int((range + k_length_histogram_bins - 1) / k_length_histogram_bins);
    if (examples.empty()) return s;
    s.min_length = std::numeric_limits<size_t>::max();
    for (const data_example& ex : examples) {
        const size_t n = ex.ids.size();
        s.tokens += n;
        s.loss_tokens += ex.loss_tokens();
        s.min_length = std::min(s.min_length, n);
        s.max_length = std::max(s.max_length, n);
        s.truncated += ex.truncated;
        const size_t bin = n == 0
                               ? 0
                               : std::min<size_t>((n - 1) / size_t(s.histogram_bin_width), k_length_histogram_bins - 1);
        ++s.histogram[bin];
    }
    s.mean_length = double(s.tokens) / double(s.examples);
    return s;
}

dataset load_dataset(const std::string& path, const tokenizer& tok, const data_options& opt) {
    if (opt.seq_len < 2)
        throw error(error_code::invalid_argument,
                    "the sequence length must be at least 2 tokens, got " + std::to_string(opt.seq_len));
    data::problem_sink sink(opt.on_bad_record);
    std::vector<data_record> records;
    dataset ds;
    ds.path = path;
    ds.seq_len = opt.seq_len;
    ds.format = data::read_records_into(path, opt, sink, records);
    if (records.empty())
        data::throw_no_examples(path, ds.format, sink.skipped(),
                                sink.warnings().empty() ? std::string() : sink.warnings().front());
    try {
        ds.tmpl = resolve_template(opt.tmpl, ds.format, opt.model_template != nullptr);
    } catch (const error& e) {
        throw error(e.code(), "dataset file " + path + ": " + e.what(), e.hint());
    }

    const size_t T = size_t(opt.seq_len);
    size_t too_long = 0;
    ds.examples.reserve(records.size());
    for (data_record& rec : records) {
        data_example ex;
        if (ds.tmpl == chat_template::model) {
            // The model's template may reject a conversation (raise_exception) or fail on it: a bad record.
            try {
                ex = render_example(rec, tok, ds.tmpl, opt.train_on_prompt, opt.model_template.get());
            } catch (const error& e) {
                if (e.code() == error_code::internal) throw;
                sink.report(rec.source, e.what(), e.hint());
                continue;
            }
        } else {
            ex = render_example(rec, tok, ds.tmpl, opt.train_on_prompt);
        }
        if (ex.ids.size() > T) {
            const size_t full = ex.ids.size();
            const size_t prompt = first_loss_index(ex);
            ex.ids.resize(T);
            ex.loss.resize(T);
            ex.truncated = true;
            if (ex.loss_tokens() == 0) {
                ++too_long;
                sink.report(rec.source,
                            "the prompt alone is " + std::to_string(prompt) + " tokens (the whole example " +
                                std::to_string(full) + "), not shorter than the sequence length " + std::to_string(T) +
                                ": no response token is left to train on",
                            "raise the sequence length or shorten the prompt");
                continue;
            }
        }
        ds.examples.push_back(std::move(ex));
        rec = {}; // release the record's text as we go
    }
    const size_t skipped = sink.skipped();
    ds.warnings = sink.take_warnings();
    if (ds.examples.empty())
        data::throw_no_examples(path, ds.format, skipped, ds.warnings.empty() ? std::string() : ds.warnings.front(),
                                too_long > 0
                                    ? "raise the sequence length (now " + std::to_string(T) + ") or shorten the prompts"
                                    : std::string());
    ds.stats = compute_stats(ds.examples, opt.seq_len, skipped);
    return ds;
}

dataset_split split_dataset(dataset all, double fraction, uint64_t seed) {
    if (!(fraction >= 0 && fraction < 1))
        throw error(error_code::invalid_argument,
                    "the validation fraction must be in [0, 1), got " + std::to_string(fraction));
    const size_t n = all.examples.size();
    size_t n_val = 0;
    if (fraction > 0) n_val = std::max<size_t>(1, size_t(std::llround(fraction * double(n))));
    if (n_val >= n && n_val > 0)
        throw error(error_code::invalid_argument,
                    "a validation fraction of " + std::to_string(fraction) + " of the " + std::to_string(n) +
                        " examples of " + all.path + " leaves no training example",
                    "lower the validation fraction or add examples");
    std::vector<uint32_t> idx(n);
    for (size_t i = 0; i < n; ++i) idx[i] = uint32_t(i);
    data::seeded_shuffle(idx, data::derive_seed(seed, 1, 0));
    std::vector<uint8_t> is_val(n, 0);
    for (size_t i = 0; i < n_val; ++i) is_val[idx[i]] = 1;

    dataset_split out;
    out.train = empty_like(all);
    out.validation = empty_like(all);
    out.train.warnings = std::move(all.warnings);
    out.train.examples.reserve(n - n_val);
    out.validation.examples.reserve(n_val);
    for (size_t i = 0; i < n; ++i)
        (is_val[i] ? out.validation : out.train).examples.push_back(std::move(all.examples[i]));
    out.train.stats = compute_stats(out.train.examples, all.seq_len, all.stats.skipped);
    out.validation.stats = compute_stats(out.validation.examples, all.seq_len, 0);
    return out;
}

dataset_split load_dataset_split(const std::string& path, const tokenizer& tok, const data_options& opt,
                                 const validation_options& val) {
    if (!val.file.empty() && val.fraction != 0)
        throw error(error_code::invalid_argument,
                    "a validation file (" + val.file + ") and a validation fraction (" + std::to_string(val.fraction) +
                        ") were both given",
                    "use either a separate validation file or a fraction of the training file");
    dataset train = load_dataset(path, tok, opt);
    if (val.file.empty()) return split_dataset(std::move(train), val.fraction, val.seed);
    data_options vopt = opt;
    vopt.tmpl = train.tmpl; // the validation examples must be rendered exactly like the training ones
    dataset_split out;
    out.validation = load_dataset(val.file, tok, vopt);
    out.train = std::move(train);
    return out;
}

} // namespace qls
