#!/usr/bin/env python3
"""Ours beside the peer in one call: `qlora bench` and the peer's QLoRA training on the same shape, sequence length
and recipe (NF4 + double quant base, LoRA rank 64 on every linear, paged 8-bit AdamW, gradient checkpointing, batch 1),
printed as README's ratio table (markdown) and written as JSON lines.

Peers: ../shared/peers/hf_peft_peer.py --modes qlora8 for the Llama-2 shapes (7b, 13b), packaging/gpu/hf_family_peer.py
for the newer families' shapes (llama3.1-8b, qwen2.5-7b, qwen3-8b, mistral-nemo-12b, gemma3-12b). A run whose peer
fails (out of memory at a long sequence, say) keeps our figures and says why in the peer's column.

Usage: compare_peer.py QLORA PEER_DIR RUN [RUN ...] [--out FILE] [--steps N] [--dry-run]
  RUN: SHAPE:SEQ, e.g. 7b:2048 7b:32768 qwen2.5-7b:2048 (PEER_DIR holds hf_peft_peer.py)
"""
import argparse, json, os, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("qlora")
ap.add_argument("peer_dir")
ap.add_argument("runs", nargs="+")
ap.add_argument("--out", default="compare-peer.jsonl")
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--dry-run", action="store_true", help="print the commands only")
a = ap.parse_args()

LLAMA2 = {"7b", "13b"}
FAMILIES = {"llama3.1-8b", "qwen2.5-7b", "qwen3-8b", "mistral-nemo-12b", "gemma3-12b"}


def commands(shape, seq):
    ours = [a.qlora, "bench", "--shape", shape, "--seq", str(seq), "--rank", "64", "--optimizer", "paged-adamw-8bit",
            "--steps", str(a.steps), "--json"]
    if shape in LLAMA2:
        peer = [sys.executable, os.path.join(a.peer_dir, "hf_peft_peer.py"), "--shape", shape, "--seq", str(seq),
                "--modes", "qlora8", "--steps", str(a.steps)]
    else:
        peer = [sys.executable, os.path.join(here, "hf_family_peer.py"), a.qlora, shape, "--seq", str(seq),
                "--steps", str(a.steps)]
    return ours, peer


def last_json(text, want):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if want(d):
                return d
    return None


def run(cmd, want):
    p = subprocess.run(cmd, capture_output=True, text=True)
    d = last_json(p.stdout, want)
    if d is None:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"exit {p.returncode}: {tail[0][:120]}"
    return d, None


rows = []
for spec in a.runs:
    shape, _, seq = spec.partition(":")
    if shape not in LLAMA2 | FAMILIES or not seq.isdigit():
        sys.exit(f"compare_peer.py: run {spec!r}: give SHAPE:SEQ with SHAPE one of "
                 f"{', '.join(sorted(LLAMA2 | FAMILIES))}")
    ours_cmd, peer_cmd = commands(shape, int(seq))
    if a.dry_run:
        print(" ".join(ours_cmd))
        print(" ".join(peer_cmd))
        continue
    ours, ours_err = run(ours_cmd, lambda d: d.get("mode") == "bench")
    peer, peer_err = run(peer_cmd, lambda d: d.get("mode") == "qlora8")
    row = dict(shape=shape, seq=int(seq), ours=ours, ours_error=ours_err, peer=peer, peer_error=peer_err)
    rows.append(row)
    with open(a.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)

if a.dry_run:
    sys.exit(0)
print()
print("| shape | seq | card | ours tokens/s | peer tokens/s | ratio | ours card memory | peer allocated / reserved |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    o, p = r["ours"], r["peer"]
    o_tps = f"{o['tokens_per_s_median']:,.0f}" if o else r["ours_error"]
    p_tps = f"{p['tokens_per_s']:,.0f}" if p else r["peer_error"]
    ratio = f"{o['tokens_per_s_median'] / p['tokens_per_s']:.2f}x" if o and p else ""
    card = (o or {}).get("device") or (p or {}).get("device", "")
    o_mem = f"{o['device_used_peak_gib']:.2f} GiB" if o else ""
    p_mem = f"{p['peak_alloc_gib']:.2f} / {p['peak_reserved_gib']:.2f} GiB" if p else ""
    print(f"| {r['shape']} | {r['seq']:,} | {card} | {o_tps} | {p_tps} | {ratio} | {o_mem} | {p_mem} |")
failed = [r for r in rows if not r["ours"]]
sys.exit(1 if failed else 0)
