// Merged Hugging Face export: the base checkpoint's weights with scale·B·A folded into the adapted projections,
// sharded and indexed as transformers' save_pretrained lays them out, plus the base's config and tokenizer files.
#include "qls/peft.h"

#include "io/peft_internal.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <tuple>

namespace qls {

namespace fs = std::filesystem;
using namespace peft_detail;

namespace {

using json = nlohmann::json;

// Position of a weight in <Family>ForCausalLM.state_dict() order (embed, each layer's modules in registration order,
// final norm, lm_head), so shards fill in the order transformers' save_pretrained would fill them; unknown names last.
struct state_dict_rank {
    int group = 4;
    long long layer = 0;
    int within = 0;
    bool operator<(const state_dict_rank& o) const {
        return std::tie(group, layer, within) < std::tie(o.group, o.layer, o.within);
    }
};

state_dict_rank rank_of(const architecture& a, const std::string& name) {
    if (name == a.hf_name(base_tensor::embed)) return {0, 0, 0};
    if (name == a.hf_name(base_tensor::final_norm)) return {2, 0, 0};
    if (name == a.hf_name(base_tensor::lm_head)) return {3, 0, 0};
    // within a layer: the projections in registration order, then the two norms
    std::vector<std::string> within;
    for (lora_target t : a.projections) within.push_back(a.hf_projection[size_t(t)] + ".weight");
    within.push_back(a.hf_base[size_t(base_tensor::attn_norm)]);
    within.push_back(a.hf_base[size_t(base_tensor::mlp_norm)]);
    const std::string& pre = a.hf_layer_prefix;
    if (name.compare(0, pre.size(), pre) == 0) {
        const size_t dot = name.find('.', pre.size());
        const std::string digits = name.substr(pre.size(), dot == std::string::npos ? 0 : dot - pre.size());
        if (!digits.empty() && digits.size() <= 12 &&
            std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            int w = int(within.size());
            for (size_t i = 0; i < within.size(); ++i)
                if (name.compare(dot + 1, std::string::npos, within[i]) == 0) w = int(i);
            return {1, std::stoll(digits), w};
        }
    }
    return {4, 0, 0};
}

// The f32 projection weight a tensor name refers to in model.params, or nullptr with target untouched.
const std::vector<float>* projection_of(const llama_model& model, const std::string& name, int& layer,
                                        lora_target& target) {
    const architecture& a = architecture_for(model.config);
    for (int l = 0; l < model.config.num_layers; ++l)
        for (lora_target t : a.projections)
            if (name == a.hf_weight(l, t)) {
                layer = l;
                target = t;
                return &model.projection(l, t);
            }
    return nullptr;
}

void check_same_model(const model_config& a, const model_config& b, const std::string& base_dir) {
    const bool same = a.hidden_size == b.hidden_size && a.intermediate_size == b.intermediate_size &&
                      a.num_layers == b.num_layers && a.num_heads == b.num_heads && a.num_kv_heads == b.num_kv_heads &&
                      a.head_dim == b.head_dim && a.vocab_size == b.vocab_size;
    if (!same)
        throw error(error_code::invalid_argument,
                    "merged export: the model passed in does not have the dimensions of the checkpoint " + base_dir,
                    "pass the model that was loaded from this checkpoint");
}

} // namespace

void export_merged(const std::string& out_dir_in, const hf_checkpoint& base, const llama_model& model,
                   const lora_weights<float>& w, uint64_t max_shard_bytes) {
    const std::string out_dir = strip_slashes(out_dir_in);
    const model_config& m = model.config;
    check_same_model(base.config(), m, base.dir());
    if (max_shard_bytes == 0)
        throw error(error_code::invalid_argument, "merged export: the shard size limit must be positive");
    if (int(model.params.layers.size()) != m.num_layers)
        throw error(error_code::invalid_argument,
                    "merged export: the model holds no weights for its " + std::to_string(m.num_layers) + " layers",
                    "load the model's weights before exporting");
    model.require_f32_projections("merged export");
    (void)check_exportable(w, m, "merged export");
    {
        std::error_code ec1, ec2;
        if (fs::exists(out_dir, ec1) && fs::equivalent(out_dir, base.dir(), ec2))
            throw error(error_code::invalid_argument,
                        "merged export: the output folder " + out_dir + " is the base model's own folder",
                        "choose a new folder: the base weights are read while the merged ones are written");
    }
    make_dir(out_dir);
    const float scale = w.config.scale();

    // Plan shards the way huggingface_hub's split_state_dict_into_shards_factory does (used by save_pretrained):
    // walk the state dict in order; a tensor larger than the limit gets a shard of its own; otherwise start a new
    // shard when adding it would exceed the limit.
    std::vector<std::string> names = base.tensor_names();
    const architecture& arch = architecture_for(m);
    std::stable_sort(names.begin(), names.end(), [&arch](const std::string& a, const std::string& b) {
        const state_dict_rank ra = rank_of(arch, a), rb = rank_of(arch, b);
        if (ra < rb) return true;
        if (rb < ra) return false;
        return a < b;
    });
    std::vector<std::vector<std::string>> shards;
    std::vector<std::string> current;
    uint64_t current_size = 0, total_size = 0, total_parameters = 0;
    for (const std::string& n : names) {
        const safetensors_entry& e = base.entry(n);
        const uint64_t bytes = e.end - e.begin;
        total_size += bytes;
        total_parameters += uint64_t(shape_numel(e.shape));
        if (bytes > max_shard_bytes) {
            shards.push_back({n});
            continue;
        }
        if (current_size + bytes > max_shard_bytes) {
            shards.push_back(current);
            current.clear();
            current_size = 0;
        }
        current.push_back(n);
        current_size += bytes;
    }
    if (!current.empty()) shards.push_back(current);

    auto materialize = [&](const std::string& name) {
        const safetensors_entry& e = base.entry(name);
        int layer = 0;
        lora_target t = lora_target::q;
        const std::vector<float>* proj = projection_of(model, name, layer, t);
        tensor out(e.type, e.shape);
        if (!proj) {
            if (out.nbytes()) std::memcpy(out.raw(), base.file_of(name).bytes(e), out.nbytes());
            return out;
        }
        if (!dtype_is_float(e.type) || e.type == dtype::f64)
            throw error(error_code::unsupported, base.file_of(name).path() + ": tensor '" + name + "' is stored as " +
                                                     dtype_name(e.type) +
                                                     "; merged projections are written as F32, F16 or BF16");
        if (int64_t(proj->size()) != shape_numel(e.shape))
            throw error(error_code::invalid_argument,
                        "merged export: model weight for '" + name + "' has " + std::to_string(proj->size()) +
                            " values but the checkpoint's tensor has shape " + shape_str(e.shape),
                        "pass the model that was loaded from this checkpoint");
        std::vector<float> merged = *proj;
        const lora_adapter<float>& ad = w.at(layer, t);
        if (ad.enabled()) lora_merge(merged.data(), ad, scale);
        convert_from_f32(out.raw(), merged.data(), e.type, merged.size());
        return out;
    };

    std::set<std::string> written;
    const std::map<std::string, std::string> metadata{{"format", "pt"}};
    if (shards.size() <= 1) {
        std::vector<std::pair<std::string, tensor>> ts;
        for (const std::string& n : names) ts.emplace_back(n, materialize(n));
        safetensors_save(path_join(out_dir, "model.safetensors"), ts, metadata);
        written.insert("model.safetensors");
    } else {
        json weight_map = json::object();
        char fname[64];
        for (size_t s = 0; s < shards.size(); ++s) {
            std::snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
            std::vector<std::pair<std::string, tensor>> ts;
            for (const std::string& n : shards[s]) {
                ts.emplace_back(n, materialize(n));
                weight_map[n] = fname;
            }
            safetensors_save(path_join(out_dir, fname), ts, metadata);
            written.insert(fname);
        }
        // transformers 5 modeling_utils.py save_pretrained: {"metadata": {"total_parameters", "total_size"}, "weight_map"},
        // json.dumps(index, indent=2, sort_keys=True) + "\n".
        json index = {{"metadata", {{"total_parameters", total_parameters}, {"total_size", total_size}}},
                      {"weight_map", weight_map}};
        write_file_atomic(path_join(out_dir, "model.safetensors.index.json"), index.dump(2, ' ', true) + "\n");
        written.insert("model.safetensors.index.json");
    }

    // Remove weight files of an earlier export that the new layout does not use (transformers' save_pretrained
    // cleans its folder the same way), so that a loader does not pick up a stale model.safetensors.
    static const std::regex k_weight_file(
        R"(^(model\.safetensors|model\.safetensors\.index\.json|model-\d{5}-of-\d{5}\.safetensors)$)");
    std::error_code ec;
    for (fs::directory_iterator it(out_dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string n = it->path().filename().string();
        if (std::regex_match(n, k_weight_file) && !written.count(n)) {
            std::error_code rm;
            fs::remove(it->path(), rm);
            if (rm)
                throw error(error_code::io,
                            "merged export: cannot remove the stale " + it->path().string() + ": " + rm.message(),
                            "delete it by hand: a loader could pick it instead of the new weights");
        }
    }

    for (const char* aux : {"config.json", "generation_config.json", "tokenizer.model", "tokenizer.json",
                            "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}) {
        const std::string src = path_join(base.dir(), aux);
        if (!path_is_file(src)) continue;
        write_file_atomic(path_join(out_dir, aux), read_file_text(src));
    }
}

} // namespace qls
