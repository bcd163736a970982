#!/bin/sh
# api_interop.sh LIB SV_PEER API_PEER — a System V program (preloaded) and a postbox API program
# share a queue: the key 0x00c0ffee is the mailbox "sysv.0x00c0ffee" (in the initial IPC
# namespace; "sysv.ns<N>.0x00c0ffee" in the namespace whose inode is N, docs/sysv.md).
lib=$1 sv=$2 api=$3
dir=$(mktemp -d /dev/shm/pbx-sysv-test.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
export POSTBOX_DIR="$dir"
ns=$(stat -L -c %i /proc/self/ns/ipc 2>/dev/null)
name=sysv.0x00c0ffee
[ -z "$ns" ] || [ "$ns" = 4026531839 ] || name=sysv.ns$ns.0x00c0ffee
LD_PRELOAD="$lib" "$sv" put 0x00c0ffee || exit 1
[ -e "$dir/pbx.$name" ] || { echo "no mailbox $name"; ls "$dir"; exit 1; }
out=$("$api" "$name") || exit 1
[ "$out" = "api got type 5: from sysv" ] || { echo "api side: $out"; exit 1; }
out=$(LD_PRELOAD="$lib" "$sv" get 0x00c0ffee) || exit 1
[ "$out" = "sysv got type 6: from postbox" ] || { echo "sysv side: $out"; exit 1; }
[ ! -e "$dir/pbx.$name" ] || { echo "IPC_RMID left the mailbox"; exit 1; }
[ ! -e "$dir/postbox-sysv.registry" ] || { echo "the registry outlived the last queue"; exit 1; }
echo ok
