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
#   SERVER_CPUS=, GENERATOR_CPUS=   pin each with taskset (e.g. 0 and 1), so that neither
#                        takes the other's core and runs compare better; unpinned by default
set -euo pipefail

ACCOUNTS=${ACCOUNTS:-50}
LOGIN_CLIENTS=${LOGIN_CLIENTS:-2000}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
IN_FLIGHT=${IN_FLIGHT:-50}
HOLD_SECS=${HOLD_SECS:-10}
MECHANISM=${MECHANISM:-SCRAM-SHA-256}
TIMEOUT_SECS=${TIMEOUT_SECS:-600}
SERVER_CPUS=${SERVER_CPUS:-}
GENERATOR_CPUS=${GENERATOR_CPUS:-}

source "$(dirname "$0")/lib.sh"
bench_build

# Server and generator each hold one descriptor per connection, plus a few of their own.
if [[ $hard != unlimited ]] && ((hard < IDLE_CLIENTS + 100)); then
    say "the hard open-file limit is $hard, too low for $IDLE_CLIENTS connections;" \
        "holding $((hard - 100)) instead (raise it with 'ulimit -Hn' as root)"
    IDLE_CLIENTS=$((hard - 100))
fi

port=$(free_port)
config=$tmp/verona.toml
verona_config "$config" "$port" "$tmp/data" tls
verona_accounts "$config" "$ACCOUNTS"
start_verona "$config" "$tmp/server.log" "$port" "$SERVER_CPUS"
generator=("$bin/verona-bench")
[[ -z $GENERATOR_CPUS ]] || generator=(taskset -c "$GENERATOR_CPUS" "$bin/verona-bench")

status=0
common=(--port "$port" --accounts "$ACCOUNTS" --mechanism "$MECHANISM" --server-pid "$server_pid"
    --timeout-secs "$TIMEOUT_SECS")
"${generator[@]}" "${common[@]}" login --clients "$LOGIN_CLIENTS" --in-flight "$IN_FLIGHT" || status=1
"${generator[@]}" "${common[@]}" idle --clients "$IDLE_CLIENTS" --in-flight "$IN_FLIGHT" \
    --hold-secs "$HOLD_SECS" || status=1

if [[ -s $tmp/server.log ]]; then
    say "server log:"
    tail -n 20 "$tmp/server.log" >&2
fi
exit $status
