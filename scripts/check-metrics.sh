#!/usr/bin/env bash
# Lints what `msglog serve --metrics` exposes with Prometheus's own checker:
# starts a server (with --fsync, so every metric is there), sends a few
# messages and one rejected login with `msglog send`, scrapes /metrics with
# curl and runs `promtool check metrics` on it. Fails if promtool finds
# anything, or if the counters do not show the traffic.
#
#   scripts/check-metrics.sh [MSGLOG_BINARY]   (default: target/debug/msglog)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/msglog}")
work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --bind 127.0.0.1 --port 0 --metrics 127.0.0.1:0 --fsync \
    --log "$work/messages.log" --stats-interval 0 > "$work/out" 2>&1 &
pid=$!
for _ in $(seq 100); do
    grep -q '^msglog metrics on ' "$work/out" && break
    sleep 0.1
done
port=$(sed -n 's/^msglog listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$work/out")
base=$(sed -n 's|^msglog metrics on \(http://[^/]*\)/metrics.*|\1|p' "$work/out")
if [ -z "$port" ] || [ -z "$base" ]; then
    echo "check-metrics: the server did not start:" >&2
    cat "$work/out" >&2
    exit 1
fi

"$bin" send --host 127.0.0.1 --port "$port" --name ci --password A one two three
rc=0
"$bin" send --host 127.0.0.1 --port "$port" --name ci --password B never 2> /dev/null || rc=$?
if [ "$rc" -ne 5 ]; then
    echo "check-metrics: a rejected password should exit 5, got $rc" >&2
    exit 1
fi

expected=('msglog_messages_appended_total 3'
    'msglog_messages_appended_payload_bytes_total 11'
    'msglog_rejections_total{rule="PasswordRejected"} 1'
    'msglog_logins_accepted_total 1'
    'msglog_ready 1')
# The rejection is counted as the server closes that connection, which may
# be a moment after `msglog send` has exited: scrape until it shows (5 s).
for _ in $(seq 50); do
    curl -fsS "$base/metrics" > "$work/metrics.prom"
    missing=
    for line in "${expected[@]}"; do
        grep -qxF "$line" "$work/metrics.prom" || missing=$line
    done
    [ -z "$missing" ] && break
    sleep 0.1
done
if [ -n "$missing" ]; then
    echo "check-metrics: expected the line '$missing' in:" >&2
    cat "$work/metrics.prom" >&2
    exit 1
fi
promtool check metrics < "$work/metrics.prom"
echo "check-metrics: promtool found nothing to complain about in $(grep -c '^msglog_' "$work/metrics.prom") samples"
