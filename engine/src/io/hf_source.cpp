// hf_source — the model_source of a Hugging Face directory: config.json plus single or sharded safetensors.
#include "qls/chat_template.h"
#include "qls/error.h"
#include "qls/hf_checkpoint.h"
#include "qls/model_source.h"

namespace qls {

namespace {

class hf_source final : public model_source {
public:
    explicit hf_source(hf_checkpoint ckpt) : ckpt_(std::move(ckpt)) {
        for (const std::string& name : ckpt_.tensor_names()) {
            const safetensors_entry& e = ckpt_.entry(name);
            // A bitsandbytes 4-bit weight is listed as NF4 (its companions .absmax, .quant_map, ... as stored).
            weights_.push_back({name, e.shape, bnb_nf4_present(ckpt_, name) ? "NF4" : dtype_name(e.type),
                                e.end - e.begin});
        }
    }
    const std::string& path() const override { return ckpt_.dir(); }
    std::string format() const override { return "safetensors"; }
    const model_config& config() const override { return ckpt_.config(); }
    const std::vector<weight_info>& weights() const override { return weights_; }
    bool has(const std::string& name) const override { return ckpt_.has(name); }
    void read_f32(const std::string& name, const shape_t& expected, float* out) const override {
        ckpt_.read_f32_into(name, expected, out); // straight from the mapping into the caller's buffer
    }
    bool read_bf16(const std::string& name, const shape_t& expected, std::vector<uint16_t>& out) const override {
        if (ckpt_.entry(name).type != dtype::bf16) return false;
        out.resize(size_t(shape_numel(expected)));
        return ckpt_.read_bf16_into(name, expected, out.data());
    }
    std::optional<nf4_tensor> read_nf4(const std::string& name, int64_t rows, int64_t cols) const override {
        if (!bnb_nf4_present(ckpt_, name)) return std::nullopt;
        nf4_tensor t = read_bnb_nf4(ckpt_, name, rows, cols);
        // The packed codes are copied out: their pages leave the resident set as the f32 weights' do.
        ckpt_.file_of(name).release_pages(ckpt_.entry(name));
        return t;
    }
    bool stores_nf4(const std::string& name) const override { return bnb_nf4_present(ckpt_, name); }
    tokenizer load_tokenizer(std::string* which) const override { return load_tokenizer_for(ckpt_, which); }
    // chat_template.jinja, else tokenizer_config.json's "chat_template", else chat_template.json.
    std::optional<chat_template_text> chat_template() const override { return find_chat_template(ckpt_.dir()); }

private:
    hf_checkpoint ckpt_;
    std::vector<weight_info> weights_;
};

} // namespace

std::unique_ptr<model_source> open_hf_source(const std::string& dir) {
    return std::make_unique<hf_source>(hf_checkpoint::open(dir));
}

std::unique_ptr<model_source> open_hf_source(const hf_checkpoint& ckpt) { return std::make_unique<hf_source>(ckpt); }

} // namespace qls
