#!/usr/bin/env python3
# Writes a random-weight Llama checkpoint of a named shape in Hugging Face layout (bf16 safetensors shards, or bitsandbytes NF4), streaming.
"""
Usage:  write-random-checkpoint.py SHAPE OUTDIR [--bnb-4bit] [--layers N] [--seed N] [--shard-gb 5]
                                  [--synthetic-tokenizer] [--tokenizer FILE]

SHAPE is one of `qlora plan --shape` knows (engine/src/memory/memory_plan.cpp, shape_config):
  7b  Llama-2-7B   hidden 4096, MLP 11008, 32 layers, 32/32 heads
  13b Llama-2-13B  hidden 5120, MLP 13824, 40 layers, 40/40 heads
  33b LLaMA-1 33B  hidden 6656, MLP 17920, 60 layers, 52/52 heads
  65b LLaMA-1 65B  hidden 8192, MLP 22016, 80 layers, 64/64 heads
  70b Llama-2-70B  hidden 8192, MLP 28672, 80 layers, 64/8 heads
(all vocab 32000, head size 128, separate LM head), or
  tiny            hidden 64, MLP 176, 2 layers, 4/2 heads, vocab 512 (the stories260K tokenizer's size), for tests.

OUTDIR receives what `qlora train --config` / `qlora generate --model` read:
  config.json                       LlamaForCausalLM, the shape's dimensions, torch_dtype bfloat16
  model-0000k-of-0000n.safetensors  shards of at most --shard-gb GB (5 by default, as transformers' save_pretrained)
  model.safetensors.index.json      {"metadata": {"total_size": ...}, "weight_map": {tensor: shard}}
  tokenizer.model                   SentencePiece. tiny: a copy of the stories260K tokenizer (vocab 512). The real
                                    shapes need vocab 32000 and no such model ships with the project, so a synthetic
                                    SentencePiece unigram model of exactly 32000 pieces is generated (<unk> <s> </s>,
                                    256 byte-fallback pieces <0x00>..<0xFF>, then letters, "▁"-prefixed letters and
                                    letter pairs/triples): it tokenizes any text, so `qlora train` runs end to end on
                                    the random weights. It is not Llama's tokenizer; replace it with the real
                                    tokenizer.model to train on real text meaningfully. --synthetic-tokenizer makes
                                    the tiny shape use a generated one too (the test of the generator).

Weights: every projection and the embeddings/LM head are bf16 with a random sign, a random 7-bit mantissa and an
exponent drawn from 2^-8..2^-5 (|w| in [0.0039, 0.0625), finite by construction), made from numpy's default_rng
random bytes in chunks of 64 MiB: the model is never in memory, only one chunk is. RMSNorm weights are 1.0.

--bnb-4bit writes the decoder projections as a pre-quantized bitsandbytes checkpoint stores them (transformers'
Linear4bit state_dict, quant_state.as_dict(packed=True); NF4 with double quantization, blocks of 64, nested blocks of
256), exactly the tensors engine/src/quant/nf4.cpp read_bnb_nf4 reads:
  <w>                                   U8  [(n+1)//2, 1]  packed 4-bit codes (random)
  <w>.absmax                            U8  [nblocks]      8-bit codes of absmax - offset (random)
  <w>.quant_map                         F32 [16]           the NF4 code values (bnb get_4bit_type("nf4"))
  <w>.nested_absmax                     F32 [ceil(nblocks/256)]  0.02 each: absmax = map[code]*0.02 + 0.03 > 0
  <w>.nested_quant_map                  F32 [256]          bnb create_dynamic_map(signed=True)
  <w>.quant_state.bitsandbytes__nf4     U8  [len]          json.dumps({"quant_type": "nf4", "blocksize": 64,
                                                           "dtype": "bfloat16", "shape": [out, in], "nested_blocksize":
                                                           256, "nested_dtype": "float32", "nested_offset": 0.03})
and config.json gains the quantization_config transformers writes for such a model. A 65B/70B model is then about
35-39 GB instead of 130-140 GB, so it fits the GPU machine's 64 GiB disk.

Format of the files: https://github.com/huggingface/safetensors#format (8-byte little-endian header length, JSON
header with dtype/shape/data_offsets per tensor, then the bytes); needs only numpy.
"""
import argparse
import json
import os
import shutil
import struct
import sys
import time

import numpy as np

SHAPES = {  # name: (hidden, intermediate, layers, heads, kv_heads, context, rms_eps, vocab)
    "7b": (4096, 11008, 32, 32, 32, 4096, 1e-5, 32000),
    "13b": (5120, 13824, 40, 40, 40, 4096, 1e-5, 32000),
    "33b": (6656, 17920, 60, 52, 52, 2048, 1e-6, 32000),
    "65b": (8192, 22016, 80, 64, 64, 2048, 1e-5, 32000),
    "70b": (8192, 28672, 80, 64, 8, 4096, 1e-5, 32000),
    "tiny": (64, 176, 2, 4, 2, 512, 1e-5, 512),
}
CHUNK = 32 << 20  # elements per random chunk (64 MiB of bf16)
NF4_CODE = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                     -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                     0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                     0.7229568362236023, 1.0], dtype=np.float32)  # bitsandbytes functional.py get_4bit_type("nf4")
NESTED_OFFSET = 0.03
NESTED_SCALE = 0.02


def dynamic_map_signed():
    """bitsandbytes functional.py create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), float32."""
    data = []
    for i in range(7):
        b = np.linspace(0.1, 1.0, (1 << i) + 1, dtype=np.float32)
        means = (b[:-1] + b[1:]) / np.float32(2.0)
        scale = np.float32(10.0 ** (-6 + i))
        data += list(scale * means) + list(-scale * means)
    data += [np.float32(0.0), np.float32(1.0)]
    assert len(data) == 256
    return np.sort(np.array(data, dtype=np.float32))


def tensor_list(shape, bnb, L):
    """(name, dtype, shape, kind) in the order transformers saves them; kind: rand | ones | a bnb component."""
    C, H, _, NH, NKV, _, _, V = SHAPES[shape]
    HS = C // NH
    out = [("model.embed_tokens.weight", "BF16", [V, C], "rand")]
    proj = [("self_attn.q_proj", NH * HS, C), ("self_attn.k_proj", NKV * HS, C), ("self_attn.v_proj", NKV * HS, C),
            ("self_attn.o_proj", C, NH * HS), ("mlp.gate_proj", H, C), ("mlp.up_proj", H, C), ("mlp.down_proj", C, H)]
    for l in range(L):
        p = f"model.layers.{l}."
        out.append((p + "input_layernorm.weight", "BF16", [C], "ones"))
        out.append((p + "post_attention_layernorm.weight", "BF16", [C], "ones"))
        for mod, o, i in proj:
            w = p + mod + ".weight"
            if not bnb:
                out.append((w, "BF16", [o, i], "rand"))
                continue
            n = o * i
            nb = (n + 63) // 64
            qs = json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [o, i],
                             "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": NESTED_OFFSET})
            out.append((w, "U8", [(n + 1) // 2, 1], "packed"))
            out.append((w + ".absmax", "U8", [nb], "codes"))
            out.append((w + ".quant_map", "F32", [16], "quant_map"))
            out.append((w + ".nested_absmax", "F32", [(nb + 255) // 256], "nested_absmax"))
            out.append((w + ".nested_quant_map", "F32", [256], "nested_map"))
            out.append((w + ".quant_state.bitsandbytes__nf4", "U8", [len(qs.encode())], "json:" + qs))
    out.append(("model.norm.weight", "BF16", [C], "ones"))
    out.append(("lm_head.weight", "BF16", [V, C], "rand"))
    return out


ESIZE = {"BF16": 2, "F32": 4, "U8": 1}


def nbytes(t):
    n = 1
    for d in t[2]:
        n *= d
    return n * ESIZE[t[1]]


def write_data(f, t, rng):
    name, dtype, shape, kind = t
    n = nbytes(t) // ESIZE[dtype]
    if kind == "rand":  # bf16 bits: sign and mantissa random, exponent 119..122 (2^-8 .. 2^-5)
        done = 0
        while done < n:
            m = min(CHUNK, n - done)
            r = np.frombuffer(rng.bytes(2 * m), dtype=np.uint16)
            bits = (r & np.uint16(0x807F)) | ((np.uint16(119) + ((r >> np.uint16(7)) & np.uint16(3))) << np.uint16(7))
            f.write(bits.astype("<u2").tobytes())
            done += m
    elif kind == "ones":
        f.write(np.full(n, 0x3F80, dtype="<u2").tobytes())
    elif kind in ("packed", "codes"):
        done = 0
        while done < n:
            m = min(CHUNK * 2, n - done)
            f.write(rng.bytes(m))
            done += m
    elif kind == "quant_map":
        f.write(NF4_CODE.astype("<f4").tobytes())
    elif kind == "nested_absmax":
        f.write(np.full(n, NESTED_SCALE, dtype="<f4").tobytes())
    elif kind == "nested_map":
        f.write(dynamic_map_signed().astype("<f4").tobytes())
    elif kind.startswith("json:"):
        f.write(kind[5:].encode())
    else:
        raise ValueError(kind)


def write_shard(path, tensors, rng):
    header, off = {}, 0
    for t in tensors:
        header[t[0]] = {"dtype": t[1], "shape": t[2], "data_offsets": [off, off + nbytes(t)]}
        off += nbytes(t)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # pad to 8 bytes, as the reference writer
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors:
            write_data(f, t, rng)
    os.replace(path + ".tmp", path)
    return off


def sp_field(num, wire, payload):
    """One protobuf field: key varint, then payload (bytes already encoded)."""
    return varint((num << 3) | wire) + payload


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sp_bytes(num, b):
    return sp_field(num, 2, varint(len(b)) + b)


def synthetic_tokenizer(vocab):
    """A SentencePiece ModelProto (sentencepiece_model.proto): unigram, identity normalizer, byte fallback.
    Fields: ModelProto.pieces=1 {piece=1, score=2, type=3: NORMAL 1, UNKNOWN 2, CONTROL 3, BYTE 6},
    trainer_spec=2 {model_type=3 (UNIGRAM 1), vocab_size=4, byte_fallback=35, unk_id=40, bos_id=41, eos_id=42,
    pad_id=43}, normalizer_spec=3 {name=1, add_dummy_prefix=3, remove_extra_whitespaces=4, escape_whitespaces=5}."""
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [("<0x%02X>" % i, 0.0, 6) for i in range(256)]
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?;:'\"-()"
    normal = ["\u2581"] + list(letters) + ["\u2581" + c for c in letters]
    low = "abcdefghijklmnopqrstuvwxyz"
    normal += [a + b for a in low for b in low] + ["\u2581" + a + b for a in low for b in low]
    normal += [a + b + c for a in low for b in low for c in low]
    normal += ["\u2581" + a + b + c for a in low for b in low for c in low]
    need = vocab - len(pieces)
    if need > len(normal):
        raise SystemExit(f"synthetic tokenizer: cannot make {vocab} pieces")
    for k, p in enumerate(normal[:need]):
        pieces.append((p, -1.0 - k * 0.001, 1))
    out = b""
    for p, score, typ in pieces:
        body = sp_bytes(1, p.encode()) + sp_field(2, 5, struct.pack("<f", score)) + sp_field(3, 0, varint(typ))
        out += sp_bytes(1, body)
    neg1 = varint((1 << 64) - 1)  # int32 -1 as protobuf encodes it (10-byte varint)
    trainer = (sp_field(3, 0, varint(1)) + sp_field(4, 0, varint(vocab)) + sp_field(35, 0, varint(1)) +
               sp_field(40, 0, varint(0)) + sp_field(41, 0, varint(1)) + sp_field(42, 0, varint(2)) +
               sp_field(43, 0, neg1))
    normalizer = (sp_bytes(1, b"identity") + sp_field(3, 0, varint(1)) + sp_field(4, 0, varint(0)) +
                  sp_field(5, 0, varint(1)))
    return out + sp_bytes(2, trainer) + sp_bytes(3, normalizer)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("outdir")
    ap.add_argument("--bnb-4bit", action="store_true", help="decoder projections as bitsandbytes NF4 (double quant)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, help="fewer (or more) decoder layers than the shape has: e.g. 7b with "
                    "--layers 4 is a 2.1 GB model of real layer size")
    ap.add_argument("--shard-gb", type=float, default=5.0, help="largest shard, in 10^9 bytes (default 5)")
    ap.add_argument("--synthetic-tokenizer", action="store_true", help="tiny: generate the tokenizer as for 7b+")
    ap.add_argument("--tokenizer", help="tiny: the stories260K tokenizer.model to copy (default: "
                    "$QLS_TEST_MODEL_DIR/tokenizer.model)")
    a = ap.parse_args()
    if not (a.shard_gb > 0):
        raise SystemExit("--shard-gb must be positive")
    C, H, L, NH, NKV, ctx, eps, V = SHAPES[a.shape]
    if a.layers is not None:
        if not 1 <= a.layers <= 1000:
            raise SystemExit("--layers must be between 1 and 1000")
        L = a.layers
    os.makedirs(a.outdir, exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": C,
           "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
           "vocab_size": V, "max_position_embeddings": ctx, "rms_norm_eps": eps, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "bos_token_id": 1,
           "eos_token_id": 2, "torch_dtype": "bfloat16", "initializer_range": 0.02}
    if a.bnb_4bit:  # as transformers writes it for BitsAndBytesConfig(load_in_4bit=True, nf4, double quant)
        cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False,
                                      "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                      "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "uint8"}
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    if a.shape == "tiny" and not a.synthetic_tokenizer:
        src = a.tokenizer or os.path.join(os.environ.get("QLS_TEST_MODEL_DIR", ""), "tokenizer.model")
        if not os.path.isfile(src):
            raise SystemExit(f"{src}: not found; the tiny shape copies the stories260K tokenizer.model: pass "
                             "--tokenizer FILE, set QLS_TEST_MODEL_DIR, or pass --synthetic-tokenizer")
        shutil.copyfile(src, os.path.join(a.outdir, "tokenizer.model"))
    else:
        with open(os.path.join(a.outdir, "tokenizer.model"), "wb") as f:
            f.write(synthetic_tokenizer(V))

    # Shards: tensors in order, a new shard when the next would pass the limit (one tensor larger than the limit
    # gets a shard of its own).
    limit = int(a.shard_gb * 1e9)
    shards, cur, cur_bytes = [], [], 0
    for t in tensor_list(a.shape, a.bnb_4bit, L):
        if cur and cur_bytes + nbytes(t) > limit:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(t)
        cur_bytes += nbytes(t)
    shards.append(cur)
    rng = np.random.default_rng(a.seed)
    weight_map, total, t0 = {}, 0, time.time()
    for k, tensors in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_shard(os.path.join(a.outdir, name), tensors, rng)
        for t in tensors:
            weight_map[t[0]] = name
        print(f"{name}: {len(tensors)} tensors, {total / 1e9:.2f} GB written, {time.time() - t0:.1f} s", flush=True)
    with open(os.path.join(a.outdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    print(f"{a.outdir}: {a.shape}{' bnb-4bit' if a.bnb_4bit else ''}, {len(weight_map)} tensors, "
          f"{total / 1e9:.2f} GB in {len(shards)} shard(s), {time.time() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
