#!/usr/bin/env bash
# A bounded load test of `qmesh serve` on loopback: N requests (default 200), P at once (default 32),
# with curl in parallel (xargs -P). Fails when any request is lost (not answered 200 with a
# finish_reason). Prints one JSON line: requests, ok, wall_s, req_per_s, tokens_per_s, p50_s, p99_s.
#   scripts/serve_load.sh PORT [N] [P] [MAX_TOKENS] [PROMPT]
set -euo pipefail
port=${1:?usage: serve_load.sh PORT [N] [P] [MAX_TOKENS] [PROMPT]}
n=${2:-200}; p=${3:-32}; max_tokens=${4:-16}; prompt=${5:-Once upon a time}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
one() { # request i: a greedy completion (a different prompt each), its status, time and body
  local i=$1
  curl -s -o "$dir/body.$i" -w '%{http_code} %{time_total}\n' --max-time 600 \
    "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"prompt\": \"$prompt $i\", \"max_tokens\": $max_tokens, \"temperature\": 0, \"ignore_eos\": true}" \
    > "$dir/stat.$i" || echo "000 0" > "$dir/stat.$i"
}
export -f one; export dir port prompt max_tokens
t0=$(date +%s.%N)
seq 1 "$n" | xargs -P "$p" -I{} bash -c 'one {}'
t1=$(date +%s.%N)
ok=0; tokens=0
for i in $(seq 1 "$n"); do
  read -r code t < "$dir/stat.$i"
  echo "$t" >> "$dir/times"
  if [ "$code" = 200 ] && grep -q '"finish_reason":"length"' "$dir/body.$i"; then
    ok=$((ok + 1))
    tokens=$((tokens + $(sed -E 's/.*"completion_tokens":([0-9]+).*/\1/' "$dir/body.$i")))
  else
    echo "serve_load: request $i lost: status $code $(head -c 300 "$dir/body.$i" 2>/dev/null)" >&2
  fi
done
sort -g "$dir/times" > "$dir/sorted"
pct() { sed -n "$(( ( $1 * n + 99 ) / 100 ))p" "$dir/sorted"; }
wall=$(echo "$t1 - $t0" | bc -l)
printf '{"requests": %d, "ok": %d, "concurrency": %d, "max_tokens": %d, "wall_s": %.2f, "req_per_s": %.2f, "tokens_per_s": %.1f, "p50_s": %s, "p99_s": %s}\n' \
  "$n" "$ok" "$p" "$max_tokens" "$wall" "$(echo "$n / $wall" | bc -l)" "$(echo "$tokens / $wall" | bc -l)" "$(pct 50)" "$(pct 99)"
[ "$ok" = "$n" ]
