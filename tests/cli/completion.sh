#!/bin/sh
# completion.sh COMPLETION POSTBOX — the bash completion offers subcommands, options and the
# names of existing mailboxes. Skipped (77) where bash is not installed.
set -u
command -v bash >/dev/null 2>&1 || { echo "skipped: bash not installed"; exit 77; }
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
POSTBOX_DIR=$(mktemp -d "$base/postbox-compl.XXXXXX") || exit 1
export POSTBOX_DIR
trap 'rm -rf "$POSTBOX_DIR"' EXIT
"$2" create jobs && "$2" create junk || exit 1
# Anyone can make files in the directory: foreign names are not offered, split or globbed.
: >"$POSTBOX_DIR/pbx.j *" && : >"$POSTBOX_DIR/pbx.pbx.*" && : >"$POSTBOX_DIR/pbx.j
x" || exit 1
PATH=$(dirname "$2"):$PATH bash -c '
. "$1"
complete_words() {
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    _postbox
    echo "${COMPREPLY[*]}"
}
check() {
    want=$1; shift
    got=$(complete_words "$@")
    [ "$got" = "$want" ] || { echo "completing \"$*\": got \"$got\", want \"$want\""; exit 1; }
}
check "recv rm" postbox r
check "--follow" postbox recv --fo
check "jobs junk" postbox send j
check "jobs" postbox stat jo
check "drop-newest drop-oldest" postbox create q --overflow drop
check "--wide --json --names --help" postbox ls -
echo "ok: completion"
' sh "$1"
