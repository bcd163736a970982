#!/bin/sh
# The relay's part of `make demo`: two "hosts" (two POSTBOX_DIRs) on this machine, one local
# nats-server, a message sent on host a received on host b (docs/relay.md, "Try it").
# Skips with a line saying what to install when nats-server or postbox-relay is missing.
BUILD=${1:-build}
BIN=$BUILD/tools
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || {
    echo "relay demo skipped: nats-server is not installed (apt-get install nats-server libnats-dev)"
    exit 0
}
[ -x "$BIN/postbox-relay" ] || {
    echo "relay demo skipped: postbox-relay was not built (apt-get install libnats-dev, then make)"
    exit 0
}
PATH=$PATH:/usr/sbin
DIR=$(mktemp -d /tmp/postbox-relay-demo.XXXXXX)
SERVER= RA= RB=
cleanup() {
    for p in $RA $RB; do kill "$p" 2>/dev/null; done
    for p in $RA $RB; do wait "$p" 2>/dev/null; done
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
mkdir -p "$DIR/a" "$DIR/b"

echo "== relay: a local JetStream server on a free port"
nats-server -a 127.0.0.1 -p -1 -js -sd "$DIR/nats" --ports_file_dir "$DIR" >"$DIR/nats.log" 2>&1 &
SERVER=$!
URL=
for _ in $(seq 1 500); do
    URL=$(sed -n 's/.*"\(nats:\/\/127\.0\.0\.1:[0-9]*\)".*/\1/p' "$DIR"/nats-server_*.ports 2>/dev/null)
    [ -n "$URL" ] && break
    sleep 0.02
done
[ -n "$URL" ] || { echo "relay demo: nats-server did not start (see $DIR/nats.log)"; exit 1; }
echo "   $URL"

POSTBOX_DIR=$DIR/a "$BIN/postbox" create jobs.b || exit 1
POSTBOX_DIR=$DIR/b "$BIN/postbox" create jobs || exit 1
echo "== relay: host b delivers into its mailbox 'jobs'; host a forwards its outbox 'jobs.b'"
POSTBOX_DIR=$DIR/b "$BIN/postbox" relay --nats "$URL" --node b --state "$DIR/b/relay" --in jobs 2>"$DIR/b.log" &
RB=$!
POSTBOX_DIR=$DIR/a "$BIN/postbox" relay --nats "$URL" --node a --state "$DIR/a/relay" --out jobs@b 2>"$DIR/a.log" &
RA=$!

echo "== relay: on a, send three messages of types 1, 2, 3 into jobs.b"
for t in 1 2 3; do
    POSTBOX_DIR=$DIR/a "$BIN/postbox" send jobs.b --type $t "message of type $t from host a" || exit 1
done
echo "== relay: on b, receive type 2 first, then the rest in order"
POSTBOX_DIR=$DIR/b "$BIN/postbox" recv jobs --type 2 --timeout 30 && echo
POSTBOX_DIR=$DIR/b "$BIN/postbox" recv jobs --timeout 30 && echo
POSTBOX_DIR=$DIR/b "$BIN/postbox" recv jobs --timeout 30 && echo
sleep 0.5
echo "== relay: postbox relay status"
"$BIN/postbox" relay status --state "$DIR/a/relay"
"$BIN/postbox" relay status --state "$DIR/b/relay"
