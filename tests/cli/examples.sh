#!/bin/sh
# examples.sh FIREALARM — an example's output survives being redirected to a file, as in
# `make demo > log`: the forked worker of examples/firealarm.c must flush before _exit.
set -u
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
POSTBOX_DIR=$(mktemp -d "$base/postbox-examples.XXXXXX") || exit 1
export POSTBOX_DIR
out=$(mktemp "${TMPDIR:-/tmp}/postbox-examples-out.XXXXXX") || { rmdir "$POSTBOX_DIR"; exit 1; }
trap 'rm -rf "$POSTBOX_DIR" "$out"' EXIT
"$1" >"$out" || { echo "FAIL: $1 failed"; exit 1; }
for want in 'worker: the alarm rang' 'warden: worker' 'worker: "fire on floor 3'; do
    grep -q "$want" "$out" || { echo "FAIL: no '$want' in the redirected output: $(cat "$out")"; exit 1; }
done
echo "ok: the worker's lines reach a file"
