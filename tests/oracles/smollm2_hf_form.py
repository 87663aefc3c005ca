#!/usr/bin/env python3
# Writes the Hugging Face form of the SmolLM2 GGUF: its weights dequantized by gguf-py (q/k rows un-permuted as
# transformers' GGUF loader does), saved as f32 safetensors beside the model's HF config and tokenizer files.
# Usage: smollm2_hf_form.py OUT_DIR [--gguf FILE] — needs the `gguf`, `numpy` and `safetensors` packages.
import argparse
import os
import shutil

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "models", "smollm2-135m-instruct"))

NAMES = {  # GGUF → Hugging Face (llama.cpp src/llama-arch.cpp LLM_TENSOR_NAMES; transformers modeling_llama.py)
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
LAYER = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def unpermute(w, n_head):
    # inverse of convert_hf_to_gguf.py LlamaModel.permute: rows (n_head, 2, hd/2) → (n_head, hd/2, 2) per head
    out, inp = w.shape
    return w.reshape(n_head, out // n_head // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--gguf", default=os.path.join(MODEL, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    a = ap.parse_args()
    r = GGUFReader(a.gguf)
    n_head = int(r.fields["llama.attention.head_count"].contents())
    n_kv = int(r.fields["llama.attention.head_count_kv"].contents())
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)])  # GGUF dims are fastest-first
        if t.name in NAMES:
            name = NAMES[t.name]
        else:
            blk, l, kind, _ = t.name.split(".")
            assert blk == "blk", t.name
            name = f"model.layers.{l}.{LAYER[kind]}.weight"
            if kind == "attn_q":
                w = unpermute(w, n_head)
            elif kind == "attn_k":
                w = unpermute(w, n_kv)
        tensors[name] = np.ascontiguousarray(w)
    os.makedirs(a.out, exist_ok=True)
    save_file(tensors, os.path.join(a.out, "model.safetensors"))
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(MODEL, "hf-tokenizer", f), os.path.join(a.out, f))
    print(f"wrote {len(tensors)} tensors to {a.out}")


if __name__ == "__main__":
    main()
