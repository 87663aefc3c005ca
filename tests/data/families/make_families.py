#!/usr/bin/env python3
# Writes one tiny random-weight model per family with Hugging Face transformers (CPU torch, float32) and the logits
# transformers computes for a few token sequences: the fixtures of tests/tst_families.cpp.
#
# Run with the venv that has torch + transformers (see tests/oracles/README.md):
#   /tmp/pyref/bin/python tests/data/families/make_families.py tests/data/families > tests/data/families/make_families.log
# For each family F it writes F/config.json and F/model.safetensors (save_pretrained) and F/logits.safetensors:
#   "tokens" I64 [S, T] and "logits" F32 [S, T, V], the eager-attention forward of each row of tokens.
# Every weight is drawn afresh (norm weights and biases too, so a norm or bias that is read wrongly changes the logits);
# the configs exercise what each family adds: Llama 3 rope scaling "llama3" and a tied head, Qwen2 q/k/v biases,
# Qwen3 q/k norms with an explicit head_dim, Mistral (Nemo) an explicit head_dim, Gemma 3 (1 + w) norms, sqrt(C)
# embedding scale, pre/post norms, GeGLU, sliding-window and full layers with their own RoPE, query_pre_attn_scalar.
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

V = 64   # vocabulary
T = 12   # tokens per sequence (longer than Gemma's sliding window below)
S = 3    # sequences

COMMON = dict(vocab_size=V, hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2,
              pad_token_id=None)

FAMILIES = {
    "llama3": (LlamaForCausalLM, LlamaConfig(
        **COMMON, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "qwen2": (Qwen2ForCausalLM, Qwen2Config(**COMMON, tie_word_embeddings=False,
                                            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    "qwen3": (Qwen3ForCausalLM, Qwen3Config(**COMMON, head_dim=8, tie_word_embeddings=False,
                                            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    "mistral": (MistralForCausalLM, MistralConfig(**COMMON, head_dim=6, sliding_window=None, tie_word_embeddings=False,
                                                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    "gemma3": (Gemma3ForCausalLM, Gemma3TextConfig(
        **COMMON, head_dim=8, query_pre_attn_scalar=24, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"], hidden_activation="gelu_pytorch_tanh",
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0}})),
}


def randomize(model, gemma, g):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                # around the identity scale: 1 for w, 0 for Gemma's (1 + w)
                p.copy_((0.0 if gemma else 1.0) + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_((0.25 if gemma else 1.0) * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    g = torch.Generator().manual_seed(20261205)
    tokens = torch.randint(0, V, (S, T), generator=g)
    for family, (cls, cfg) in FAMILIES.items():
        cfg._attn_implementation = "eager"
        torch.manual_seed(1)
        model = cls(cfg).float().eval()
        randomize(model, family == "gemma3", g)
        d = os.path.join(out, family)
        model.save_pretrained(d, safe_serialization=True)
        gen = os.path.join(d, "generation_config.json")  # not read by the engine
        if os.path.exists(gen):
            os.remove(gen)
        with torch.no_grad():
            logits = model(tokens).logits.float().contiguous()
        save_file({"tokens": tokens.to(torch.int64).contiguous(), "logits": logits},
                  os.path.join(d, "logits.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        print(f"{family}: model_type {c['model_type']}, {sum(p.numel() for p in model.parameters())} parameters, "
              f"logits |max| {logits.abs().max().item():.3f}")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
