#!/bin/sh
# The wheel builds offline from Debian packages only, installs into a venv made with
# --system-site-packages, and works there with no run-time dependency on libpostbox.
# Usage: wheel.sh PYTHON SOURCE_DIR LIBPOSTBOX_A. Exit 77 (skipped) when pip, venv or
# setuptools is missing, naming the Debian package.
python=$1
src=$2
lib=$3
"$python" -m pip --version >/dev/null 2>&1 || { echo "skipped: pip is missing (Debian: apt-get install python3-pip)"; exit 77; }
"$python" -c 'import setuptools' 2>/dev/null || { echo "skipped: setuptools is missing (Debian: apt-get install python3-setuptools)"; exit 77; }
"$python" -c 'import ensurepip' 2>/dev/null || { echo "skipped: venv is missing (Debian: apt-get install python3-venv)"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pbx-wheel.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
set -e
# Build from a copy, so the source tree gets no build/ or egg-info.
mkdir "$work/src"
cp -r "$src/python/pyproject.toml" "$src/python/setup.py" "$src/python/README.md" \
    "$src/python/src" "$src/python/postbox" "$work/src/"
cd "$work/src"
POSTBOX_LIBRARY=$lib POSTBOX_INCLUDE=$src/include \
    "$python" -m pip wheel -q --no-build-isolation --no-index -w "$work/dist" . 
"$python" -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install -q --no-index "$work"/dist/postbox-*.whl
so=$(ls "$work"/venv/lib/python3*/site-packages/postbox/_postbox*.so)
if ldd "$so" | grep -q libpostbox; then
    echo "FAIL: the module depends on libpostbox at run time"; exit 1
fi
cd "$work"
POSTBOX_DIR=$work "$work/venv/bin/python" -c '
import postbox
assert postbox.__file__.startswith("'"$work"'/venv"), postbox.__file__
with postbox.Mailbox.private() as mb:
    mb.send(b"wheel", 3)
    assert mb.recv() == (b"wheel", 3)
print("wheel ok:", postbox.__file__)
'
