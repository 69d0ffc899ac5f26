#!/usr/bin/env bash
# Side-by-side speed of qmesh and llama.cpp on the same GGUF model and thread count.
#
#   scripts/bench_vs_llamacpp.sh [--model FILE.gguf] [--threads N] [--qmesh PATH] [--llama-dir DIR]
#                                [--prompt N] [--gen N] [--reps R] [--jobs J] [--no-llama] [--no-qmesh]
#                                [--llama-isa native|avx2] [--rounds N]
#                                [QMESH_FLAGS...] [-- QMESH_FLAGS...]
#
# 1. llama.cpp: if DIR/build/bin/llama-bench is missing, downloads the llama-cpp-python source
#    package from PyPI (`pip download --no-deps --no-binary :all:`; it carries vendor/llama.cpp),
#    extracts it to DIR/src and builds llama-bench with CMake into DIR/build (CPU only, Release,
#    -DGGML_NATIVE=ON, -DLLAMA_CURL=OFF, nice, -j J). DIR defaults to $QMESH_LLAMA_DIR or
#    ~/.cache/qmesh-llama and must be outside this repository. --llama-isa avx2 builds a second
#    llama.cpp into DIR/build-avx2 with AVX2, FMA, F16C and BMI2 only (-DGGML_NATIVE=OFF, every
#    AVX-512 option off): on an AVX-512 CPU it stands for llama.cpp on an AVX2-only machine, to
#    compare with `--isa avx2` for qmesh (the script passes --isa avx2 to qmesh unless QMESH_FLAGS
#    name an --isa).
# 2. runs  llama-bench -m FILE -p N -n N -t THREADS -r R -o json           (mean of R runs)
# 3. runs  qmesh bench -m FILE --prompt N --gen 1 --threads THREADS --reps R QMESH_FLAGS (prefill)
#    and     qmesh bench -m FILE --prompt 1 --gen N --membw --threads THREADS --reps R QMESH_FLAGS
#    (decode from an empty context, as llama-bench's tg; before 2026-12-03 qmesh decoded after the
#    N-token prompt, attending to 512-640 positions where llama.cpp attends to 0-128: the 1.5B's
#    attention 2.8 ms a step against 0.3). Best of R runs each (the last stdout line is a JSON
#    object). Flags this script does not know, e.g. --mesh 1x2 or --activations q8, and everything
#    after --, go to qmesh bench.
# With --rounds N (default 1), steps 2 and 3 run N times in turn (llama.cpp, qmesh, llama.cpp,
# qmesh, ...): on a machine whose memory bandwidth or clock moves during the run (a VM) both sides
# then see the same states. Each figure of the table is the median over the rounds, each ratio
# the median of the rounds' own ratios (the rounds' figures are printed first, each round's
# roofline fractions of both against the bandwidth probed in that round's qmesh decode: two far
# apart suggest the memory state changed between the two runs).
# 4. prints one table (model, CPU ISA flags, threads, llama.cpp pp/tg, qmesh prefill/decode, the
#    qmesh/llama.cpp ratios, decode roofline fractions = weight bytes read per token x decode tok/s
#    / the memory read bandwidth qmesh measured with THREADS threads; for qmesh the bytes are its
#    bytes_per_token, for llama.cpp the GGUF's tensor bytes less the token embedding table) and
#    then, as the last stdout line, the same numbers as one JSON object. A fraction above 1 means
#    the weights were partly served from cache (small models, large L3).
#
# Defaults: --model models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf (scripts/fetch_models.sh gets
# it), --threads = all cores, --qmesh build/qmesh (built into build/ if missing), --prompt 512,
# --gen 128, --reps 3, --jobs 2. A model that is a folder (Hugging Face checkpoint) runs the qmesh
# half only, since llama.cpp reads GGUF files only.
# Environment: QMESH_LLAMA_DIR, LLAMA_CPP_PYTHON_VERSION (default 0.3.36, the version tested),
# PYTHON (default python3).
# Exit status: 0 when every half that was asked for ran, 1 when one failed (the table still shows
# what ran), 2 for bad usage.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
model="$root/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
threads=$(nproc 2> /dev/null || echo 1)
qmesh=""
llama_dir="${QMESH_LLAMA_DIR:-$HOME/.cache/qmesh-llama}"
llama_ver="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
n_prompt=512
n_gen=128
reps=3
jobs=2
do_llama=1
do_qmesh=1
llama_isa=native
rounds=1
py=${PYTHON:-python3}
qflags=()

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
bad() { echo "bench_vs_llamacpp: $*" >&2; exit 2; }
log() { echo "bench_vs_llamacpp: $*" >&2; }
need() { [ "$2" -ge 2 ] || bad "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --model|-m) need "$1" $#; model=$2; shift 2 ;;
    --threads) need "$1" $#; threads=$2; shift 2 ;;
    --qmesh) need "$1" $#; qmesh=$2; shift 2 ;;
    --llama-dir) need "$1" $#; llama_dir=$2; shift 2 ;;
    --prompt) need "$1" $#; n_prompt=$2; shift 2 ;;
    --gen) need "$1" $#; n_gen=$2; shift 2 ;;
    --reps) need "$1" $#; reps=$2; shift 2 ;;
    --jobs) need "$1" $#; jobs=$2; shift 2 ;;
    --no-llama) do_llama=0; shift ;;
    --no-qmesh) do_qmesh=0; shift ;;
    --llama-isa) need "$1" $#; llama_isa=$2; shift 2 ;;
    --rounds) need "$1" $#; rounds=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; qflags+=("$@"); break ;;
    *) qflags+=("$1"); shift ;;
  esac
done
for v in threads n_prompt n_gen reps jobs rounds; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || bad "--${v#n_} needs a positive integer, not '${!v}'"
done
[ -e "$model" ] || bad "no model at $model (scripts/fetch_models.sh downloads the GGUF files)"
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
command -v "$py" > /dev/null 2>&1 || bad "$py not found (set PYTHON)"
case "$llama_isa" in
  native) llama_build=build; llama_cpu=(-DGGML_NATIVE=ON) ;;
  avx2)
    llama_build=build-avx2
    llama_cpu=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
               -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF
               -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
    [[ " ${qflags[*]:-} " == *" --isa "* ]] || qflags+=(--isa avx2) ;;
  *) bad "--llama-isa is native or avx2, not '$llama_isa'" ;;
esac

is_gguf=0
if [ -f "$model" ] && [ "$(head -c 4 "$model")" = "GGUF" ]; then is_gguf=1; fi
if [ $do_llama -eq 1 ] && [ $is_gguf -eq 0 ]; then
  log "$model is not a GGUF file: llama.cpp cannot read it, running qmesh only"
  do_llama=0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bench_vs_llamacpp.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=0

# ---- llama.cpp -----------------------------------------------------------------------------

build_llama() {
  mkdir -p "$llama_dir"
  llama_dir=$(cd "$llama_dir" && pwd -P)
  local r
  r=$(cd "$root" && pwd -P)
  case "$llama_dir/" in
    "$r"/*) bad "--llama-dir $llama_dir is inside the repository; pick a folder outside it" ;;
  esac
  local bench="$llama_dir/$llama_build/bin/llama-bench"
  [ -x "$bench" ] && return 0
  local src="$llama_dir/src/vendor/llama.cpp"
  if [ ! -f "$src/CMakeLists.txt" ]; then
    log "downloading llama-cpp-python==$llama_ver (source, for its vendor/llama.cpp) into $llama_dir/dl"
    mkdir -p "$llama_dir/dl"
    if ! "$py" -m pip download --no-deps --no-binary :all: --disable-pip-version-check \
        -d "$llama_dir/dl" "llama-cpp-python==$llama_ver" > "$work/pip.log" 2>&1; then
      sed 's/^/  pip: /' "$work/pip.log" | tail -n 8 >&2
      log "error: cannot download llama-cpp-python==$llama_ver from the package registry; retry later," \
          "or point --llama-dir at a folder with build/bin/llama-bench"
      return 1
    fi
    local tgz
    tgz=$(find "$llama_dir/dl" -maxdepth 1 -name "llama_cpp_python-$llama_ver.tar.gz" | head -n 1)
    [ -n "$tgz" ] || { log "error: pip left no llama_cpp_python-$llama_ver.tar.gz in $llama_dir/dl"; return 1; }
    rm -rf "$llama_dir/src.tmp"
    mkdir -p "$llama_dir/src.tmp"
    tar -xzf "$tgz" -C "$llama_dir/src.tmp" --strip-components=1
    [ -f "$llama_dir/src.tmp/vendor/llama.cpp/CMakeLists.txt" ] || {
      log "error: $tgz has no vendor/llama.cpp"; return 1; }
    rm -rf "$llama_dir/src"
    mv "$llama_dir/src.tmp" "$llama_dir/src"
  fi
  log "building llama-bench in $llama_dir/$llama_build (CPU, Release, $llama_isa; this takes a while)"
  local gen=()
  command -v ninja > /dev/null 2>&1 && gen=(-G Ninja)
  nice -n 10 cmake -S "$src" -B "$llama_dir/$llama_build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    "${llama_cpu[@]}" -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF \
    -DGGML_METAL=OFF > "$work/cmake.log" 2>&1 || { tail -n 20 "$work/cmake.log" >&2; log "error: llama.cpp configure failed"; return 1; }
  nice -n 10 cmake --build "$llama_dir/$llama_build" -j "$jobs" --target llama-bench llama-simple \
    > "$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; log "error: llama.cpp build failed"; return 1; }
  [ -x "$bench" ] || { log "error: the build made no $bench"; return 1; }
}

# run_llama OUT: llama-bench's pp and tg as JSON into OUT (removed when it fails)
run_llama() {
  log "llama-bench -m $(basename "$model") -p $n_prompt -n $n_gen -t $threads -r $reps"
  if ! "$llama_dir/$llama_build/bin/llama-bench" -m "$model" -p "$n_prompt" -n "$n_gen" -t "$threads" -r "$reps" \
      -o json > "$1" 2> "$work/llama.err"; then
    tail -n 20 "$work/llama.err" >&2
    log "error: llama-bench failed"
    rm -f "$1"
    return 1
  fi
}
if [ $do_llama -eq 1 ] && ! build_llama; then
  failed=1
  do_llama=0
fi

# ---- qmesh ---------------------------------------------------------------------------------

# run_qmesh OUT: two runs, as llama-bench's pp and tg: prefill of n_prompt tokens, then decode
# of n_gen tokens from an empty context (a 1-token prompt), not after the n_prompt tokens; one
# JSON object into OUT (removed when a run fails)
run_qmesh() {
  log "qmesh bench -m $(basename "$model") --prompt $n_prompt --gen 1 --threads $threads --reps $reps ${qflags[*]:-}"
  log "qmesh bench -m $(basename "$model") --prompt 1 --gen $n_gen --membw --threads $threads --reps $reps ${qflags[*]:-}"
  if "$qmesh" bench -m "$model" --prompt "$n_prompt" --gen 1 --threads "$threads" \
      --reps "$reps" "${qflags[@]}" > "$work/qmesh_pp.out" 2> "$work/qmesh.err" &&
    "$qmesh" bench -m "$model" --prompt 1 --gen "$n_gen" --membw --threads "$threads" \
      --reps "$reps" "${qflags[@]}" > "$work/qmesh.out" 2>> "$work/qmesh.err"; then
    "$py" -c 'import json, sys
pp, tg = (json.loads(open(f).read().splitlines()[-1]) for f in sys.argv[1:3])
tg.update(prefill_tok_s=pp["prefill_tok_s"], prompt=pp["prompt"], decode_prompt=tg["prompt"])
print(json.dumps(tg))' "$work/qmesh_pp.out" "$work/qmesh.out" > "$1"
  else
    tail -n 20 "$work/qmesh.err" >&2
    log "error: qmesh bench failed (does this qmesh read $(basename "$model")?)"
    rm -f "$1"
    return 1
  fi
}
if [ $do_qmesh -eq 1 ]; then
  if [ -z "$qmesh" ]; then
    qmesh="$root/build/qmesh"
    if [ ! -x "$qmesh" ]; then
      log "building qmesh into $root/build"
      gen=()
      command -v ninja > /dev/null 2>&1 && gen=(-G Ninja)
      { cmake -S "$root" -B "$root/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release > "$work/qcmake.log" 2>&1 &&
        nice -n 10 cmake --build "$root/build" -j "$jobs" > "$work/qbuild.log" 2>&1; } ||
        { tail -n 30 "$work/qcmake.log" "$work/qbuild.log" >&2 2> /dev/null; log "error: building qmesh failed"; }
    fi
  fi
  if [ ! -x "$qmesh" ]; then
    log "error: $qmesh is not an executable (--qmesh PATH)"
    failed=1
    do_qmesh=0
  fi
fi

for ((i = 1; i <= rounds; i++)); do
  [ "$rounds" -gt 1 ] && log "round $i of $rounds"
  if [ $do_llama -eq 1 ]; then run_llama "$work/llama_$i.json" || failed=1; fi
  if [ $do_qmesh -eq 1 ]; then run_qmesh "$work/qmesh_$i.json" || failed=1; fi
done

# ---- the table -----------------------------------------------------------------------------

flags=$(grep -m1 '^flags' /proc/cpuinfo 2> /dev/null || true)
isa=()
for f in avx512f avx512_bf16 avx512_vnni avx2; do
  [[ " ${flags#*:} " == *" $f "* ]] && isa+=("$f")
done
[ ${#isa[@]} -gt 0 ] || isa=(none)
cpu=$(grep -m1 '^model name' /proc/cpuinfo 2> /dev/null | sed 's/^[^:]*: *//' || true)

LLAMA_ISA=$llama_isa "$py" - "$model" "${isa[*]}" "$cpu" "$threads" "$n_prompt" "$n_gen" "$reps" "$work" "$rounds" \
    "${qflags[*]:-}" <<'PYEOF' || failed=1
import json, os, statistics, sys
model, isa, cpu, threads, npr, ngen, reps, work, rounds, qflags = sys.argv[1:11]
npr, ngen, rounds = int(npr), int(ngen), int(rounds)

def read_llama(lj):
    llama = {}
    if os.path.exists(lj):
        try:
            for r in json.load(open(lj)):
                if r.get("n_prompt") == npr and r.get("n_gen") == 0:
                    llama["pp"], llama["pp_sd"] = r["avg_ts"], r.get("stddev_ts")
                elif r.get("n_gen") == ngen and r.get("n_prompt") == 0:
                    llama["tg"], llama["tg_sd"] = r["avg_ts"], r.get("stddev_ts")
                llama["model_size"] = r.get("model_size")
                llama["model_type"] = r.get("model_type")
                llama["build_commit"] = r.get("build_commit")
        except Exception as e:
            sys.stderr.write(f"bench_vs_llamacpp: cannot read llama-bench output: {e}\n")
    return llama
def read_qmesh(qj):
    if os.path.exists(qj):
        try:
            return json.loads(open(qj).read())
        except Exception as e:
            sys.stderr.write(f"bench_vs_llamacpp: cannot read qmesh bench output: {e}\n")
    return {}
def median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None
def ratio(a, b):
    return a / b if a and b else None

per = [(read_llama(f"{work}/llama_{i}.json"), read_qmesh(f"{work}/qmesh_{i}.json")) for i in range(1, rounds + 1)]
round_rows = [{"llama_pp": l.get("pp"), "llama_tg": l.get("tg"), "qmesh_prefill": q.get("prefill_tok_s"),
               "qmesh_decode": q.get("decode_tok_s"), "mem_read_gb_s": q.get("mem_read_gb_s"),
               "qmesh_roofline": q.get("roofline_ratio"),
               "prefill_ratio": ratio(q.get("prefill_tok_s"), l.get("pp")),
               "decode_ratio": ratio(q.get("decode_tok_s"), l.get("tg"))} for l, q in per]
# one round's values as they were; several rounds' medians (the standard deviations are a round's)
llama = dict(next((l for l, _ in per if l), {}))
q = dict(next((q for _, q in per if q), {}))
if rounds > 1:
    for key, k in (("pp", "llama_pp"), ("tg", "llama_tg")):
        llama[key] = median([r[k] for r in round_rows])
        llama.pop(key + "_sd", None)
    for key, k in (("prefill_tok_s", "qmesh_prefill"), ("decode_tok_s", "qmesh_decode"),
                   ("mem_read_gb_s", "mem_read_gb_s"), ("roofline_ratio", "qmesh_roofline")):
        q[key] = median([r[k] for r in round_rows])

def gguf_decode_bytes(path):
    """Bytes of the weights one decode step reads in a GGUF file: every tensor but the token
    embedding table (only one row of it is read), unless it doubles as the LM head (tied).
    Reads the header only (no dependencies); tensor sizes come from the data offsets."""
    import struct
    try:
        f = open(path, "rb")
        if f.read(4) != b"GGUF":
            return None
        ver, = struct.unpack("<I", f.read(4))
        if ver < 2:
            return None
        n_t, n_kv = struct.unpack("<QQ", f.read(16))
        def rstr():
            n, = struct.unpack("<Q", f.read(8))
            return f.read(n)
        fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
        align = 32
        def rval(t):
            if t in fixed:
                b = f.read(fixed[t])
                return struct.unpack({1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[fixed[t]], b)[0]
            if t == 8:
                return rstr()
            if t == 9:
                et, n = struct.unpack("<IQ", f.read(12))
                if et in fixed:
                    f.seek(fixed[et] * n, 1)
                else:
                    for _ in range(n):
                        rval(et)
                return None
            raise ValueError(f"GGUF value type {t}")
        for _ in range(n_kv):
            k = rstr()
            t, = struct.unpack("<I", f.read(4))
            v = rval(t)
            if k == b"general.alignment":
                align = int(v)
        infos = []
        for _ in range(n_t):
            name = rstr().decode()
            nd, = struct.unpack("<I", f.read(4))
            f.seek(8 * nd + 4, 1)
            off, = struct.unpack("<Q", f.read(8))
            infos.append((off, name))
        start = (f.tell() + align - 1) // align * align
        end = os.path.getsize(path) - start
        infos.sort()
        size = {name: (infos[i + 1][0] if i + 1 < len(infos) else end) - off
                for i, (off, name) in enumerate(infos)}
        total = sum(size.values())
        if "output.weight" in size:
            total -= size.get("token_embd.weight", 0)
        return total
    except Exception as e:
        sys.stderr.write(f"bench_vs_llamacpp: cannot read the GGUF header of {path}: {e}\n")
        return None

bw = q.get("mem_read_gb_s")
# llama.cpp's roofline in each round against the bandwidth qmesh's decode run probed in that
# round: the host's memory state can change between rounds (and within one), so a round where the
# two fractions disagree much was likely run in two states
def roofline(bytes_per_token, tok_s, gb_s):
    return bytes_per_token * tok_s / (gb_s * 1e9) if bytes_per_token and tok_s and gb_s else None
llama_bpt = gguf_decode_bytes(model) if any(l for l, _ in per) else None
for r in round_rows:
    r["llama_roofline"] = roofline(llama_bpt, r["llama_tg"], r["mem_read_gb_s"])
def fmt(x, d=1):
    return "n/a" if x is None else f"{x:.{d}f}"

res = {
    "model": os.path.basename(model), "cpu": cpu, "isa_flags": isa.split(), "threads": int(threads),
    "prompt": npr, "gen": ngen, "reps": int(reps), "qmesh_flags": qflags,
    "llama_pp_tok_s": llama.get("pp"), "llama_tg_tok_s": llama.get("tg"),
    "llama_model_bytes": llama.get("model_size"), "llama_build_commit": llama.get("build_commit"),
    "llama_isa": os.environ.get("LLAMA_ISA", "native"),
    "qmesh_prefill_tok_s": q.get("prefill_tok_s"), "qmesh_decode_tok_s": q.get("decode_tok_s"),
    "qmesh_isa": q.get("isa"), "qmesh_mesh": q.get("mesh"), "qmesh_bytes_per_token": q.get("bytes_per_token"),
    "mem_read_gb_s": bw,
}
res["prefill_ratio"] = (median([r["prefill_ratio"] for r in round_rows]) if rounds > 1
                        else ratio(res["qmesh_prefill_tok_s"], res["llama_pp_tok_s"]))
res["decode_ratio"] = (median([r["decode_ratio"] for r in round_rows]) if rounds > 1
                       else ratio(res["qmesh_decode_tok_s"], res["llama_tg_tok_s"]))
res["rounds"] = rounds
if rounds > 1:
    res["per_round"] = round_rows
res["qmesh_roofline"] = q.get("roofline_ratio")
res["llama_bytes_per_token"] = llama_bpt if llama else None
res["llama_roofline"] = roofline(res["llama_bytes_per_token"], llama.get("tg"), bw)

def how(one):
    """How a figure was made: one round's mean or best of reps, or the median over the rounds."""
    return f"{one} of {reps}" + (f", median of {rounds} rounds" if rounds > 1 else "")
rows = [
    ("model", res["model"]),
    ("cpu", cpu or "?"),
    ("ISA flags (/proc/cpuinfo)", isa),
    ("qmesh kernels / mesh", f"{q.get('isa', 'n/a')} / {q.get('mesh', 'n/a')}" + (f"  [{qflags}]" if qflags else "")),
    ("llama.cpp build", "native (-DGGML_NATIVE=ON)" if res["llama_isa"] == "native" else "AVX2, FMA, F16C only"),
    ("threads", threads),
    ("rounds (llama.cpp and qmesh in turn)", rounds),
    (f"llama.cpp pp{npr} tok/s ({how('mean')})", fmt(llama.get("pp")) + (f" +- {llama['pp_sd']:.1f}" if llama.get("pp_sd") else "")),
    (f"llama.cpp tg{ngen} tok/s ({how('mean')})", fmt(llama.get("tg"), 2) + (f" +- {llama['tg_sd']:.2f}" if llama.get("tg_sd") else "")),
    (f"qmesh prefill {npr} tok/s ({how('best')})", fmt(res["qmesh_prefill_tok_s"])),
    (f"qmesh decode {ngen} tok/s ({how('best')})", fmt(res["qmesh_decode_tok_s"], 2)),
    ("prefill ratio qmesh/llama.cpp", fmt(res["prefill_ratio"], 2)),
    ("decode ratio qmesh/llama.cpp", fmt(res["decode_ratio"], 2)),
    ("memory read bandwidth GB/s", fmt(bw, 1)),
    ("weight bytes/token qmesh | llama.cpp", f"{q.get('bytes_per_token', 'n/a')} | {res['llama_bytes_per_token'] or 'n/a'}"),
    ("decode roofline fraction qmesh", fmt(res["qmesh_roofline"], 3)),
    ("decode roofline fraction llama.cpp", fmt(res["llama_roofline"], 3)),
]
w = max(len(k) for k, _ in rows)
if rounds > 1:
    print("round  llama pp  qmesh pp  ratio  llama tg  qmesh tg  ratio  GB/s  roofline llama qmesh")
    for i, r in enumerate(round_rows, 1):
        print(f"{i:5d}  {fmt(r['llama_pp']):>8}  {fmt(r['qmesh_prefill']):>8}  {fmt(r['prefill_ratio'], 2):>5}  "
              f"{fmt(r['llama_tg'], 2):>8}  {fmt(r['qmesh_decode'], 2):>8}  {fmt(r['decode_ratio'], 2):>5}  "
              f"{fmt(r['mem_read_gb_s']):>4}  {fmt(r['llama_roofline'], 2):>14} {fmt(r['qmesh_roofline'], 2):>5}")
print("-" * (w + 40))
for k, v in rows:
    print(f"{k:<{w}}  {v}")
print("-" * (w + 40))
print(json.dumps(res))
PYEOF
exit $failed
