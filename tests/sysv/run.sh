#!/bin/sh
# run.sh LIB PROGRAM TEST [VAR=VALUE ...] — run one conformance test.
#
# LIB is the path of libpostbox-sysv.so, preloaded into the program, or "kernel" to run the
# same program on the kernel's queues (to check the tests themselves). Each run gets a private
# POSTBOX_DIR under /dev/shm, world-writable and sticky like /dev/shm itself (tests switch to
# another user), removed at the end whatever happens. VAR=VALUE pairs go into the environment.
# timeout(1) kills the test and every helper it forked (its process group) after 50 s, before
# CTest's own limit.
lib=$1 prog=$2 test=$3
shift 3
dir=$(mktemp -d /dev/shm/pbx-sysv-test.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
chmod 1777 "$dir"
if [ "$lib" = kernel ]; then
    timeout 50 env "$@" "$prog" "$test"
else
    timeout 50 env POSTBOX_DIR="$dir" LD_PRELOAD="$lib" "$@" "$prog" "$test"
fi
