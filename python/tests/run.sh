#!/bin/sh
# Runs one pytest file of the Python binding against the module built in the build tree.
# Usage: run.sh PYTHON BUILD_PYTHON_DIR TEST_FILE [PYTEST-ARGS...]. Exit 77 (skipped) when
# pytest is missing.
python=$1
dir=$2
file=$3
shift 3
if ! "$python" -c 'import pytest' 2>/dev/null; then
    echo "skipped: pytest is missing for $python (Debian: apt-get install python3-pytest)"
    exit 77
fi
# Every mailbox the tests make lives in a private directory that goes away afterwards.
POSTBOX_DIR=$(mktemp -d "${TMPDIR:-/tmp}/pbx-py.XXXXXX") || exit 1
export POSTBOX_DIR
trap 'rm -rf "$POSTBOX_DIR"' EXIT INT TERM
PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
    "$python" -m pytest -q -p no:cacheprovider "$file" "$@"
