#!/usr/bin/env python3
"""GPU training check through the CLI: `qlora train` on the CUDA backend, then the same run stopped half way and
continued with `qlora resume`; the resumed steps' losses must equal the uninterrupted run's bit for bit.

Usage: check-gpu-training.py QLORA_BINARY MODEL_DIR REPO_ROOT
Prints one JSON line; exit status 1 when a check fails."""
import json, os, subprocess, sys, tempfile

qlora, model, root = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
work = tempfile.mkdtemp(prefix="qls-gpu-train-")
stories = os.path.join(root, "datasets", "stories")


def config(name, steps):
    return {
        "name": name, "runs_dir": os.path.join(work, "runs"), "model": model,
        "data": {"train": os.path.join(stories, "pip_the_lighthouse_mouse.txt"),
                 "validation": os.path.join(stories, "pip_the_lighthouse_mouse.val.txt")},
        "lora": {"rank": 8, "alpha": 16, "dropout": 0.1},
        "optimizer": {"kind": "paged-adamw-8bit", "lr": 0.003, "schedule": "constant", "warmup_steps": 0},
        "training": {"seq_len": 256, "micro_batch": 4, "grad_accum": 2, "max_steps": steps, "eval_every": 20,
                     "checkpoint_every": 20, "gradient_checkpointing": True, "seed": 42},
        "device": {"backend": "cuda"},
    }


def train(cfg):
    path = os.path.join(work, cfg["name"] + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = subprocess.run([qlora, "train", "--config", path], capture_output=True, text=True)
    return r


def metrics(name):
    with open(os.path.join(work, "runs", name, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


full = train(config("full", 40))
half = train(config("half", 20))
cfg_path = os.path.join(work, "runs", "half", "config.json")
with open(cfg_path) as f:
    c = json.load(f)
c["training"]["max_steps"] = 40
with open(cfg_path, "w") as f:
    json.dump(c, f, indent=2)
resumed = subprocess.run([qlora, "resume", os.path.join(work, "runs", "half")], capture_output=True, text=True)

out = {"train_rc": full.returncode, "half_rc": half.returncode, "resume_rc": resumed.returncode}
ok = full.returncode == 0 and half.returncode == 0 and resumed.returncode == 0
if ok:
    a, b = metrics("full"), metrics("half")
    la = {m["step"]: m["loss"] for m in a}
    lb = {m["step"]: m["loss"] for m in b}
    out["first_loss"] = la.get(1)
    out["last_loss"] = la.get(40)
    out["eval_losses"] = [m.get("eval_loss") for m in a if m.get("eval_loss") is not None]
    out["resumed_steps_equal"] = all(la.get(s) == lb.get(s) for s in range(21, 41))
    out["device_used_gib"] = a[-1].get("device_used_bytes", 0) / 2**30
    out["arena_gib"] = a[-1].get("arena_bytes", 0) / 2**30
    out["tokens_per_s_last"] = a[-1].get("tokens_per_s")
    ok = out["resumed_steps_equal"] and la.get(40, 99) < la.get(1, 0) - 0.3
else:
    out["stderr"] = (full.stderr + half.stderr + resumed.stderr)[-2000:]
out["passed"] = bool(ok)
print(json.dumps(out))
sys.exit(0 if ok else 1)
