# Makes the bitsandbytes reference fixtures (NF4 + double quant, 8-bit dynamic blockwise, 8-bit/32-bit AdamW, Llama-2-7B NF4 sizes) that tests/tst_quant.cpp and the optimizer/memory-plan tests compare against.
"""
Usage:  python3 make_bnb_fixtures.py OUTDIR

Writes OUTDIR/nf4.safetensors, OUTDIR/dynamic8.safetensors, OUTDIR/adamw8bit.safetensors and
OUTDIR/llama2_7b_nf4_bytes.json, using the REAL bitsandbytes CUDA kernels (torch.ops.bitsandbytes.* on "cuda").
Every random input is drawn on the CPU from a seeded torch.Generator, so the inputs do not depend on the GPU.

How the committed files were made: on the project's lent GPU machine (one NVIDIA H100, CUDA 13, Python 3.12,
torch 2.11.0+cu130, safetensors 0.8.0, numpy 2.x), with the bitsandbytes 0.50.2 manylinux wheel from PyPI carried
over (`pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
--platform manylinux_2_24_x86_64 bitsandbytes`) and installed with
`pip install --no-index --no-deps --target /tmp/site .whl/*.whl; PYTHONPATH=/tmp/site python3 make_bnb_fixtures.py $OUT`.
The exact versions, the GPU and torch's CPU capability (which decides torch.linspace's float32 rounding inside
create_dynamic_map) are printed first and stored in each file's __metadata__; the run's output is
make_bnb_fixtures.log beside this script. (Two runs gave identical tensors; __metadata__ key order and the allocator
growth in the JSON vary from run to run.)

What the fixtures showed (tests/tst_quant.cpp checks each):
  * bnb's libbitsandbytes_cuda*.so is built with --use_fast_math (bnb CMakeLists.txt): the block scale
    1.0f / absmax is the GPU's approximate reciprocal. For absmax 0.0123f it is 81.30081f, one ulp below the
    correctly rounded 81.30082f, which moves the 138 crafted near-midpoint values of recip_*[block 0] one code.
    For the 8-bit AdamW kernels the same flag means FMA contraction, approximate division/sqrt and flush-to-zero.
  * the double-quant offset (absmax.mean() on the GPU) sums in float32 in a GPU-specific order: for case c it is
    2 ulps from the correctly rounded mean; cases a, b, d agree exactly.

Contents (names as stored; shapes as torch reports them):
  nf4.safetensors, for case c in {a: [96, 200] (300 blocks of 64, 2 nested blocks, the 2nd partial),
                                  b: [64, 128] (128 blocks, 1 partial nested block),
                                  c: [33, 37]  (odd n = 1221: a partial 64-block, a padded low nibble, and an
                                               all-zero first block -> absmax 0, codes 0b0000 as bnb writes them),
                                  d: [3, 43]   (n = 129: two crafted blocks whose values are coded differently by
                                               x * (1/absmax), as bnb does, and by x / absmax; then a partial block
                                               of one zero, whose zero padding codes as 0 too)}
    w.<c>                      F32 [rows, cols]  the input weight
    <c>.plain.packed           U8  [(n+1)//2, 1] quantize_4bit(w, blocksize=64, compress_statistics=False, quant_type="nf4")
    <c>.plain.absmax           F32 [nblocks]
    <c>.plain.deq              F32 [rows, cols]  dequantize_4bit(packed, state) (fp32)
    <c>.dq.packed              U8  [(n+1)//2, 1] same with compress_statistics=True
    <c>.dq.absmax              U8  [nblocks]     8-bit codes of (absmax - offset), signed dynamic map, blocksize 256
    <c>.dq.nested_absmax       F32 [ceil(nblocks/256)]
    <c>.dq.offset              F32 [1]           absmax.mean() as computed on the GPU
    <c>.dq.nested_quant_map    F32 [256]
    <c>.dq.absmax_deq          F32 [nblocks]     dequantize_blockwise(codes, state2) + offset, as dequantize_4bit does
    <c>.dq.deq                 F32 [rows, cols]
    quant_map                  F32 [16]          get_4bit_type("nf4")
    sd.<c>.<plain|dq>.weight[...]  the tensors a Linear4bit state_dict / pre-quantized HF checkpoint stores for that
                               weight: "weight" and quant_state.as_dict(packed=True) ("weight.absmax", "weight.quant_map",
                               "weight.nested_absmax", "weight.nested_quant_map", "weight.quant_state.bitsandbytes__nf4")
  dynamic8.safetensors
    map.signed / map.unsigned  F32 [256]  create_dynamic_map(signed=True/False)  (max_exponent_bits=7, total_bits=8)
    x.<k> for k in {signed: randn(1000), unsigned: randn(1000)**2, ties_signed / ties_unsigned: 3 blocks of 256 whose
          absmax is exactly 1.0 and whose other values are the float32 midpoints (c[i]+c[i+1])*0.5f of the map,
          then those midpoints one ulp up, then one ulp down;
          recip_signed / recip_unsigned: 3 blocks of 256 (absmax 0.0123, 0.7, 3.3) of values near midpoint * absmax
          that x * (1/absmax) and x / absmax code differently}
    <k>.codes U8 [n], <k>.absmax F32 [ceil(n/256)], <k>.deq F32 [n]:
          quantize_blockwise(x, code=map, blocksize=256) and dequantize_blockwise(codes, absmax=..., code=map, blocksize=256)
  adamw8bit.safetensors
    p0 F32 [1000], g1, g2, g3 F32 [1000]; qmap1 = create_dynamic_map(True), qmap2 = create_dynamic_map(False)
    adam8.<p|state1|state2|absmax1|absmax2>.<k>   after step k = 1, 2, 3 of F.optimizer_update_8bit_blockwise("adam", ...)
    adam32.<p|m|v>.<k>                             after step k of F.optimizer_update_32bit("adam", ...)
    hyperparameters in __metadata__.
  llama2_7b_nf4_bytes.json: the bytes of every QuantState component bnb keeps for one NF4+DQ weight of each Llama-2-7B
    linear shape (quantize_4bit of a random bf16 tensor on the GPU), the serialized (safetensors) bytes, the CUDA
    allocator's growth, and the totals for the whole model (32 layers x (4 x [4096,4096] + 2 x [11008,4096] +
    1 x [4096,11008])) plus embed_tokens / lm_head / norms.
"""
import json
import os
import platform
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import bitsandbytes as bnb
import bitsandbytes.functional as F

if len(sys.argv) != 2:
    sys.exit("usage: make_bnb_fixtures.py OUTDIR")
OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)

DEV = "cuda" if torch.cuda.is_available() else "cpu"
if DEV != "cuda" and os.environ.get("QLS_ALLOW_CPU") != "1":
    sys.exit("no CUDA device: the fixtures must come from bnb's CUDA kernels (QLS_ALLOW_CPU=1 for a dry run)")

try:
    import safetensors

    st_version = safetensors.__version__
except Exception:  # pragma: no cover
    st_version = "?"

VERSIONS = {
    "bitsandbytes": bnb.__version__,
    "torch": torch.__version__,
    "torch_cuda": str(torch.version.cuda),
    "python": platform.python_version(),
    "numpy": np.__version__,
    "safetensors": st_version,
    "device": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu (dry run)",
    "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    "generator": "make_bnb_fixtures.py",
}
print("versions:", json.dumps(VERSIONS))


def gen(seed):
    return torch.Generator().manual_seed(seed)


def cpu(t):
    return t.detach().to("cpu").contiguous().clone()


def meta(extra=None):
    m = dict(VERSIONS)
    if extra:
        m.update(extra)
    return {k: str(v) for k, v in m.items()}


# ------------------------------------------- crafted inputs: x * (1/absmax) versus x / absmax -----------------------
# bnb's kernels normalize by multiplying with the reciprocal (smem_absmax_value = 1.0f / local_abs_max; x * that).
# These inputs contain values for which fl(x * fl(1/m)) and fl(x / m) fall on different sides of a decision threshold,
# so a reimplementation that divides produces different codes.
F32 = np.float32
NF4_THRESHOLDS = ["-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
                  "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
                  "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
                  "0.5016634166240692", "0.6427869200706482", "0.8614784181118011"]  # csrc dQuantizeNF4 literals


def f32_of_decimal(s):
    """The float32 nearest to a decimal string (as a C++/CUDA `...f` literal), without double rounding."""
    from fractions import Fraction
    x = Fraction(s)
    f = F32(float(x))
    cands = [np.nextafter(f, F32(-np.inf)), f, np.nextafter(f, F32(np.inf))]
    return min(cands, key=lambda c: (abs(Fraction(float(c)) - x), int(np.array(c).view(np.uint32)) & 1))


NF4_T = [f32_of_decimal(v) for v in NF4_THRESHOLDS]


def nf4_encode(x):
    return sum(1 for v in NF4_T if x > v)  # the decision tree's result: number of thresholds strictly below x


def dquantize(code, x):
    """csrc/cuda/blockwise_quantization.cu dQuantize<0> in float32 (numpy)."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = F32(-1.0), F32(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower, pivot = pivot, val, pivot + i
        else:
            upper_pivot, upper, pivot = pivot, val, pivot - i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        return upper_pivot if x > F32((upper + val) * F32(0.5)) else pivot
    return lower_pivot if x < F32((lower + val) * F32(0.5)) else pivot


def straddlers(m, boundaries, encode, per_boundary, limit):
    """Float32 values |x| < m near boundary * m whose code differs between x*(1/m) and x/m."""
    m = F32(m)
    r = F32(F32(1.0) / m)
    out = []
    for b in boundaries:
        x = F32(F32(b) * m)
        found = 0
        for k in range(-96, 97):
            xk = x
            for _ in range(abs(k)):
                xk = np.nextafter(xk, F32(np.inf) if k > 0 else F32(-np.inf))
            if abs(xk) >= m:
                continue
            if encode(F32(xk * r)) != encode(F32(xk / m)):
                out.append(xk)
                found += 1
                if found == per_boundary:
                    break
        if len(out) >= limit:
            break
    return out[:limit]


def crafted_block(m, values, size, seed):
    """[m, values..., small random fill] of `size` float32 elements, absmax exactly m."""
    g = np.random.default_rng(seed)
    blk = (g.standard_normal(size).astype(F32) * F32(m) * F32(0.2)).clip(-F32(m) * F32(0.9), F32(m) * F32(0.9))
    blk[0] = F32(m)
    blk[1:1 + len(values)] = values
    assert np.max(np.abs(blk)) == F32(m)
    return blk.astype(F32)


# ---------------------------------------------------------------- NF4 ------------------------------------------------
nf4 = {}
cases = {"a": ((96, 200), 1001), "b": ((64, 128), 1002), "c": ((33, 37), 1003), "d": ((3, 43), 1004)}
for c, (shape, seed) in cases.items():
    w = torch.randn(shape, generator=gen(seed), dtype=torch.float32) * 0.05
    if c == "c":
        w.view(-1)[:64] = 0.0  # an all-zero block
    if c == "d":
        # n = 129: two 64-blocks of reciprocal-vs-division straddlers, then a last block of one zero (absmax 0,
        # 0 * (1/0) = NaN for the element and for the zero padding of the odd n -> byte 0x00).
        flat = np.zeros(129, dtype=F32)
        for b, ms in enumerate(((0.0371, 0.0413, 0.0517, 0.0629, 0.0733), (0.8125, 0.7333, 0.6311, 0.9377, 1.1717))):
            # the absmax (of a few candidates) that gives the most straddlers
            m, vals = max(((m, straddlers(m, NF4_T, nf4_encode, 4, 63)) for m in ms), key=lambda mv: len(mv[1]))
            print(f"nf4 d: block {b} absmax {m}: {len(vals)} straddlers")
            flat[b * 64:(b + 1) * 64] = crafted_block(m, vals, 64, 5000 + b)
        w = torch.from_numpy(flat).reshape(shape).clone()
    nf4[f"w.{c}"] = w.clone()
    wd = w.to(DEV)
    for mode, dq in (("plain", False), ("dq", True)):
        packed, qs = F.quantize_4bit(wd, blocksize=64, compress_statistics=dq, quant_type="nf4")
        deq = F.dequantize_4bit(packed, qs)
        assert packed.dtype == torch.uint8 and tuple(packed.shape) == ((w.numel() + 1) // 2, 1), packed.shape
        assert deq.dtype == torch.float32 and tuple(deq.shape) == shape
        p = f"{c}.{mode}."
        nf4[p + "packed"] = cpu(packed)
        nf4[p + "deq"] = cpu(deq)
        nf4[p + "absmax"] = cpu(qs.absmax)
        if dq:
            nf4[p + "nested_absmax"] = cpu(qs.state2.absmax)
            nf4[p + "offset"] = cpu(qs.offset.reshape(1))
            nf4[p + "nested_quant_map"] = cpu(qs.state2.code)
            am = F.dequantize_blockwise(qs.absmax, qs.state2)
            am += qs.offset
            nf4[p + "absmax_deq"] = cpu(am)
            raw = nf4[f"{c}.plain.absmax"]
            # How the GPU mean relates to host means (documents the offset's last bits).
            o = qs.offset.item()
            o64 = float(raw.double().mean())
            print(f"nf4 {c}: offset gpu={o!r} fp64-mean={o64!r} fp32(fp64-mean)={float(np.float32(o64))!r} "
                  f"cpu-torch-mean={float(raw.mean())!r}")
        else:
            assert qs.absmax.dtype == torch.float32
        nf4["quant_map"] = cpu(qs.code)
        for k, v in qs.as_dict(packed=True).items():
            nf4[f"sd.{c}.{mode}.weight.{k}"] = cpu(v)
        nf4[f"sd.{c}.{mode}.weight"] = cpu(packed)
        qsj = bytes(nf4[f"sd.{c}.{mode}.weight.quant_state.bitsandbytes__nf4"].tolist()).decode()
        print(f"nf4 {c}.{mode}: shape {shape} blocks {qs.absmax.numel()} quant_state json {qsj}")
    # determinism: quantizing again gives the same bytes
    packed2, _ = F.quantize_4bit(wd, blocksize=64, compress_statistics=True, quant_type="nf4")
    assert torch.equal(cpu(packed2), nf4[f"{c}.dq.packed"])

save_file(nf4, os.path.join(OUT, "nf4.safetensors"), metadata=meta({"blocksize": 64, "nested_blocksize": 256,
                                                                   "weight_scale": "randn * 0.05"}))
print("wrote nf4.safetensors:", len(nf4), "tensors")

# ------------------------------------------------------- 8-bit dynamic blockwise -------------------------------------
d8 = {}
maps = {"signed": F.create_dynamic_map(signed=True), "unsigned": F.create_dynamic_map(signed=False)}
for k, m in maps.items():
    assert m.dtype == torch.float32 and m.numel() == 256
    d8[f"map.{k}"] = cpu(m)


def ties(m):
    m = m.to(torch.float32)
    mids = ((m[:-1] + m[1:]) * 0.5).to(torch.float32)  # float32 midpoints, as the kernel's (upper + val) * 0.5f
    one = torch.ones(1, dtype=torch.float32)
    up = torch.nextafter(mids, torch.full_like(mids, 2.0))
    dn = torch.nextafter(mids, torch.full_like(mids, -2.0))
    return torch.cat([one, mids, one, up, one, dn])  # 3 blocks of 256, absmax exactly 1.0 each


xs = {
    "signed": (torch.randn(1000, generator=gen(2001)), "signed"),
    "unsigned": (torch.randn(1000, generator=gen(2002)) ** 2, "unsigned"),
    "ties_signed": (ties(maps["signed"]), "signed"),
    "ties_unsigned": (ties(maps["unsigned"]), "unsigned"),
}
for mk in ("signed", "unsigned"):
    code = maps[mk].numpy().astype(F32)
    mids = [F32((code[i] + code[i + 1]) * F32(0.5)) for i in range(255)]
    blocks = []
    for b, m in enumerate((0.0123, 0.7, 3.3)):
        vals = straddlers(m, mids, lambda x: dquantize(code, x), 1, 255)
        print(f"dynamic8 recip_{mk}: block {b} absmax {m}: {len(vals)} straddlers")
        blocks.append(crafted_block(m, vals, 256, 6000 + b))
    xs["recip_" + mk] = (torch.from_numpy(np.concatenate(blocks)), mk)
for k, (x, mk) in xs.items():
    x = x.to(torch.float32).contiguous()
    code = maps[mk].to(DEV)
    q, st = F.quantize_blockwise(x.to(DEV), code=code, blocksize=256)
    deq = F.dequantize_blockwise(q, absmax=st.absmax, code=code, blocksize=256)
    d8[f"x.{k}"] = x.clone()
    d8[f"{k}.codes"] = cpu(q)
    d8[f"{k}.absmax"] = cpu(st.absmax)
    d8[f"{k}.deq"] = cpu(deq)
    print(f"dynamic8 {k}: n={x.numel()} map={mk} blocks={st.absmax.numel()}")
save_file(d8, os.path.join(OUT, "dynamic8.safetensors"), metadata=meta({"blocksize": 256,
          "call": "quantize_blockwise(x, code=map, blocksize=256); dequantize_blockwise(q, absmax=absmax, code=map, blocksize=256)"}))
print("wrote dynamic8.safetensors:", len(d8), "tensors")

# ------------------------------------------------------------ AdamW --------------------------------------------------
H = dict(beta1=0.9, beta2=0.999, beta3=0.0, alpha=0.0, eps=1e-8, lr=1e-3, weight_decay=0.01, gnorm_scale=1.0,
         skip_zeros=False, blocksize=256)
N = 1000
aw = {}
p0 = torch.randn(N, generator=gen(3000)) * 0.5
aw["p0"] = p0.clone()
grads = []
for k in (1, 2, 3):
    g = torch.randn(N, generator=gen(3000 + k))
    # per-256-block scales so the block absmax values differ by orders of magnitude; a few exact zeros
    scale = torch.tensor([1e-3, 1e-1, 1.0, 3e-2])[torch.arange(N) // 256]
    g = g * scale
    g[::97] = 0.0
    aw[f"g{k}"] = g.clone()
    grads.append(g)
qmap1 = F.create_dynamic_map(signed=True)
qmap2 = F.create_dynamic_map(signed=False)
aw["qmap1"] = qmap1.clone()
aw["qmap2"] = qmap2.clone()

p = p0.clone().to(DEV)
nblk = (N + 255) // 256
s1 = torch.zeros(N, dtype=torch.uint8, device=DEV)
s2 = torch.zeros(N, dtype=torch.uint8, device=DEV)
a1 = torch.zeros(nblk, dtype=torch.float32, device=DEV)
a2 = torch.zeros(nblk, dtype=torch.float32, device=DEV)
q1, q2 = qmap1.to(DEV), qmap2.to(DEV)
for k, g in enumerate(grads, start=1):
    F.optimizer_update_8bit_blockwise("adam", g.to(DEV), p, s1, s2, H["beta1"], H["beta2"], H["beta3"], H["alpha"],
                                      H["eps"], k, H["lr"], q1, q2, a1, a2, weight_decay=H["weight_decay"],
                                      gnorm_scale=H["gnorm_scale"], skip_zeros=H["skip_zeros"])
    aw[f"adam8.p.{k}"] = cpu(p)
    aw[f"adam8.state1.{k}"] = cpu(s1)
    aw[f"adam8.state2.{k}"] = cpu(s2)
    aw[f"adam8.absmax1.{k}"] = cpu(a1)
    aw[f"adam8.absmax2.{k}"] = cpu(a2)

p = p0.clone().to(DEV)
m = torch.zeros(N, dtype=torch.float32, device=DEV)
v = torch.zeros(N, dtype=torch.float32, device=DEV)
for k, g in enumerate(grads, start=1):
    F.optimizer_update_32bit("adam", g.to(DEV), p, m, H["beta1"], H["eps"], k, H["lr"], state2=v, beta2=H["beta2"],
                             beta3=H["beta3"], alpha=H["alpha"], weight_decay=H["weight_decay"],
                             gnorm_scale=H["gnorm_scale"], unorm_vec=None, max_unorm=0.0, skip_zeros=H["skip_zeros"])
    aw[f"adam32.p.{k}"] = cpu(p)
    aw[f"adam32.m.{k}"] = cpu(m)
    aw[f"adam32.v.{k}"] = cpu(v)

# Cross-check: the optimizer classes (what users run) give the same bytes as the functional calls above.
try:
    for cls, tag in ((bnb.optim.AdamW8bit, "adam8"), (bnb.optim.AdamW32bit, "adam32")):
        prm = torch.nn.Parameter(p0.clone().to(DEV))
        kw = dict(lr=H["lr"], betas=(H["beta1"], H["beta2"]), eps=H["eps"], weight_decay=H["weight_decay"])
        if tag == "adam8":
            kw["min_8bit_size"] = 0
        opt = cls([prm], **kw)
        for g in grads:
            prm.grad = g.clone().to(DEV)
            opt.step()
        same = torch.equal(cpu(prm), aw[f"{tag}.p.3"])
        print(f"adamw class {cls.__name__} == functional {tag}: {same}")
except Exception as e:  # informative only
    print("adamw class cross-check skipped:", repr(e))

save_file(aw, os.path.join(OUT, "adamw8bit.safetensors"), metadata=meta({
    **{k: repr(v) for k, v in H.items()},
    "steps": "1,2,3",
    "call8": "F.optimizer_update_8bit_blockwise('adam', g, p, state1, state2, beta1, beta2, beta3, alpha, eps, step, lr, "
             "qmap1, qmap2, absmax1, absmax2, weight_decay=weight_decay, gnorm_scale=gnorm_scale, skip_zeros=skip_zeros)",
    "call32": "F.optimizer_update_32bit('adam', g, p, m, beta1, eps, step, lr, state2=v, beta2=beta2, beta3=beta3, "
              "alpha=alpha, weight_decay=weight_decay, gnorm_scale=gnorm_scale, unorm_vec=None, max_unorm=0.0, "
              "skip_zeros=skip_zeros)",
    "init": "state1/state2 uint8 zeros, absmax1/absmax2 fp32 zeros (ceil(n/256)), m/v fp32 zeros",
}))
print("wrote adamw8bit.safetensors:", len(aw), "tensors")

# ------------------------------------------------------- Llama-2-7B NF4 sizes ----------------------------------------
def nbytes(t):
    return t.numel() * t.element_size()


shapes = {"q_k_v_o [4096, 4096]": (4096, 4096), "gate_up [11008, 4096]": (11008, 4096),
          "down [4096, 11008]": (4096, 11008)}
per = {}
for name, shp in shapes.items():
    w = torch.randn(shp, generator=gen(4000), dtype=torch.float32).to(torch.bfloat16).to(DEV)
    if DEV == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
    packed, qs = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    if DEV == "cuda":
        torch.cuda.synchronize()
        grown = torch.cuda.memory_allocated() - before
    else:
        grown = None
    comp = {
        "weight_packed": nbytes(packed),
        "absmax_u8": nbytes(qs.absmax),
        "nested_absmax_f32": nbytes(qs.state2.absmax),
        "quant_map_f32": nbytes(qs.code),
        "nested_quant_map_f32": nbytes(qs.state2.code),
        "nested_offset_f32": nbytes(qs.offset),
    }
    sd = qs.as_dict(packed=True)
    serial = {k: nbytes(v) for k, v in sd.items()}
    serial["weight"] = nbytes(packed)
    per[name] = {
        "shape": list(shp),
        "numel": w.numel(),
        "blocksize": qs.blocksize,
        "nested_blocksize": qs.state2.blocksize,
        "input_dtype": "bfloat16",
        "components_bytes": comp,
        "total_bytes": sum(comp.values()),
        "serialized_tensor_bytes": serial,
        "serialized_total_bytes": sum(serial.values()),
        "cuda_memory_allocated_growth": grown,
        "bits_per_param_total": 8.0 * sum(comp.values()) / w.numel(),
    }
    del w, packed, qs
L, C, HID, V = 32, 4096, 11008, 32000
lin = (4 * per["q_k_v_o [4096, 4096]"]["total_bytes"] + 2 * per["gate_up [11008, 4096]"]["total_bytes"]
       + per["down [4096, 11008]"]["total_bytes"])
norms = (2 * L + 1) * C
model = {
    "config": {"num_hidden_layers": L, "hidden_size": C, "intermediate_size": HID, "vocab_size": V,
               "linears_per_layer": "q,k,v,o [4096,4096]; gate,up [11008,4096]; down [4096,11008]"},
    "per_shape": per,
    "linear_nf4_dq_bytes_per_layer": lin,
    "linear_nf4_dq_bytes_all_layers": L * lin,
    "embed_tokens_bf16_bytes": V * C * 2,
    "lm_head_bf16_bytes": V * C * 2,
    "norms_count_elements": norms,
    "norms_bf16_bytes": norms * 2,
    "norms_fp32_bytes": norms * 4,
    "total_bytes_nf4_linears_bf16_rest": L * lin + 2 * V * C * 2 + norms * 2,
    "notes": "components_bytes are the tensors bnb keeps per Linear4bit weight (numel * element_size): packed 4-bit "
             "weight, uint8 absmax codes, fp32 nested absmax (one per 256 blocks), fp32 quant_map (16), fp32 nested "
             "quant_map (256, a per-weight copy), fp32 offset scalar. serialized_* is what save_file writes per weight "
             "(as_dict(packed=True) + weight; the quant_state JSON is a uint8 tensor). cuda_memory_allocated_growth "
             "includes the caching allocator's 512-byte rounding of each tensor. norms: 2 per layer + final norm.",
    "versions": VERSIONS,
}
with open(os.path.join(OUT, "llama2_7b_nf4_bytes.json"), "w") as f:
    json.dump(model, f, indent=2, sort_keys=True)
    f.write("\n")
print("wrote llama2_7b_nf4_bytes.json: linear bytes all layers", L * lin, "total", model["total_bytes_nf4_linears_bf16_rest"])
print("done")
