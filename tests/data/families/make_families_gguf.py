#!/usr/bin/env python3
# Writes GGUF files of the tiny Qwen2, Qwen3 and Gemma 3 fixtures (F32 tensors), with the metadata keys and tensor
# names llama.cpp's convert_hf_to_gguf.py writes for these architectures (Qwen2Model, Qwen3Model, Gemma3Model;
# names from gguf-py constants.py MODEL_TENSORS): Gemma's norm weights stored as 1 + w (Gemma3Model.modify_tensors),
# q/k rows not permuted (only LlamaModel permutes). No tokenizer: <arch>.vocab_size gives the vocabulary.
#   python3 tests/data/families/make_families_gguf.py tests/data/families      (gguf-py 0.19 and numpy)
import json
import os
import struct
import sys

import numpy as np
from gguf import GGUFWriter, RopeScalingType

HF_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
# post_attention_layernorm is the MLP's norm in Qwen, the attention output's norm in Gemma 3
LAYER_QWEN = {"post_attention_layernorm.weight": "ffn_norm.weight"}
LAYER_GEMMA = {"post_attention_layernorm.weight": "post_attention_norm.weight",
               "pre_feedforward_layernorm.weight": "ffn_norm.weight",
               "post_feedforward_layernorm.weight": "post_ffw_norm.weight"}


def read_safetensors(path):
    # the format: u64 header length, JSON header, then the data (every tensor here is F32)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", name
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[b:end], dtype=np.float32).reshape(e["shape"]).copy()
    return out


def write(family, root):
    d = os.path.join(root, family)
    cfg = json.load(open(os.path.join(d, "config.json")))
    tensors = read_safetensors(os.path.join(d, "model.safetensors"))
    arch = {"qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3"}[family]
    gemma = arch == "gemma3"
    w = GGUFWriter(os.path.join(root, family + ".gguf"), arch)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(0)  # ALL_F32
    rp = cfg["rope_parameters"]
    if gemma:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
        w.add_sliding_window(cfg["sliding_window"])
        full = rp["full_attention"]
        w.add_rope_freq_base(full["rope_theta"])
        if full.get("rope_type") == "linear":
            w.add_rope_scaling_type(RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(full["factor"])
    else:
        if "head_dim" in cfg and cfg["head_dim"]:
            w.add_key_length(cfg["head_dim"])
            w.add_value_length(cfg["head_dim"])
        w.add_rope_freq_base(rp["rope_theta"])
    layer_map = dict(LAYER, **(LAYER_GEMMA if gemma else LAYER_QWEN))
    for name, t in sorted(tensors.items()):
        if name in HF_TO_GGUF:
            g = HF_TO_GGUF[name]
        else:
            parts = name.split(".", 3)  # model, layers, N, rest
            g = f"blk.{parts[2]}.{layer_map[parts[3]]}"
        if gemma and name.endswith("norm.weight"):
            t = t + np.float32(1.0)
        w.add_tensor(g, np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{family}.gguf: {len(tensors)} tensors")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for family in ["qwen2", "qwen3", "gemma3"]:
        write(family, root)


if __name__ == "__main__":
    main()
