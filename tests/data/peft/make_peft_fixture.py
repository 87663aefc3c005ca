# Makes the real-PEFT LoRA fixture for tests/tst_peft.cpp (run: python3 tests/data/peft/make_peft_fixture.py make ../shared/models/stories260K tests/data/peft; versions printed first, log in make_peft_fixture.log).
"""
Usage (from the repository root, with torch, transformers, peft, safetensors and sentencepiece installed):

  python3 tests/data/peft/make_peft_fixture.py make  MODEL_DIR OUT_DIR
  python3 tests/data/peft/make_peft_fixture.py check MODEL_DIR OUT_DIR EXPORT_DIR

make   Builds a LoRA adapter for stories260K with real PEFT (LoraConfig r=4, lora_alpha=8, lora_dropout=0.05, all seven
       LLaMA projections, task_type CAUSAL_LM), replaces PEFT's initialisation (A Kaiming-uniform, B zero) by a seeded
       random fill so that B is non-zero, and writes
         OUT_DIR/reference_adapter/            PeftModel.save_pretrained output, untouched (adapter_config.json,
                                               adapter_model.safetensors; its README.md model-card template dropped)
         OUT_DIR/reference_logits.safetensors  tokens I64 [2, 12]; logits F32 [2, 12, 512] (base + adapter, PEFT);
                                               base_logits F32 [2, 12, 512] (adapter disabled);
                                               merged_logits F32 [2, 12, 512] (PEFT merge_and_unload)
                                               __metadata__ "versions": JSON of the library versions
       The model is loaded in float32 with eager attention; the adapter is in eval mode (dropout off).
check  Loads what tst_peft exported when run with QLS_PEFT_EXPORT_DIR=EXPORT_DIR — EXPORT_DIR/adapter (our export_peft
       of the loaded reference adapter) with PeftModel.from_pretrained and EXPORT_DIR/merged (our export_merged) with
       AutoModelForCausalLM.from_pretrained — and prints their max |logit difference| from the PEFT reference; also loads
       EXPORT_DIR/subset (one of our adapters: k/o/up_proj, layers_to_transform [1, 3], r=3, alpha 5.5, rsLoRA) with
       PEFT and compares its logits with ours (EXPORT_DIR/subset_logits.safetensors). Exit status 0 when all < 1e-4.

How the committed files were made: on the project's CPU-only development machine (Python 3.11.7), in a venv with
`pip install torch transformers peft safetensors sentencepiece` from PyPI (torch 2.15.0+cu132 wheel run on the CPU,
transformers 5.24.0, peft 0.21.2, safetensors 0.8.0), as
  python3 tests/data/peft/make_peft_fixture.py make ../shared/models/stories260K tests/data/peft
so adapter_config.json's base_model_name_or_path is "../shared/models/stories260K".
"""
import json
import os
import platform
import sys

import torch


def versions():
    import peft
    import safetensors
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "safetensors": safetensors.__version__,
        "generator": "make_peft_fixture.py",
    }


# Two rows of 12 token ids of the stories260K vocabulary (row 0: BOS + "Once upon a time" style ids, row 1 arbitrary).
TOKENS = [
    [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 259, 300],
    [1, 65, 300, 410, 273, 500, 7, 42, 261, 399, 287, 330],
]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_base(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


@torch.no_grad()
def logits_of(model, tokens):
    return model(input_ids=tokens).logits.float().contiguous()


def make(model_dir, out_dir):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file

    v = versions()
    print("versions:", json.dumps(v, sort_keys=True))
    torch.manual_seed(0)
    base = load_base(model_dir)
    tokens = torch.tensor(TOKENS, dtype=torch.int64)
    base_logits = logits_of(base, tokens)

    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=TARGETS, task_type="CAUSAL_LM",
                     init_lora_weights=True)
    model = get_peft_model(base, cfg)
    # Seeded fill, in name order: A ~ U(-1/sqrt(in), 1/sqrt(in)) like PEFT's init, B ~ U(-0.05, 0.05) instead of 0 so the
    # adapter changes the logits.
    gen = torch.Generator().manual_seed(20240601)
    n_filled = 0
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if ".lora_A." in name:
                bound = 1.0 / (p.shape[1] ** 0.5)
            elif ".lora_B." in name:
                bound = 0.05
            else:
                continue
            p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1).mul(bound).to(p.dtype))
            n_filled += 1
    print("filled", n_filled, "LoRA tensors")
    model.eval()
    logits = logits_of(model, tokens)
    with model.disable_adapter():
        check_base = logits_of(model, tokens)
    assert torch.equal(check_base, base_logits), "disable_adapter must give the base logits"
    print("max |adapter - base| logit:", (logits - base_logits).abs().max().item())

    adapter_dir = os.path.join(out_dir, "reference_adapter")
    model.save_pretrained(adapter_dir)
    # save_pretrained also writes a model-card template (README.md, "[More Information Needed]" fields); it carries no
    # adapter data, so it is not kept.
    os.remove(os.path.join(adapter_dir, "README.md"))
    print("saved", sorted(os.listdir(adapter_dir)))

    merged = model.merge_and_unload()
    merged_logits = logits_of(merged, tokens)
    print("max |merged - adapter| logit (PEFT merge_and_unload):", (merged_logits - logits).abs().max().item())

    save_file({"tokens": tokens, "logits": logits, "base_logits": base_logits, "merged_logits": merged_logits},
              os.path.join(out_dir, "reference_logits.safetensors"), metadata={"versions": json.dumps(v, sort_keys=True)})
    print("wrote reference_logits.safetensors:", tuple(logits.shape))


def check(model_dir, out_dir, export_dir):
    from peft import PeftModel
    from safetensors.torch import load_file

    print("versions:", json.dumps(versions(), sort_keys=True))
    ref = load_file(os.path.join(out_dir, "reference_logits.safetensors"))
    tokens = ref["tokens"]
    ours = PeftModel.from_pretrained(load_base(model_dir), os.path.join(export_dir, "adapter"))
    ours.eval()
    d = (logits_of(ours, tokens) - ref["logits"]).abs().max().item()
    print("PeftModel.from_pretrained(our export_peft): max |logit - reference| =", d)
    merged = load_base(os.path.join(export_dir, "merged"))
    dm = (logits_of(merged, tokens) - ref["logits"]).abs().max().item()
    print("AutoModelForCausalLM.from_pretrained(our export_merged): max |logit - reference| =", dm)
    sub = PeftModel.from_pretrained(load_base(model_dir), os.path.join(export_dir, "subset"))
    sub.eval()
    ds = (logits_of(sub, tokens) - load_file(os.path.join(export_dir, "subset_logits.safetensors"))["logits"]).abs().max().item()
    print("PeftModel.from_pretrained(our export_peft of a layers_to_transform + rsLoRA adapter): "
          "max |PEFT logit - our logit| =", ds)
    ok = d < 1e-4 and dm < 1e-4 and ds < 1e-4
    print("check", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        print(__doc__)
        sys.exit(2)
