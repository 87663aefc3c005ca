#!/usr/bin/env python3
# Real PEFT on the tiny model of each family (tests/data/families): loads the LoRA adapter that tst_families trained
# and exported (`QLS_FAMILIES_PEFT_OUT=DIR build/bin/tst_families loraTrainsAndExportsPeft` writes DIR/<family>/ with
# adapter_config.json, adapter_model.safetensors and ours_logits.safetensors) onto the transformers model and compares
# the logits at every position with ours. Prints one line per family; exit 1 when any differs by more than --tol or
# an adapter moves nothing. Usage: families_peft_check.py DIR [--tol 1e-4]
import argparse
import os
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

FAMILIES = ["llama3", "qwen2", "qwen3", "mistral", "gemma3"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "families")
    ok = True
    for family in FAMILIES:
        adapter = os.path.join(a.dir, family)
        ours = load_file(os.path.join(adapter, "ours_logits.safetensors"))
        ids = ours["tokens"].long()
        mine = ours["logits"][0].double()
        base = AutoModelForCausalLM.from_pretrained(os.path.join(fixtures, family), dtype=torch.float32,
                                                    attn_implementation="eager")
        base.eval()
        with torch.no_grad():
            base_logits = base(ids).logits[0].double()
            model = PeftModel.from_pretrained(base, adapter)
            model.eval()
            logits = model(ids).logits[0].double()
        diff = (logits - mine).abs().max().item()
        moved = (logits - base_logits).abs().max().item()
        good = diff <= a.tol and moved > 10 * a.tol
        ok &= good
        print(f"{family:8s} max |PEFT - ours| = {diff:.3e}  (the adapter moves the logits by up to {moved:.3f})"
              f"  {'ok' if good else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
