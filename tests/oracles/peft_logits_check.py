#!/usr/bin/env python3
# Loads a PEFT adapter exported by `qlora export --format peft` onto a Hugging Face model with real transformers + PEFT,
# and compares the logits at every position with the ones `qlora logits --model M --adapter ADAPTER --tokens ... --out
# OURS.safetensors` wrote ("tokens" I64 [1, T], "logits" F32 [1, T, V]; the same model, adapter and token ids).
# Prints the largest difference and how far the adapter moves the logits; exit 1 when the difference exceeds --tol or
# the adapter moves nothing. Usage: peft_logits_check.py HF_MODEL_DIR ADAPTER_DIR OURS.safetensors [--tol 1e-3]
import argparse
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("adapter")
    ap.add_argument("ours")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    ours = load_file(a.ours)
    ids = ours["tokens"].long()  # [1, T]
    mine = ours["logits"][0].double()  # [T, V]
    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    base.eval()
    with torch.no_grad():
        base_logits = base(ids).logits[0].double()
        model = PeftModel.from_pretrained(base, a.adapter)
        model.eval()
        logits = model(ids).logits[0].double()
    diff = (logits - mine).abs().max().item()
    moved = (logits - base_logits).abs().max().item()
    print(f"tokens {ids.shape[1]}  max |PEFT - ours| = {diff:.3e} over all positions"
          f"  (the adapter moves the logits by up to {moved:.3f})")
    print(f"next-token argmax at the last position: PEFT {int(logits[-1].argmax())}  ours {int(mine[-1].argmax())}")
    sys.exit(0 if diff <= a.tol and moved > 10 * a.tol else 1)


if __name__ == "__main__":
    main()
