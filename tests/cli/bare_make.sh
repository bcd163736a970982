#!/bin/sh
# bare_make.sh SOURCE_DIR — a bare `make` in the source tree builds and never installs: the
# Makefile's default goal is `all`, and what a bare `make` would run (make -n, into a scratch
# build directory) builds with cmake and installs nothing. .ci/run also runs a real bare `make`
# as a user who may not write /usr/local.
set -u
src=$1
command -v make >/dev/null 2>&1 || { echo "skipped: make not installed (Debian: apt-get install make)"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/postbox-make.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
goal=$(make -C "$src" -pn BUILD="$T/build" 2>/dev/null | sed -n 's/^\.DEFAULT_GOAL := //p')
[ "$goal" = all ] || fail "a bare make runs '$goal', not 'all'"
out=$(make -C "$src" -n BUILD="$T/build" 2>&1) || fail "make -n failed: $out"
case $out in
*--install* | *"PREFIX"*) fail "a bare make would install: $out" ;;
esac
case $out in
*--build*) ;;
*) fail "a bare make would not build: $out" ;;
esac
echo "ok: a bare make builds ($goal) and installs nothing"
