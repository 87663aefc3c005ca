#!/usr/bin/env python3
# Loads a PEFT adapter exported by `qlora export --format peft` onto a Hugging Face model with real transformers + PEFT,
# and compares the logits at the last prompt position with the ones `qlora generate --logits-out FILE` wrote
# ({"ids": [...], "logits": [...]}, the same model, adapter and prompt). Prints the largest difference; exit 1 when it
# exceeds --tol. Usage: peft_logits_check.py HF_MODEL_DIR ADAPTER_DIR OURS.json [--tol 1e-3]
import argparse
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("adapter")
    ap.add_argument("ours")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    with open(a.ours, encoding="utf-8") as f:
        ours = json.load(f)
    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    ids = torch.tensor([ours["ids"]])
    with torch.no_grad():
        base_logits = base(ids).logits[0, -1].double()
        model = PeftModel.from_pretrained(base, a.adapter)
        model.eval()
        logits = model(ids).logits[0, -1].double()
    mine = torch.tensor(ours["logits"], dtype=torch.float64)
    diff = (logits - mine).abs().max().item()
    moved = (logits - base_logits).abs().max().item()
    print(f"tokens {len(ours['ids'])}  max |PEFT - ours| = {diff:.3e}  (the adapter moves the logits by up to {moved:.3f})")
    print(f"argmax PEFT {int(logits.argmax())}  ours {int(mine.argmax())}")
    sys.exit(0 if diff <= a.tol and moved > 10 * a.tol else 1)


if __name__ == "__main__":
    main()
