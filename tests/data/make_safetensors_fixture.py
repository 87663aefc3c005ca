# Generates tests/data/safetensors/reference.safetensors with the reference writer (safetensors 0.8.0, numpy 2.4.6, ml_dtypes 0.6.0 for BF16); run as: python3 tests/data/make_safetensors_fixture.py
#
# tst_safetensors rebuilds the same tensors in C++ with the same formulas, writes them with qls::safetensors_save
# and checks the bytes are identical, then reads this file back and checks every value. Keep the two in sync.
# Every float tensor is computed in float64, rounded once to float32, then (for F16/BF16) rounded
# float32 -> 16 bit with round-to-nearest-even, exactly as qls::f32_to_f16 / qls::f32_to_bf16 do.
# Metadata has a single key: the reference writer stores metadata in a Rust HashMap, so with several keys
# their order in the header is random from run to run.
import os

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file


def rational(n, mul, mod, sub, div):
    # value i: ((i * mul) % mod - sub) / div, in float64, then float32
    i = np.arange(n, dtype=np.int64)
    return (((i * mul) % mod - sub).astype(np.float64) / div).astype(np.float32)


f16_values = np.concatenate(
    [rational(4, 7, 13, 6, 3.0), np.array([65504.0, -0.0, 2.0**-24, 1e-6], dtype=np.float32)]
)
bf16_values = np.concatenate([rational(5, 5, 11, 5, 7.0), np.array([3.0e38], dtype=np.float32)])

# Deliberately not in the writer's order: it sorts by dtype (I64, F64, F32, I32, BF16, F16, I16, I8, U8,
# BOOL), then by name.
tensors = {
    "model.norm.weight": rational(5, 7, 13, 6, 3.0),
    "tokens": ((np.arange(8, dtype=np.int64) * 37 + 11) % 256).astype(np.uint8).reshape(2, 2, 2),
    "lm_head.weight": f16_values.astype(np.float16).reshape(2, 4),
    "embed.weight": rational(6, 3, 7, 3, 9.0).reshape(2, 3),
    "scalar": np.array(-1.0 / 7.0, dtype=np.float32).reshape(()),
    "layers.0.attn.q": bf16_values.astype(ml_dtypes.bfloat16).reshape(3, 2),
    "positions": np.array([-3, 0, 2**40 + 5, -(2**63)], dtype=np.int64),
    "empty": np.zeros((0, 3), dtype=np.float32),
}
metadata = {"note": 'qls fixture "v1" \\ tab\tnewline\n ctrl\x01 caf\u00e9 \u20ac'}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors", "reference.safetensors")
os.makedirs(os.path.dirname(out), exist_ok=True)
save_file(tensors, out, metadata=metadata)
os.chmod(out, 0o644)  # the writer creates it 0600 (temp file + rename); a fixture should be readable by all
print("wrote", out, os.path.getsize(out), "bytes")
