#!/bin/sh
# bench/run.sh — runs the benchmark suite for `make bench` (full) and `make bench-quick`.
#
# Checks that pbx_bench was built, runs it with its output going to BUILD/bench-results (or
# $BENCH_OUT), then prints summary.md. Progress goes to stderr while it runs. The exit status is
# pbx_bench's: non-zero only for errors (a message lost or corrupted, a failed call, a hang),
# never for speed, so CI can run the quick mode as a smoke test.
#
# usage: sh bench/run.sh [BUILD_DIR [quick|full [pbx_bench options...]]]
#        extra options may also come from $BENCH_ARGS, e.g.
#        make bench BENCH_ARGS="--cases stream --sizes 16,4k"
set -eu

build=${1:-build}
mode=${2:-full}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift

case "$mode" in
quick) flag=--quick ;;
full) flag=--full ;;
*)
    echo "usage: sh bench/run.sh [BUILD_DIR [quick|full [options...]]]" >&2
    exit 2
    ;;
esac

bin="$build/bench/pbx_bench"
if [ ! -x "$bin" ]; then
    echo "bench/run.sh: $bin not found; build first (make build BUILD=$build)" >&2
    exit 2
fi

out=${BENCH_OUT:-$build/bench-results}
mkdir -p "$out"
rm -f "$out/summary.md"

start=$(date +%s)
status=0
# shellcheck disable=SC2086 # BENCH_ARGS is a list of options
"$bin" "$flag" --out "$out" ${BENCH_ARGS:-} "$@" || status=$?
# ---- loans: zero-copy loans against the copying send (bench/loan_bench.c), own output file
loan_bin="$build/bench/pbx_bench_loan"
if [ -x "$loan_bin" ]; then
    "$loan_bin" "$flag" >"$out/loan.txt" || status=$?
fi
# ---- end of loans block
end=$(date +%s)

if [ -f "$out/summary.md" ]; then
    cat "$out/summary.md"
fi
if [ -f "$out/loan.txt" ]; then
    echo
    echo "## Zero-copy loans, 64 KiB (pbx_bench_loan)"
    grep -v '^loan,' "$out/loan.txt"
fi
echo
echo "bench/run.sh: $mode run took $((end - start)) s (exit status $status); results in $out/"
exit "$status"
