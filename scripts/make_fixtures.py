#!/usr/bin/env python3
"""Build the reference fixtures in tests/fixtures/ with Hugging Face transformers.

Each fixture is a small random Qwen2 checkpoint (config.json + safetensors, possibly
sharded with model.safetensors.index.json), a list of token-id sequences (ids.txt, one
sequence per line, space separated) and, for line k of ids.txt, logits_<k>.npy: the
float32 logits transformers computes for that sequence in one forward pass, shape
(n_ids, vocab_size), '<f4', C order.

The reference is always computed in float32 (the checkpoint is loaded back from disk with
dtype=torch.float32, attn_implementation="eager"), so for a BF16/F16 file the reference
uses exactly the rounded weights that are in the file, upcast to float32.

Usage
-----
    /tmp/fixenv/bin/python scripts/make_fixtures.py            # writes tests/fixtures/
    /tmp/fixenv/bin/python scripts/make_fixtures.py --out DIR  # elsewhere
    /tmp/fixenv/bin/python scripts/check_fixtures.py           # verify them afterwards

The script refuses to run with versions other than the pinned ones (PINNED below), so the
fixtures are reproducible; it prints which versions it needs.

Creating the venv (CPU-only machine, PyPI only)
-----------------------------------------------
The torch wheel on PyPI for Linux x86_64 is the CUDA build. It imports on a machine
without a GPU as long as the CUDA runtime libraries it links against can be loaded:

    python3.11 -m venv /tmp/fixenv
    P=/tmp/fixenv/bin/pip
    $P install --no-deps torch==2.15.0
    $P install transformers==5.24.0 numpy==2.4.6 safetensors==0.8.0 \
               filelock fsspec jinja2 networkx sympy typing-extensions
    # CUDA runtime pieces torch 2.15.0 pins (see `unzip -p torch-*.whl '*/METADATA'`):
    $P install --no-deps nvidia-cufile==1.17.1.22 nvidia-cusparselt-cu13==0.8.1 \
               nvidia-nvshmem-cu13==3.7.2 nvidia-nccl-cu13==2.30.7

On the build machine the remaining CUDA 13 libraries (cudart, cublas, cufft, cusparse,
cudnn, nvrtc, nvjitlink, cupti) come from a system CUDA under /usr/local/cuda-13.0; on a
machine without one, also install what torch's METADATA pins:
    $P install --no-deps "cuda-toolkit[cublas,cudart,cufft,cufile,cupti,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.2.2" \
               nvidia-cudnn-cu13==9.26.0.51
(and the nvidia-* packages cuda-toolkit lists for those extras). Check with
    /tmp/fixenv/bin/python -c "import torch; print(torch.__version__)"
"""

import argparse
import json
import os
import shutil
import sys

PINNED = {
    "torch": "2.15.0",
    "transformers": "5.24.0",
    "numpy": "2.4.6",
    "safetensors": "0.8.0",
}


def check_versions():
    """Exit with a message unless the pinned versions are the ones imported."""
    bad = []
    mods = {}
    for name, want in PINNED.items():
        try:
            mod = __import__(name)
        except Exception as e:  # ImportError, or a CUDA library that fails to load
            bad.append(f"{name}=={want} (import failed: {e})")
            continue
        have = mod.__version__.split("+")[0]
        if have != want:
            bad.append(f"{name}=={want} (found {mod.__version__})")
        mods[name] = mod
    if bad:
        sys.stderr.write("make_fixtures: needs exactly these versions (see the docstring for the venv):\n")
        for b in bad:
            sys.stderr.write(f"  {b}\n")
        sys.exit(2)
    return mods


# ---- the fixtures -------------------------------------------------------------------------

# name -> settings. head_dim = hidden / heads.
FIXTURES = {
    # Qwen2.5-7B's head ratio (28 q / 4 kv), Qwen2.5's rope_theta 1e6 and rms_norm_eps 1e-6.
    "h28kv4_bf16": dict(vocab_size=384, hidden_size=224, num_attention_heads=28, num_key_value_heads=4,
                        intermediate_size=256, num_hidden_layers=2, tie_word_embeddings=False,
                        rope_theta=1000000.0, rms_norm_eps=1e-6, file_dtype="bfloat16", shard=None,
                        seed=1234),
    # Qwen2.5-0.5B's ratio (14 q / 2 kv), head_dim 12, hidden 168 (not a multiple of 16),
    # vocabulary 300 and intermediate 200 (split unevenly on most meshes), tied, F32 file.
    "h14kv2_f32_tied": dict(vocab_size=300, hidden_size=168, num_attention_heads=14, num_key_value_heads=2,
                            intermediate_size=200, num_hidden_layers=2, tie_word_embeddings=True,
                            rope_theta=10000.0, rms_norm_eps=1e-5, file_dtype="float32", shard=None,
                            seed=2345),
    # Like the first, saved as F16 in several shards with model.safetensors.index.json.
    "h28kv4_sharded": dict(vocab_size=256, hidden_size=224, num_attention_heads=28, num_key_value_heads=4,
                           intermediate_size=256, num_hidden_layers=2, tie_word_embeddings=False,
                           rope_theta=1000000.0, rms_norm_eps=1e-6, file_dtype="float16", shard="500KB",
                           seed=3456),
}

SEQ_LENGTHS = [1, 7, 20, 48]
DEBUG_FIXTURE = "h28kv4_bf16"
DEBUG_LINE = 1
DEBUG_LIMIT = 300 * 1024


def make_ids(vocab, seed, np):
    """Sequences of SEQ_LENGTHS ids spread over the whole vocabulary (first and last id included)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for n in SEQ_LENGTHS:
        if n == 1:
            seqs.append([int(vocab // 2 + 1)])
            continue
        s = rng.integers(0, vocab, size=n).tolist()
        s[0] = vocab - 1
        s[-1] = 0
        if n >= 20:  # a repeated token: same id at two positions must still differ by RoPE
            s[n // 2] = s[1]
        seqs.append([int(x) for x in s])
    return seqs


def reinit(model, torch, std=0.08, bias_std=0.1, norm_std=0.1):
    """Re-initialise every parameter so that logits vary (the default init gives ~flat logits)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + norm_std * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(bias_std * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))


def classic_config(path, s, np_dtype_name):
    """transformers 5 writes rope_parameters; real Qwen2/2.5 checkpoints carry the classic keys
    (rope_theta, torch_dtype, ...). Write both so the fixtures look like the real files."""
    with open(path) as f:
        cfg = json.load(f)
    cfg["rope_theta"] = s["rope_theta"]
    cfg["torch_dtype"] = np_dtype_name
    cfg["architectures"] = ["Qwen2ForCausalLM"]
    cfg.setdefault("rope_scaling", None)
    cfg["head_dim"] = s["hidden_size"] // s["num_attention_heads"]
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def save_npy(path, arr, np):
    arr = np.ascontiguousarray(arr, dtype="<f4")
    np.save(path, arr)


def dir_size(d):
    total = 0
    for root, _, files in os.walk(d):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    return total


def build(name, s, outdir, mods, debug):
    torch, transformers, np = mods["torch"], mods["transformers"], mods["numpy"]
    from transformers import Qwen2Config, Qwen2ForCausalLM

    d = os.path.join(outdir, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)

    torch.manual_seed(s["seed"])
    V = s["vocab_size"]
    eos = V - 1
    cfg = Qwen2Config(
        vocab_size=V, hidden_size=s["hidden_size"], intermediate_size=s["intermediate_size"],
        num_hidden_layers=s["num_hidden_layers"], num_attention_heads=s["num_attention_heads"],
        num_key_value_heads=s["num_key_value_heads"], max_position_embeddings=4096,
        rms_norm_eps=s["rms_norm_eps"], tie_word_embeddings=s["tie_word_embeddings"],
        rope_parameters={"rope_type": "default", "rope_theta": s["rope_theta"]},
        use_sliding_window=False, hidden_act="silu", bos_token_id=eos, eos_token_id=eos,
    )
    model = Qwen2ForCausalLM(cfg).float().eval()
    reinit(model, torch)
    if s["tie_word_embeddings"]:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    file_dtype = getattr(torch, s["file_dtype"])
    model = model.to(file_dtype)
    kw = {"safe_serialization": True}
    if s["shard"]:
        kw["max_shard_size"] = s["shard"]
    model.save_pretrained(d, **kw)
    for junk in ("generation_config.json",):
        p = os.path.join(d, junk)
        if os.path.exists(p):
            os.remove(p)
    classic_config(os.path.join(d, "config.json"), s, s["file_dtype"])
    del model

    ref = Qwen2ForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    assert abs(ref.config.rope_parameters["rope_theta"] - s["rope_theta"]) < 1e-9, ref.config.rope_parameters
    if s["tie_word_embeddings"]:
        assert torch.equal(ref.lm_head.weight, ref.model.embed_tokens.weight)

    seqs = make_ids(V, s["seed"], np)
    with open(os.path.join(d, "ids.txt"), "w") as f:
        for seq in seqs:
            f.write(" ".join(str(i) for i in seq) + "\n")

    shapes = []
    with torch.no_grad():
        for k, seq in enumerate(seqs):
            ids = torch.tensor([seq], dtype=torch.long)
            out = ref(input_ids=ids, use_cache=False)
            logits = out.logits[0].float().numpy()
            assert logits.shape == (len(seq), V)
            save_npy(os.path.join(d, f"logits_{k}.npy"), logits, np)
            shapes.append(list(logits.shape))

    if debug:
        write_debug(ref, seqs[DEBUG_LINE], os.path.join(d, "debug"), mods)

    shard_files = sorted(fn for fn in os.listdir(d) if fn.endswith(".safetensors"))
    info = {
        "name": name,
        "file_dtype": s["file_dtype"],
        "safetensors": shard_files,
        "sharded": len(shard_files) > 1,
        "vocab_size": V, "hidden_size": s["hidden_size"], "intermediate_size": s["intermediate_size"],
        "num_hidden_layers": s["num_hidden_layers"], "num_attention_heads": s["num_attention_heads"],
        "num_key_value_heads": s["num_key_value_heads"],
        "head_dim": s["hidden_size"] // s["num_attention_heads"],
        "tie_word_embeddings": s["tie_word_embeddings"], "rope_theta": s["rope_theta"],
        "rms_norm_eps": s["rms_norm_eps"], "seed": s["seed"],
        "ids_lines": len(seqs), "logits_shapes": shapes,
        "max_abs_logit": [float(np.abs(np.load(os.path.join(d, f"logits_{k}.npy"))).max())
                          for k in range(len(seqs))],
        "bytes": dir_size(d),
    }
    return info


def write_debug(model, seq, ddir, mods):
    """Intermediate activations of one forward pass (float32, shape (n_ids, dim)) for debugging."""
    torch, np = mods["torch"], mods["numpy"]
    os.makedirs(ddir)
    acts = {}
    hooks = []

    def grab(key, use_input=False):
        def fn(mod, inp, out):
            t = inp[0] if use_input else (out[0] if isinstance(out, tuple) else out)
            acts[key] = t[0].detach().float().numpy().copy()
        return fn

    m = model.model
    hooks.append(m.embed_tokens.register_forward_hook(grab("embed")))
    for i, layer in enumerate(m.layers):
        p = f"layer{i}"
        hooks.append(layer.input_layernorm.register_forward_hook(grab(f"{p}.input_layernorm")))
        hooks.append(layer.self_attn.q_proj.register_forward_hook(grab(f"{p}.q_proj")))
        hooks.append(layer.self_attn.k_proj.register_forward_hook(grab(f"{p}.k_proj")))
        hooks.append(layer.self_attn.v_proj.register_forward_hook(grab(f"{p}.v_proj")))
        hooks.append(layer.self_attn.o_proj.register_forward_hook(grab(f"{p}.attn_out", use_input=True)))
        hooks.append(layer.self_attn.o_proj.register_forward_hook(grab(f"{p}.o_proj")))
        hooks.append(layer.post_attention_layernorm.register_forward_hook(grab(f"{p}.post_attention_layernorm")))
        hooks.append(layer.mlp.down_proj.register_forward_hook(grab(f"{p}.mlp_act", use_input=True)))
        hooks.append(layer.mlp.register_forward_hook(grab(f"{p}.mlp_out")))
        hooks.append(layer.register_forward_hook(grab(f"{p}.output")))
    hooks.append(m.norm.register_forward_hook(grab("final_norm")))
    with torch.no_grad():
        out = model(input_ids=torch.tensor([seq], dtype=torch.long), use_cache=False,
                    output_hidden_states=True)
    for h in hooks:
        h.remove()
    hs = out.hidden_states
    index = {"ids": seq, "files": {}, "notes": [
        "All arrays float32 '<f4', shape (n_ids, dim), for ids.txt line %d." % DEBUG_LINE,
        "q_proj/k_proj/v_proj: projections including bias, BEFORE RoPE.",
        "attn_out: attention output (input of o_proj), heads concatenated.",
        "mlp_act: silu(gate)*up (input of down_proj).",
        "layerN.output: residual stream after decoder layer N.",
        "hidden_states_K: transformers output_hidden_states[K] (K=0 embeddings; the last one is after the final norm).",
    ]}
    for k, h in enumerate(hs):
        acts[f"hidden_states_{k}"] = h[0].float().numpy().copy()
    total = 0
    for key, arr in acts.items():
        fn = key + ".npy"
        save_npy(os.path.join(ddir, fn), arr, np)
        index["files"][fn] = list(arr.shape)
        total += os.path.getsize(os.path.join(ddir, fn))
    with open(os.path.join(ddir, "index.json"), "w") as f:
        json.dump(index, f, indent=2)
    if total > DEBUG_LIMIT:
        shutil.rmtree(ddir)
        print(f"  debug dump {total} bytes > {DEBUG_LIMIT}: not kept")
    else:
        print(f"  debug dump: {len(acts)} arrays, {total} bytes in {ddir}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures"))
    ap.add_argument("--only", nargs="*", help="fixture names to (re)build")
    args = ap.parse_args()
    mods = check_versions()
    torch = mods["torch"]
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)

    outdir = os.path.abspath(args.out)
    os.makedirs(outdir, exist_ok=True)
    names = args.only or list(FIXTURES)
    manifest_path = os.path.join(outdir, "MANIFEST.json")
    old = {}
    if args.only and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = {fx["name"]: fx for fx in json.load(f).get("fixtures", [])}
    for name in names:
        print(f"building {name}")
        old[name] = build(name, FIXTURES[name], outdir, mods, debug=(name == DEBUG_FIXTURE))
        print(f"  {old[name]['bytes']} bytes, shards {old[name]['safetensors']}")
    manifest = {
        "about": "Reference fixtures for qmesh parity tests, written by scripts/make_fixtures.py. "
                 "Each folder: config.json, safetensors (+ index when sharded), ids.txt (one sequence "
                 "per line), logits_<k>.npy = float32 logits (n_ids, vocab_size) of transformers for "
                 "line k, model loaded in float32 with eager attention. Check with scripts/check_fixtures.py; "
                 "compared to qmesh by tests/test_parity.sh (max abs err / max |ref| <= 1e-4).",
        "versions": {k: mods[k].__version__ for k in PINNED},
        "python": sys.version.split()[0],
        "fixtures": [old[n] for n in FIXTURES if n in old],
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"total {dir_size(outdir)} bytes in {outdir}")


if __name__ == "__main__":
    main()
