#!/bin/sh
# check_exports.sh LIB — fail unless libpostbox-sysv.so defines exactly msgget, msgsnd,
# msgrcv and msgctl: the engine inside it must not clash with a program's own symbols.
set -eu
lib=$1
command -v nm >/dev/null 2>&1 || { echo "nm not installed: skipped"; exit 77; }
syms=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | sort | tr '\n' ' ')
if [ "$syms" != "msgctl msgget msgrcv msgsnd " ]; then
    echo "unexpected exports: $syms"; exit 1
fi
echo "exports: $syms"
