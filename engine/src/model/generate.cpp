// Sampling and the generation loop over llama_decoder.
#include "qls/generate.h"

#include "qls/error.h"

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

generate_result generate(const llama_model& model, const tokenizer& tok, const generate_options& opts,
                         const std::function<bool(const std::string&)>& on_text) {
    if (opts.max_new_tokens < 0)
        throw error(error_code::invalid_argument,
                    "max-new-tokens must be >= 0 (got " + std::to_string(opts.max_new_tokens) + ")");
    validate_sampling(opts.sampling);
    generate_result r;
    r.prompt_ids = tok.encode(opts.prompt, /*add_bos=*/true);
    const int ctx = model.config.max_position_embeddings;
    if (int(r.prompt_ids.size()) > ctx)
        throw error(error_code::invalid_argument,
                    "the prompt is " + std::to_string(r.prompt_ids.size()) + " tokens but the model's context is " +
                        std::to_string(ctx) + " positions (max_position_embeddings)",
                    "shorten the prompt");

    // The KV cache holds what this generation can use: the prompt and max_new_tokens more, capped by the model's
    // context, never max_position_embeddings whatever was asked (a config may claim millions of positions).
    const int64_t needed = int64_t(r.prompt_ids.size()) + int64_t(opts.max_new_tokens);
    llama_decoder dec(model, int(std::max<int64_t>(1, std::min<int64_t>(ctx, needed))));
    sampler smp(opts.sampling);
    detokenizer detok(tok);
    bool keep_going = true;
    auto emit = [&](const std::string& s) {
        if (s.empty()) return;
        r.text += s;
        if (on_text && keep_going) keep_going = on_text(s);
    };

    const std::vector<float>* logits = nullptr;
    for (int id : r.prompt_ids) {
        logits = &dec.step(id);
        emit(detok.push(id));
    }
    const int bos = tok.bos_id();
    std::vector<int> stops = model.config.eos_token_ids;
    stops.push_back(tok.eos_id());
    r.reason = stop_reason::max_tokens;
    for (int n = 0; n < opts.max_new_tokens; ++n) {
        if (!keep_going) {
            r.reason = stop_reason::cancelled;
            break;
        }
        int next = smp.sample(*logits);
        if (next == bos || std::find(stops.begin(), stops.end(), next) != stops.end()) {
            r.reason = stop_reason::eos;
            break;
        }
        r.new_ids.push_back(next);
        emit(detok.push(next));
        if (n + 1 == opts.max_new_tokens) break;
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
