#!/usr/bin/env python3
"""The peer's QLoRA training speed on the newer families' shapes (Llama-3.1-8B, Qwen2.5-7B, Qwen3-8B,
Mistral-Nemo-12B, Gemma-3-12B), as ../shared/peers/hf_peft_peer.py --modes qlora8 measures the Llama-2 shapes.

The model is the one `qlora plan --shape NAME` plans: its dimensions come from that command's JSON (the engine's
shape table, engine/src/memory/memory_plan.cpp shape_config) and the family's own transformers config class, and the
script refuses to run when transformers' parameter count differs from the plan's. Random bf16 weights are saved
once, then loaded as NF4 + double quant (bitsandbytes), LoRA rank R on every linear of the decoder, PagedAdamW8bit,
gradient checkpointing, SDPA attention; the median step over --steps after --warmup. One JSON line.

Usage: hf_family_peer.py QLORA SHAPE [--seq 2048] [--rank 64] [--steps 8] [--warmup 3] [--ckpt DIR]
       hf_family_peer.py QLORA SHAPE --check-config   (CPU: builds the model on the meta device and compares counts)
"""
import argparse, json, os, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("qlora")
ap.add_argument("shape")
ap.add_argument("--seq", type=int, default=2048)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--rank", type=int, default=64)
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--ckpt", default=None)
ap.add_argument("--check-config", action="store_true")
a = ap.parse_args()

import torch
import transformers

# model_type by shape; everything else below comes from the plan or the family's config defaults
FAMILY = {"llama3.1-8b": "llama", "qwen2.5-7b": "qwen2", "qwen3-8b": "qwen3", "mistral-nemo-12b": "mistral",
          "gemma3-12b": "gemma3_text"}
# the published configs' fields the plan's JSON does not carry (the same values as shape_config's config.json text)
EXTRA = {
    "llama3.1-8b": dict(rope_theta=500000.0, rms_norm_eps=1e-5,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "qwen2.5-7b": dict(rope_theta=1000000.0, rms_norm_eps=1e-6, use_sliding_window=False),
    "qwen3-8b": dict(rope_theta=1000000.0, rms_norm_eps=1e-6, attention_bias=False, use_sliding_window=False),
    "mistral-nemo-12b": dict(rope_theta=1000000.0, rms_norm_eps=1e-5, sliding_window=None),
    "gemma3-12b": dict(rope_theta=1000000.0, rope_local_base_freq=10000.0, rms_norm_eps=1e-6,
                       rope_scaling={"rope_type": "linear", "factor": 8.0}, query_pre_attn_scalar=256,
                       sliding_window=1024, sliding_window_pattern=6, hidden_activation="gelu_pytorch_tanh"),
}
if a.shape not in FAMILY:
    sys.exit(f"hf_family_peer.py: shape {a.shape!r} is not one of {', '.join(FAMILY)}")

plan = json.loads(subprocess.run([a.qlora, "plan", "--shape", a.shape, "--json"], check=True, capture_output=True,
                                 text=True).stdout)
m = plan["model"]
cfg = transformers.AutoConfig.for_model(
    FAMILY[a.shape], hidden_size=m["hidden_size"], intermediate_size=m["intermediate_size"],
    num_hidden_layers=m["num_layers"], num_attention_heads=m["num_heads"], num_key_value_heads=m["num_kv_heads"],
    head_dim=m["head_dim"], vocab_size=m["vocab_size"], max_position_embeddings=m["max_position_embeddings"],
    tie_word_embeddings=m["tie_word_embeddings"], **EXTRA[a.shape])
cfg._attn_implementation = "sdpa"

with torch.device("meta"):
    meta = transformers.AutoModelForCausalLM.from_config(cfg)
count = sum(p.numel() for p in meta.parameters())
del meta
if count != m["parameters"]:
    sys.exit(f"hf_family_peer.py: transformers builds {count} parameters for {a.shape}, the plan counts "
             f"{m['parameters']}: the shapes differ")
if a.check_config:
    print(json.dumps(dict(shape=a.shape, model_type=cfg.model_type, parameters=count, matches_plan=True)))
    sys.exit(0)

from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
import bitsandbytes as bnb

ckpt = a.ckpt or f"/tmp/peer_{a.shape}"
if not os.path.exists(os.path.join(ckpt, "config.json")):
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16)
    model.save_pretrained(ckpt, safe_serialization=True)
    del model
    torch.cuda.empty_cache()

torch.cuda.reset_peak_memory_stats()
q = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch.bfloat16)
model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, quantization_config=q, dtype=torch.bfloat16,
                                                          attn_implementation="sdpa", device_map={"": 0})
model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.config.use_cache = False
model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=16, lora_dropout=0.0, bias="none",
                                         task_type="CAUSAL_LM",
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"]))
model.enable_input_require_grads()
params = [p for p in model.parameters() if p.requires_grad]
opt = bnb.optim.PagedAdamW8bit(params, lr=2e-4)
ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), device="cuda",
                    generator=torch.Generator(device="cuda").manual_seed(1))
model.train()
times, loss = [], None
for step in range(a.warmup + a.steps):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    if step >= a.warmup:
        times.append(time.perf_counter() - t)
    loss = float(out.loss)
times.sort()
med = times[len(times) // 2]
print(json.dumps(dict(mode="qlora8", shape=a.shape, seq=a.seq, batch=a.batch, rank=a.rank,
                      trainable_params=sum(p.numel() for p in params), step_s_median=round(med, 4),
                      tokens_per_s=round(a.batch * a.seq / med, 1),
                      peak_alloc_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                      peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2), last_loss=round(loss, 3),
                      device=torch.cuda.get_device_name())), flush=True)
