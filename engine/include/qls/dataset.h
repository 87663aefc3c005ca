// dataset — training data for fine-tuning: file formats, prompt templates with loss masks, truncation, validation
// split, statistics, and the seeded batcher (packing or padding) that feeds llama_pass.
//
// Pipeline: read_records (file → data_record, format auto-detected) → render_example (template → token ids + loss
// mask) → load_dataset (truncation to seq_len, skip/fail policy, stats) → split → batcher (B, T batches).
//
// Dimension legend: L example length in tokens, B batch rows, T tokens per row (the sequence length).
//
// Formats (detected from the content, overridable):
//   alpaca         a JSON array or JSONL of {"instruction", "input" (optional), "output"}
//   chat_messages  JSONL (or a JSON array) of {"messages": [{"role": system|user|assistant, "content": "..."}]}
//   chat_sharegpt  JSONL (or a JSON array) of {"conversations": [{"from": system|human|gpt, "value": "..."}]}
//   text_jsonl     JSONL (or a JSON array) of {"text": "..."}
//   plain_text     UTF-8 text: one document per paragraph (paragraphs are separated by blank lines). A file with no
//                  blank line at all holds one document per non-empty line (the common one-sample-per-line corpus).
// Extra fields are ignored; blank JSONL lines are ignored. Detection: the first non-space byte '[' or '{' means JSON
// (the first record that parses as an object decides the format by its fields), anything else means plain text; a
// file not named *.json/*.jsonl whose first records do not parse as JSON is plain text (e.g. "[Verse 1]...").
//
// Templates (each rendered example starts with BOS; every response is followed by EOS, both trained):
//   alpaca       the Stanford Alpaca prompt (github.com/tatsu-lab/stanford_alpaca, README "prompt" section):
//                  "Below is an instruction that describes a task[, paired with an input that provides further
//                  context]. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}
//                  \n\n[### Input:\n{input}\n\n]### Response:\n" then {output} </s>
//   llama2_chat  Meta's Llama-2 chat format (github.com/meta-llama/llama, llama/generation.py chat_completion):
//                  per exchange <s>"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]"" {assistant} "</s>; the
//                  system block only in the first exchange; contents are strip()ped as Meta does. <s>, </s> are ids.
//   chatml       OpenAI ChatML (github.com/openai/openai-python, chatml.md): per message
//                  "<|im_start|>{role}\n{content}<|im_end|>\n"; after each assistant message EOS (the LLaMA
//                  tokenizer has no <|im_end|> token, so EOS is what stops generation).
//   raw          no template: <s>{text}</s>, for text_jsonl and plain_text.
//   model        the model's own Jinja chat template (chat_template.jinja / tokenizer_config.json, chat_template.h),
//                  rendered as Hugging Face's apply_chat_template does with the tokenizer_config.json special tokens;
//                  the template writes its own BOS/EOS. The loss mask is exactly the assistant turns: the
//                  {% generation %} spans when the template has them, else found by rendering prefixes
//                  (messages[:i] with add_generation_prompt, messages[:i+1] without) that must each extend the
//                  previous one (a template that rewrites earlier turns later is refused, naming it). Each piece is
//                  tokenized on its own (encode without BOS); the bos_token/eos_token strings in the text become the
//                  tokenizer's BOS/EOS ids. The default for chat data when the model has a template.
// Alpaca records under a chat template become one exchange: user = instruction (+ "\n\n" + input when non-empty).
//
// Tokenization: the template is cut into pieces at every prompt/response boundary and each piece is encoded on its
// own; the ids are concatenated, so the loss mask boundaries are exact (no token straddles a boundary). Consequence:
// SentencePiece puts its dummy-prefix "▁" (a space) before every piece, so the decoded text has a space at each
// boundary, e.g. "### Response:\n Paris" and "[/INST] Paris". For Llama-2 this equals Meta's own tokenization (Meta
// puts a space there and encodes each exchange separately); for Alpaca/ChatML it is a small departure from the
// one-string rendering that is harmless as long as generation prompts are built the same way (use
// render_generation_prompt). Tokenizers that remove extra whitespace (stories260K does) also drop the piece's
// leading/trailing spaces.
#pragma once

#include "qls/tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qls {

enum class dataset_format { auto_detect, alpaca, chat_messages, chat_sharegpt, text_jsonl, plain_text };
// "auto", "alpaca", "messages", "sharegpt", "text", "plain"
const char* dataset_format_name(dataset_format f);
// The inverse of dataset_format_name; throws invalid_argument listing the names.
dataset_format parse_dataset_format(const std::string& name);

enum class chat_template { auto_select, alpaca, llama2_chat, chatml, raw, model };
// "auto", "alpaca", "llama2", "chatml", "raw", "model"
const char* chat_template_name(chat_template t);
chat_template parse_chat_template(const std::string& name);

// What happens to a malformed record (bad JSON, missing/empty/mistyped field, invalid UTF-8, a line over the
// limit, an unknown role, a conversation not ending with an assistant turn) or to an example with no response
// token left within seq_len: skip it with a warning "file:line: problem" (counted in stats.skipped), or fail
// with a qls::error carrying the same text.
enum class bad_record_policy { skip, fail };

enum class chat_role { system, user, assistant };
const char* chat_role_name(chat_role r); // "system", "user", "assistant"

struct chat_message {
    chat_role role = chat_role::user;
    std::string content;
};

// One parsed record, before tokenization.
struct data_record {
    enum class kind { instruction, chat, text };
    kind type = kind::text;
    std::string instruction, input, output; // kind::instruction (Alpaca); input may be empty
    std::vector<chat_message> messages;     // kind::chat: [system], user, assistant, user, assistant, ...
    std::string text;                       // kind::text
    std::string source;                     // "file:line" where the record starts
};

// The model's own chat template with its special tokens (defined in chat_template.h; load_model_chat_template).
struct model_chat_template;

struct data_options {
    dataset_format format = dataset_format::auto_detect;
    // auto: alpaca → alpaca, chat → model when model_template is set else llama2_chat, text → raw
    chat_template tmpl = chat_template::auto_select;
    std::shared_ptr<const model_chat_template> model_template; // what chat_template::model renders with
    int seq_len = 512;                                         // T: examples longer than this are truncated
    bool train_on_prompt = false; // false: loss only on responses (+EOS); true: on every token
    bad_record_policy on_bad_record = bad_record_policy::skip;
    size_t max_record_bytes = size_t(1) << 20; // a JSONL line / array element / paragraph over this is bad
};

// A rendered example. Loss convention: loss[i] == 1 means ids[i] is a training target, predicted from ids[0..i-1];
// loss[0] is always 0 (nothing predicts the first token).
struct data_example {
    std::vector<int> ids;      // (L)
    std::vector<uint8_t> loss; // (L)
    std::string source;        // "file:line"
    bool truncated = false;    // cut to seq_len tokens
    size_t loss_tokens() const;
};

constexpr int k_length_histogram_bins = 16;

struct dataset_stats {
    size_t examples = 0;
    size_t tokens = 0;      // sum of example lengths (after truncation)
    size_t loss_tokens = 0; // trained tokens (after truncation); equals the targets one epoch of batches counts
    size_t min_length = 0, max_length = 0;
    double mean_length = 0;
    // Bin i counts lengths in [i*w + 1, (i+1)*w] with w = histogram_bin_width = ceil(seq_len / 16).
    int histogram_bin_width = 0;
    std::vector<size_t> histogram; // k_length_histogram_bins
    size_t truncated = 0;          // examples cut to seq_len that still had response tokens
    size_t skipped = 0;            // records/examples not used (each has a warning)
};

struct dataset {
    std::string path;
    dataset_format format = dataset_format::auto_detect; // as resolved
    chat_template tmpl = chat_template::auto_select;     // as resolved
    int seq_len = 0;
    std::vector<data_example> examples;
    // "file:line: problem" for every record skipped (at most 1000 listed, then one line giving how many more).
    std::vector<std::string> warnings;
    dataset_stats stats;
};

// Format detection from the file's content; throws qls::error (io/format) naming the file when it is missing,
// empty or JSON of no known shape.
dataset_format detect_format(const std::string& path, size_t max_record_bytes = size_t(1) << 20);

struct record_set {
    dataset_format format = dataset_format::auto_detect; // as resolved
    std::vector<data_record> records;
    std::vector<std::string> warnings;
    size_t skipped = 0;
};
// Parses the file into records (no tokenization). Bad records follow opt.on_bad_record. A missing, unreadable or
// empty file throws; so does one with no usable record.
record_set read_records(const std::string& path, const data_options& opt);

// The template auto_select picks for a format; an explicit template is checked against the format (raw needs
// text records; chat records need llama2_chat or chatml); a mismatch throws error_code::config naming both.
// model needs model_template_available (the model has a chat template) and chat or alpaca records; auto picks it
// for chat records when available.
chat_template resolve_template(chat_template requested, dataset_format format, bool model_template_available = false);

// Renders one record with a resolved template (not auto_select). Throws config when the template does not apply
// to the record's kind. chat_template::model renders with `model` (required then); a template error (its
// raise_exception, a type error) throws qls::error naming the template.
data_example render_example(const data_record& rec, const tokenizer& tok, chat_template tmpl, bool train_on_prompt,
                            const model_chat_template* model = nullptr);

// The ids a model is given at generation time for a conversation ending with a user message: the same pieces as
// training up to and including the assistant cue ("[/INST]", "<|im_start|>assistant\n", "### Response:\n"), so the
// ids equal the rendered training example's prefix. alpaca: one user message (the instruction; a system message
// is not allowed). raw: the concatenated contents after BOS.
std::vector<int> render_generation_prompt(const std::vector<chat_message>& conversation, const tokenizer& tok,
                                          chat_template tmpl, const model_chat_template* model = nullptr);

// read_records + render_example for every record + truncation to opt.seq_len + stats. An example whose prompt
// alone fills seq_len (no loss token left) is a bad record ("file:line: ... no response token left"). Throws when
// no usable example remains, naming the file and the fix.
dataset load_dataset(const std::string& path, const tokenizer& tok, const data_options& opt);

// Statistics of examples; seq_len sets the histogram bins; skipped is copied into the result.
dataset_stats compute_stats(const std::vector<data_example>& examples, int seq_len, size_t skipped = 0);

struct dataset_split {
    dataset train;
    dataset validation; // empty (no examples) when no validation was asked for
};

// Moves round(fraction * N) examples (at least 1 when fraction > 0) chosen by a seeded shuffle into validation;
// both keep the file order. Deterministic for a seed on every platform. fraction in [0, 1); train must keep at least
// one example. The load report (warnings, skipped) stays with train. Stats are recomputed for both.
dataset_split split_dataset(dataset all, double fraction, uint64_t seed);

struct validation_options {
    std::string file;    // a separate validation file (same template as train; its format is detected on its own)
    double fraction = 0; // or a fraction of the training file; both set is an error
    uint64_t seed = 0;
};
dataset_split load_dataset_split(const std::string& path, const tokenizer& tok, const data_options& opt,
                                 const validation_options& val);

// ---- batching -------------------------------------------------------------------------------------------------

struct batch_options {
    int B = 1;           // rows per batch
    int T = 0;           // tokens per row (>= every example's length)
    bool packing = true; // pack several examples per row; false: one example per row, padded
    bool shuffle = true; // shuffle the row order every epoch (seeded); false: file order (evaluation)
    uint64_t seed = 0;
    int pad_id = 0; // token id at padding (never attended to by real tokens, never a target)
};

// Where the batcher stands: `cursor` is the index within `epoch` of the next batch next() returns. Saving it with a
// training checkpoint and set_position() on a batcher built from the same examples and options resumes with
// exactly the next batch. seed is the shuffle seed in use (set_position adopts it).
struct batcher_position {
    uint64_t epoch = 0;
    uint64_t cursor = 0;
    uint64_t seed = 0;
    bool operator==(const batcher_position&) const = default;
};

// One batch, all (B, T) row-major:
//   tokens     input ids; pad_id at padding
//   targets    the next token's id where that token is trained (same segment, loss mask 1), else -1: at prompt
//              tokens, at the last token of every example (segment) and at padding
//   positions  RoPE positions, restarting at 0 for every example (and for the padding run)
//   segments   1, 2, 3... for the examples of a row, 0 for padding: attention stays within a segment
struct batch {
    int B = 0, T = 0;
    std::vector<int> tokens, targets, positions, segments;
    int counted_targets = 0; // targets != -1
    int real_tokens = 0;     // tokens that are not padding
    int examples = 0;        // examples in this batch
    uint64_t epoch = 0;      // the epoch and index within it this batch was taken from
    uint64_t index = 0;
};

// Rows: packing puts examples into rows of T tokens by best-fit decreasing (once, deterministically), so rows are
// nearly full and the number of rows is the same every epoch; padding uses one row per example. Every epoch the
// row order is shuffled with a generator seeded by (seed, epoch) and cut into batches of B rows; the last batch of
// an epoch is completed with empty rows (all targets -1), so each example is trained exactly once per epoch.
class batcher {
public:
    // Throws invalid_argument when there are no examples, B < 1, T < 2 or an example is longer than T.
    batcher(std::vector<data_example> examples, const batch_options& opt);

    batch next(); // the batch at position(), then advances (next epoch after the last)
    batcher_position position() const { return pos_; }
    void set_position(const batcher_position& p); // throws invalid_argument when the cursor is out of range
    size_t batches_per_epoch() const;
    size_t rows_per_epoch() const { return rows_.size(); }
    const std::vector<data_example>& examples() const { return examples_; }
    const batch_options& options() const { return opt_; }

private:
    void prepare_epoch(); // row order of pos_.epoch with pos_.seed
    std::vector<data_example> examples_;
    batch_options opt_;
    std::vector<std::vector<uint32_t>> rows_; // example indices per row
    std::vector<uint32_t> order_;             // row order of the prepared epoch
    uint64_t order_epoch_ = ~uint64_t(0), order_seed_ = 0;
    batcher_position pos_;
};

} // namespace qls
