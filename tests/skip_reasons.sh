#!/bin/sh
# skip_reasons.sh JUNIT_XML — after a ctest run, print each skipped test with the reason it gave
# (its first line of output), since ctest itself only says "Skipped". Reads the report written
# by `ctest --output-junit`; prints nothing when no test was skipped.
set -u
[ -f "$1" ] || exit 0
awk '
/<testcase / {
    name = $0; sub(/.*<testcase name="/, "", name); sub(/".*/, "", name)
    skipped = 0; want = 0
}
/<skipped / { skipped = 1 }
/<system-out>/ {
    if (skipped) {
        line = $0; sub(/.*<system-out>/, "", line); sub(/<\/system-out>.*/, "", line)
        gsub(/&lt;/, "<", line); gsub(/&gt;/, ">", line); gsub(/&quot;/, "\"", line)
        gsub(/&apos;/, "'\''", line); gsub(/&amp;/, "\\&", line)
        if (!n++) print "Skipped tests and why:"
        printf "  %-50s %s\n", name, line
        skipped = 0
    }
}
/<\/testcase>/ {
    if (skipped) {
        if (!n++) print "Skipped tests and why:"
        printf "  %-50s %s\n", name, "(no reason given)"
    }
    skipped = 0
}' "$1"
