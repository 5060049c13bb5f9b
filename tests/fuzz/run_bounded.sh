#!/bin/sh
# run_bounded.sh FUZZER CORPUS SECONDS — a bounded libFuzzer run for ctest.
#
# Copies the seed corpus CORPUS to a scratch directory (libFuzzer adds the
# inputs it finds to its first corpus directory: the repository must not be
# written), runs FUZZER on it for SECONDS, and fails on any finding: a
# crash, a leak (LeakSanitizer), a sanitizer report, a slow input or an
# out-of-memory all make libFuzzer exit non-zero. Prints the number of runs.
set -u
fuzzer=$1 corpus=$2 seconds=$3
scratch=$(mktemp -d /tmp/pard-fuzz-XXXXXX) || exit 1
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/corpus" "$scratch/artifacts"
cp "$corpus"/* "$scratch/corpus/"
seeds=$(ls "$scratch/corpus" | wc -l)
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$scratch/artifacts/" "$scratch/corpus" >"$scratch/log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/log")
found=$(ls "$scratch/corpus" | wc -l)
if [ $rc -ne 0 ]; then
    tail -n 60 "$scratch/log"
    for a in "$scratch"/artifacts/*; do
        [ -f "$a" ] && { echo "reproducer $a:"; od -A d -t x1 "$a" | head -n 20; }
    done
    echo "fuzz_decode: FAILED (exit $rc) after ${runs:-?} runs"
    exit 1
fi
echo "fuzz_decode: ${runs:-?} runs in ${seconds} s, no crash, leak or sanitizer report" \
     "(corpus $seeds seeds -> $found inputs)"
[ -n "$runs" ] || { echo "fuzz_decode: no final stats: did it run?"; exit 1; }
