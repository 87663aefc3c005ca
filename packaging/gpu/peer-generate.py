#!/usr/bin/env python3
# Peer for single-stream generation: Hugging Face transformers + bitsandbytes NF4 (double quant, bf16 compute) loads a
# checkpoint directory onto GPU 0 and generates greedily; prints decode tokens/s (prefill excluded by timing a
# 1-token generation first). Needs bitsandbytes. Usage: peer-generate.py MODEL_DIR [NEW_TOKENS]
import sys
import time

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

n_new = int(sys.argv[2]) if len(sys.argv) > 2 else 128
q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                       bnb_4bit_compute_dtype=torch.bfloat16)
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], quantization_config=q, dtype=torch.bfloat16,
                                         device_map={"": 0})
ids = torch.tensor([[1, 9038, 2501, 263, 931]], device="cuda")  # a 5-token prompt


def timed(n):
    torch.cuda.synchronize()
    t = time.time()
    out = m.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    torch.cuda.synchronize()
    return time.time() - t, out.shape[1] - ids.shape[1]


timed(4)  # warm-up
t1, _ = timed(1)
tn, made = timed(n_new)
print(f"PEER_GENERATE new {made} tokens in {tn:.2f} s; decode {(made - 1) / max(tn - t1, 1e-9):.1f} tokens/s", flush=True)
