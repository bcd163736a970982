#!/usr/bin/env python3
"""check_refs.py — every "see X in FILE" in a comment names a file that exists, and X in it.

Comments cross-reference each other ("see ORDERING in shm.c", "see pbx__event_sweep in
wait.h", "see docs/reliability.md"); a file that moves or a block that is renamed leaves them
pointing nowhere, and a reader following one finds nothing. This script reads the comments of
every C/C++ file, shell script and CMake file git knows, and checks each reference of the forms

    see FILE                    the file exists
    see X in FILE               the file exists, and X occurs in it, when X is a name:
                                an ALL-CAPS block name (ORDERING), an identifier with an
                                underscore or parentheses (pbx__event_sweep, holder_ident()),
                                or a "quoted heading"

    see X above / see X below   X occurs in the same file, above or below the reference

FILE is looked up beside the referencing file, then under src/, then from the top of the tree,
then (a bare name) as the one file of that name in the tree, unless a file of the same stem
sits beside the reference: src/shm's "index.h" means src/shm/index.*, never src/spool/index.h. A FILE that is not
part of this project (an outside project's path, a man page) is never written after "see" in
this tree: write it without "see", or name the project ("nng's transport.h").

Usage: check_refs.py [TREE]   exit 0 when every reference resolves, 1 with one line per broken
reference (FILE:LINE: the reference, and what is wrong) otherwise. CI runs it (.ci/run).
"""
import os
import re
import subprocess
import sys

EXTS = ("c", "h", "cpp", "md", "sh", "pml", "cmake", "py", "txt", "map", "in")
FILE_RE = r"`?(?P<file>(?:\.\./|\./)?[A-Za-z0-9_][A-Za-z0-9_./-]*\.(?:%s))\b`?" % "|".join(EXTS)
# "see FILE" or "see X in FILE"; X is at most a few words and never crosses a sentence end.
SEE_RE = re.compile(r"\b[Ss]ee\s+(?:(?P<what>[^;:()]{1,80}?)\s+in\s+)?" + FILE_RE)
# "see ORDERING above", "see LOCK CYCLE below": an ALL-CAPS block name in the same file.
HERE_RE = re.compile(r"\b[Ss]ee (?:the )?(?P<name>[A-Z][A-Z0-9_]*(?: [A-Z][A-Z0-9_]*)*) "
                     r"(?:block |comment )?(?P<where>above|below)\b")
NAME_RE = re.compile(r"^(?:\"(?P<quoted>[^\"]+)\"|(?P<caps>[A-Z][A-Z0-9_ -]*[A-Z0-9])|"
                     r"(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\(\))?))$")


def comments_c(text):
    """(line, comment text) for each line of every /* */ and // comment, strings skipped."""
    out = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            body = text[i:j]
            # Join the comment into one logical text, remembering each piece's line, so a
            # reference broken over two lines is still found (reported at its first line).
            out.append((line, " ".join(l.strip().lstrip("*").strip() for l in body.split("\n"))))
            line += body.count("\n")
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append((line, text[i + 2:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        else:
            i += 1
    return out


def comments_hash(text):
    """Runs of consecutive # comment lines, joined like C comments."""
    out, run, start = [], [], 0
    for no, l in enumerate(text.split("\n"), 1):
        s = l.strip()
        if s.startswith("#") and not s.startswith("#!"):
            if not run:
                start = no
            run.append(s.lstrip("#").strip())
        elif run:
            out.append((start, " ".join(run)))
            run = []
    if run:
        out.append((start, " ".join(run)))
    return out


def main():
    top = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    files = subprocess.run(["git", "-C", top, "ls-files"], capture_output=True, text=True,
                           check=True).stdout.split("\n")
    files = [f for f in files if f]
    by_name = {}
    for f in files:
        by_name.setdefault(os.path.basename(f), []).append(f)
    known = set(files)
    bad = 0
    checked = 0
    for f in files:
        if f.endswith((".c", ".h", ".cpp")):
            kind = comments_c
        elif f.endswith((".sh", ".cmake", ".py")) or os.path.basename(f) in ("CMakeLists.txt",
                                                                            "Makefile", "run"):
            kind = comments_hash
        else:
            continue
        try:
            with open(os.path.join(top, f), encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError):
            continue
        lines = text.split("\n")
        for line, body in kind(text):
            for m in HERE_RE.finditer(body):
                name = m.group("name")
                checked += 1
                part = lines[:line] if m.group("where") == "above" else lines[line - 1:]
                if name not in "\n".join(part):
                    print("%s:%d: see %s %s: not found %s" % (f, line, name, m.group("where"),
                                                              m.group("where")))
                    bad += 1
            for m in SEE_RE.finditer(body):
                ref, what = m.group("file").rstrip("."), m.group("what")
                checked += 1
                here = os.path.dirname(f)
                tries = [os.path.normpath(os.path.join(here, ref)), os.path.normpath("src/" + ref),
                         os.path.normpath(ref)]
                target = next((t for t in tries if t in known), None)
                stem = os.path.join(here, os.path.splitext(ref)[0]) + "."
                if (target is None and "/" not in ref and len(by_name.get(ref, [])) == 1 and
                        not any(k.startswith(stem) for k in known)):
                    # A bare name found nowhere near: the one file of that name in the tree,
                    # unless a file of the same stem sits beside the reference (src/shm's
                    # "index.h" means src/shm/index.*, never src/spool/index.h).
                    target = by_name[ref][0]
                if target is None:
                    many = by_name.get(os.path.basename(ref), [])
                    why = "no such file" if not many else "ambiguous or wrong path (%s)" % ", ".join(many)
                    print("%s:%d: see ... %s: %s" % (f, line, ref, why))
                    bad += 1
                    continue
                if not what:
                    continue
                # Only the last words before "in" name the thing ("the LOCK CYCLE block" -> the
                # caps run); prose without a name checks the file alone.
                what = what.strip().strip("`")
                name = None
                nm = NAME_RE.match(what)
                if nm:
                    name = nm.group("quoted") or nm.group("caps") or nm.group("ident")
                    if nm.group("ident") and "_" not in name and "(" not in name:
                        name = None  # a plain word ("it", "there") is prose, not a name
                else:
                    caps = re.findall(r"\b[A-Z][A-Z0-9_]*(?: [A-Z][A-Z0-9_]*)*\b", what)
                    caps = [c for c in caps if len(c) >= 3]
                    if caps:
                        name = caps[-1]
                if not name:
                    continue
                name = name.rstrip("()")
                with open(os.path.join(top, target), encoding="utf-8", errors="replace") as fh:
                    if name not in fh.read():
                        print("%s:%d: see %s in %s: %s does not occur in %s" %
                              (f, line, what, ref, name, target))
                        bad += 1
    if bad:
        print("check_refs: %d of %d references are broken" % (bad, checked))
        return 1
    print("check_refs: all %d references resolve" % checked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
