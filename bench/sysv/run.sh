#!/bin/sh
# run.sh LIB DIR [quick|full] — run the same System V programs (sv_pingpong, sv_stream, in
# DIR) on the kernel and with LIB (libpostbox-sysv.so) preloaded, and print the speed-up.
#
#   quick  a smoke test (well under a second of work; CTest runs it; it never judges speed)
#   full   the measurement (about 20 s on 2 CPUs): 3 runs of each, the median kept
#
# Both sides keep the kernel's default queue capacity (msgmnb, 16 KiB unless changed), so a
# stream of SIZE-byte messages has the same depth, msgmnb / SIZE, on each.
set -eu
lib=$1 dir=$2 mode=${3:-full}
case $mode in
quick) reps=1 rounds=200 count=2000 ;;
full) reps=3 rounds=10000 count=100000 ;;
*) echo "usage: run.sh LIB DIR [quick|full]" >&2; exit 2 ;;
esac
pbxdir=$(mktemp -d /dev/shm/pbx-sysv-bench.XXXXXX)
trap 'rm -rf "$pbxdir"' EXIT
trap 'exit 130' INT TERM

# median VALUES... — the middle value (the lower middle for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# field NAME LINE — the value of NAME=VALUE in LINE.
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# measure SIDE PROGRAM ARGS FIELD — median of FIELD over reps runs.
measure() {
    side=$1 prog=$2 a1=$3 a2=$4 f=$5 vals=""
    i=0
    while [ $i -lt $reps ]; do
        if [ "$side" = kernel ]; then
            line=$("$dir/$prog" "$a1" "$a2")
        else
            line=$(env POSTBOX_DIR="$pbxdir" LD_PRELOAD="$lib" $extra "$dir/$prog" "$a1" "$a2")
        fi
        vals="$vals $(field "$f" "$line")"
        printf '%s\n' "$line" >"$pbxdir/last"
        i=$((i + 1))
    done
    median $vals
}

# The drop-in against postbox's own calls (issue 17): the same ping-pong written with
# pbx_send/pbx_recv on two mailboxes ("native"), interleaved with the drop-in's runs, and the
# ratio of each pair; the median ratio is the figure (target <= 1.5). "one mailbox" is the
# System V shape without the drop-in's layer.
if [ -x "$dir/pbx_pingpong" ]; then
    ratios="" natives="" drops="" ones=""
    i=0
    while [ $i -lt $reps ]; do
        n=$(field us_per_round_trip "$("$dir/pbx_pingpong" native $rounds 16)")
        o=$(field us_per_round_trip "$("$dir/pbx_pingpong" onebox $rounds 16)")
        d=$(field us_per_round_trip "$(env POSTBOX_DIR="$pbxdir" LD_PRELOAD="$lib" "$dir/sv_pingpong" $rounds 16)")
        natives="$natives $n" ones="$ones $o" drops="$drops $d"
        ratios="$ratios $(awk -v a="$d" -v b="$n" 'BEGIN {printf "%.2f", a / b}')"
        i=$((i + 1))
    done
    printf '%-28s %11s us %11s us %11s us   drop-in / native %sx (per run:%s)\n' \
        "ping-pong 16 B, vs native" "$(median $natives)" "$(median $ones)" "$(median $drops)" \
        "$(median $ratios)" "$ratios"
    printf '%-28s %14s %14s %14s\n' "" "(native)" "(one mailbox)" "(drop-in)"
fi

extra=""
printf '%-28s %14s %14s %9s\n' "case" "kernel" "postbox-sysv" "speed-up"
for size in 16 1024; do
    k=$(measure kernel sv_pingpong $rounds $size us_per_round_trip)
    p=$(measure postbox sv_pingpong $rounds $size us_per_round_trip)
    printf '%-28s %11s us %11s us %8sx\n' "ping-pong ${size} B round trip" "$k" "$p" \
        "$(awk -v a="$k" -v b="$p" 'BEGIN {printf "%.1f", a / b}')"
done
for size in 16 4096; do
    k=$(measure kernel sv_stream $count $size msgs_per_s)
    kd=$(field depth "$(cat "$pbxdir/last")")
    p=$(measure postbox sv_stream $count $size msgs_per_s)
    pd=$(field depth "$(cat "$pbxdir/last")")
    printf '%-28s %10s/s %10s/s %8sx   (depth %s / %s msgs)\n' "stream ${size} B" "$k" "$p" \
        "$(awk -v a="$k" -v b="$p" 'BEGIN {printf "%.1f", b / a}')" "$kd" "$pd"
done

# The kernel's default msgmnb allows a depth of 4 messages of 4 KiB; the library lifts that
# through the environment, no root needed. (Different depths: not a like-for-like figure.)
extra="POSTBOX_SYSV_MSGMNB=4194304"
p=$(measure postbox sv_stream $count 4096 msgs_per_s)
pd=$(field depth "$(cat "$pbxdir/last")")
printf '%-28s %12s %10s/s %8sx   (depth %s / %s msgs, POSTBOX_SYSV_MSGMNB=4 MiB)\n' \
    "stream 4096 B, raised" "(as above)" "$p" "$(awk -v a="$k" -v b="$p" 'BEGIN {printf "%.1f", b / a}')" \
    "$kd" "$pd"
