#!/usr/bin/env python3
# Writes the GGUF test fixtures with gguf-py (the `gguf` package, llama.cpp's own Python writer) and the values its
# dequantizer gives, which the engine's reader must reproduce bit for bit.
#
#   python3 tests/data/gguf/gen_gguf_fixtures.py      (gguf 0.19.0, numpy; deterministic: fixed seeds)
#
# Outputs (next to this script):
#   quants.gguf                one tensor per block type: t_<type> of GGUF dims [512, 3] (3 rows of 512), for
#                              F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q4_K Q5_K Q6_K, plus t_q5_0 (a valid type the engine
#                              does not dequantize)
#   quants.expected.safetensors  gguf.quants.dequantize of each t_<type>, F32, shape (3, 512)
#   tiny_llama.gguf            a 2-layer llama-architecture model (hidden 64, 4 heads, 2 KV heads, head size 16,
#                              FFN 256, vocabulary 300, tied embeddings) with its tensors in mixed types and a
#                              tokenizer (gpt2 BPE vocabulary, merges, token types) and chat template in the metadata
#   tiny_llama.expected.safetensors  every weight as the engine must read it: Hugging Face names and layout,
#                              gguf.quants.dequantize of the stored blocks, q/k rows un-permuted
#                              (w.reshape(n_head, hd/2, 2, in).swapaxes(1, 2), as transformers does on GGUF load)
import json
import os
import struct

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT

HERE = os.path.dirname(os.path.abspath(__file__))


def write_safetensors(path, tensors):
    """Minimal safetensors writer (F32 only): 8-byte header length, JSON header, data."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def random_f16_bits(rng, n, lo=-8.0, hi=8.0):
    return rng.uniform(lo, hi, n).astype(np.float16)


def random_blocks(rng, qtype, n_blocks):
    """Valid blocks of a K-quant type gguf-py cannot quantize: random payload, finite fp16 scales
    (struct layouts from ggml-common.h block_q4_K / block_q5_K / block_q6_K)."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype in (QT.Q4_K, QT.Q5_K):  # d, dmin at bytes 0..3
        b[:, 0:2] = random_f16_bits(rng, n_blocks, 0.001, 0.05).reshape(-1, 1).view(np.uint8)
        b[:, 2:4] = random_f16_bits(rng, n_blocks, 0.001, 0.05).reshape(-1, 1).view(np.uint8)
    elif qtype == QT.Q6_K:  # d is the last 2 bytes
        b[:, -2:] = random_f16_bits(rng, n_blocks, 0.0005, 0.01).reshape(-1, 1).view(np.uint8)
    return b


def encode(rng, data, qtype):
    """(rows, ne0) float32 → the stored array gguf-py writes: quantized bytes, or f32/f16 values."""
    if qtype == QT.F32:
        return data.astype(np.float32)
    if qtype == QT.F16:
        return data.astype(np.float16)
    if qtype in (QT.Q4_K, QT.Q5_K, QT.Q6_K):
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        rows, ne0 = data.shape
        return random_blocks(rng, qtype, rows * ne0 // block_size).reshape(rows, ne0 // block_size * type_size)
    return gguf.quants.quantize(data, qtype)


def decode(stored, qtype):
    if qtype in (QT.F32, QT.F16):
        return stored.astype(np.float32)
    return gguf.quants.dequantize(stored, qtype).astype(np.float32)


def add(writer, name, stored, qtype):
    if qtype in (QT.F32, QT.F16):
        writer.add_tensor(name, stored)
    else:
        writer.add_tensor(name, stored, raw_dtype=qtype)


def make_quants(rng):
    types = [QT.F32, QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q4_K, QT.Q5_K, QT.Q6_K, QT.Q5_0]
    w = gguf.GGUFWriter(os.path.join(HERE, "quants.gguf"), "llama")
    expected = {}
    for qt in types:
        name = "t_" + qt.name.lower()
        data = rng.normal(0, 1, (3, 512)).astype(np.float32)
        if qt == QT.F16:
            # every class of half: normal, subnormal, signed zero, the largest finite
            bits = rng.integers(0, 0x7C00, size=3 * 512, dtype=np.uint16)
            bits[rng.random(3 * 512) < 0.5] |= 0x8000
            bits[:4] = [0x0000, 0x8000, 0x0001, 0x7BFF]
            data = bits.view(np.float16).astype(np.float32).reshape(3, 512)
        if qt == QT.Q8_0:
            data[1, :32] = 0.0  # an all-zero block (d = 0)
        stored = encode(rng, data, qt)
        add(w, name, stored, qt)
        if qt != QT.Q5_0:
            expected[name] = decode(stored, qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    write_safetensors(os.path.join(HERE, "quants.expected.safetensors"), expected)


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: HF rotate_half rows → llama.cpp's interleaved rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    """The inverse (SOURCE.md; transformers modeling_gguf_pytorch_utils.py reverse_permute_weights)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def make_tokens():
    # A small byte-level BPE vocabulary: specials, the 256 GPT-2 byte symbols, then merged pieces.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_sym = [chr(c) for _, c in sorted(zip(bs, cs))]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + byte_sym
    merges = []
    for a, b in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġ", "s"),
                 ("r", "e"), ("a", "t"), ("e", "n"), ("Ġ", "c"), ("o", "r"), ("Ġ", "w"), ("i", "s"), ("Ġ", "p"),
                 ("e", "s"), ("a", "n"), ("Ġ", "b"), ("Ġ", "f"), ("i", "t"), ("a", "l"), ("Ġ", "m"), ("a", "r"),
                 ("Ġ", "d"), ("Ġ", "h"), ("Ġ", "o"), ("l", "e"), ("i", "c"), ("Ġ", "l"), ("o", "u"), ("Ġ", "in"),
                 ("e", "d"), ("Ġ", "the"), ("Ġ", "i"), ("Ġ", "n"), ("Ġ", "e"), ("Ġ", "g"), ("s", "t"), ("o", "m"),
                 ("l", "l")]:
        if a + b not in tokens:
            tokens.append(a + b)
            merges.append(a + " " + b)
    while len(tokens) < 300:
        tokens.append(f"<|reserved_{len(tokens)}|>")
    types = [3, 3, 3] + [1] * (259 - 3) + [1] * len(merges)
    types += [4] * (300 - len(types))
    return tokens, merges, types


CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")


def make_tiny_llama(rng):
    L, C, NH, NKV, HS, H, V = 2, 64, 4, 2, 16, 256, 300
    w = gguf.GGUFWriter(os.path.join(HERE, "tiny_llama.gguf"), "llama")
    w.add_name("tiny-llama-fixture")
    w.add_context_length(512)
    w.add_embedding_length(C)
    w.add_block_count(L)
    w.add_feed_forward_length(H)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_key_length(HS)
    w.add_value_length(HS)
    w.add_rope_dimension_count(HS)
    w.add_rope_freq_base(50000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    tokens, merges, types = make_tokens()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    expected = {}

    def tensor(gguf_name, hf_name, hf_shape, qtype, n_head=None, scale=0.05, offset=0.0):
        data = (rng.normal(0, scale, hf_shape) + offset).astype(np.float32)
        if len(hf_shape) == 1:
            data = data.reshape(1, -1)
        if n_head is not None:
            data = permute(data, n_head)
        stored = encode(rng, data, qtype)
        if len(hf_shape) == 1:
            stored = stored.reshape(-1)
        add(w, gguf_name, stored, qtype)
        value = decode(stored, qtype).reshape(data.shape)
        if n_head is not None:
            value = unpermute(value, n_head)
        expected[hf_name] = value.reshape(hf_shape)

    tensor("token_embd.weight", "model.embed_tokens.weight", (V, C), QT.Q8_0, scale=0.5)
    kinds = {0: dict(q=QT.Q4_1, k=QT.Q8_0, v=QT.Q4_0, o=QT.F16, gate=QT.BF16, up=QT.Q4_1, down=QT.Q4_K),
             1: dict(q=QT.Q8_0, k=QT.Q4_1, v=QT.F32, o=QT.Q4_0, gate=QT.Q4_1, up=QT.F16, down=QT.Q5_K)}
    for l in range(L):
        k = kinds[l]
        p, g = f"model.layers.{l}.", f"blk.{l}."
        tensor(g + "attn_norm.weight", p + "input_layernorm.weight", (C,), QT.F32, scale=0.1, offset=1.0)
        tensor(g + "attn_q.weight", p + "self_attn.q_proj.weight", (NH * HS, C), k["q"], n_head=NH)
        tensor(g + "attn_k.weight", p + "self_attn.k_proj.weight", (NKV * HS, C), k["k"], n_head=NKV)
        tensor(g + "attn_v.weight", p + "self_attn.v_proj.weight", (NKV * HS, C), k["v"])
        tensor(g + "attn_output.weight", p + "self_attn.o_proj.weight", (C, NH * HS), k["o"])
        tensor(g + "ffn_norm.weight", p + "post_attention_layernorm.weight", (C,), QT.F32, scale=0.1, offset=1.0)
        tensor(g + "ffn_gate.weight", p + "mlp.gate_proj.weight", (H, C), k["gate"])
        tensor(g + "ffn_up.weight", p + "mlp.up_proj.weight", (H, C), k["up"])
        tensor(g + "ffn_down.weight", p + "mlp.down_proj.weight", (C, H), k["down"])
    tensor("output_norm.weight", "model.norm.weight", (C,), QT.F32, scale=0.1, offset=1.0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    write_safetensors(os.path.join(HERE, "tiny_llama.expected.safetensors"), expected)


if __name__ == "__main__":
    rng = np.random.default_rng(20261205)
    make_quants(rng)
    make_tiny_llama(rng)
    for f in sorted(os.listdir(HERE)):
        print(f, os.path.getsize(os.path.join(HERE, f)))
