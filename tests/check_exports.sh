#!/bin/sh
# check_exports.sh LIB — fail unless the dynamic symbols LIB defines are exactly the public
# pbx_ functions of include/postbox.h (plus the version node), nothing internal.
set -eu
lib=$1
command -v nm >/dev/null 2>&1 || { echo "nm not installed: skipped"; exit 77; }
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' |
      grep -v -x -E 'pbx_(options_init|strerror|version|open|open_private|close|remove|unlink|send|timedsend|recv|timedrecv|stat|claim|timedclaim|ack|release|notify|fd|peers|loan|commit|cancel|recv_loan|return|loan_piece|sendv|timedsendv|recvv|timedrecvv)|POSTBOX_0' || true)
count=$(nm -D --defined-only "$lib" | grep -c ' T pbx_' || true)
if [ -n "$bad" ]; then
    echo "unexpected exported symbols:"; echo "$bad"; exit 1
fi
if [ "$count" -ne 30 ]; then
    echo "expected 30 public functions, found $count"; exit 1
fi
echo "exports: $count public functions, nothing else"
