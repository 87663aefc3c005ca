// Sampling, the CPU decoder (llama_decoder behind qls::decoder), the device choice of decoder, and the generation loop.
#include "qls/generate.h"

#include "model/decode_loop.h"
#include "qls/error.h"
#include "qls/gpu_train.h" // defines: make_cuda_decoder

#include <algorithm>
#include <cmath>

namespace qls {

void validate_sampling(const sampling_options& o) {
    if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature))
        throw error(error_code::invalid_argument,
                    "temperature must be a finite number >= 0 (got " + std::to_string(o.temperature) + ")",
                    "use 0 for greedy decoding, around 0.7-1.0 for sampling");
    if (o.top_k < 0)
        throw error(error_code::invalid_argument, "top-k must be >= 0 (got " + std::to_string(o.top_k) + ")",
                    "use 0 to disable top-k");
    if (!(o.top_p > 0.0f && o.top_p <= 1.0f))
        throw error(error_code::invalid_argument, "top-p must be in (0, 1] (got " + std::to_string(o.top_p) + ")",
                    "use 1 to disable nucleus sampling, 0.9 is a common choice");
}

sampler::sampler(const sampling_options& o) : o_(o), rng_(o.seed) { validate_sampling(o); }

double sampler::uniform() { return double(rng_() >> 11) * (1.0 / 9007199254740992.0); }

int sampler::sample(const std::vector<float>& logits) {
    const int V = int(logits.size());
    if (o_.temperature == 0.0f) {
        int best = 0;
        for (int i = 1; i < V; ++i)
            if (logits[size_t(i)] > logits[size_t(best)]) best = i;
        return best;
    }
    // softmax(logits / temperature) in double, sorted descending (ties by id for determinism)
    candidates_.resize(size_t(V));
    for (int i = 0; i < V; ++i) candidates_[size_t(i)] = {logits[size_t(i)], i};
    std::sort(candidates_.begin(), candidates_.end(), [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    size_t keep = candidates_.size();
    if (o_.top_k > 0) keep = std::min(keep, size_t(o_.top_k));
    const double maxv = candidates_[0].first;
    std::vector<double> prob(keep);
    double sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += prob[i] = std::exp((double(candidates_[i].first) - maxv) / o_.temperature);
    // nucleus (Holtzman et al. 2019, https://arxiv.org/abs/1904.09751): smallest prefix with mass >= top_p
    if (o_.top_p < 1.0f) {
        double cum = 0;
        size_t cut = keep;
        for (size_t i = 0; i < keep; ++i) {
            cum += prob[i] / sum;
            if (cum >= o_.top_p) {
                cut = i + 1;
                break;
            }
        }
        keep = cut;
        sum = 0;
        for (size_t i = 0; i < keep; ++i) sum += prob[i];
    }
    double r = uniform() * sum, cum = 0;
    for (size_t i = 0; i < keep; ++i) {
        cum += prob[i];
        if (r < cum) return candidates_[i].second;
    }
    return candidates_[keep - 1].second; // rounding at the very end of the range
}

namespace {

class cpu_decoder final : public decoder {
public:
    cpu_decoder(const llama_model& model, std::unique_ptr<llama_model> owned)
        : owned_(std::move(owned)), model_(owned_ ? owned_.get() : &model) {
        for (int l = 0; l < model_->config.num_layers; ++l)
            for (lora_target t : all_lora_targets())
                if (model_->projection(l, t).empty())
                    throw error(error_code::invalid_argument,
                                "layer " + std::to_string(l) + " " + lora_target_name(t) +
                                    ": the model holds no f32 projection for the CPU decoder (it was loaded for the "
                                    "GPU, NF4 only)",
                                "generate on the GPU, or load the model with its f32 projections for the CPU");
    }
    void reset(int max_positions) override {
        const int want = std::max(1, std::min(max_positions, model_->config.max_position_embeddings));
        if (!dec_ || dec_->capacity() != want) {
            dec_.reset();
            dec_ = std::make_unique<llama_decoder>(*model_, want);
        }
        dec_->reset();
    }
    const std::vector<float>& step(int token) override {
        if (!dec_) reset(1);
        return dec_->step(token);
    }
    int position() const override { return dec_ ? dec_->position() : 0; }
    int capacity() const override { return dec_ ? dec_->capacity() : 0; }
    const model_config& config() const override { return model_->config; }
    std::string device_label() const override { return "cpu"; }

private:
    std::unique_ptr<llama_model> owned_; // a copy with the adapter merged, when there is one
    const llama_model* model_;
    std::unique_ptr<llama_decoder> dec_;
};

} // namespace

std::unique_ptr<decoder> make_cpu_decoder(const llama_model& model, const lora_weights<float>* adapter) {
    if (!adapter) return std::make_unique<cpu_decoder>(model, nullptr);
    auto merged = std::make_unique<llama_model>(model);
    if (int(adapter->layers.size()) != model.config.num_layers)
        throw error(error_code::shape_mismatch,
                    "the adapter has " + std::to_string(adapter->layers.size()) + " layers, the model " +
                        std::to_string(model.config.num_layers),
                    "use the adapter trained on this base model");
    for (int l = 0; l < model.config.num_layers; ++l)
        for (lora_target t : all_lora_targets())
            if (adapter->at(l, t).enabled() && !merged->projection(l, t).empty())
                lora_merge(merged->projection(l, t).data(), adapter->at(l, t), adapter->config.scale());
    return std::make_unique<cpu_decoder>(model, std::move(merged));
}

std::unique_ptr<decoder> make_decoder(const llama_model& model, const compute_device& device,
                                      const lora_weights<float>* adapter) {
    if (device.backend == "cuda") return make_cuda_decoder(model, adapter, device.index);
    return make_cpu_decoder(model, adapter);
}

generate_result generate(const llama_model& model, const tokenizer& tok, const generate_options& opts,
                         const std::function<bool(const std::string&)>& on_text) {
    auto dec = make_cpu_decoder(model);
    return generate(*dec, tok, opts, on_text);
}

generate_result generate(decoder& dec, const tokenizer& tok, const generate_options& opts,
                         const std::function<bool(const std::string&)>& on_text) {
    check_decode_options(opts.max_new_tokens, opts.sampling);
    const model_config& cfg = dec.config();
    generate_result r;
    r.prompt_ids = tok.encode(opts.prompt, /*add_bos=*/true);
    const int ctx = cfg.max_position_embeddings;
    if (int(r.prompt_ids.size()) > ctx)
        throw error(error_code::invalid_argument,
                    "the prompt is " + std::to_string(r.prompt_ids.size()) + " tokens but the model's context is " +
                        std::to_string(ctx) + " positions (max_position_embeddings)",
                    "shorten the prompt");

    const int bos = tok.bos_id();
    std::vector<int> stops = cfg.eos_token_ids;
    stops.push_back(tok.eos_id());
    decoded_text d = decode_loop(
        dec, tok, r.prompt_ids, opts.max_new_tokens, ctx, opts.sampling, /*emit_prompt=*/true,
        [&](int id) { return id == bos || std::find(stops.begin(), stops.end(), id) != stops.end(); }, on_text);
    r.new_ids = std::move(d.new_ids);
    r.text = std::move(d.text);
    r.reason = d.reason;
    return r;
}

void check_decode_options(int max_new_tokens, const sampling_options& sampling) {
    if (max_new_tokens < 0)
        throw error(error_code::invalid_argument,
                    "max-new-tokens must be >= 0 (got " + std::to_string(max_new_tokens) + ")");
    validate_sampling(sampling);
}

decoded_text decode_loop(decoder& dec, const tokenizer& tok, const std::vector<int>& prompt_ids, int max_new_tokens,
                         int ctx, const sampling_options& sampling, bool emit_prompt,
                         const std::function<bool(int id)>& is_stop,
                         const std::function<bool(const std::string&)>& on_text) {
    decoded_text r;
    // The KV cache holds what this generation can use: the prompt and max_new_tokens more, capped by the model's
    // context, never max_position_embeddings whatever was asked (a config may claim millions of positions).
    const int64_t needed = int64_t(prompt_ids.size()) + int64_t(max_new_tokens);
    dec.reset(int(std::max<int64_t>(1, std::min<int64_t>(ctx, needed))));
    sampler smp(sampling);
    detokenizer detok(tok);
    bool keep_going = true;
    auto emit = [&](const std::string& s) {
        if (s.empty()) return;
        r.text += s;
        if (on_text && keep_going) keep_going = on_text(s);
    };

    const std::vector<float>* logits = nullptr;
    for (int id : prompt_ids) {
        logits = &dec.step(id);
        if (emit_prompt) emit(detok.push(id));
    }
    r.reason = stop_reason::max_tokens;
    for (int n = 0; n < max_new_tokens; ++n) {
        if (!keep_going) {
            r.reason = stop_reason::cancelled;
            break;
        }
        const int next = smp.sample(*logits);
        if (is_stop(next)) {
            r.reason = stop_reason::eos;
            break;
        }
        r.new_ids.push_back(next);
        emit(detok.push(next));
        if (n + 1 == max_new_tokens) break;
        if (dec.position() >= dec.capacity()) {
            r.reason = stop_reason::context_full;
            break;
        }
        logits = &dec.step(next);
    }
    emit(detok.flush());
    return r;
}

} // namespace qls
