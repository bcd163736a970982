#!/bin/sh
# run.sh MODEL [expect-fail DEFINE] — check a Promela model exhaustively with spin.
#   run.sh bias.pml               the model must hold: no assertion violated, no invalid end state
#   run.sh bias.pml fail C743DEE  the model compiled with -DC743DEE must be caught (an error found)
# Exits 77 (skipped) when spin or a C compiler is missing, saying which Debian package to install.
set -u
model=$1
want=${2:-pass}
define=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
command -v spin >/dev/null 2>&1 || { echo "SKIP: spin is not installed (Debian: apt-get install spin)"; exit 77; }
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || { echo "SKIP: no C compiler ($cc) for spin's verifier"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/pbx-model.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT INT TERM
cp "$here/$model" "$dir/" && cd "$dir" || exit 1
if [ -n "$define" ]; then
    spin -D"$define" -a "$model" >spin.log 2>&1 || { cat spin.log; exit 1; }
else
    spin -a "$model" >spin.log 2>&1 || { cat spin.log; exit 1; }
fi
# -DSAFETY: assertions and invalid end states; the state space is explored in full (no bitstate).
"$cc" -O2 -DSAFETY -o pan pan.c 2>cc.log || { cat cc.log; exit 1; }
./pan -m1000000 >pan.log 2>&1
grep -E 'errors:|states, stored|depth reached' pan.log
errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.log)
[ -n "$errors" ] || { echo "run.sh: could not read spin's result"; cat pan.log; exit 1; }
if [ "$want" = pass ]; then
    grep -q 'Search not completed' pan.log && { echo "run.sh: the search did not complete"; exit 1; }
    [ "$errors" = 0 ] || { grep -E 'assertion violated|invalid end' pan.log; exit 1; }
    echo "model $model: every interleaving checked, no violation"
else
    [ "$errors" != 0 ] || { echo "run.sh: the model did not catch the $define protocol"; exit 1; }
    grep -E 'assertion violated|invalid end' pan.log | head -1
    echo "model $model with -D$define: violation found, as it must be"
fi
