// The Dataset page's analysis (qls/dataset_analysis.h): detection, template, reading or tokenizing, preview, split counts.
#include "qls/dataset_analysis.h"

#include "qls/chat_template.h"
#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/tokenizer.h"

#include <algorithm>
#include <chrono>

namespace qls {

namespace {

std::string error_text(const error& e) {
    std::string m = e.what();
    if (!e.hint().empty()) m += " — fix: " + e.hint();
    return m;
}

// Counts of a validation fraction, through the engine's own split (so its rounding and its refusal of a fraction
// that leaves no training example are the ones the run will meet).
void split_counts(dataset all, const dataset_analysis_request& rq, dataset_analysis& r) {
    try {
        dataset_split split = split_dataset(std::move(all), rq.validation_fraction, rq.seed);
        r.train_examples = split.train.examples.size();
        r.validation_examples = split.validation.examples.size();
    } catch (const error& e) {
        r.validation_error = error_text(e);
    }
}

} // namespace

std::string dataset_token_text(const tokenizer& tok, int id) {
    const std::string p = tok.piece(id);
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
    if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>' && hex(p[3]) && hex(p[4])) {
        const int b = std::stoi(p.substr(3, 2), nullptr, 16);
        if (b == '\n') return "\xE2\x86\xB5\n"; // ↵
        if (b == '\t') return "\xE2\x87\xA5";   // ⇥
        if (b >= 0x20 && b < 0x7f) return std::string(1, char(b));
        return "\xE2\x80\xB9" + p.substr(3, 2) + "\xE2\x80\xBA"; // ‹NN›
    }
    std::string s;
    s.reserve(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
        if (p.compare(i, 3, "\xE2\x96\x81") == 0) { // ▁
            s += ' ';
            i += 2;
        } else {
            s += p[i];
        }
    }
    return s;
}

dataset_analysis analyze_dataset(const dataset_analysis_request& rq) {
    const auto t0 = std::chrono::steady_clock::now();
    auto elapsed = [t0] {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    dataset_analysis r;
    if (!rq.model_dir.empty()) {
        r.tokenizer_dir = rq.model_dir;
        if (rq.tok && rq.tokenizer_dir == rq.model_dir) {
            r.tok = rq.tok;
        } else {
            try {
                r.tok = std::make_shared<const tokenizer>(load_tokenizer_for(hf_checkpoint::open(rq.model_dir)));
            } catch (const error& e) {
                r.model_error = error_text(e);
            }
        }
    }
    if (rq.train_file.empty()) return r;

    data_options opt = rq.options;
    std::string model_template_problem;
    if (!rq.model_dir.empty() && r.tok && !opt.model_template) {
        // The model's own chat template (chat_template::model; auto picks it for chat data).
        try {
            opt.model_template = load_model_chat_template(rq.model_dir);
        } catch (const error& e) {
            model_template_problem = error_text(e);
        }
    }
    try {
        r.format = opt.format == dataset_format::auto_detect ? detect_format(rq.train_file, opt.max_record_bytes)
                                                             : opt.format;
        r.format_known = true;
    } catch (const error& e) {
        r.train_error = error_text(e);
        return r;
    }
    try {
        if ((opt.tmpl == chat_template::model || opt.tmpl == chat_template::auto_select) &&
            !model_template_problem.empty())
            throw error(error_code::config, model_template_problem,
                        "fix the model's chat template, or choose the llama2 or chatml template");
        r.tmpl = resolve_template(opt.tmpl, r.format, opt.model_template != nullptr);
        r.template_known = true;
    } catch (const error& e) {
        r.template_error = error_text(e);
        return r;
    }

    opt.format = r.format;

    data_options vopt = opt; // the validation file's format is detected on its own, its template is train's
    vopt.format = dataset_format::auto_detect;
    vopt.tmpl = r.tmpl;
    const bool use_validation_file = !rq.validation_file.empty();

    if (!r.tok) {
        // No tokenizer: read and check the records only.
        try {
            record_set rs = read_records(rq.train_file, opt);
            r.records = rs.records.size();
            r.warnings = std::move(rs.warnings);
            r.train_examples = r.records;
            if (use_validation_file) {
                try {
                    record_set vs = read_records(rq.validation_file, vopt);
                    r.validation_examples = vs.records.size();
                    r.validation_warnings = std::move(vs.warnings);
                } catch (const error& e) {
                    r.validation_error = error_text(e);
                }
            } else if (rq.validation_fraction > 0) {
                dataset all; // the split needs only the count
                all.path = rq.train_file;
                all.examples.resize(r.records);
                split_counts(std::move(all), rq, r);
            }
        } catch (const error& e) {
            r.train_error = error_text(e);
        }
        r.elapsed_ms = elapsed();
        return r;
    }

    dataset ds;
    try {
        ds = load_dataset(rq.train_file, *r.tok, opt);
    } catch (const error& e) {
        r.train_error = error_text(e);
        r.elapsed_ms = elapsed();
        return r;
    }
    r.tokenized = true;
    r.records = ds.examples.size();
    r.stats = ds.stats;
    r.warnings = ds.warnings;
    const size_t n = std::min(ds.examples.size(), rq.preview_limit);
    r.preview.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        const data_example& ex = ds.examples[i];
        dataset_preview_example e;
        e.source = ex.source;
        e.ids = ex.ids;
        e.loss = ex.loss;
        e.truncated = ex.truncated;
        e.pieces.reserve(ex.ids.size());
        for (int id : ex.ids) e.pieces.push_back(dataset_token_text(*r.tok, id));
        r.preview.push_back(std::move(e));
    }
    r.train_examples = ds.examples.size();
    if (use_validation_file) {
        try {
            dataset v = load_dataset(rq.validation_file, *r.tok, vopt);
            r.validation_examples = v.examples.size();
            r.validation_warnings = std::move(v.warnings);
        } catch (const error& e) {
            r.validation_error = error_text(e);
        }
    } else if (rq.validation_fraction > 0) {
        split_counts(std::move(ds), rq, r);
    }
    r.elapsed_ms = elapsed();
    return r;
}

} // namespace qls
