#!/usr/bin/env bash
# Real-size measurements on a GPU machine: writes a random-weight checkpoint of a named shape (bf16, sharded), times
# `qlora train` from start to the end of its first step under rss.py (peak resident and anonymous memory) beside the
# peer's load (transformers + bitsandbytes NF4, hf_load_peer.py), then single-stream greedy generation: ours
# (`qlora generate --device cuda`) and the peer's (peer-generate.py). Run after run-gpu-checks.sh built the CLI.
# Usage: packaging/gpu/run-real-size.sh QLORA WORKDIR PEERS_DIR [SHAPE[-bnb]]   (PEERS_DIR holds hf_load_peer.py, rss.py)
#   SHAPE-bnb (e.g. 65b-bnb) writes the pre-quantized bitsandbytes NF4 variant. Env: QLS_RS_BUDGET (GiB, passed as
#   device.budget_gib; empty: none), QLS_RS_GENERATE (1: generation, ours and the peer's; default 1),
#   QLS_RS_PEER (1: the peer's load; default 1), QLS_RS_KEEP (1: keep the checkpoint; default 0, the disk is small),
#   QLS_RS_EXPORT (1: `qlora export --format merged` of the trained run under rss.py, then the merged folder loaded in
#   transformers beside our CPU logits, check-merged-in-transformers.py; default 0).
set -uo pipefail
qlora="$1"; work="$2"; peers="$3"; shape="${4:-7b}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ckpt="$work/$shape"
bnb=()
base="$shape"
if [[ "$shape" == *-bnb ]]; then bnb=(--bnb-4bit); base="${shape%-bnb}"; fi
budget_json=""
[ -z "${QLS_RS_BUDGET:-}" ] || budget_json=", \"budget_gib\": ${QLS_RS_BUDGET}"
SECONDS=0
python3 "$here/packaging/gpu/write-random-checkpoint.py" "$base" "$ckpt" "${bnb[@]}" || exit 1
echo "WROTE $shape in ${SECONDS}s: $(du -sh "$ckpt" | cut -f1)"
cat > "$work/run.json" <<JSON
{ "name": "real-$shape", "runs_dir": "$work/runs", "model": "$ckpt",
  "data": { "train": "$here/datasets/stories/pip_the_lighthouse_mouse.txt", "template": "raw" },
  "lora": { "rank": 64, "alpha": 16 },
  "training": { "seq_len": 2048, "micro_batch": 1, "max_steps": 1, "eval_every": 0, "checkpoint_every": 0 },
  "device": { "backend": "cuda"$budget_json } }
JSON
rm -rf "$work/runs/real-$shape" # a run of the same name from an earlier measurement would refuse to start
echo "== ours: qlora train to the end of step 1"
python3 "$peers/rss.py" "$qlora" train --config "$work/run.json" 2>&1 | grep -vE "^\s*(loading|step [0-9]+/)" | tail -16
if [ "${QLS_RS_PEER:-1}" = 1 ]; then
  echo "== peer: transformers + bitsandbytes NF4 load"
  python3 "$peers/rss.py" python3 "$peers/hf_load_peer.py" "$ckpt" 2>&1 | grep -E "PEER|RSS" | tail -3
fi
if [ "${QLS_RS_GENERATE:-1}" = 1 ]; then
  echo "== ours: generation"
  "$qlora" generate --model "$ckpt" --prompt "Once upon a time" --max-new-tokens 128 --temperature 0 --device cuda \
    2>&1 >/dev/null | tail -3
  echo "== peer: generation"
  python3 "$here/packaging/gpu/peer-generate.py" "$ckpt" 128 2>&1 | grep PEER
fi
if [ "${QLS_RS_EXPORT:-0}" = 1 ]; then
  run_dir="$(ls -d "$work"/runs/*/ 2>/dev/null | head -1)"
  [ -n "$run_dir" ] || { echo "== no run to export (training failed)"; rm -rf "$ckpt"; exit 1; }
  echo "== ours: merged export of $run_dir"
  python3 "$peers/rss.py" "$qlora" export "$run_dir" --format merged --out "$work/merged" --force 2>&1 | tail -4
  echo "== transformers loads the merged export"
  python3 "$here/packaging/gpu/check-merged-in-transformers.py" "$qlora" "$work/merged" 2>&1 | tail -3
  rm -rf "$work/merged"
fi
[ "${QLS_RS_KEEP:-0}" = 1 ] || rm -rf "$ckpt"
echo "total ${SECONDS}s"
