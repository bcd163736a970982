#!/bin/sh
# demo.sh — run the examples one after the other, as `make demo` does.
#
# Usage: sh examples/demo.sh BUILD_DIR
#
# The examples create named mailboxes ("pirates", "jobs"). Here they are made in a fresh
# temporary directory, given to postbox through POSTBOX_DIR. So the demo never meets a mailbox
# that belongs to someone else in /dev/shm, and never leaves one behind: the directory is
# removed on exit, even after a failure or an interruption. The script exits non-zero if any
# example fails.

if [ $# -ne 1 ]; then
    echo "usage: sh examples/demo.sh BUILD_DIR" >&2
    exit 2
fi
build=$1

# Shared memory is where mailboxes normally live; fall back to TMPDIR where /dev/shm is missing.
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
POSTBOX_DIR=$(mktemp -d "$base/postbox-demo.XXXXXX") || exit 1
export POSTBOX_DIR
trap 'rm -rf "$POSTBOX_DIR"' EXIT
# Turn a signal into an ordinary exit, so that the EXIT trap above still cleans up.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

failed=
run() {
    name=$1
    title=$2
    echo "== $name: $title =="
    if [ ! -x "$build/example_$name" ]; then
        echo "demo: $build/example_$name is missing; build it first (make)" >&2
        failed="$failed $name"
    elif ! "$build/example_$name"; then
        echo "demo: example_$name failed" >&2
        failed="$failed $name"
    fi
    echo
}

run lecture "parent and child over a private mailbox"
run pirate "pirate records received by type"
run prodcons "producers and consumers, urgent jobs first"
run firealarm "a signal that carries no message (pbx_notify)"
run registry "finding a stranger through the registry, not a PID file"
run critical "sigprocmask around a critical section, then sigwaitinfo"
run epoll "one epoll loop for a socket and a mailbox (pbx_fd)"

if [ -n "$failed" ]; then
    echo "demo: failed:$failed" >&2
    exit 1
fi
echo "demo: all examples succeeded"
