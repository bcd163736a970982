#!/bin/sh
# lecture.sh LIB PROGRAM — the lecture's final program, preloaded with libpostbox-sysv.so,
# prints "Received 252!" and leaves no queue behind. The command substitution waits for the
# child too: it holds the pipe until it exits.
lib=$1 prog=$2
dir=$(mktemp -d /dev/shm/pbx-sysv-test.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
# timeout kills the whole process group, the forked child included, should it hang. Only the
# program is preloaded, not timeout and env (a musl build's library cannot load into them).
out=$(POSTBOX_DIR="$dir" timeout 30 env LD_PRELOAD="$lib" "$prog") || { echo "exit status $?"; exit 1; }
if [ "$out" != "Received 252!" ]; then
    echo "expected 'Received 252!', got '$out'"
    exit 1
fi
if ls "$dir" | grep -q '^pbx\.'; then
    echo "a mailbox is left behind:"; ls -l "$dir"
    exit 1
fi
echo "$out"
