#!/usr/bin/env bash
# Runs one libFuzzer harness for SECONDS over a scratch copy of its seed corpus (the committed seeds are
# never written to) and prints one line: executions, coverage (cov: and ft: from libFuzzer's final
# stats), corpus size and crashes. Exit 0 when nothing was found; 1 on a crash, leak, timeout or
# out-of-memory (the input is kept in WORK/crashes/ and the end of the log is printed).
# usage: run_fuzz.sh HARNESS SEED_DIR WORK_DIR SECONDS [more libFuzzer flags]
set -u
bin=$1 seeds=$2 work=$3 secs=$4
shift 4
name=$(basename "$bin")
if [ ! -x "$bin" ]; then
  echo "$name: $bin is not built (cmake --build <build folder> --target fuzz)"
  exit 1
fi
rm -rf "$work"
mkdir -p "$work/corpus" "$work/crashes"
if [ -d "$seeds" ]; then cp -r "$seeds"/. "$work/corpus/"; fi
# -timeout: one input running this long is a hang; -max_len: room to grow past the small seeds.
"$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=8192 -print_final_stats=1 \
  -artifact_prefix="$work/crashes/" "$@" "$work/corpus" >"$work/log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2)
ft=$(grep -o 'ft: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2)
found=$(find "$work/crashes" -type f | wc -l)
echo "$name: ${execs:-?} executions in ${secs}s, cov ${cov:-?}, ft ${ft:-?}," \
  "corpus $(find "$work/corpus" -type f | wc -l) inputs, crashes $found"
if [ "$rc" -ne 0 ] || [ "$found" -gt 0 ]; then
  tail -n 60 "$work/log"
  find "$work/crashes" -type f -printf "$name: saved %p\n"
  exit 1
fi
exit 0
