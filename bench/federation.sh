#!/usr/bin/env bash
# Federation benchmark: one-to-one chat where every message crosses a server-to-server stream,
# in one command:
#   bench/federation.sh
# Builds release binaries, starts two throwaway Verona servers on loopback (`localhost` and
# `montague.localhost`, each the other's remote domain through [s2s.hosts], STARTTLS and
# dialback between them), logs PAIRS senders in on the first and PAIRS receivers on the second,
# and runs `verona-bench chat --receivers-addr …`: messages per second, send→receipt latency,
# lost/duplicated/reordered, and the CPU of both servers together per message. Then the same
# chat with both ends on one server, for comparison. Each run prints a table on stderr and one
# JSON line on stdout.
#
# Settings (environment, with defaults):
#   PAIRS=100  MESSAGES=500  WINDOW=10  ACCOUNTS=200  MECHANISM=PLAIN  TIMEOUT_SECS=600
set -euo pipefail

PAIRS=${PAIRS:-100}
MESSAGES=${MESSAGES:-500}
WINDOW=${WINDOW:-10}
ACCOUNTS=${ACCOUNTS:-200}
MECHANISM=${MECHANISM:-PLAIN}
TIMEOUT_SECS=${TIMEOUT_SECS:-600}

source "$(dirname "$0")/lib.sh"
bench_build

remote_pid=
stop_remote() {
    [[ -z $remote_pid ]] || stop_pid "$remote_pid" 10
    remote_pid=
}
on_exit=stop_remote

c2s_a=$(free_port)
c2s_b=$(free_port "$c2s_a")
s2s_a=$(free_port "$c2s_a" "$c2s_b")
s2s_b=$(free_port "$c2s_a" "$c2s_b" "$s2s_a")

# Federation: each server listens for the other and finds it at a fixed address.
federate() {
    local config=$1 own=$2 other=$3 other_port=$4
    cat >>"$config" <<EOT
[s2s]
listen = ["127.0.0.1:$own"]
[s2s.hosts]
"$other" = "127.0.0.1:$other_port"
EOT
}

verona_config "$tmp/a.toml" "$c2s_a" "$tmp/a" plain localhost
federate "$tmp/a.toml" "$s2s_a" montague.localhost "$s2s_b"
verona_config "$tmp/b.toml" "$c2s_b" "$tmp/b" plain montague.localhost
federate "$tmp/b.toml" "$s2s_b" localhost "$s2s_a"
verona_accounts "$tmp/a.toml" "$ACCOUNTS" localhost
verona_accounts "$tmp/b.toml" "$ACCOUNTS" montague.localhost

status=0
start_verona "$tmp/b.toml" "$tmp/b.log" "$c2s_b"
remote_pid=$server_pid
server_pid=
start_verona "$tmp/a.toml" "$tmp/a.log" "$c2s_a"
say "federated chat: senders on localhost, receivers on montague.localhost"
"$bin/verona-bench" --port "$c2s_a" --accounts "$ACCOUNTS" --mechanism "$MECHANISM" --no-tls \
    --server-pid "$server_pid" --timeout-secs "$TIMEOUT_SECS" \
    chat --pairs "$PAIRS" --messages "$MESSAGES" --window "$WINDOW" \
    --receivers-addr "127.0.0.1:$c2s_b" --receivers-domain montague.localhost \
    --receivers-server-pid "$remote_pid" || status=1
say "the same chat on one server"
"$bin/verona-bench" --port "$c2s_a" --accounts "$ACCOUNTS" --mechanism "$MECHANISM" --no-tls \
    --server-pid "$server_pid" --timeout-secs "$TIMEOUT_SECS" \
    chat --pairs "$PAIRS" --messages "$MESSAGES" --window "$WINDOW" || status=1
stop_server
stop_remote
for log in "$tmp/a.log" "$tmp/b.log"; do
    if [[ -s $log ]]; then
        say "server log $(basename "$log") (warnings and errors):"
        tail -n 20 "$log" >&2
    fi
done
exit $status
