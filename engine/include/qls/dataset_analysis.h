// dataset_analysis — what the studio's Dataset page shows about a training file: its format and template (detected or
// checked), the examples rendered and tokenized as training sees them (the loss-carrying tokens), the length
// histogram and the validation split, as plain values. Reads and tokenizes the whole file: call it off the GUI thread.
//
// The value types it answers with (dataset_format, chat_template and their names/parsers, data_options,
// dataset_stats) are dataset.h's; the ui/ layer reaches the dataset through this header only.
#pragma once

#include "qls/dataset.h" // defines: dataset_format, chat_template, data_options, dataset_stats

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qls {

class tokenizer;

struct dataset_analysis_request {
    std::string train_file;
    std::string validation_file;    // a separate validation file (rendered with train's template); "" = none
    double validation_fraction = 0; // or a fraction of train, split with `seed` (split_dataset)
    data_options options;           // format, template, seq_len, train_on_prompt, bad-record policy
    uint64_t seed = 0;
    std::string model_dir;                // whose tokenizer renders the examples; "" = records read and checked only
    std::shared_ptr<const tokenizer> tok; // reused when it was loaded for model_dir (tokenizer_dir)
    std::string tokenizer_dir;
    size_t preview_limit = 200; // examples kept for the preview (statistics cover all)
};

// One rendered example of the preview.
struct dataset_preview_example {
    std::string source;              // "file:line"
    std::vector<int> ids;            // (L)
    std::vector<uint8_t> loss;       // (L) 1 = a training target (the engine's loss mask)
    std::vector<std::string> pieces; // (L) each token as text (dataset_token_text)
    bool truncated = false;
};

struct dataset_analysis {
    dataset_format format = dataset_format::auto_detect; // as resolved (detected when auto)
    chat_template tmpl = chat_template::auto_select;     // as resolved
    bool format_known = false, template_known = false;
    bool tokenized = false;                       // false without a model: records are read and checked, not tokenized
    size_t records = 0;                           // usable records (examples when tokenized)
    std::vector<dataset_preview_example> preview; // the first preview_limit examples, in file order
    dataset_stats stats;                          // of every example of the training file (when tokenized)
    std::vector<std::string> warnings;            // "file:line: problem" for every skipped record
    size_t train_examples = 0, validation_examples = 0;
    std::vector<std::string> validation_warnings;
    // "message — fix: hint" of what went wrong; "" when nothing did
    std::string train_error;              // the training file cannot be used (missing, malformed, nothing usable)
    std::string template_error;           // the template does not apply to the format
    std::string validation_error;         // the validation file / fraction cannot be used
    std::string model_error;              // the tokenizer could not be loaded
    std::shared_ptr<const tokenizer> tok; // loaded (or reused) for model_dir; pass it back to reuse it
    std::string tokenizer_dir;
    double elapsed_ms = 0;
};

// Never throws for bad input: every failure lands in one of the *_error fields.
dataset_analysis analyze_dataset(const dataset_analysis_request& request);

// A token as the preview shows it (UTF-8): SentencePiece's "▁" is the space it stands for, byte-fallback pieces
// <0xNN> are the character when printable ASCII, "↵\n" for a newline, "⇥" for a tab, else "‹NN›"; <s>, </s> as written.
std::string dataset_token_text(const tokenizer& tok, int id);

} // namespace qls
