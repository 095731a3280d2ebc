#!/usr/bin/env bash
# Pubsub fan-out benchmark of Verona (XEP-0060), in one command:
#   bench/fanout.sh
# Builds release binaries, then for each subscriber count starts a fresh throwaway server on a
# free loopback port (STARTTLS required), runs `verona-bench fanout` against it, and stops it.
# Each run prints a table on stderr and one JSON line on stdout.
#
# Settings (environment, with defaults):
#   SUBSCRIBERS="1 100 1000 10000"  one run per value
#   PUBLISHES=200        items published per run
#   IN_FLIGHT=16         publish iqs awaiting their answer at once
#   PAYLOAD_BYTES=100    size of each item's payload
#   PERSIST=true         pubsub#persist_items
#   ACCOUNTS=50          accounts created; subscriber n logs in as bench{n % ACCOUNTS}
#   LOGIN_IN_FLIGHT=50   subscriber logins (then subscriptions) in progress at once
#   MECHANISM=SCRAM-SHA-256
#   TIMEOUT_SECS=300     bound on each run
set -euo pipefail

SUBSCRIBERS=${SUBSCRIBERS:-1 100 1000 10000}
PUBLISHES=${PUBLISHES:-200}
IN_FLIGHT=${IN_FLIGHT:-16}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-100}
PERSIST=${PERSIST:-true}
ACCOUNTS=${ACCOUNTS:-50}
LOGIN_IN_FLIGHT=${LOGIN_IN_FLIGHT:-50}
MECHANISM=${MECHANISM:-SCRAM-SHA-256}
TIMEOUT_SECS=${TIMEOUT_SECS:-300}

cd "$(dirname "$0")/.."
cargo build --release -p verona -p verona-bench
bin=${CARGO_TARGET_DIR:-target}/release

# Server and generator each hold one descriptor per connection, plus a few of their own.
hard=$(ulimit -Hn)
for s in $SUBSCRIBERS; do
    if [[ $hard != unlimited ]] && ((hard < s + 100)); then
        echo "fanout.sh: the hard open-file limit is $hard, too low for $s subscribers" \
            "(raise it with 'ulimit -Hn' as root)" >&2
        exit 1
    fi
done

tmp=$(mktemp -d)
server_pid=
stop_server() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        # Verona allows its streams 5 s to close; give it a little more, then insist.
        for _ in $(seq 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$server_pid" 2>/dev/null && kill -KILL "$server_pid"
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=
}
cleanup() {
    stop_server
    rm -rf "$tmp"
}
trap cleanup EXIT

# A port below the ephemeral range (so no client socket takes it) that nothing listens on.
port=
for _ in $(seq 50); do
    candidate=$((20000 + RANDOM % 10000))
    if [[ -z $(ss -Htln "sport = :$candidate") ]]; then
        port=$candidate
        break
    fi
done
[[ -n $port ]] || { echo "fanout.sh: no free port found" >&2; exit 1; }

config=$tmp/verona.toml
cat >"$config" <<EOF
domain = "localhost"
data_dir = "$tmp/data"
[c2s]
listen = ["127.0.0.1:$port"]
direct_tls_listen = []
require_encryption = true
[limits]
unauthenticated_timeout_secs = 600
[log]
filter = "warn"
EOF

# The accounts are made once; every run starts from a copy of this data dir.
echo "creating $ACCOUNTS accounts..." >&2
for ((i = 0; i < ACCOUNTS; i++)); do
    "$bin/verona" --config "$config" user add "bench$i@localhost" --password "pw$i" >/dev/null
done
mv "$tmp/data" "$tmp/accounts"

status=0
for s in $SUBSCRIBERS; do
    rm -rf "$tmp/data"
    cp -a "$tmp/accounts" "$tmp/data"
    (ulimit -n "$hard" && exec "$bin/verona" --config "$config" serve) 2>"$tmp/server.log" &
    server_pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "verona (pid $server_pid) listening on 127.0.0.1:$port" >&2

    "$bin/verona-bench" --port "$port" --accounts "$ACCOUNTS" --mechanism "$MECHANISM" \
        --server-pid "$server_pid" --timeout-secs "$TIMEOUT_SECS" \
        fanout --subscribers "$s" --publishes "$PUBLISHES" --in-flight "$IN_FLIGHT" \
        --payload-bytes "$PAYLOAD_BYTES" --persist "$PERSIST" \
        --login-in-flight "$LOGIN_IN_FLIGHT" || status=1

    stop_server
    if [[ -s $tmp/server.log ]]; then
        echo "server log:" >&2
        tail -n 20 "$tmp/server.log" >&2
    fi
done
exit $status
