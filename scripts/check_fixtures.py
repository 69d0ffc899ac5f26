#!/usr/bin/env python3
"""Check the reference fixtures in tests/fixtures/ (written by scripts/make_fixtures.py).

For every fixture folder:
  1. reload the checkpoint with transformers (float32, eager attention) and check that it
     reproduces every logits_<k>.npy (max abs err / max |ref| <= 1e-6; normally bit-identical);
  2. recompute the logits with an independent NumPy float64 implementation of the Qwen2 forward
     pass that reads the safetensors files with a plain parser (no torch, no safetensors
     library), the way qmesh does, and check it agrees (rel <= 1e-5); this validates both the
     files and the reading of the model that qmesh implements (RoPE halves, GQA grouping,
     biases, tied embeddings, rms_norm_eps, rope_theta from config.json);
  3. check the .npy files are '<f4', C order, shape (n_ids, vocab_size), finite;
  4. check tests/tools/npy_compare accepts identical files and rejects perturbed ones
     (built with cc unless --npy-compare PATH is given).

    /tmp/fixenv/bin/python scripts/check_fixtures.py [--fixtures DIR] [--npy-compare PATH]

Exit status 0 when everything holds. Uses the venv described in make_fixtures.py.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import check_versions  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
failures = []


def check(cond, msg):
    if cond:
        print(f"  ok: {msg}")
    else:
        print(f"  FAIL: {msg}")
        failures.append(msg)


# ---- plain safetensors reader (float64 result) ---------------------------------------------

def read_safetensors(path, np):
    out = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = data[a:b]
        dt = t["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: {name}: dtype {dt}")
        out[name] = (arr.astype(np.float64).reshape(t["shape"]), dt)
    return out


def load_weights(d, np):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        w = {}
        for fn in sorted(set(wm.values())):
            part = read_safetensors(os.path.join(d, fn), np)
            for k, v in part.items():
                assert wm[k] == fn, (k, fn)
                w[k] = v
        assert set(w) == set(wm), "index lists tensors missing from the shards"
        return w
    return read_safetensors(os.path.join(d, "model.safetensors"), np)


def numpy_forward(cfg, w, ids, np):
    """Qwen2 forward in float64 from the raw weights (what qmesh computes, without the mesh)."""
    W = {k: v[0] for k, v in w.items()}
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    T = len(ids)

    def rms(x, g):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g

    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)  # (hd/2,)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]     # (T, hd/2)
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)

    def rope(x):  # x (heads, T, hd): rotate halves (HF rotate_half convention)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + np.concatenate([-x2, x1], axis=-1) * sin

    x = W["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = h @ W[p + "self_attn.q_proj.weight"].T + W[p + "self_attn.q_proj.bias"]
        k = h @ W[p + "self_attn.k_proj.weight"].T + W[p + "self_attn.k_proj.bias"]
        v = h @ W[p + "self_attn.v_proj.weight"].T + W[p + "self_attn.v_proj.bias"]
        q = rope(q.reshape(T, nh, hd).transpose(1, 0, 2))
        k = rope(k.reshape(T, nkv, hd).transpose(1, 0, 2))
        v = v.reshape(T, nkv, hd).transpose(1, 0, 2)
        g = nh // nkv
        att = np.empty((nh, T, hd))
        for hh in range(nh):
            kv = hh // g  # query head hh uses KV head hh // (nh / nkv)
            s = q[hh] @ k[kv].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            att[hh] = s @ v[kv]
        att = att.transpose(1, 0, 2).reshape(T, nh * hd)
        x = x + att @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        gt = h @ W[p + "mlp.gate_proj.weight"].T
        up = h @ W[p + "mlp.up_proj.weight"].T
        x = x + ((gt / (1.0 + np.exp(-gt))) * up) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    return x @ head.T


def rel_err(a, b, np):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / np.abs(b).max())


def check_fixture(d, mods):
    torch, np = mods["torch"], mods["numpy"]
    from transformers import Qwen2ForCausalLM

    name = os.path.basename(d)
    print(f"{name}:")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    V = cfg["vocab_size"]
    check(cfg.get("model_type") == "qwen2", "config.json model_type qwen2")
    check("rope_theta" in cfg and "torch_dtype" in cfg, "config.json has classic rope_theta and torch_dtype")
    with open(os.path.join(d, "ids.txt")) as f:
        seqs = [[int(t) for t in line.split()] for line in f if line.strip()]
    check(all(0 <= i < V for s in seqs for i in s), f"{len(seqs)} id lines, all ids in [0, {V})")

    w = load_weights(d, np)
    dtypes = {dt for _, dt in w.values()}
    want = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[cfg["torch_dtype"]]
    check(dtypes == {want}, f"all tensors stored as {want} (found {sorted(dtypes)})")
    tied = cfg.get("tie_word_embeddings", False)
    check(("lm_head.weight" in w) != tied, f"lm_head.weight {'absent (tied)' if tied else 'present (untied)'}")

    ref = Qwen2ForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    for k, seq in enumerate(seqs):
        p = os.path.join(d, f"logits_{k}.npy")
        arr = np.load(p)
        with open(p, "rb") as f:
            hdr = f.read(128)
        ok_fmt = (arr.dtype == np.dtype("<f4") and arr.flags.c_contiguous and b"'fortran_order': False" in hdr
                  and arr.shape == (len(seq), V) and bool(np.isfinite(arr).all()))
        check(ok_fmt, f"logits_{k}.npy '<f4' C-order shape {arr.shape} finite")
        with torch.no_grad():
            got = ref(input_ids=torch.tensor([seq]), use_cache=False).logits[0].numpy()
        r = rel_err(got, arr, np)
        check(r <= 1e-6, f"line {k}: transformers reproduces logits (rel {r:.3g}"
              f"{', bit-identical' if np.array_equal(got, arr) else ''})")
        mine = numpy_forward(cfg, w, seq, np)
        r2 = rel_err(mine, arr, np)
        check(r2 <= 1e-5, f"line {k}: independent float64 NumPy forward agrees (rel {r2:.3g})")


def check_tool(tool, fixdir, np):
    print("npy_compare:")
    ref = None
    for root, _, files in os.walk(fixdir):
        if "logits_2.npy" in files:
            ref = os.path.join(root, "logits_2.npy")
            break
    a = np.load(ref)
    with tempfile.TemporaryDirectory() as t:
        def run(*args):
            return subprocess.run([tool, *args], capture_output=True, text=True).returncode

        same = os.path.join(t, "same.npy")
        np.save(same, a.copy())
        check(run(same, ref, "--exact") == 0, "accepts an identical copy with --exact")
        small = a.copy()
        small.flat[7] = np.nextafter(small.flat[7], np.float32(np.inf))
        np.save(os.path.join(t, "small.npy"), small)
        check(run(os.path.join(t, "small.npy"), ref) == 0, "accepts a 1-ulp change within --rel 1e-4")
        check(run(os.path.join(t, "small.npy"), ref, "--exact") == 1, "rejects a 1-ulp change with --exact")
        big = a.copy()
        big.flat[11] += 2e-4 * np.abs(a).max()
        np.save(os.path.join(t, "big.npy"), big)
        check(run(os.path.join(t, "big.npy"), ref) == 1, "rejects a 2e-4 relative change")
        check(run(os.path.join(t, "big.npy"), ref, "--rel", "1e-3") == 0, "accepts it with --rel 1e-3")
        np.save(os.path.join(t, "f64.npy"), a.astype(np.float64))
        check(run(os.path.join(t, "f64.npy"), ref) == 2, "refuses a float64 file")
        np.save(os.path.join(t, "short.npy"), a[:-1])
        check(run(os.path.join(t, "short.npy"), ref) == 2, "refuses a shape mismatch")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "tests", "fixtures"))
    ap.add_argument("--npy-compare", help="path of a built npy_compare (default: build it with cc)")
    args = ap.parse_args()
    mods = check_versions()
    np = mods["numpy"]
    fixdir = os.path.abspath(args.fixtures)
    names = sorted(n for n in os.listdir(fixdir) if os.path.isfile(os.path.join(fixdir, n, "ids.txt")))
    check(len(names) > 0, f"fixtures found in {fixdir}: {names}")
    with open(os.path.join(fixdir, "MANIFEST.json")) as f:
        man = json.load(f)
    check(sorted(fx["name"] for fx in man["fixtures"]) == names, "MANIFEST.json lists every fixture")
    total = sum(os.path.getsize(os.path.join(r, fn)) for r, _, fs in os.walk(fixdir) for fn in fs)
    check(total < 6 * 1024 * 1024, f"tests/fixtures is {total} bytes (< 6 MiB)")
    for n in names:
        check_fixture(os.path.join(fixdir, n), mods)

    tool = args.npy_compare
    if not tool:
        tmp = tempfile.mkdtemp()
        tool = os.path.join(tmp, "npy_compare")
        subprocess.run(["cc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", tool,
                        os.path.join(ROOT, "tests", "tools", "npy_compare.c"), "-lm"], check=True)
    check_tool(tool, fixdir, np)

    if failures:
        print(f"\n{len(failures)} check(s) FAILED")
        sys.exit(1)
    print("\nall fixture checks passed")


if __name__ == "__main__":
    main()
