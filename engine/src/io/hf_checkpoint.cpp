// hf_checkpoint: opens a Hugging Face model directory (config.json + single or sharded safetensors) and its tokenizer.
//
// File names and their order of preference follow transformers' modeling_utils.py (SAFE_WEIGHTS_NAME
// "model.safetensors" before SAFE_WEIGHTS_INDEX_NAME "model.safetensors.index.json"); the index layout
// ({"metadata": {...}, "weight_map": {tensor: shard file}}) is what save_pretrained writes for sharded models.
#include "qls/hf_checkpoint.h"

#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/json_input.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <set>

namespace qls {

namespace fs = std::filesystem;

namespace {

using json = nlohmann::json;

// Sorted names of the regular files in dir whose name ends with `suffix`.
std::vector<std::string> files_ending_with(const std::string& dir, const std::string& suffix) {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string n = it->path().filename().string();
        if (n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0 &&
            it->is_regular_file(ec))
            out.push_back(n);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string list_names(const std::vector<std::string>& names) {
    std::string s;
    for (size_t i = 0; i < names.size() && i < 5; ++i) s += (i ? ", " : "") + names[i];
    if (names.size() > 5) s += ", ...";
    return s;
}

} // namespace

hf_checkpoint hf_checkpoint::open(const std::string& dir_in) {
    std::string dir = dir_in;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw error(
            error_code::io,
            "model directory " + dir + (fs::exists(dir, ec) ? " is not a directory" : " does not exist"),
            "choose a Hugging Face model directory (config.json, model.safetensors, tokenizer.json or tokenizer.model)");

    hf_checkpoint ck;
    ck.dir_ = dir;
    const std::string config_path = path_join(dir, "config.json");
    if (!path_is_file(config_path))
        throw error(error_code::io, config_path + " not found: " + dir + " must be a Hugging Face model directory",
                    "a Hugging Face model directory holds config.json, model.safetensors (or a sharded "
                    "model.safetensors.index.json) and tokenizer.model; download the complete model repository");
    ck.config_ = load_model_config(config_path);

    const std::string single = path_join(dir, "model.safetensors");
    const std::string index_path = path_join(dir, "model.safetensors.index.json");
    if (path_is_file(single)) {
        ck.files_.push_back(safetensors_file::open(single));
        for (const safetensors_entry& e : ck.files_[0].entries()) ck.where_[e.name] = 0;
    } else if (path_is_file(index_path)) {
        const json index = parse_json_input(
            read_file_text(index_path, "download model.safetensors.index.json again from the model repository"),
            index_path, "the index is damaged or incomplete; download model.safetensors.index.json again");
        const char* index_hint = "model.safetensors.index.json must map every tensor name to its shard file in "
                                 "\"weight_map\"; download it again from the model repository";
        if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
            throw error(error_code::format, index_path + ": field 'weight_map' is missing or not an object",
                        index_hint);
        const json& wm = index["weight_map"];
        if (wm.empty()) throw error(error_code::format, index_path + ": field 'weight_map' is empty", index_hint);

        std::map<std::string, std::string> tensor_to_shard;
        std::set<std::string> shards;
        for (auto it = wm.begin(); it != wm.end(); ++it) {
            if (!it->is_string() || it->get<std::string>().empty())
                throw error(error_code::format,
                            index_path + ": weight_map['" + it.key() + "'] must be a shard file name, found " +
                                json_shown(*it),
                            index_hint);
            std::string shard = it->get<std::string>();
            fs::path sp(shard);
            bool escapes = sp.is_absolute();
            for (const auto& part : sp) escapes = escapes || part == "..";
            if (escapes)
                throw error(error_code::format,
                            index_path + ": weight_map['" + it.key() + "'] names \"" + shard +
                                "\", which lies outside the model directory",
                            index_hint);
            tensor_to_shard[it.key()] = shard;
            shards.insert(shard);
        }
        std::map<std::string, size_t> shard_index;
        for (const std::string& shard : shards) {
            std::string p = path_join(dir, shard);
            if (!path_is_file(p))
                throw error(error_code::io, index_path + " names shard " + shard + ", but " + p + " is missing",
                            "the download is incomplete; fetch every model-*-of-*.safetensors file the index lists");
            shard_index[shard] = ck.files_.size();
            ck.files_.push_back(safetensors_file::open(p));
        }
        for (const auto& [name, shard] : tensor_to_shard) {
            size_t k = shard_index.at(shard);
            if (!ck.files_[k].find(name))
                throw error(error_code::format,
                            index_path + " maps tensor '" + name + "' to " + shard + ", but " + ck.files_[k].path() +
                                " does not contain it",
                            "the index and the shards come from different downloads; download the model again");
            ck.where_[name] = k;
        }
    } else {
        std::string msg = "no weights in " + dir + ": expected " + single + " or " + index_path;
        std::string hint;
        std::vector<std::string> bins = files_ending_with(dir, ".bin");
        std::vector<std::string> others = files_ending_with(dir, ".safetensors");
        if (!bins.empty()) {
            msg += " (found " + list_names(bins) + ")";
            hint = "PyTorch pickle weights (pytorch_model.bin, *.bin) are not supported; convert them once in Python: "
                   "AutoModelForCausalLM.from_pretrained(\"" +
                   dir + "\").save_pretrained(OUT_DIR, safe_serialization=True)";
        } else if (!others.empty()) {
            msg += " (found " + list_names(others) + ")";
            hint = "Hugging Face checkpoints name their weights model.safetensors (or shard them with "
                   "model.safetensors.index.json); an adapter or a differently named file is not a base model";
        } else {
            hint = "download the model's safetensors weights into this directory";
        }
        throw error(error_code::io, msg, hint);
    }
    return ck;
}

std::vector<std::string> hf_checkpoint::tensor_names() const {
    std::vector<std::string> names;
    names.reserve(where_.size());
    for (const auto& [name, idx] : where_) names.push_back(name); // std::map: already sorted
    return names;
}

bool hf_checkpoint::has(const std::string& name) const { return where_.count(name) != 0; }

const safetensors_file& hf_checkpoint::file_of(const std::string& name) const {
    auto it = where_.find(name);
    if (it == where_.end())
        throw error(error_code::format, dir_ + ": tensor '" + name + "' is not in the checkpoint's weights",
                    "the weights do not belong to a " + config_.model_type +
                        " model with this config.json, or the download is incomplete");
    return files_[it->second];
}

const safetensors_entry& hf_checkpoint::entry(const std::string& name) const {
    const safetensors_entry* e = file_of(name).find(name);
    QLS_ASSERT(e != nullptr);
    return *e;
}

tensor hf_checkpoint::read_f32(const std::string& name, const shape_t& expected) const {
    tensor t(dtype::f32, expected);
    read_f32_into(name, expected, t.f32());
    return t;
}

void hf_checkpoint::read_f32_into(const std::string& name, const shape_t& expected, float* out) const {
    check_shape(name, expected);
    file_of(name).read_weight_f32_into(name, out);
}

bool hf_checkpoint::read_bf16_into(const std::string& name, const shape_t& expected, uint16_t* out) const {
    check_shape(name, expected);
    return file_of(name).read_weight_bf16_into(name, out);
}

void hf_checkpoint::check_shape(const std::string& name, const shape_t& expected) const {
    const safetensors_file& f = file_of(name);
    const safetensors_entry& e = entry(name);
    if (e.shape != expected)
        throw error(error_code::shape_mismatch,
                    f.path() + ": tensor '" + name + "' has shape " + shape_str(e.shape) + ", but " +
                        path_join(dir_, "config.json") + " implies " + shape_str(expected),
                    "config.json disagrees with the weights: make sure config.json belongs to this checkpoint "
                    "(hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, head_dim, vocab_size)");
}

tokenizer load_tokenizer_in(const std::string& dir, std::string* which) {
    // The rule of transformers' AutoTokenizer (use_fast=True by default): the fast tokenizer, i.e. tokenizer.json,
    // when the directory has one; the SentencePiece tokenizer.model otherwise.
    const std::string json_path = path_join(dir, "tokenizer.json");
    const std::string model_path = path_join(dir, "tokenizer.model");
    const bool has_json = path_is_file(json_path), has_model = path_is_file(model_path);
    if (!has_json && !has_model)
        throw error(error_code::io,
                    model_path + " not found, nor " + json_path +
                        ": the directory has no tokenizer (a SentencePiece tokenizer.model or a Hugging Face "
                        "tokenizer.json)",
                    "copy tokenizer.model from the original model repository (or tokenizer.json with "
                    "tokenizer_config.json)");
    tokenizer tok = has_json ? tokenizer::load_json(json_path) : tokenizer::load(model_path);
    if (which) {
        *which = std::string(has_json ? "tokenizer.json" : "tokenizer.model") + " (" + tok.kind() + ")";
        if (has_json && has_model) *which += "; tokenizer.model is also there and is not used";
    }
    return tok;
}

tokenizer load_tokenizer_for(const hf_checkpoint& ckpt, std::string* which) {
    tokenizer tok = load_tokenizer_in(ckpt.dir(), which);
    const std::string& path = tok.path();
    const std::string config_path = path_join(ckpt.dir(), "config.json");
    const int n = tok.vocab_size();
    const int v = ckpt.config().vocab_size;
    constexpr int max_padding = 128;
    const char* hint = "the tokenizer and the weights come from different models; use the tokenizer files of this "
                       "checkpoint's own repository";
    if (n > v)
        throw error(error_code::config,
                    path + " has " + std::to_string(n) + " tokens but " + config_path + " says vocab_size " +
                        std::to_string(v) + ": token ids up to " + std::to_string(n - 1) + " would index past the " +
                        std::to_string(v) + "-row embedding",
                    hint);
    if (v - n > max_padding)
        throw error(error_code::config,
                    path + " has " + std::to_string(n) + " tokens but " + config_path + " says vocab_size " +
                        std::to_string(v) + " (" + std::to_string(v - n) + " more; at most " +
                        std::to_string(max_padding) + " padding rows are accepted)",
                    hint);
    return tok;
}

} // namespace qls
