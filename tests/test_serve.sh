#!/usr/bin/env bash
# qmesh serve (OpenAI-compatible HTTP server) on a tiny random model, with curl (and jq):
#  1. the same answer whatever the load: a seeded and a greedy request and a seeded conversation
#     (system, user, assistant, user) give byte-identical answers alone (1x1, batch 1) and among 16
#     other concurrent requests on 1x1, 2x2 and 1x4 (and 2x2 under mpirun when built with MPI); the
#     16 others are identical across meshes too; streamed, the seeded and the greedy request's
#     chunks carry logprobs that, one after another, are the whole answer's (the same bytes);
#     conversations that end with an assistant message, take turns out of order, have an unknown
#     role or more than 256 messages get a 400;
#  2. robustness: malformed JSON, wrong types, unknown model, a prompt longer than the context, n > 1
#     (400 with an OpenAI error object), a body over the limit (413), a missing or wrong key (401),
#     a full queue (429 with Retry-After), a client gone mid-stream (its sequence freed, another
#     request unaffected), SIGTERM (in-flight request answered, exit 0 in bounded time);
#  3. streaming (under mpirun too: two streamed requests at once, one on each row of 2x2, each in
#     chunks that put together are its whole answer), /tokenize, /detokenize, /v1/models, /health,
#     /metrics;
#  4. a client gone before a whole (non-streamed) answer (its sequence cancelled and freed), then a
#     bounded load test (200 requests, 32 at once): no request lost.
set -euo pipefail
: "${QMESH:?}" "${WORK:?}" "${SRC:?}"
command -v curl > /dev/null || { echo "FAIL: test_serve needs curl (Debian: apt-get install curl)"; exit 1; }
command -v jq > /dev/null || { echo "FAIL: test_serve needs jq (Debian: apt-get install jq)"; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
# never leave a server behind, whatever ends the script
trap '[ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null; true' EXIT
M="$WORK/tiny"
"$QMESH" random-model --preset tiny --out "$M" --seed 11 2>/dev/null

# start_server LOG ARGS...: runs `qmesh serve ARGS --port 0` (or the mpirun line in LAUNCH), sets
# SERVER_PID and PORT once it listens.
start_server() {
  local log=$1; shift
  : > "$log"
  ${LAUNCH:-} "$QMESH" serve -m "$M" --port 0 "$@" > "$log.out" 2> "$log" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    PORT=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server did not start: $(cat "$log")"
    sleep 0.1
  done
  fail "server did not listen within 30 s: $(cat "$log")"
}
# The process to signal: the server, or under mpirun world rank 0 (mpirun turns a SIGTERM of its
# own into an abort of the job; rank 0 stopping ends every rank by broadcast).
rank0() {
  [ -z "${LAUNCH:-}" ] && { echo "$SERVER_PID"; return; }
  for p in $(pgrep -P "$SERVER_PID"); do
    grep -qx 'OMPI_COMM_WORLD_RANK=0' <<< "$(tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null)" && { echo "$p"; return; }
  done
  echo "$SERVER_PID"
}
# stop_server: SIGTERM, then it must exit 0 within 30 s.
stop_server() {
  kill -TERM "$(rank0)"
  for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SERVER_PID" 2>/dev/null && fail "server still running 30 s after SIGTERM"
  local rc=0; wait "$SERVER_PID" || rc=$?
  [ $rc = 0 ] || fail "server exit $rc after SIGTERM"
  SERVER_PID=
}
# post PATH BODY OUT [curl args]: prints the HTTP status; the body goes to OUT.
post() {
  local path=$1 body=$2 out=$3; shift 3
  curl -s -o "$out" -w '%{http_code}' "$@" "http://127.0.0.1:$PORT$path" -H 'Content-Type: application/json' -d "$body"
}
# the answer without what differs between runs (id, created)
norm() { sed -E 's/"id":"[^"]*",//; s/"created":[0-9]+,//' "$1"; }
expect_error() { # STATUS PATH BODY WHAT [curl args]
  local want=$1 path=$2 body=$3 what=$4; shift 4
  local got; got=$(post "$path" "$body" "$WORK/err.json" "$@")
  [ "$got" = "$want" ] || fail "$what: status $got, want $want: $(cat "$WORK/err.json")"
  grep -q '^{"error":{"message":"[^"]*","type":"[^"]*","param":[^,]*,"code":' "$WORK/err.json" ||
    fail "$what: not an OpenAI error object: $(cat "$WORK/err.json")"
}
# Streamed logprobs: the chunks' lists one after another (jq -c), the whole answer's, the numbers
# as written (KEY FILE: the values of KEY in order, bytes as they are in the file).
stream_logprobs() {
  sed -n 's/^data: \({.*\)$/\1/p' "$1" | jq -cs '[.[].choices[0].logprobs | select(. != null)] |
    if (.[0] | has("content")) then {content: map(.content[])}
    else {tokens: map(.tokens[]), token_logprobs: map(.token_logprobs[]), top_logprobs: map(.top_logprobs[]),
          text_offset: map(.text_offset[])} end'
}
whole_logprobs() { jq -c '.choices[0].logprobs' "$1"; }
written() { grep -o "\"$1\":\(\[[^]]*\]\|[-0-9.e+]*\)" "$2" | sed -E 's/^"[a-z_]+"://; s/[][]//g' | tr ',' '\n' | grep -v '^$' || true; }
stream_text() { sed -n 's/^data: \({.*\)$/\1/p' "$1" | jq -rjs 'map(.choices[0] | .text // .delta.content // "") | add'; }
# STREAM WHOLE WHAT: the streamed answer carries the whole one's text and logprobs, in 2 chunks at
# least (a row in another process streams too: its pieces reach rank 0 every pass)
check_stream_logprobs() {
  local n; n=$(grep -c '^data: {.*"logprobs":{' "$1" || true)
  [ "$n" -ge 2 ] || fail "$3: $n streamed chunks with logprobs: $(head -c 600 "$1")"
  [ "$(stream_text "$1")" = "$(jq -rj '.choices[0] | .text // .message.content' "$2")" ] || fail "$3: streamed text differs"
  [ "$(stream_logprobs "$1")" = "$(whole_logprobs "$2")" ] ||
    fail "$3: streamed logprobs $(stream_logprobs "$1" | head -c 400) differ from the whole answer's $(whole_logprobs "$2" | head -c 400)"
  for key in logprob bytes token_logprobs text_offset; do
    [ "$(written $key "$1")" = "$(written $key "$2")" ] || fail "$3: streamed '$key' numbers are not written as in the whole answer"
  done
}

# --- 1. the same answer whatever the load ---
T1='{"prompt": "Once upon a time", "max_tokens": 14, "temperature": 0.9, "top_p": 0.95, "seed": 7, "ignore_eos": true, "logprobs": 3}'
T2='{"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 10, "temperature": 0, "logprobs": true, "top_logprobs": 2}'
T3='{"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Name a colour."}], "max_tokens": 12, "temperature": 0.8, "seed": 5, "ignore_eos": true}'
T3_PROMPT='<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n'
S1="${T1%\}}, \"stream\": true}" # T1 and T2 streamed
S2="${T2%\}}, \"stream\": true}"
other() { # request k of the 16 others: prompts, lengths, sampling and stops differ
  local k=$1
  case $((k % 4)) in
    0) echo "{\"prompt\": \"Story $k:\", \"max_tokens\": $((6 + k % 7)), \"temperature\": 0, \"ignore_eos\": true}" ;;
    1) echo "{\"prompt\": \"List $k\", \"max_tokens\": $((8 + k % 5)), \"temperature\": 1.2, \"top_k\": 40, \"seed\": $k, \"ignore_eos\": true}" ;;
    2) echo "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief $k.\"}, {\"role\": \"user\", \"content\": \"Why $k?\"}], \"max_tokens\": 9, \"temperature\": 0.7, \"seed\": 3}" ;;
    3) echo "{\"prompt\": \"$k $k $k\", \"max_tokens\": 12, \"temperature\": 0, \"stop\": [\"e\", \"zz\"], \"ignore_eos\": true}" ;;
  esac
}
endpoint() { case "$1" in *messages*) echo /v1/chat/completions ;; *) echo /v1/completions ;; esac; }

start_server "$WORK/alone.log" --batch 1
[ "$(post /v1/completions "$T1" "$WORK/ref_t1.json")" = 200 ] || fail "T1 alone: $(cat "$WORK/ref_t1.json")"
[ "$(post /v1/chat/completions "$T2" "$WORK/ref_t2.json")" = 200 ] || fail "T2 alone: $(cat "$WORK/ref_t2.json")"
grep -q '"finish_reason":"length"' "$WORK/ref_t1.json" && grep -q '"usage":{"prompt_tokens":' "$WORK/ref_t1.json" &&
  grep -q '"token_logprobs":\[-' "$WORK/ref_t1.json" || fail "T1 answer: $(cat "$WORK/ref_t1.json")"
# greedy: the picked token is the most likely one, so its logprob is the first top logprob's
lps=$(grep -o '"logprob":[-0-9.e]*' "$WORK/ref_t2.json" | head -2 | uniq | wc -l)
[ "$lps" = 1 ] || fail "T2 logprobs: $(cat "$WORK/ref_t2.json")"
# the conversation: every turn in the prompt (ChatML: as many tokens as its text with the template's)
[ "$(post /v1/chat/completions "$T3" "$WORK/ref_t3.json")" = 200 ] || fail "T3 alone: $(cat "$WORK/ref_t3.json")"
post /tokenize "{\"prompt\": \"$T3_PROMPT\"}" "$WORK/t3_prompt.json" > /dev/null
want=$(jq .count "$WORK/t3_prompt.json"); got=$(jq .usage.prompt_tokens "$WORK/ref_t3.json")
[ "$got" = "$want" ] || fail "T3 prompt: $got tokens, want $want (every turn in ChatML): $(cat "$WORK/ref_t3.json")"
for k in 1 2; do
  eval "body=\$S$k"; ep=/v1/completions; [ $k = 2 ] && ep=/v1/chat/completions
  [ "$(post $ep "$body" "$WORK/ref_s$k.txt")" = 200 ] || fail "S$k alone: $(cat "$WORK/ref_s$k.txt")"
  check_stream_logprobs "$WORK/ref_s$k.txt" "$WORK/ref_t$k.json" "S$k alone"
done
# conversations this server does not take: 400 saying why
for bad in 'last is assistant|[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]|must end with a user message' \
           'two user turns|[{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi?"}]|message 1: a user message where an assistant message belongs' \
           'late system|[{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief."}]|message 1: a system message' \
           'unknown role|[{"role": "user", "content": "Hi"}, {"role": "tool", "content": "42"}]|the role '"'"'tool'"'"' is not supported'; do
  IFS='|' read -r what msgs why <<< "$bad"
  expect_error 400 /v1/chat/completions "{\"messages\": $msgs}" "$what"
  grep -q "$why" "$WORK/err.json" || fail "$what: the error does not say '$why': $(cat "$WORK/err.json")"
done
many=$(for i in $(seq 1 150); do printf '{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a%d"}, ' "$i" "$i"; done)
expect_error 400 /v1/chat/completions "{\"messages\": [$many{\"role\": \"user\", \"content\": \"last\"}]}" "301 messages"
grep -q 'has 301 messages; this server takes at most 256' "$WORK/err.json" || fail "301 messages: $(cat "$WORK/err.json")"
stop_server
echo "ok alone (1x1, batch 1), with logprobs: $(head -c 300 "$WORK/ref_t1.json")"
echo "ok a conversation of $(jq .usage.prompt_tokens "$WORK/ref_t3.json") prompt tokens; streamed logprobs (completions, chat) the same as whole; bad conversations refused"

loaded_run() { # NAME ARGS...: T1, T2 and the 16 others at once
  local name=$1; shift
  start_server "$WORK/$name.log" "$@"
  for k in $(seq 0 15); do
    b=$(other "$k"); post "$(endpoint "$b")" "$b" "$WORK/$name.other$k.json" > "$WORK/$name.other$k.code" &
  done
  post /v1/completions "$T1" "$WORK/$name.t1.json" > "$WORK/$name.t1.code" &
  post /v1/chat/completions "$T2" "$WORK/$name.t2.json" > "$WORK/$name.t2.code" &
  post /v1/chat/completions "$T3" "$WORK/$name.t3.json" > "$WORK/$name.t3.code" &
  post /v1/completions "$S1" "$WORK/$name.s1.txt" > "$WORK/$name.s1.code" &
  wait $(jobs -p | grep -v "^$SERVER_PID$") 2>/dev/null || true
  for f in "$WORK/$name".*.code; do [ "$(cat "$f")" = 200 ] || fail "$name: $f: $(cat "$f") $(cat "${f%.code}".*)"; done
  stop_server
  [ "$(norm "$WORK/$name.t1.json")" = "$(norm "$WORK/ref_t1.json")" ] || fail "$name: T1 (text or logprobs) differs from alone"
  [ "$(norm "$WORK/$name.t2.json")" = "$(norm "$WORK/ref_t2.json")" ] || fail "$name: T2 differs from alone"
  [ "$(norm "$WORK/$name.t3.json")" = "$(norm "$WORK/ref_t3.json")" ] || fail "$name: the conversation T3 differs from alone"
  check_stream_logprobs "$WORK/$name.s1.txt" "$WORK/ref_t1.json" "$name: S1"
  if [ "$name" != 1x1 ]; then
    for k in $(seq 0 15); do
      [ "$(norm "$WORK/$name.other$k.json")" = "$(norm "$WORK/1x1.other$k.json")" ] || fail "$name: request $k differs from 1x1"
    done
  fi
  echo "ok $name: the seeded and the greedy request (text and logprobs) and the conversation identical to alone among 16 others, streamed logprobs too; the others identical to 1x1"
}
# Under mpirun, rows in other processes stream too: two streamed requests at once on 2x2 with one
# sequence per row (so each row serves one) each arrive in 2 chunks of text at least, and their
# chunks put together are the same request's whole (non-streamed) answer, logprobs included.
text_chunks() { sed -n 's/^data: \({.*\)$/\1/p' "$1" | jq -s '[.[].choices[0] | .text // .delta.content // "" | select(. != "")] | length'; }
mpi_rows_stream() {
  start_server "$WORK/mpirows.log" --mesh 2x2 --batch 1 --backend mpi
  local k n
  rows_req() { echo "{\"prompt\": \"Row $1 of two\", \"max_tokens\": 24, \"temperature\": 0, \"ignore_eos\": true, \"logprobs\": 2${2:-}}"; }
  for k in 1 2; do
    post /v1/completions "$(rows_req $k ', "stream": true')" "$WORK/mpirows.s$k.txt" -N > "$WORK/mpirows.s$k.code" &
  done
  wait $(jobs -p | grep -v "^$SERVER_PID$") 2>/dev/null || true
  for k in 1 2; do
    [ "$(cat "$WORK/mpirows.s$k.code")" = 200 ] || fail "mpi rows, stream $k: $(cat "$WORK/mpirows.s$k.txt")"
    [ "$(post /v1/completions "$(rows_req $k)" "$WORK/mpirows.w$k.json")" = 200 ] ||
      fail "mpi rows, whole $k: $(cat "$WORK/mpirows.w$k.json")"
  done
  stop_server
  for k in 1 2; do
    n=$(text_chunks "$WORK/mpirows.s$k.txt")
    [ "$n" -ge 2 ] || fail "mpi rows, stream $k: $n chunks with text: $(head -c 600 "$WORK/mpirows.s$k.txt")"
    check_stream_logprobs "$WORK/mpirows.s$k.txt" "$WORK/mpirows.w$k.json" "mpi rows, stream $k"
    echo "ok mpi 2x2, one sequence per row: streamed request $k in $n chunks of text, the whole answer's text and logprobs"
  done
}
loaded_run 1x1 --batch 8
loaded_run 2x2 --mesh 2x2 --batch 4
loaded_run 1x4 --mesh 1x4 --batch 6
if [ "${QMESH_HAVE_MPI:-OFF}" = ON ] && command -v mpirun > /dev/null; then
  LAUNCH="mpirun --oversubscribe -np 4 -x ASAN_OPTIONS=detect_leaks=0"
  [ "$(id -u)" = 0 ] && LAUNCH="$LAUNCH --allow-run-as-root"
  loaded_run mpi2x2 --mesh 2x2 --batch 4 --backend mpi
  mpi_rows_stream
  LAUNCH=
else
  echo "skipped: mpirun (built without MPI)"
fi

# --- 2. robustness ---
start_server "$WORK/robust.log" --ctx 512 --batch 2 --max-queue 2 --max-body 4096 --api-key sekret --shutdown-timeout 3
K=(-H 'Authorization: Bearer sekret')
expect_error 400 /v1/completions '{"prompt": "Hi", "max_tokens": 4' "malformed JSON" "${K[@]}"
expect_error 400 /v1/completions '[1, 2]' "not an object" "${K[@]}"
expect_error 400 /v1/completions '{"prompt": "Hi", "max_tokens": "four"}' "wrong type" "${K[@]}"
expect_error 400 /v1/completions '{"prompt": 5}' "wrong prompt type" "${K[@]}"
expect_error 400 /v1/chat/completions '{"messages": "hi"}' "wrong messages type" "${K[@]}"
expect_error 400 /v1/completions '{"prompt": "Hi", "temperature": 7}' "temperature out of range" "${K[@]}"
expect_error 400 /v1/completions '{"model": "gpt-4", "prompt": "Hi"}' "unknown model" "${K[@]}"
grep -q '"code":"model_not_found"' "$WORK/err.json" || fail "unknown model code: $(cat "$WORK/err.json")"
long=$(printf 'word %.0s' $(seq 1 600))
expect_error 400 /v1/completions "{\"prompt\": \"$long\"}" "prompt longer than the context" "${K[@]}"
grep -q '"code":"context_length_exceeded"' "$WORK/err.json" || fail "context code: $(cat "$WORK/err.json")"
expect_error 400 /v1/completions '{"prompt": "Hi", "n": 2}' "n > 1" "${K[@]}"
expect_error 400 /v1/completions '{"prompt": "Hi", "logprobs": 21}' "too many logprobs" "${K[@]}"
expect_error 413 /v1/completions "{\"prompt\": \"$(head -c 6000 /dev/zero | tr '\0' a)\"}" "body over the limit" "${K[@]}"
expect_error 401 /v1/completions '{"prompt": "Hi"}' "missing key"
expect_error 401 /v1/completions '{"prompt": "Hi"}' "wrong key" -H 'Authorization: Bearer nope'
expect_error 404 /v1/nothing '{}' "unknown endpoint" "${K[@]}"
echo "ok 400/401/404/413 with OpenAI error objects"
# streaming: data: chunks, a last one with finish_reason and usage, then [DONE]; same text as whole
post /v1/completions '{"prompt": "Hi", "max_tokens": 6, "temperature": 0, "ignore_eos": true, "stream": true}' \
  "$WORK/stream.txt" "${K[@]}" > /dev/null
post /v1/completions '{"prompt": "Hi", "max_tokens": 6, "temperature": 0, "ignore_eos": true}' "$WORK/whole.json" "${K[@]}" > /dev/null
[ "$(tail -n 2 "$WORK/stream.txt" | head -1)" = "data: [DONE]" ] || fail "stream does not end with [DONE]: $(cat "$WORK/stream.txt")"
grep '^data: {' "$WORK/stream.txt" | tail -1 | grep -q '"finish_reason":"length".*"usage":{' || fail "last chunk: $(cat "$WORK/stream.txt")"
streamed=$(grep '^data: {' "$WORK/stream.txt" | sed -E 's/.*"text":"(([^"\\]|\\.)*)".*/\1/' | tr -d '\n')
whole=$(sed -E 's/.*"text":"(([^"\\]|\\.)*)".*/\1/' "$WORK/whole.json")
[ "$streamed" = "$whole" ] || fail "streamed text '$streamed' differs from whole '$whole'"
echo "ok streaming: chunks add up to the whole answer, usage in the last, [DONE]"
# tokenize / detokenize / models / health / metrics
post /tokenize '{"prompt": "Hello, world!"}' "$WORK/tok.json" "${K[@]}" > /dev/null
grep -q '"tokens":\[9707,11,1879,0\]' "$WORK/tok.json" || fail "tokenize: $(cat "$WORK/tok.json")"
post /detokenize '{"tokens": [9707, 11, 1879, 0]}' "$WORK/detok.json" "${K[@]}" > /dev/null
grep -q '"prompt":"Hello, world!"' "$WORK/detok.json" || fail "detokenize: $(cat "$WORK/detok.json")"
curl -s "${K[@]}" "http://127.0.0.1:$PORT/v1/models" | grep -q '"id":"tiny"' || fail "/v1/models"
curl -s "http://127.0.0.1:$PORT/health" | grep -q '"status":"ok"' || fail "/health"
echo "ok /tokenize /detokenize /v1/models /health"
# a full queue: batch 2 running + 2 waiting; more get 429 with Retry-After; the accepted ones finish
for i in 1 2 3 4 5 6 7 8; do
  curl -s -D "$WORK/q$i.head" -o "$WORK/q$i.json" -w '%{http_code}\n' "${K[@]}" "http://127.0.0.1:$PORT/v1/completions" \
    -d "{\"prompt\": \"Queue $i\", \"max_tokens\": 24, \"temperature\": 0, \"ignore_eos\": true}" > "$WORK/q$i.code" &
done
wait $(jobs -p | grep -v "^$SERVER_PID$") 2>/dev/null || true
n429=$(cat "$WORK"/q*.code | grep -c 429 || true); n200=$(cat "$WORK"/q*.code | grep -c 200 || true)
[ "$n429" -ge 1 ] && [ $((n429 + n200)) = 8 ] || fail "full queue: $(cat "$WORK"/q*.code)"
grep -il '^Retry-After: 1' $(grep -l 429 "$WORK"/q*.code | sed 's/code$/head/') > /dev/null || fail "429 without Retry-After"
echo "ok full queue: $n429 of 8 answered 429 with Retry-After, $n200 served"
# a client gone mid-stream: its sequence is freed within a step; a request beside it is unaffected
gen_tokens() { curl -s "http://127.0.0.1:$PORT/metrics" | sed -n 's/^qmesh_generation_tokens_total //p'; }
B='{"prompt": "Beside", "max_tokens": 20, "temperature": 0, "ignore_eos": true}'
post /v1/completions "$B" "$WORK/b_alone.json" "${K[@]}" > /dev/null
tokens0=$(gen_tokens)
post /v1/completions "$B" "$WORK/b_beside.json" "${K[@]}" > /dev/null &
bpid=$!
# the client reads three lines of a 480-token stream, then closes the connection
{ curl -s -N "${K[@]}" "http://127.0.0.1:$PORT/v1/completions" \
  -d '{"prompt": "Gone", "max_tokens": 480, "temperature": 0, "ignore_eos": true, "stream": true}' || true; } |
  head -n 3 > "$WORK/gone.txt"
grep -q '^data: {' "$WORK/gone.txt" || fail "the streaming client got nothing before leaving"
wait $bpid
[ "$(norm "$WORK/b_beside.json")" = "$(norm "$WORK/b_alone.json")" ] || fail "a request beside a disconnect changed"
freed=
for _ in $(seq 1 30); do
  m=$(curl -s "http://127.0.0.1:$PORT/metrics")
  if grep -q '^qmesh_generations_cancelled_total 1$' <<< "$m" && grep -q '^qmesh_busy_sequences 0$' <<< "$m"; then
    freed=1; break
  fi
  sleep 0.1
done
[ -n "$freed" ] || fail "the disconnected stream's sequence was not freed: $m"
spent=$(( $(gen_tokens) - tokens0 - 20 ))
[ "$spent" -lt 120 ] || fail "the disconnected stream ran on: $spent of its 480 tokens generated"
echo "ok a client gone mid-stream: sequence cancelled and freed after $spent of 480 tokens; the request beside it unaffected"
grep -q '^qmesh_time_to_first_token_seconds_count [1-9]' <<< "$m" || fail "/metrics: no time-to-first-token"
echo "ok /metrics: $(echo "$m" | grep -E '^qmesh_(generation_tokens_total|queue_length|busy_sequences) ' | tr '\n' ' ')"
# SIGTERM with a streamed request in flight: the stream still ends properly (finished within
# --shutdown-timeout, else a cancellation error event), then [DONE]; the server exits 0
curl -s -N "${K[@]}" "http://127.0.0.1:$PORT/v1/completions" \
  -d '{"prompt": "Last", "max_tokens": 200, "temperature": 0, "ignore_eos": true, "stream": true}' > "$WORK/last.txt" &
lpid=$!
for _ in $(seq 1 100); do grep -q '^data: {' "$WORK/last.txt" && break; sleep 0.1; done
grep -q '^data: {' "$WORK/last.txt" || fail "the last request never started"
t0=$(date +%s)
stop_server
wait $lpid || true
[ "$(tail -n 2 "$WORK/last.txt" | head -1)" = "data: [DONE]" ] || fail "in-flight stream at SIGTERM not ended: $(tail -c 300 "$WORK/last.txt")"
how=finished; grep -q '"code":"cancelled"' "$WORK/last.txt" && how=cancelled
[ $(( $(date +%s) - t0 )) -le 15 ] || fail "shutdown took more than 15 s"
echo "ok SIGTERM: the in-flight stream $how and ended with [DONE]; exit 0 in $(( $(date +%s) - t0 )) s"

# --- 4. a client gone before a whole answer; a bounded load test: 200 requests, 32 at once, none lost ---
start_server "$WORK/load.log" --batch 16 --max-queue 256
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | sed -n "s/^$1 //p"; }
c0=$(metric qmesh_generations_cancelled_total); tokens0=$(metric qmesh_generation_tokens_total)
curl -s -o /dev/null "http://127.0.0.1:$PORT/v1/completions" \
  -d '{"prompt": "Killed", "max_tokens": 3000, "temperature": 0, "ignore_eos": true}' &
cpid=$!
for _ in $(seq 1 200); do [ "$(metric qmesh_busy_sequences)" = 1 ] && break; sleep 0.05; done
[ "$(metric qmesh_busy_sequences)" = 1 ] || fail "the non-streamed request to be left never ran"
kill "$cpid"; wait "$cpid" 2>/dev/null || true
t0=$(date +%s%N); freed=
for _ in $(seq 1 20); do
  if [ "$(metric qmesh_busy_sequences)" = 0 ] && [ "$(metric qmesh_generations_cancelled_total)" = $((c0 + 1)) ]; then
    freed=1; break
  fi
  sleep 0.1
done
[ -n "$freed" ] || fail "the left non-streamed request's sequence was not freed within 2 s: $(curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^qmesh_(busy|generations)')"
spent=$(( $(metric qmesh_generation_tokens_total) - tokens0 ))
[ "$spent" -lt 3000 ] || fail "the left non-streamed request ran on: $spent of its 3000 tokens generated"
echo "ok a client gone before a whole answer: cancelled after $spent of 3000 tokens, freed $(( ($(date +%s%N) - t0) / 1000000 )) ms after it left"
bash "$SRC/scripts/serve_load.sh" "$PORT" 200 32 2 > "$WORK/load.json" || fail "load test lost requests: $(cat "$WORK/load.json")"
stop_server
echo "ok load: $(cat "$WORK/load.json")"
