// Merged Hugging Face export, streamed tensor by tensor: the base checkpoint's weights with scale·B·A folded into the
// adapted projections, sharded and indexed as transformers' save_pretrained lays them out, plus the base's config and
// tokenizer files, published atomically.
#include "qls/peft.h"

#include "io/peft_internal.h"
#include "qls/error.h"
#include "qls/file_io.h"
#include "qls/model_source.h"
#include "qls/quant.h"
#include "qls/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sys/mman.h>
#include <tuple>
#include <unistd.h>

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

// Drops the pages of a range of a read-only file mapping from this process's resident set once a tensor is done
// (they are read again from the page cache if touched later), so streaming a checkpoint does not accumulate it in
// memory. Best effort: a failure only costs memory.
void release_mapped(const void* p, size_t n) {
    if (n == 0) return;
    static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
    const uintptr_t begin = uintptr_t(p) & ~(page - 1);
    const uintptr_t end = uintptr_t(p) + n;
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// One tensor of the output: where it comes from and how it is written.
struct planned_tensor {
    std::string name;
    dtype type = dtype::f32;
    shape_t shape;
    bool projection = false; // a projection weight: read as f32 (or NF4), adapter added, converted to `type`
    bool bnb = false;        // stored as bitsandbytes NF4 (then shape is (out, in) from the config)
    int layer = 0;
    lora_target target = lora_target::q;
    uint64_t nbytes() const { return uint64_t(shape_numel(shape)) * dtype_size(type); }
};

// Removes a folder tree unless released: the staging folder of an export that did not finish.
struct dir_guard {
    std::string dir;
    ~dir_guard() {
        if (dir.empty()) return;
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

const std::regex& weight_file_pattern() {
    static const std::regex r(
        R"(^(model\.safetensors|model\.safetensors\.index\.json|model-\d{5}-of-\d{5}\.safetensors)$)");
    return r;
}

} // namespace

merged_export_progress export_merged(const std::string& out_dir_in, const hf_checkpoint& base,
                                     const lora_weights<float>& w, const merged_export_options& opt) {
    const std::string out_dir = strip_slashes(out_dir_in);
    const model_config& m = base.config();
    const std::string what = "merged export";
    if (opt.max_shard_bytes == 0)
        throw error(error_code::invalid_argument, "merged export: the shard size limit must be positive",
                    "give a limit of at least one byte (the default is 5 GB)");
    if (out_dir.empty())
        throw error(error_code::invalid_argument, "merged export: no output folder given", "choose a folder to write");
    (void)check_exportable(w, m, what);
    {
        std::error_code ec1, ec2;
        if (fs::exists(out_dir, ec1) && fs::equivalent(out_dir, base.dir(), ec2))
            throw error(error_code::invalid_argument,
                        "merged export: the output folder " + out_dir + " is the base model's own folder",
                        "choose a new folder: the base weights are read while the merged ones are written");
        if (fs::exists(fs::symlink_status(out_dir, ec1)) && !fs::is_directory(out_dir, ec2))
            throw error(error_code::io, "cannot export to " + out_dir + ": it exists and is not a directory",
                        "choose a new or existing folder as the output");
    }
    const float scale = w.config.scale();
    const architecture& arch = architecture_for(m);
    const std::unique_ptr<model_source> src = open_hf_source(base);

    // ---- plan: every output tensor, its dtype and its shard, before anything is written
    std::map<std::string, std::pair<int, lora_target>> projections; // HF weight name → (layer, target)
    for (int l = 0; l < m.num_layers; ++l)
        for (lora_target t : arch.projections) {
            const std::string n = arch.hf_weight(l, t);
            if (!base.has(n))
                throw error(error_code::format, base.dir() + ": the checkpoint has no tensor '" + n + "'",
                            "the checkpoint is incomplete or config.json belongs to another model; download the "
                            "model again");
            projections.emplace(n, std::make_pair(l, t));
        }
    if (!m.tie_word_embeddings && !base.has(arch.hf_name(base_tensor::lm_head)))
        throw error(error_code::format,
                    base.dir() + ": the model's config has tie_word_embeddings false but no tensor '" +
                        arch.hf_name(base_tensor::lm_head) + "' exists",
                    "set \"tie_word_embeddings\": true in config.json if the model shares its embedding and output "
                    "weights, or re-export the checkpoint with its lm_head");
    // A pre-quantized (bitsandbytes *-bnb-4bit) checkpoint stores every projection in NF4, with quantization-state
    // tensors named "<weight>.absmax", "<weight>.quant_map", ... beside it.
    const std::string first = arch.hf_weight(0, arch.projections.front());
    const bool prequantized = bnb_nf4_present(base, first);
    const dtype embed_type = base.entry(arch.hf_name(base_tensor::embed)).type;

    std::vector<std::string> names = base.tensor_names();
    std::stable_sort(names.begin(), names.end(), [&arch](const std::string& a, const std::string& b) {
        const state_dict_rank ra = rank_of(arch, a), rb = rank_of(arch, b);
        if (ra < rb) return true;
        if (rb < ra) return false;
        return a < b;
    });
    std::vector<planned_tensor> plan;
    for (const std::string& n : names) {
        const safetensors_entry& e = base.entry(n);
        planned_tensor p{n, e.type, e.shape};
        if (auto it = projections.find(n); it != projections.end()) {
            p.projection = true;
            std::tie(p.layer, p.target) = it->second;
            p.bnb = bnb_nf4_present(base, n);
            if (p.bnb != prequantized)
                throw error(error_code::format,
                            base.file_of(n).path() + ": tensor '" + n + "' is " + (p.bnb ? "" : "not ") +
                                "4-bit quantized (bitsandbytes NF4) while '" + first + "' is" +
                                (prequantized ? "" : " not"),
                            "the checkpoint is incomplete or mixed; download or export it again");
            if (p.bnb) {
                if (!dtype_is_float(embed_type) || embed_type == dtype::f64)
                    throw error(error_code::unsupported,
                                base.file_of(n).path() + ": the embedding is stored as " + dtype_name(embed_type) +
                                    "; the merged projections of a 4-bit checkpoint are written in the embedding's "
                                    "dtype, which must be F32, F16 or BF16",
                                "use a checkpoint whose unquantized weights are F32, F16 or BF16");
                const auto [out, in] = arch.projection_shape(m, p.target);
                p.type = embed_type;
                p.shape = {out, in};
            } else if (const auto [out, in] = arch.projection_shape(m, p.target); e.shape != shape_t{out, in}) {
                throw error(error_code::shape_mismatch,
                            base.file_of(n).path() + ": tensor '" + n + "' has shape " + shape_str(e.shape) + ", but " +
                                path_join(base.dir(), "config.json") + " implies " + shape_str({out, in}),
                            "config.json disagrees with the weights: make sure config.json belongs to this "
                            "checkpoint");
            } else if (!dtype_is_float(e.type) || e.type == dtype::f64) {
                throw error(error_code::unsupported,
                            base.file_of(n).path() + ": tensor '" + n + "' is stored as " + dtype_name(e.type) +
                                "; merged projections are written as F32, F16 or BF16",
                            "use a checkpoint whose projections are F32, F16 or BF16 (or bitsandbytes NF4)");
            }
        } else if (prequantized) {
            // the quantization state of a projection ("<weight>.absmax", "<weight>.quant_state.bitsandbytes__nf4",
            // ...) is not part of the merged model
            const size_t k = n.find(".weight.");
            if (k != std::string::npos && projections.count(n.substr(0, k + 7))) continue;
        }
        plan.push_back(std::move(p));
    }

    // Shards as huggingface_hub's split_state_dict_into_shards_factory makes them (used by save_pretrained): walk the
    // state dict in order; a tensor larger than the limit gets a shard of its own; otherwise start a new shard when
    // adding it would exceed the limit.
    std::vector<std::vector<size_t>> shards; // indices into plan
    std::vector<size_t> current;
    uint64_t current_size = 0, total_size = 0, total_parameters = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
        const uint64_t bytes = plan[i].nbytes();
        total_size += bytes;
        total_parameters += uint64_t(shape_numel(plan[i].shape));
        if (bytes > opt.max_shard_bytes) {
            shards.push_back({i});
            continue;
        }
        if (current_size + bytes > opt.max_shard_bytes) {
            shards.push_back(current);
            current.clear();
            current_size = 0;
        }
        current.push_back(i);
        current_size += bytes;
    }
    if (!current.empty()) shards.push_back(current);

    merged_export_progress progress;
    progress.tensors_total = int64_t(plan.size());
    progress.bytes_total = total_size;
    progress.nf4_base = prequantized || opt.quantize_nf4;
    auto check_cancel = [&] {
        if (opt.cancel && opt.cancel->load())
            throw error(error_code::cancelled, "merged export to " + out_dir + " cancelled; nothing was written",
                        "export again to write the merged model");
    };
    check_cancel();

    // ---- the staging folder beside out_dir
    const fs::path target = fs::absolute(fs::path(out_dir)).lexically_normal();
    const fs::path parent = target.parent_path();
    {
        std::error_code ec;
        fs::create_directories(parent, ec);
        if (ec)
            throw error(error_code::io, "cannot create the folder " + parent.string() + ": " + ec.message(),
                        "check that the parent folder exists and is writable");
    }
    const std::string staged = (parent / (".tmp-" + target.filename().string())).string();
    {
        std::error_code ec;
        fs::remove_all(staged, ec);
        fs::create_directory(staged, ec);
        if (ec)
            throw error(error_code::io, "cannot create the folder " + staged + ": " + ec.message(),
                        "check that " + parent.string() + " is writable");
    }
    dir_guard guard{staged};
    if (opt.on_progress) opt.on_progress(progress);

    // ---- the tensors, one at a time
    std::vector<float> f32;
    std::vector<char> bytes;
    auto produce = [&](const planned_tensor& p) -> std::string_view {
        const safetensors_file& file = base.file_of(p.name);
        const safetensors_entry& e = base.entry(p.name);
        if (!p.projection) {
            const std::byte* data = file.bytes(e);
            return {reinterpret_cast<const char*>(data), size_t(e.end - e.begin)};
        }
        const auto [out, in] = arch.projection_shape(m, p.target);
        f32.resize(size_t(out) * size_t(in));
        if (p.bnb) {
            nf4_dequantize(*src->read_nf4(p.name, out, in), f32.data());
            release_mapped(file.bytes(e), size_t(e.end - e.begin));
        } else {
            src->read_f32(p.name, {out, in}, f32.data());
            release_mapped(file.bytes(e), size_t(e.end - e.begin));
            if (opt.quantize_nf4) nf4_dequantize(nf4_quantize(f32.data(), out, in, opt.double_quant), f32.data());
        }
        const lora_adapter<float>& ad = w.at(p.layer, p.target);
        if (ad.enabled()) lora_merge(f32.data(), ad, scale);
        bytes.resize(size_t(p.nbytes()));
        convert_from_f32(bytes.data(), f32.data(), p.type, f32.size());
        return {bytes.data(), bytes.size()};
    };

    std::set<std::string> written;
    const std::map<std::string, std::string> metadata{{"format", "pt"}};
    json weight_map = json::object();
    char fname[64];
    for (size_t s = 0; s < shards.size(); ++s) {
        if (shards.size() == 1) std::snprintf(fname, sizeof fname, "model.safetensors");
        else std::snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
        std::vector<safetensors_tensor_spec> specs;
        std::map<std::string, const planned_tensor*> by_name;
        for (size_t i : shards[s]) {
            specs.push_back({plan[i].name, plan[i].type, plan[i].shape});
            by_name[plan[i].name] = &plan[i];
            weight_map[plan[i].name] = fname;
        }
        safetensors_stream_writer writer(path_join(staged, fname), std::move(specs), metadata);
        for (const safetensors_tensor_spec& spec : writer.order()) {
            check_cancel();
            const planned_tensor& p = *by_name.at(spec.name);
            const std::string_view data = produce(p);
            if (p.projection) {
                writer.write(spec.name, data);
            } else {
                // a copied tensor goes a chunk at a time, each chunk's pages released once written, so that even an
                // embedding of several GB costs no more than one chunk of resident memory
                constexpr size_t chunk = size_t(16) << 20;
                size_t at = 0;
                do {
                    const std::string_view part = data.substr(at, chunk);
                    writer.write(spec.name, part);
                    release_mapped(part.data(), part.size());
                    at += part.size();
                } while (at < data.size());
            }
            ++progress.tensors_done;
            progress.bytes_done += data.size();
            if (opt.on_progress) opt.on_progress(progress);
        }
        writer.finish();
        written.insert(fname);
        // the largest projection's buffers go; the next shard allocates what it needs
        std::vector<float>().swap(f32);
        std::vector<char>().swap(bytes);
    }
    if (shards.size() > 1) {
        // transformers 5 modeling_utils.py save_pretrained: {"metadata": {"total_parameters", "total_size"}, "weight_map"},
        // json.dumps(index, indent=2, sort_keys=True) + "\n".
        json index = {{"metadata", {{"total_parameters", total_parameters}, {"total_size", total_size}}},
                      {"weight_map", weight_map}};
        write_file_atomic(path_join(staged, "model.safetensors.index.json"), index.dump(2, ' ', true) + "\n");
        written.insert("model.safetensors.index.json");
    }

    for (const char* aux :
         {"config.json", "generation_config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json", "added_tokens.json", "chat_template.jinja"}) {
        const std::string from = path_join(base.dir(), aux);
        if (!path_is_file(from)) continue;
        std::string text = read_file_text(from);
        if (prequantized && std::string(aux) == "config.json") {
            // the merged weights are plain floats: a loader must not look for bitsandbytes tensors
            json c = json::parse(text, nullptr, false);
            if (c.is_object() && c.contains("quantization_config")) {
                c.erase("quantization_config");
                text = c.dump(2) + "\n";
            }
        }
        write_file_atomic(path_join(staged, aux), text);
        written.insert(aux);
    }
    check_cancel();

    // ---- publish. An existing out_dir (overwrite): the new files replace its files of the same names, the weight
    // files of an earlier export that the new layout does not use go (as transformers' save_pretrained cleans its
    // folder), and everything else there moves into the new folder before it takes out_dir's place.
    std::vector<std::string> carried;
    auto carry_back = [&] {
        for (const std::string& n : carried) {
            std::error_code ec;
            fs::rename(fs::path(staged) / n, target / n, ec);
        }
    };
    std::error_code ec;
    if (fs::is_directory(target, ec)) {
        for (fs::directory_iterator it(target, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string n = it->path().filename().string();
            if (written.count(n) || std::regex_match(n, weight_file_pattern())) continue;
            std::error_code mv;
            fs::rename(it->path(), fs::path(staged) / n, mv);
            if (mv) {
                carry_back();
                throw error(error_code::io,
                            "merged export: cannot keep " + it->path().string() + " in the new folder: " + mv.message(),
                            "check that " + out_dir + " is writable, or export to a new folder");
            }
            carried.push_back(n);
        }
    }
    try {
        publish_dir_atomic(staged, target.string());
    } catch (...) {
        carry_back();
        throw;
    }
    guard.dir.clear();
    return progress;
}

} // namespace qls
