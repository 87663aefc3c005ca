#!/usr/bin/env python3
"""Loads a merged export (`qlora export RUN --format merged`) with transformers and compares its logits with our CPU
forward's (`qlora logits`, which writes "tokens" I64 [1, T] and "logits" F32 [1, T, V]) on the same token ids.

Usage: check-merged-in-transformers.py QLORA_BINARY MERGED_DIR [--tokens 1,2,3,...] [--dtype bfloat16|float32]
transformers runs AutoModelForCausalLM.from_pretrained(MERGED_DIR, dtype=DTYPE) on cuda when available, else
on the CPU. Pass criteria: with bfloat16 (weights and activations rounded to 8 bits of mantissa) the logits' relative
RMS difference below 3% and the arg-max token equal at 90% of the positions or more; with float32 a max absolute
difference below 1e-3. Prints one JSON line; exit status 1 when a check fails."""
import argparse, json, os, subprocess, sys, tempfile

import numpy as np
from safetensors.numpy import load_file

ap = argparse.ArgumentParser()
ap.add_argument("qlora")
ap.add_argument("merged")
ap.add_argument("--tokens", default="1,403,407,261,378,432,383,286,261,376,298,315,422,271,279,261")
ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
a = ap.parse_args()

import torch
import transformers
from transformers import AutoModelForCausalLM

work = tempfile.mkdtemp(prefix="qls-merged-check-")
ours_path = os.path.join(work, "ours.safetensors")
subprocess.run([a.qlora, "logits", "--model", a.merged, "--tokens", a.tokens, "--out", ours_path], check=True,
               stdout=subprocess.DEVNULL)
ours = load_file(ours_path)
tokens, ours_logits = ours["tokens"], ours["logits"].astype(np.float64)

device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if a.dtype == "bfloat16" else torch.float32
# transformers 4.56 renamed from_pretrained's torch_dtype to dtype (the old name still works there, with a warning)
major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
dtype_arg = {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
model = AutoModelForCausalLM.from_pretrained(a.merged, **dtype_arg).to(device).eval()
with torch.no_grad():
    theirs = model(torch.tensor(tokens, device=device)).logits.float().cpu().numpy().astype(np.float64)

diff = theirs - ours_logits
max_abs = float(np.abs(diff).max())
rel_rms = float(np.sqrt((diff ** 2).mean() / (ours_logits ** 2).mean()))
argmax_agree = float((theirs.argmax(-1) == ours_logits.argmax(-1)).mean())
ok = (rel_rms < 0.03 and argmax_agree >= 0.9) if a.dtype == "bfloat16" else max_abs < 1e-3
print(json.dumps({"check": "merged export in transformers", "merged": os.path.abspath(a.merged), "device": device,
                  "dtype": a.dtype, "tokens": int(tokens.shape[1]), "max_abs_diff": max_abs,
                  "relative_rms_diff": rel_rms, "argmax_agreement": argmax_agree, "ok": ok}))
sys.exit(0 if ok else 1)
