#!/bin/sh
# man.sh MANDIR — every page under MANDIR renders with man(1) without a warning, and every
# .so link points at a page that exists. Skipped (77) where man is not installed; the build
# itself never needs man or groff.
set -u
dir=$1
command -v man >/dev/null 2>&1 || { echo "skipped: man not installed (Debian: apt-get install man-db)"; exit 77; }
cd "$dir" || exit 1
out=$(mktemp "${TMPDIR:-/tmp}/postbox-man.XXXXXX") || exit 1
trap 'rm -f "$out"' EXIT
status=0
for page in man1/*.1 man3/*.3; do
    target=$(sed -n 's/^\.so //p' "$page")
    if [ -n "$target" ] && [ ! -f "$target" ]; then
        echo "$page: .so $target: no such page"
        status=1
    fi
    # One rendering per page gives both the warnings and the text (a test bounded by its work:
    # each man run costs a groff pipeline, slow on a loaded machine).
    warnings=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$page" 2>&1 >"$out")
    if [ -n "$warnings" ]; then
        echo "$page: $warnings"
        status=1
    fi
    grep -q 'NAME' "$out" || { echo "$page: renders empty"; status=1; }
done
[ $status = 0 ] && echo "ok: $(ls man1/*.1 man3/*.3 | wc -l) pages"
exit $status
