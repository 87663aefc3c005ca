#!/usr/bin/env python3
# llama.cpp oracle for the GGUF exports: trains a LoRA with our CLI, exports the adapter GGUF and the merged GGUF, and
# checks with llama.cpp (llama-cpp-python) that base + adapter gives the merged model's logits, and with gguf-py that
# our files read and dequantize. Two models:
#   tiny:    a random LLaMA built here (Hugging Face folder, stories260K's tokenizer.model), rows of 256 so that
#            Q4_K / Q6_K blocks are used;
#   smollm2: SmolLM2-135M-Instruct's original Q4_1 GGUF as the base (the adapter applies on top of that file).
# Run by tests/oracles/llama_cpp_run.sh (CTest label llamacpp), which creates the venv this needs:
#   python llama_cpp_gguf_check.py --qlora build/bin/qlora --src . --shared ../shared --work DIR
#
# Tolerances (stated, not tuned):
#   tiny: base.gguf (F16, the base alone) + adapter (F32) against merged.gguf (F16 of W + scale·B·A). Both sides
#     round each weight to f16 once (relative u = 2^-11), the merged side also B·A's contribution, and llama.cpp
#     rounds the activations of every F16 product to f16 (u again) on both sides. A logit passes through
#     M = 7·L + 1 products; each perturbs it by at most about 2u of the magnitudes involved, so we allow
#     tol = 2u · M · max|logit| (L = 2: 0.0146·max|logit|) and require the adapter's own effect, max|merged − base|,
#     to be at least 10·tol.
#   smollm2: base.gguf is Q4_1. llama.cpp multiplies Q4_1 weights with activations rounded to 8 bits (Q8_1) but F16
#     weights with f16 activations, so base + adapter and merged F16 differ by that rounding, not by our export. Its
#     size is measured on the same weights without any adapter: floor = max|Q4_1 base − F16 copy of the base|
#     (our --merge none export of the dequantized Q4_1 weights), which holds both roundings base + adapter and the
#     merged model differ by: the weights' one rounding to f16 and the activations' Q8_1 against f16 rounding. We
#     allow tol = 1.5·floor (the margin for the adapter's slightly larger weights) and require the adapter's
#     effect to be at least 3·tol.
#   gguf-py: every tensor of every file dequantizes (gguf.quants.dequantize) and is finite; the Q4_K_M file's
#     tensors are within their format's RMS error of the F16 merged file's (uniform rounding: step/√12, step about
#     2·absmax/15 for 4-bit, 2·absmax/63 for 6-bit, absmax/127 for Q8_0 and 2·absmax/31 for Q5_0 blocks; for
#     Gaussian weights relative RMS ≈ 0.085, 0.021, 0.005, 0.042; allowed 0.12, 0.03, 0.008, 0.06).
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

U = 2.0 ** -11  # f16 unit roundoff


def log(*a):
    print(*a, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        log(r.stdout[-4000:])
        log(r.stderr[-4000:])
        raise SystemExit(f"FAILED ({r.returncode}): {' '.join(cmd)}")
    log(f"  ({time.time() - t:.1f} s)")
    return r


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def build_tiny_model(d, shared):
    """A random LLaMA in Hugging Face layout: C 256, 4 heads of 64 (2 KV heads), MLP 512, 2 layers, V 512."""
    os.makedirs(d, exist_ok=True)
    C, H, L, NH, NKV, V = 256, 512, 2, 4, 2, 512
    HS = C // NH
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": C,
           "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
           "vocab_size": V, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    rng = np.random.default_rng(1234)
    t = {"model.embed_tokens.weight": rng.normal(0, 1.0, (V, C)),
         "model.norm.weight": np.ones(C), "lm_head.weight": rng.normal(0, 0.08, (V, C))}
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = 1 + rng.normal(0, 0.1, C)
        t[p + "post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.1, C)
        t[p + "self_attn.q_proj.weight"] = rng.normal(0, 0.08, (NH * HS, C))
        t[p + "self_attn.k_proj.weight"] = rng.normal(0, 0.08, (NKV * HS, C))
        t[p + "self_attn.v_proj.weight"] = rng.normal(0, 0.06, (NKV * HS, C))
        t[p + "self_attn.o_proj.weight"] = rng.normal(0, 0.06, (C, NH * HS))
        t[p + "mlp.gate_proj.weight"] = rng.normal(0, 0.06, (H, C))
        t[p + "mlp.up_proj.weight"] = rng.normal(0, 0.06, (H, C))
        t[p + "mlp.down_proj.weight"] = rng.normal(0, 0.04, (C, H))
    write_safetensors(os.path.join(d, "model.safetensors"), t)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    stories = os.path.join(shared, "models", "stories260K")
    for n in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(stories, n), os.path.join(d, n))
    return cfg


def train(qlora, work, name, model, data, extra):
    run_json = {"name": name, "runs_dir": os.path.join(work, "runs"), "model": model,
                "data": {"train": data, "validation_fraction": 0.0},
                "lora": {"rank": 8, "alpha": 16, "dropout": 0.0, "targets": ["q", "k", "v", "o", "gate", "up", "down"]},
                "optimizer": {"kind": "adamw-32bit", "lr": 0.01, "warmup_steps": 0, "schedule": "constant"},
                "training": {"seq_len": 64, "micro_batch": 2, "grad_accum": 1, "max_steps": 8, "eval_every": 0,
                             "checkpoint_every": 0, "seed": 7},
                "device": {"backend": "cpu"}}
    for k, v in extra.items():
        run_json[k].update(v) if isinstance(v, dict) else run_json.__setitem__(k, v)
    path = os.path.join(work, name + ".run.json")
    with open(path, "w") as f:
        json.dump(run_json, f, indent=2)
    shutil.rmtree(os.path.join(work, "runs", name), ignore_errors=True)
    run([qlora, "train", "--config", path, "--quiet"])
    return os.path.join(work, "runs", name)


def export(qlora, run_dir, out, *args):
    run([qlora, "export", run_dir, "--out", out, "--force", *args])
    return out


def logits(model, tokens, lora=None):
    from llama_cpp import Llama
    llm = Llama(model_path=model, lora_path=lora, logits_all=True, n_ctx=256, n_threads=2, n_batch=256,
                verbose=False, seed=0)
    llm.eval(tokens)
    out = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    del llm
    return out


def compare(label, base_lora, merged, base, tol, factor):
    err = float(np.max(np.abs(base_lora - merged)))
    effect = float(np.max(np.abs(merged - base)))
    log(f"{label}: max|base+adapter - merged| = {err:.5f} (tolerance {tol:.5f}); "
        f"max|merged - base| = {effect:.4f} (needs >= {factor}x tolerance = {factor * tol:.4f})")
    ok = err <= tol and effect >= factor * tol
    if not ok:
        raise SystemExit(f"FAILED: {label}")


def gguf_py_check(files, ref_f16=None, quantized=None):
    import gguf
    from gguf.quants import dequantize
    for path in files:
        r = gguf.GGUFReader(path)
        arch = r.fields["general.architecture"]
        assert bytes(arch.parts[arch.data[0]]).decode() in ("llama",), path
        for t in r.tensors:
            x = dequantize(t.data, t.tensor_type)
            assert np.all(np.isfinite(x)), (path, t.name)
        log(f"gguf-py read {os.path.basename(path)}: {len(r.tensors)} tensors, {len(r.fields)} keys, all finite")
    if quantized:
        ref = {t.name: dequantize(t.data, t.tensor_type).astype(np.float64) for t in gguf.GGUFReader(ref_f16).tensors}
        limits = {"Q4_K": 0.12, "Q6_K": 0.03, "Q8_0": 0.008, "Q5_0": 0.06, "F16": 1e-3, "F32": 1e-6}
        seen = set()
        for t in gguf.GGUFReader(quantized).tensors:
            x = dequantize(t.data, t.tensor_type).astype(np.float64)
            y = ref[t.name]
            rel = math.sqrt(np.mean((x - y) ** 2)) / max(math.sqrt(np.mean(y ** 2)), 1e-30)
            name = t.tensor_type.name
            seen.add(name)
            if rel > limits[name]:
                raise SystemExit(f"FAILED: {quantized} {t.name} {name}: relative RMS error {rel:.4f} > {limits[name]}")
        log(f"gguf-py: {os.path.basename(quantized)} within each format's RMS error of the F16 file (types {sorted(seen)})")
        if not {"Q4_K", "Q6_K"} <= seen:
            raise SystemExit(f"FAILED: {quantized} should hold Q4_K and Q6_K tensors, has {sorted(seen)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qlora", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--skip-smollm2", action="store_true")
    a = ap.parse_args()
    t0 = time.time()
    os.makedirs(a.work, exist_ok=True)
    pip = os.path.join(a.src, "datasets", "stories", "pip_the_lighthouse_mouse.txt")

    # ---- tiny model
    tiny = os.path.join(a.work, "tiny-model")
    cfg = build_tiny_model(tiny, a.shared)
    run_dir = train(a.qlora, a.work, "tiny", tiny, pip, {})
    ex = os.path.join(a.work, "exports-tiny")
    base = export(a.qlora, run_dir, os.path.join(ex, "base"), "--format", "gguf", "--quant", "f16", "--merge", "none")
    adapter = export(a.qlora, run_dir, os.path.join(ex, "adapter"), "--format", "gguf-adapter", "--dtype", "f32")
    merged = export(a.qlora, run_dir, os.path.join(ex, "merged"), "--format", "gguf", "--quant", "f16", "--merge",
                    "original")
    q4km = export(a.qlora, run_dir, os.path.join(ex, "q4km"), "--format", "gguf", "--quant", "q4_k_m", "--merge",
                  "original")
    base_f, adapter_f = os.path.join(base, "model-f16.gguf"), os.path.join(adapter, "adapter-f32.gguf")
    merged_f, q4km_f = os.path.join(merged, "model-f16.gguf"), os.path.join(q4km, "model-q4_k_m.gguf")
    gguf_py_check([base_f, adapter_f, merged_f, q4km_f], merged_f, q4km_f)

    text = "Once upon a time, Pip the mouse lived in a lighthouse by the sea. One day"
    ours = json.loads(run([a.qlora, "tokenize", "--model", tiny, "--text", text, "--json"]).stdout)
    ours_ids = ours["ids"] if isinstance(ours, dict) else ours
    from llama_cpp import Llama
    llm = Llama(model_path=merged_f, vocab_only=True, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=True, special=True)
    del llm
    if list(ids) != list(ours_ids):
        raise SystemExit(f"FAILED: llama.cpp tokenizes with our GGUF vocabulary as {ids}, we as {ours_ids}")
    log(f"llama.cpp's tokenization with the exported vocabulary equals ours ({len(ids)} ids)")
    lb = logits(base_f, ids)
    la = logits(base_f, ids, adapter_f)
    lm = logits(merged_f, ids)
    lq = logits(q4km_f, ids)
    assert np.all(np.isfinite(lq))
    M = 7 * cfg["num_hidden_layers"] + 1
    tol = 2 * U * M * float(np.max(np.abs(lm)))
    compare("tiny", la, lm, lb, tol, 10)
    log(f"tiny Q4_K_M in llama.cpp: max|q4_k_m - f16| = {float(np.max(np.abs(lq - lm))):.4f}")

    # ---- SmolLM2 on its Q4_1 GGUF
    if not a.skip_smollm2:
        gg = os.path.join(a.shared, "models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
        chat = os.path.join(a.src, "datasets", "chat", "ahoy_chat.jsonl")
        run_dir = train(a.qlora, a.work, "smollm2", gg, chat,
                        {"data": {"train": chat, "template": "model"},
                         "optimizer": {"lr": 0.005},
                         "training": {"seq_len": 96, "micro_batch": 2, "max_steps": 12}})
        ex = os.path.join(a.work, "exports-smollm2")
        adapter = export(a.qlora, run_dir, os.path.join(ex, "adapter"), "--format", "gguf-adapter")
        merged = export(a.qlora, run_dir, os.path.join(ex, "merged"), "--format", "gguf", "--quant", "f16",
                        "--merge", "original")
        basef16 = export(a.qlora, run_dir, os.path.join(ex, "base"), "--format", "gguf", "--quant", "f16",
                         "--merge", "none")
        adapter_f, merged_f = os.path.join(adapter, "adapter-f32.gguf"), os.path.join(merged, "model-f16.gguf")
        basef16_f = os.path.join(basef16, "model-f16.gguf")
        gguf_py_check([adapter_f, merged_f])
        with open(os.path.join(adapter, "Modelfile")) as f:
            mf = f.read()
        assert f"FROM {os.path.abspath(gg)}" in mf and "ADAPTER ./adapter-f32.gguf" in mf and "<|im_start|>" in mf, mf
        prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        llm = Llama(model_path=gg, vocab_only=True, verbose=False)
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        del llm
        lq = logits(gg, ids)
        l16 = logits(basef16_f, ids)
        floor = float(np.max(np.abs(lq - l16)))
        la = logits(gg, ids, adapter_f)
        lm = logits(merged_f, ids)
        tol = 1.5 * floor
        log(f"smollm2: Q4_1 vs F16 copy of the same weights in llama.cpp: {floor:.4f} (the activation-rounding floor)")
        compare("smollm2", la, lm, lq, tol, 3)
    log(f"PASS in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
