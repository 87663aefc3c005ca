#!/usr/bin/env bash
# Regenerates the seed corpora in tests/fuzz/corpus/ from files of the repository and the test model, plus the files
# of a real two-step run that fuzz_trainer_state trains (trainer_state.json, the run's config.json, metrics.jsonl).
# Usage: tests/fuzz/make_seeds.sh [BUILD_DIR]   (a QLS_BUILD_FUZZERS tree with fuzz_trainer_state built; default
# build-san). Needs python3 (standard library only) and the stories260K model where the build expects it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../.." && pwd)"
build="${1:-$src/build-san}"
model="$(sed -n 's/^QLS_TEST_MODEL_DIR:PATH=//p' "$build/CMakeCache.txt")"
c="$here/corpus"
rm -rf "$c"
mkdir -p "$c"/{safetensors,model_config,shard_index,sentencepiece,dataset,train_config,trainer_state,adapter_config}
mkdir -p "$c"/{peft_target_regex,bnb_quant_state,metrics_line,run_catalog,gguf,tokenizer_json,chat_template}
mkdir -p "$c"/tokenizer_config

# --- files as they are
cp "$src/tests/data/safetensors/reference.safetensors" "$c/safetensors/reference.safetensors"
cp "$model/config.json" "$c/model_config/stories260K.json"
cp "$src/resources/demo/model/config.json" "$c/model_config/demo.json"
for f in qwen2 qwen3 gemma3; do cp "$src/tests/data/families/$f/config.json" "$c/model_config/$f.json"; done
cp "$model/tokenizer.model" "$c/sentencepiece/stories260K.model"
cp "$src/resources/demo/model/tokenizer.model" "$c/sentencepiece/demo.model"
cp "$src/resources/examples/pip.run.json" "$src/resources/examples/demo.run.json" "$c/train_config/"
cp "$src/tests/data/peft/reference_adapter/adapter_config.json" "$c/adapter_config/reference.json"

python3 - "$src" "$model" "$c" <<'PY'
import json, struct, sys
src, model, c = sys.argv[1:]

def st(path, tensors, meta=None):
    """A safetensors file: 8-byte little-endian header length, JSON header, data (format: huggingface/safetensors)."""
    header, data = {}, b""
    if meta: header["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)

def header_of(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]

st(c + "/safetensors/empty.safetensors", [])
st(c + "/safetensors/bf16_f16.safetensors",
   [("w.bf16", "BF16", [2, 2], struct.pack("<4H", 0x3f80, 0xbf80, 0x4000, 0x0000)),
    ("w.f16", "F16", [3], struct.pack("<3H", 0x3c00, 0x7bff, 0x0001)),
    ("w.i32", "I32", [1], struct.pack("<i", -7)), ("w.bool", "BOOL", [2], b"\x01\x00")],
   {"format": "pt"})

# model_config: the Llama 3.1 layout of tst_model_config (rope_scaling llama3) and the rope_parameters layout
cfg = json.load(open(model + "/config.json"))
l31 = dict(cfg, hidden_size=2048, num_attention_heads=16, num_key_value_heads=8, max_position_embeddings=131072,
           rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
           eos_token_id=[128001, 128008, 128009], vocab_size=128256, bos_token_id=128000)
json.dump(l31, open(c + "/model_config/llama31_like.json", "w"), indent=2)
rp = {k: v for k, v in cfg.items() if k != "rope_theta"}
rp["rope_parameters"] = {"rope_theta": 10000.0, "rope_type": "linear", "factor": 2.0}
json.dump(rp, open(c + "/model_config/rope_parameters.json", "w"), indent=2)

# shard_index: model.safetensors.index.json as transformers writes it, for the harness's two shards
wm = {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
      "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
      "model.norm.weight": "model-00002-of-00002.safetensors", "lm_head.weight": "model-00002-of-00002.safetensors"}
json.dump({"metadata": {"total_size": 48}, "weight_map": wm}, open(c + "/shard_index/index.json", "w"), indent=2)
json.dump({"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}},
          open(c + "/shard_index/one.json", "w"))

# dataset: byte 0 = format + 6 * extension (.jsonl .json .txt none), byte 1 = template | flags | seq_len, then the file
def head(path, n):
    return open(path, "rb").read()[:n].rsplit(b"\n", 1)[0] + b"\n"
sets = [("alpaca_jsonl", 1, 0, 0x60, head(src + "/datasets/instructions/alpaca_sample.jsonl", 1500)),
        ("alpaca_array", 0, 1, 0x60, open(src + "/datasets/instructions/alpaca_sample.json", "rb").read()[:1200]),
        ("messages", 2, 0, 0x62, head(src + "/datasets/chat/chat_sample.jsonl", 1500)),
        ("sharegpt", 3, 0, 0x63, head(src + "/datasets/chat/sharegpt_sample.jsonl", 1500)),
        ("text_jsonl", 4, 0, 0x44, b'{"text": "Pip saw the lamp."}\n{"text": "The gull flew home."}\n'),
        ("plain", 5, 2, 0x44, head(src + "/datasets/stories/pip_the_lighthouse_mouse.val.txt", 1500)),
        ("auto_txt", 0, 2, 0xC0, head(src + "/datasets/stories/pip_the_lighthouse_mouse.val.txt", 800))]
for name, fmt, ext, flags, body in sets:
    open(c + "/dataset/" + name, "wb").write(bytes([fmt + 6 * ext, flags]) + body)

# adapter_config: the reference adapter's config with a regex target_modules, and with layers_to_transform
ref = json.load(open(src + "/tests/data/peft/reference_adapter/adapter_config.json"))
json.dump(dict(ref, target_modules=r".*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"),
          open(c + "/adapter_config/regex.json", "w"), indent=2)
json.dump(dict(ref, layers_to_transform=[0, 1, 2, 3, 4], layers_pattern="layers", exclude_modules=["lm_head"]),
          open(c + "/adapter_config/layers.json", "w"), indent=2)

# peft_target_regex: byte 0 = 0 target_modules / 1 exclude_modules, then the pattern
for i, (which, pat) in enumerate([(0, r".*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"),
                                  (0, r"model\.layers\.[0-4]\.(self_attn|mlp)\.\w+_proj"),
                                  (0, r"^(?:.*\.)?(q|v)_proj$"), (1, r".*\.layers\.0\..*")]):
    open(c + "/peft_target_regex/pattern_%d" % i, "wb").write(bytes([which]) + pat.encode())

# bnb_quant_state: bitsandbytes' own quant-state JSON of case b (byte 0 = 0 plain / 1 double-quantized)
h, data = header_of(src + "/tests/data/bnb/nf4.safetensors")
for mode, dq in (("plain", 0), ("dq", 1)):
    e = h["sd.b.%s.weight.quant_state.bitsandbytes__nf4" % mode]
    b, end = e["data_offsets"]
    open(c + "/bnb_quant_state/" + mode, "wb").write(bytes([dq]) + data[b:end])
PY

# --- GGUF files, tokenizer.json files and chat templates as they are
cp "$src"/tests/data/gguf/quants.gguf "$src"/tests/data/gguf/tiny_llama.gguf "$c/gguf/"
for t in whitespace added qwen2; do cp "$src/tests/data/tokenizers/$t/tokenizer.json" "$c/tokenizer_json/$t.json"; done
for t in added gpt2 llama3 metaspace qwen2 tekken whitespace; do
  cp "$src/tests/data/tokenizers/$t/tokenizer_config.json" "$c/tokenizer_config/$t.json"
done
cp "$src/../shared/models/smollm2-135m-instruct/hf-tokenizer/tokenizer_config.json" "$c/tokenizer_config/smollm2.json"
# the list form of "chat_template" (named templates, "default" used) and AddedToken special tokens
cat >"$c/tokenizer_config/named_templates.json" <<'JSON'
{"add_bos_token": true, "add_eos_token": false,
 "bos_token": {"content": "<|endoftext|>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
 "eos_token": "<|im_end|>", "pad_token": null, "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
 "chat_template": [
  {"name": "default", "template": "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"},
  {"name": "tool_use", "template": "{{ tools | tojson }}"}]}
JSON
for t in HuggingFaceTB-SmolLM2-135M-Instruct Qwen-Qwen2.5-7B-Instruct meta-llama-Llama-3.1-8B-Instruct google-gemma-3-it; do
  cp "$src/tests/data/chat_templates/templates/$t.jinja" "$c/chat_template/"
done

# --- the files of a real run (fuzz_trainer_state trains it when it runs its first input)
gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT
: >"$gen/input"
QLS_FUZZ_WRITE_SEEDS="$gen" "$build/bin/fuzz_trainer_state" "$gen/input" >"$gen/log" 2>&1 || { cat "$gen/log"; exit 1; }
cp "$gen/trainer_state.json" "$c/trainer_state/step-2.json"
cp "$gen/run_config.json" "$c/train_config/run_config.json"
cp "$gen/run_folder" "$c/run_catalog/run_folder"
cp "$gen"/metrics_line_* "$c/metrics_line/"
echo "seeds written to $c: $(find "$c" -type f | wc -l) files, $(du -sh "$c" | cut -f1)"
