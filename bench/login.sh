#!/usr/bin/env bash
# Login and idle-connection benchmark of Verona, in one command:
#   bench/login.sh
# Builds release binaries, runs a throwaway server on a free loopback port (STARTTLS required),
# runs `verona-bench login` and `verona-bench idle` against it, then stops it and cleans up.
# Each scenario prints a table on stderr and one JSON line on stdout.
#
# Settings (environment, with defaults):
#   ACCOUNTS=50          accounts created; client n logs in as bench{n % ACCOUNTS}
#   LOGIN_CLIENTS=2000   clients in the login scenario
#   IDLE_CLIENTS=10000   sessions held in the idle scenario
#   IN_FLIGHT=50         logins in progress at once
#   HOLD_SECS=10         how long the idle sessions are held
#   MECHANISM=SCRAM-SHA-256
#   TIMEOUT_SECS=600     bound on each scenario run
set -euo pipefail

ACCOUNTS=${ACCOUNTS:-50}
LOGIN_CLIENTS=${LOGIN_CLIENTS:-2000}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
IN_FLIGHT=${IN_FLIGHT:-50}
HOLD_SECS=${HOLD_SECS:-10}
MECHANISM=${MECHANISM:-SCRAM-SHA-256}
TIMEOUT_SECS=${TIMEOUT_SECS:-600}

cd "$(dirname "$0")/.."
cargo build --release -p verona -p verona-bench
bin=${CARGO_TARGET_DIR:-target}/release

# Server and generator each hold one descriptor per connection, plus a few of their own.
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < IDLE_CLIENTS + 100)); then
    echo "login.sh: the hard open-file limit is $hard, too low for $IDLE_CLIENTS connections;" \
        "holding $((hard - 100)) instead (raise it with 'ulimit -Hn' as root)" >&2
    IDLE_CLIENTS=$((hard - 100))
fi

tmp=$(mktemp -d)
server_pid=
cleanup() {
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
[[ -n $port ]] || { echo "login.sh: no free port found" >&2; exit 1; }

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

echo "creating $ACCOUNTS accounts..." >&2
for ((i = 0; i < ACCOUNTS; i++)); do
    "$bin/verona" --config "$config" user add "bench$i@localhost" --password "pw$i" >/dev/null
done

(ulimit -n "$hard" && exec "$bin/verona" --config "$config" serve) 2>"$tmp/server.log" &
server_pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
    sleep 0.1
done
echo "verona (pid $server_pid) listening on 127.0.0.1:$port" >&2

status=0
common=(--port "$port" --accounts "$ACCOUNTS" --mechanism "$MECHANISM" --server-pid "$server_pid"
    --timeout-secs "$TIMEOUT_SECS")
"$bin/verona-bench" "${common[@]}" login --clients "$LOGIN_CLIENTS" --in-flight "$IN_FLIGHT" || status=1
"$bin/verona-bench" "${common[@]}" idle --clients "$IDLE_CLIENTS" --in-flight "$IN_FLIGHT" \
    --hold-secs "$HOLD_SECS" || status=1

if [[ -s $tmp/server.log ]]; then
    echo "server log:" >&2
    tail -n 20 "$tmp/server.log" >&2
fi
exit $status
