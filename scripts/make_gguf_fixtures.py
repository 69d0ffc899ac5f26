#!/usr/bin/env python3
"""Build reference fixtures for the real GGUF models (tests/fixtures/gguf/<model>/) with transformers.

For each GGUF file (default: models/*.gguf, fetched by scripts/fetch_models.sh):

1. read it with gguf.GGUFReader and dequantize every tensor to float32 with gguf.quants.dequantize
   (gguf-py's numpy twin of ggml's dequantization);
2. map the GGUF names to Hugging Face Qwen2 names and write a float32 safetensors checkpoint with a
   config.json built from the GGUF metadata (plus tokenizer.json) into a temporary folder. GGUF
   lists ne[0] first, so a [ne0, ne1] tensor is the numpy/HF array [ne1, ne0] = [out, in]. For the
   qwen2 architecture llama.cpp's converter (conversion/qwen.py, Qwen2Model) does NOT permute q/k
   (only LlamaModel does; qwen2 uses NEOX RoPE = HF rotate_half), so no un-permute is applied;
3. run transformers Qwen2ForCausalLM in float32 with eager attention on a few fixed token-id
   sequences (tokenized with the Hugging Face tokenizer from shared/data/tokenizers/qwen2.5);
4. store compactly (the full logits would be 151936 columns per position):

   tests/fixtures/gguf/MANIFEST.json      versions, and per model the GGUF name, size and sha256
   tests/fixtures/gguf/<model>/
     ids.txt                one token-id sequence per line (space separated), lines k = 0, 1, ...
     cols.npy               '<i4' (m,)       vocabulary columns kept, ascending: every STRIDE-th
                                             column plus the top-TOPK columns of every position
                                             of every line (shared by all lines)
     logits_cols_<k>.npy    '<f4' (n_k, m)   logits[:, cols] of line k (n_k = its number of ids)
     max_abs_<k>.npy        '<f4' (n_k,)     max over the WHOLE vocabulary of |logit| per position
     argmax_<k>.npy         '<i4' (n_k,)     argmax over the whole vocabulary per position
     dequant_<TYPE>.npy     '<f4' (r, c)     the first c = min(ne0, 1024) values of row 0 and of the
                                             last row (r = 2; 1 for a vector) of the first tensor of
                                             each GGML type in the file, dequantized; fixture.json
                                             names the tensor and gives the sha256 of all of it
                                             dequantized (float32 little endian, HF [out, in] order)
     fixture.json           config, sequences (text + ids), shapes, greedy continuation of line 0,
                            and (with --f64-check) how far transformers' own float32 logits are
                            from a float64 run: a floor for the tolerance of a float32 engine

Usage
-----
    /tmp/fixenv/bin/python scripts/make_gguf_fixtures.py                      # models/*.gguf
    /tmp/fixenv/bin/python scripts/make_gguf_fixtures.py models/X.gguf --f64-check
    ... --keep-hf DIR   also keep the dequantized float32 HF folder(s) (DIR/<model>/), which qmesh
                        can load too (config.json, model.safetensors, tokenizer.json)

Versions are pinned (PINNED below; the script refuses others): the same torch, transformers, numpy
and safetensors as scripts/make_fixtures.py, plus gguf==0.19.0. Make the venv as described in
scripts/make_fixtures.py and add `pip install gguf==0.19.0` (gguf needs numpy, pyyaml, tqdm, which
are already there or come with it). A 1.5B model needs about 7 GB of memory (the float32 weights
once; the safetensors file is written tensor by tensor) and 7 GB of temporary disk; --f64-check on
it needs about 13 GB more and is skipped when /proc/meminfo says that much is not available.
"""

import argparse
import glob
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time

PINNED = {
    "torch": "2.15.0",
    "transformers": "5.24.0",
    "numpy": "2.4.6",
    "safetensors": "0.8.0",
    "gguf": "0.19.0",
}

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The sequences: a ChatML prompt (the shape of qmesh generate --chat, with a short system
# message) and a piece of code. Tokenized with the Hugging Face tokenizer, special tokens parsed.
SEQUENCES = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWrite a function that adds two numbers.<|im_end|>\n<|im_start|>assistant\n",
    "def add(a, b):\n    return a + b\n",
]
DEQUANT_COLS = 1024
GREEDY_LINE = 0
GREEDY_TOKENS = 24


def log(msg):
    print(msg, flush=True)


def check_versions():
    """Exit with a message unless the pinned versions are the ones installed."""
    import importlib
    import importlib.metadata as md
    bad, mods = [], {}
    for name, want in PINNED.items():
        try:
            mods[name] = importlib.import_module(name)
            have = md.version(name)
        except Exception as e:  # ImportError, or a CUDA library that fails to load
            bad.append(f"{name}=={want} (import failed: {e})")
            continue
        if have.split("+")[0] != want:
            bad.append(f"{name}=={want} (found {have})")
    if bad:
        sys.stderr.write("make_gguf_fixtures: needs exactly these versions (see the docstring):\n")
        for b in bad:
            sys.stderr.write(f"  {b}\n")
        sys.exit(2)
    import gguf.quants  # noqa: F401
    return mods


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(8 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def f32_decimal(x):
    """GGUF stores float32: 9.999999974752427e-07 -> 1e-06 (the value of the original config)."""
    import numpy as np
    return float(str(np.float32(x)))


def hf_name(gguf_name):
    """GGUF tensor name -> Hugging Face Qwen2 name (None if unknown)."""
    top = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    if gguf_name in top:
        return top[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) != 4 or parts[0] != "blk":
        return None
    _, n, what, kind = parts
    m = {
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    }.get(what)
    if m is None or kind not in ("weight", "bias"):
        return None
    return f"model.layers.{int(n)}.{m}.{kind}"


def make_config(reader, tensor_names):
    arch = field(reader, "general.architecture")
    if arch != "qwen2":
        raise SystemExit(f"make_gguf_fixtures: architecture '{arch}' is not qwen2")
    a = "qwen2."
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    hidden = int(field(reader, a + "embedding_length"))
    heads = int(field(reader, a + "attention.head_count"))
    cfg = dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2",
        vocab_size=vocab, hidden_size=hidden,
        intermediate_size=int(field(reader, a + "feed_forward_length")),
        num_hidden_layers=int(field(reader, a + "block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(field(reader, a + "attention.head_count_kv", heads)),
        head_dim=hidden // heads,
        max_position_embeddings=int(field(reader, a + "context_length", 32768)),
        rms_norm_eps=f32_decimal(field(reader, a + "attention.layer_norm_rms_epsilon")),
        rope_theta=f32_decimal(field(reader, a + "rope.freq_base", 10000.0)),
        tie_word_embeddings="output.weight" not in tensor_names,
        bos_token_id=int(field(reader, "tokenizer.ggml.bos_token_id", 151643)),
        eos_token_id=int(field(reader, "tokenizer.ggml.eos_token_id", 151645)),
        hidden_act="silu", attention_dropout=0.0, use_sliding_window=False,
    )
    return cfg


def write_hf_folder(reader, cfg, d, tokenizer_dir, np, gguf_quants):
    """Dequantize every tensor and write d/model.safetensors (F32) tensor by tensor, so that only
    one dequantized tensor is in memory at a time. Returns the dequant samples per GGML type."""
    entries, offset = [], 0
    for t in reader.tensors:
        name = hf_name(t.name)
        if name is None:
            raise SystemExit(f"make_gguf_fixtures: no Hugging Face name for GGUF tensor {t.name}")
        shape = [int(x) for x in reversed([int(s) for s in t.shape])]  # ne[0] last
        n = int(np.prod(shape))
        entries.append((t, name, shape, offset, offset + 4 * n))
        offset += 4 * n
    header = {"__metadata__": {"format": "pt", "source": "dequantized GGUF (gguf-py)"}}
    for t, name, shape, b, e in entries:
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [b, e]}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    samples = {}
    t0 = time.time()
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for i, (t, name, shape, b, e) in enumerate(entries):
            arr = gguf_quants.dequantize(t.data, t.tensor_type)
            arr = np.ascontiguousarray(arr, dtype="<f4").reshape(shape)
            assert arr.nbytes == e - b, (t.name, arr.shape, shape)
            f.write(arr.tobytes())
            qt = t.tensor_type.name
            if qt not in samples:
                rows = arr.reshape(-1, shape[-1])
                keep = sorted({0, rows.shape[0] - 1})
                ncol = min(rows.shape[1], DEQUANT_COLS)
                samples[qt] = {
                    "tensor": t.name, "hf_name": name, "shape_hf": shape, "rows": keep, "cols": ncol,
                    "data": rows[keep, :ncol].copy(),
                    "sha256_f32": hashlib.sha256(arr.tobytes()).hexdigest(),
                }
            if (i + 1) % 50 == 0 or i + 1 == len(entries):
                log(f"  dequantized {i + 1}/{len(entries)} tensors ({time.time() - t0:.0f} s)")
            del arr
    with open(os.path.join(d, "config.json"), "w") as f:
        full = dict(cfg)
        full["torch_dtype"] = "float32"
        full["rope_scaling"] = None
        full["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg["rope_theta"]}
        full["max_window_layers"] = cfg["num_hidden_layers"]
        full["sliding_window"] = None
        json.dump(full, f, indent=2, sort_keys=True)
        f.write("\n")
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        p = os.path.join(tokenizer_dir, fn)
        if os.path.exists(p):
            shutil.copy(p, os.path.join(d, fn))
    return samples


def compact_json(x, ind=""):
    """JSON with one key per line but lists of numbers/strings on one line."""
    if isinstance(x, dict):
        if not x:
            return "{}"
        inner = ind + "  "
        items = [f"{inner}{json.dumps(k)}: {compact_json(v, inner)}" for k, v in x.items()]
        return "{\n" + ",\n".join(items) + "\n" + ind + "}"
    if isinstance(x, list) and any(isinstance(v, (dict, list)) for v in x):
        inner = ind + "  "
        return "[\n" + ",\n".join(inner + compact_json(v, inner) for v in x) + "\n" + ind + "]"
    return json.dumps(x, ensure_ascii=False)


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def save(path, arr, np, dtype):
    np.save(path, np.ascontiguousarray(arr, dtype=dtype))


def build(gguf_path, outdir, tokenizer_dir, args, mods):
    torch, np = mods["torch"], mods["numpy"]
    gguf = mods["gguf"]
    import gguf.quants as gguf_quants
    from tokenizers import Tokenizer
    from transformers import Qwen2ForCausalLM

    name = os.path.basename(gguf_path)
    if name.endswith(".gguf"):
        name = name[:-5]
    log(f"{name}: sha256 of {gguf_path}")
    sha = sha256_file(gguf_path)
    size = os.path.getsize(gguf_path)
    reader = gguf.GGUFReader(gguf_path)
    tensor_names = [t.name for t in reader.tensors]
    general_name = field(reader, "general.name")
    cfg = make_config(reader, tensor_names)
    types = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    log(f"  {len(tensor_names)} tensors {types}; config {cfg}")

    tmp_parent = args.keep_hf or args.tmp or None
    if args.keep_hf:
        hfdir = os.path.join(args.keep_hf, name)
        if os.path.isdir(hfdir):
            shutil.rmtree(hfdir)
        os.makedirs(hfdir)
        cleanup = None
    else:
        cleanup = tempfile.mkdtemp(prefix="gguf-hf-", dir=tmp_parent)
        hfdir = cleanup
    try:
        samples = write_hf_folder(reader, cfg, hfdir, tokenizer_dir, np, gguf_quants)
        del reader
        log(f"  wrote {hfdir} ({os.path.getsize(os.path.join(hfdir, 'model.safetensors'))} bytes)")
        model, info = Qwen2ForCausalLM.from_pretrained(hfdir, dtype=torch.float32, attn_implementation="eager",
                                                       output_loading_info=True)
        model.eval()
        missing = [k for k in info.get("missing_keys", []) if "rotary" not in k]
        unexpected = list(info.get("unexpected_keys", []))
        if missing or unexpected or info.get("mismatched_keys"):
            raise SystemExit(f"make_gguf_fixtures: loading mismatch: missing {missing}, unexpected {unexpected}, "
                             f"mismatched {info.get('mismatched_keys')}")
        if not cfg["tie_word_embeddings"]:
            assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
            assert not torch.equal(model.lm_head.weight[:4], model.model.embed_tokens.weight[:4])
        assert abs(model.config.rope_parameters["rope_theta"] - cfg["rope_theta"]) < 1e-6
        assert model.config.rms_norm_eps == cfg["rms_norm_eps"]
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)

    tok = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    seqs = [tok.encode(s, add_special_tokens=False).ids for s in SEQUENCES]
    for s, ids in zip(SEQUENCES, seqs):
        assert tok.decode(ids, skip_special_tokens=False) == s, "tokenizer round trip"
        assert all(0 <= i < cfg["vocab_size"] for i in ids)

    d = os.path.join(outdir, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    with open(os.path.join(d, "ids.txt"), "w") as f:
        for ids in seqs:
            f.write(" ".join(str(i) for i in ids) + "\n")

    logits_all = []
    with torch.no_grad():
        for k, ids in enumerate(seqs):
            t0 = time.time()
            out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
            lg = out.logits[0].float().numpy().copy()
            assert lg.shape == (len(ids), cfg["vocab_size"]) and np.isfinite(lg).all()
            logits_all.append(lg)
            log(f"  line {k}: {len(ids)} ids, forward {time.time() - t0:.1f} s, max|logit| {np.abs(lg).max():.3f}")

    V = cfg["vocab_size"]
    cols = set(range(0, V, args.stride))
    for lg in logits_all:
        top = np.argsort(-lg, axis=1, kind="stable")[:, :args.topk]
        cols.update(int(c) for c in top.ravel())
    cols = np.array(sorted(cols), dtype="<i4")
    save(os.path.join(d, "cols.npy"), cols, np, "<i4")
    files = {"cols.npy": {"dtype": "<i4", "shape": list(cols.shape)}}
    lines = []
    for k, lg in enumerate(logits_all):
        sub = lg[:, cols]
        mx = np.abs(lg).max(axis=1)
        am = lg.argmax(axis=1)
        save(os.path.join(d, f"logits_cols_{k}.npy"), sub, np, "<f4")
        save(os.path.join(d, f"max_abs_{k}.npy"), mx, np, "<f4")
        save(os.path.join(d, f"argmax_{k}.npy"), am, np, "<i4")
        files[f"logits_cols_{k}.npy"] = {"dtype": "<f4", "shape": list(sub.shape)}
        files[f"max_abs_{k}.npy"] = {"dtype": "<f4", "shape": list(mx.shape)}
        files[f"argmax_{k}.npy"] = {"dtype": "<i4", "shape": list(am.shape)}
        srt = np.sort(lg, axis=1)
        lines.append({
            "line": k, "text": SEQUENCES[k], "ids": seqs[k], "n_ids": len(seqs[k]),
            "max_abs_logit": float(mx.max()), "argmax": [int(x) for x in am],
            "argmax_text": [tok.decode([int(x)]) for x in am],
            "top1_top2_margin": [float(x) for x in (srt[:, -1] - srt[:, -2])],
        })

    dq = {}
    for qt, s in sorted(samples.items()):
        fn = f"dequant_{qt}.npy"
        save(os.path.join(d, fn), s["data"], np, "<f4")
        files[fn] = {"dtype": "<f4", "shape": list(s["data"].shape)}
        dq[qt] = {k: v for k, v in s.items() if k != "data"}
        dq[qt]["file"] = fn

    # greedy continuation of line GREEDY_LINE (transformers, float32, KV cache)
    greedy = None
    if args.greedy > 0:
        ids = list(seqs[GREEDY_LINE])
        gen, margins = [], []
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=True)
            past = out.past_key_values
            last = out.logits[0, -1]
            for _ in range(args.greedy):
                top2 = torch.topk(last, 2)
                nxt = int(top2.indices[0])
                gen.append(nxt)
                margins.append(float(top2.values[0] - top2.values[1]))
                if nxt == cfg["eos_token_id"]:
                    break
                out = model(input_ids=torch.tensor([[nxt]], dtype=torch.long), past_key_values=past, use_cache=True)
                past = out.past_key_values
                last = out.logits[0, -1]
        greedy = {"line": GREEDY_LINE, "ids": gen, "text": tok.decode(gen, skip_special_tokens=False),
                  "top1_top2_margin": margins,
                  "note": "transformers float32, eager, KV cache; a step whose margin is tiny may flip "
                          "in another float32 engine"}
        log(f"  greedy: {greedy['text']!r}")

    f64 = None
    if args.f64_check:
        n_params = sum(p.numel() for p in model.parameters())
        need = n_params * 8 * 1.15
        if mem_available() < need:
            log(f"  --f64-check skipped: needs ~{need / 2**30:.1f} GiB, {mem_available() / 2**30:.1f} GiB available")
            f64 = {"skipped": "not enough memory"}
        else:
            model = model.double()
            f64 = {"about": "max|logits_f32 - logits_f64| / max|logits_f64| of transformers itself, per line: "
                            "the float32 rounding noise of this model, a floor for a float32 engine's tolerance",
                   "rel_err": [], "max_abs_err": []}
            with torch.no_grad():
                for k, ids in enumerate(seqs):
                    ref = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False).logits[0].numpy()
                    err = np.abs(logits_all[k].astype(np.float64) - ref).max()
                    f64["rel_err"].append(float(err / np.abs(ref).max()))
                    f64["max_abs_err"].append(float(err))
                    f64.setdefault("argmax_same", []).append(bool((ref.argmax(1) == logits_all[k].argmax(1)).all()))
            log(f"  f32 vs f64: rel {f64['rel_err']}")
    del model

    info = {
        "name": name, "gguf": os.path.basename(gguf_path), "gguf_bytes": size, "gguf_sha256": sha,
        "general_name": general_name, "tensor_types": types, "config": cfg,
        "stride": args.stride, "topk": args.topk, "n_cols": int(cols.size),
        "lines": lines, "files": files, "dequant_samples": dq, "greedy": greedy, "f64_check": f64,
        "layout": "cols.npy = vocabulary columns kept (every stride-th plus the top-k of every position); "
                  "logits_cols_<k>.npy[i, j] = logit of position i of ids.txt line k at column cols[j]; "
                  "max_abs_<k>.npy[i] = max over all columns of |logit|; argmax_<k>.npy[i] over all columns; "
                  "dequant_<TYPE>.npy = the first dequant_samples[TYPE].cols values of rows dequant_samples[TYPE].rows "
                  "of tensor dequant_samples[TYPE].tensor (HF layout [out, in]), gguf-py dequantization; "
                  "sha256_f32 is over the whole dequantized tensor.",
    }
    with open(os.path.join(d, "fixture.json"), "w") as f:
        f.write(compact_json(info) + "\n")
    total = sum(os.path.getsize(os.path.join(d, fn)) for fn in os.listdir(d))
    log(f"  {d}: {len(os.listdir(d))} files, {total} bytes, {cols.size} columns")
    return {"name": name, "gguf": info["gguf"], "gguf_bytes": size, "gguf_sha256": sha,
            "lines": len(seqs), "n_ids": [len(s) for s in seqs], "n_cols": int(cols.size), "bytes": total}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf", nargs="*", help="GGUF files (default: models/*.gguf)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "gguf"))
    ap.add_argument("--tokenizer", help="folder with the Qwen2.5 tokenizer.json (default: "
                    "$QMESH_DATA/tokenizers/qwen2.5 or ../shared/data/tokenizers/qwen2.5 next to the repo)")
    ap.add_argument("--stride", type=int, default=64, help="keep every STRIDE-th vocabulary column (default 64)")
    ap.add_argument("--topk", type=int, default=5, help="also keep the top-K columns of every position (default 5)")
    ap.add_argument("--greedy", type=int, default=GREEDY_TOKENS, help="greedy tokens after line 0 (default %(default)s)")
    ap.add_argument("--f64-check", action="store_true", help="also run transformers in float64 and record "
                    "how far its float32 logits are")
    ap.add_argument("--keep-hf", metavar="DIR", help="keep the dequantized float32 HF folders in DIR/<model>/")
    ap.add_argument("--tmp", metavar="DIR", help="where the temporary HF folder goes (default: $TMPDIR)")
    ap.add_argument("--threads", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    args = ap.parse_args()
    mods = check_versions()
    torch = mods["torch"]
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    paths = args.gguf or sorted(glob.glob(os.path.join(ROOT, "models", "*.gguf")))
    if not paths:
        sys.exit("make_gguf_fixtures: no GGUF files (run scripts/fetch_models.sh)")
    tokenizer_dir = args.tokenizer
    if not tokenizer_dir:
        cands = []
        if os.environ.get("QMESH_DATA"):
            cands.append(os.path.join(os.environ["QMESH_DATA"], "tokenizers", "qwen2.5"))
        cands += [os.path.join(ROOT, "..", "shared", "data", "tokenizers", "qwen2.5"),
                  os.path.join(ROOT, "shared", "data", "tokenizers", "qwen2.5")]
        tokenizer_dir = next((c for c in cands if os.path.isfile(os.path.join(c, "tokenizer.json"))), None)
        if not tokenizer_dir:
            sys.exit(f"make_gguf_fixtures: no tokenizer.json in {cands}; pass --tokenizer DIR")
    outdir = os.path.abspath(args.out)
    os.makedirs(outdir, exist_ok=True)
    manifest_path = os.path.join(outdir, "MANIFEST.json")
    old = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = {fx["name"]: fx for fx in json.load(f).get("fixtures", [])}
    for p in paths:
        fx = build(os.path.abspath(p), outdir, tokenizer_dir, args, mods)
        old[fx["name"]] = fx
    import importlib.metadata as md
    manifest = {
        "about": "Reference fixtures for qmesh on real GGUF models, written by scripts/make_gguf_fixtures.py: "
                 "transformers Qwen2ForCausalLM, float32, eager attention, on the GGUF weights dequantized with "
                 "gguf-py. Each folder: ids.txt, cols.npy, logits_cols_<k>.npy, max_abs_<k>.npy, argmax_<k>.npy, "
                 "dequant_<TYPE>.npy, fixture.json (layout and details there). The GGUF files themselves come "
                 "from scripts/fetch_models.sh (sha256 below).",
        "versions": {k: md.version(k) for k in PINNED} | {"torch_build": torch.__version__},
        "python": sys.version.split()[0],
        "fixtures": [old[n] for n in sorted(old)],
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(r, fn)) for r, _, fs in os.walk(outdir) for fn in fs)
    log(f"total {total} bytes in {outdir}")


if __name__ == "__main__":
    main()
