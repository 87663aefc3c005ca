#!/usr/bin/env python3
# Writes quant_fixture.gguf: f32 rows and gguf-py's own Q8_0, Q4_0 and Q5_0 quantization of them (gguf-py quants.py
# quantize, bit-exact with ggml-quants.c's reference quantizers), for tst_gguf_export's byte-for-byte comparison.
# Regenerate: python3 tests/data/gguf_export/make_quant_fixture.py   (needs the `gguf` and `numpy` packages)
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import quantize

rng = np.random.default_rng(20261205)
rows, cols = 8, 512
x = rng.standard_normal((rows, cols)).astype(np.float32)
x[1] *= 1e-3                      # small magnitudes (subnormal-free f16 scales)
x[2] *= 300.0                     # large magnitudes
x[3, :32] = 0.0                   # an all-zero block
x[4, :32] = np.float32(0.5)       # a constant block (every value the extreme)
x[5, 32:64] = -x[5, 32:64]        # sign flips
x[6, 64:96] = np.round(x[6, 64:96] * 4) / 4  # values on rounding ties of some scales

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant_fixture.gguf")
w = gguf.GGUFWriter(out, arch="fixture")
w.add_tensor("input", x)
for qt in (QT.Q8_0, QT.Q4_0, QT.Q5_0):
    q = quantize(x, qt)
    w.add_tensor(qt.name.lower(), q, raw_shape=q.shape, raw_dtype=qt)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(out)
