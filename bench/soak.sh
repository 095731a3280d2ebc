#!/usr/bin/env bash
# Soak run of Verona with its default security limits, in one command:
#   bench/soak.sh
# Builds release binaries, writes CONNECTIONS accounts with `verona-bench populate` (one per
# good client, a few for the hostile ones), starts a throwaway server on a free loopback port with
# a config that sets no [limits] at all, and runs `verona-bench soak` against it: good clients
# alone for QUIET_SECS (the baseline), then good and hostile ones together for SECS. Good
# clients connect from 127.1.*.* (at most 64 per address), each hostile kind from 4 addresses
# of 127.2.*.*, so the per-address limits meet them as they would meet real users and a real
# attacker. Prints progress and a table on stderr, one JSON line on stdout, and what the
# server logged most often.
#
# Settings (environment, with defaults):
#   CONNECTIONS=10000   good and hostile connections together
#   SECS=600            good and hostile together
#   QUIET_SECS=60       good clients alone, first
#   Percent of CONNECTIONS of each kind (idle good clients are the rest):
#   ACTIVE=3            good clients publishing, messaging and pinging every INTERVAL_MS
#   GARBAGE=2           random bytes and malformed XML, before and after TLS
#   SLOW=2              logged in, following busy nodes, reading SLOW_READ_BYTES a second
#   STALLED=3           half a stream header or half a stanza, then nothing
#   FLOOD=0.2           logged in, sending stanzas as fast as the server reads them
#   HUGE=2              stanzas over the limits, before and after authentication
#   INTERVAL_MS=1000  SLOW_READ_BYTES=256  ATTACK_ADDRESSES=4  LOGIN_IN_FLIGHT=50
#   TIMEOUT_SECS=       bound on the run [QUIET_SECS + SECS + 900]
set -euo pipefail

CONNECTIONS=${CONNECTIONS:-10000}
SECS=${SECS:-600}
QUIET_SECS=${QUIET_SECS:-60}
ACTIVE=${ACTIVE:-3}
GARBAGE=${GARBAGE:-2}
SLOW=${SLOW:-2}
STALLED=${STALLED:-3}
FLOOD=${FLOOD:-0.2}
HUGE=${HUGE:-2}
INTERVAL_MS=${INTERVAL_MS:-1000}
SLOW_READ_BYTES=${SLOW_READ_BYTES:-256}
ATTACK_ADDRESSES=${ATTACK_ADDRESSES:-4}
LOGIN_IN_FLIGHT=${LOGIN_IN_FLIGHT:-50}
TIMEOUT_SECS=${TIMEOUT_SECS:-$((QUIET_SECS + SECS + 900))}

source "$(dirname "$0")/lib.sh"
bench_build

# Server and generator each hold one descriptor per connection, plus a few of their own.
if [[ $hard != unlimited ]] && ((hard < CONNECTIONS + 100)); then
    say "the hard open-file limit is $hard, too low for $CONNECTIONS connections" \
        "(raise it with 'ulimit -Hn' as root)"
    exit 1
fi
say "hard open-file limit $hard: enough for $CONNECTIONS connections"

soak=(soak --connections "$CONNECTIONS" --secs "$SECS" --quiet-secs "$QUIET_SECS"
    --active "$ACTIVE" --garbage "$GARBAGE" --slow "$SLOW" --stalled "$STALLED" --flood "$FLOOD"
    --huge "$HUGE" --interval-ms "$INTERVAL_MS" --slow-read-bytes "$SLOW_READ_BYTES"
    --attack-addresses "$ATTACK_ADDRESSES" --login-in-flight "$LOGIN_IN_FLIGHT")
# One account per good client and one per 16 hostile sessions: never more than CONNECTIONS.
accounts=$CONNECTIONS
say "writing $accounts accounts..."
"$bin/verona-bench" --accounts "$accounts" populate --data-dir "$tmp/data" --contacts 0 \
    --annotate-every 0 >&2

port=$(free_port)
config=$tmp/verona.toml
# No [limits] section: every security limit at its default.
cat >"$config" <<EOF
domain = "localhost"
data_dir = "$tmp/data"
[c2s]
listen = ["127.0.0.1:$port"]
direct_tls_listen = []
websocket_tls_listen = []
[log]
filter = "info"
EOF
start_verona "$config" "$tmp/server.log" "$port"

status=0
(ulimit -n "$hard" && exec "$bin/verona-bench" --port "$port" --accounts "$accounts" \
    --server-pid "$server_pid" --timeout-secs "$TIMEOUT_SECS" "${soak[@]}") || status=$?
if ! kill -0 "$server_pid" 2>/dev/null; then
    say "THE SERVER DIED during the run"
    status=1
fi
stop_server
# One line per message and reason, without the time, spans and fields that name a connection.
say "server log: $(wc -l <"$tmp/server.log") lines; most frequent messages:"
sed -E 's/^[^ ]+ +//; s/\{[^}]*\}//g; s/ (peer|jid|cert|addr|text)=("[^"]*"|[^ ]*)//g' "$tmp/server.log" |
    sort | uniq -c | sort -rn | head -n 15 >&2
exit $status
