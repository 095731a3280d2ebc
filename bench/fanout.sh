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
#   SETTLE=false         true: one publish at a time, each once every subscriber has the last;
#                        reports publish->last notification (IN_FLIGHT is then 1)
#   ACCOUNTS=50          accounts created; subscriber n logs in as bench{n % ACCOUNTS}
#   LOGIN_IN_FLIGHT=50   subscriber logins (then subscriptions) in progress at once
#   MECHANISM=SCRAM-SHA-256
#   TIMEOUT_SECS=300     bound on each run
#   SERVER_CPUS=, GENERATOR_CPUS=   pin each with taskset (e.g. 0 and 1); unpinned by default
set -euo pipefail

SUBSCRIBERS=${SUBSCRIBERS:-1 100 1000 10000}
PUBLISHES=${PUBLISHES:-200}
IN_FLIGHT=${IN_FLIGHT:-16}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-100}
PERSIST=${PERSIST:-true}
SETTLE=${SETTLE:-false}
ACCOUNTS=${ACCOUNTS:-50}
LOGIN_IN_FLIGHT=${LOGIN_IN_FLIGHT:-50}
MECHANISM=${MECHANISM:-SCRAM-SHA-256}
TIMEOUT_SECS=${TIMEOUT_SECS:-300}
SERVER_CPUS=${SERVER_CPUS:-}
GENERATOR_CPUS=${GENERATOR_CPUS:-}

source "$(dirname "$0")/lib.sh"
bench_build

# Server and generator each hold one descriptor per connection, plus a few of their own.
for s in $SUBSCRIBERS; do
    if [[ $hard != unlimited ]] && ((hard < s + 100)); then
        say "the hard open-file limit is $hard, too low for $s subscribers" \
            "(raise it with 'ulimit -Hn' as root)"
        exit 1
    fi
done

port=$(free_port)
config=$tmp/verona.toml
verona_config "$config" "$port" "$tmp/data" tls
# The accounts are made once; every run starts from a copy of this data dir.
verona_accounts "$config" "$ACCOUNTS"
mv "$tmp/data" "$tmp/accounts"

status=0
for s in $SUBSCRIBERS; do
    rm -rf "$tmp/data"
    cp -a "$tmp/accounts" "$tmp/data"
    start_verona "$config" "$tmp/server.log" "$port" "$SERVER_CPUS"
    generator=("$bin/verona-bench")
    [[ -z $GENERATOR_CPUS ]] || generator=(taskset -c "$GENERATOR_CPUS" "$bin/verona-bench")
    settle=()
    [[ $SETTLE != true ]] || settle=(--settle)
    "${generator[@]}" --port "$port" --accounts "$ACCOUNTS" --mechanism "$MECHANISM" \
        --server-pid "$server_pid" --timeout-secs "$TIMEOUT_SECS" \
        fanout --subscribers "$s" --publishes "$PUBLISHES" --in-flight "$IN_FLIGHT" \
        --payload-bytes "$PAYLOAD_BYTES" --persist "$PERSIST" "${settle[@]}" \
        --login-in-flight "$LOGIN_IN_FLIGHT" || status=1
    stop_server
    if [[ -s $tmp/server.log ]]; then
        say "server log:"
        tail -n 20 "$tmp/server.log" >&2
    fi
done
exit $status
