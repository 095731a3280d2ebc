#!/usr/bin/env bash
# Presence broadcast benchmark of Verona (XEP-0207 §3 with RFC 6121 views), in one command:
#   bench/presence.sh
# Builds release binaries, starts a fresh throwaway server on a free loopback port, lets
# CONTACTS contacts follow one user's presence (the first NATIVE of them as native XEP-0207
# clients: pubsub subscribe, Ex. 3 publish, caps with presence+notify; the rest classic:
# <presence type='subscribe'/>), then has the user change its presence CHANGES times. Prints a
# table on stderr and one JSON line on stdout.
#
# Settings (environment, with defaults):
#   CONTACTS=1000  NATIVE=500  CHANGES=100  IN_FLIGHT=10  LOGIN_IN_FLIGHT=50
#   TRANSPORT=tls  (STARTTLS + SCRAM-SHA-256) or plain (no TLS, PLAIN)
#   TIMEOUT_SECS=300
#   PIN=1          server on core 0, generator on core 1 (as compare.sh); 0: unpinned
set -euo pipefail

CONTACTS=${CONTACTS:-1000}
NATIVE=${NATIVE:-500}
CHANGES=${CHANGES:-100}
IN_FLIGHT=${IN_FLIGHT:-10}
LOGIN_IN_FLIGHT=${LOGIN_IN_FLIGHT:-50}
TRANSPORT=${TRANSPORT:-tls}
TIMEOUT_SECS=${TIMEOUT_SECS:-300}
PIN=${PIN:-1}

source "$(dirname "$0")/lib.sh"
bench_build

if [[ $hard != unlimited ]] && ((hard < CONTACTS + 100)); then
    say "the hard open-file limit is $hard, too low for $CONTACTS contacts"
    exit 1
fi
transport=()
[[ $TRANSPORT == tls ]] || transport=(--no-tls --mechanism PLAIN)

port=$(free_port)
config=$tmp/verona.toml
verona_config "$config" "$port" "$tmp/data" "$TRANSPORT"
accounts=$((CONTACTS + 1))
verona_accounts "$config" "$accounts"
server_cpus=
generator=()
if [[ $PIN == 1 ]]; then
    server_cpus=0
    generator=(taskset -c 1)
fi
start_verona "$config" "$tmp/server.log" "$port" "$server_cpus"
status=0
(ulimit -n "$hard" && exec "${generator[@]}" "$bin/verona-bench" --port "$port" --accounts "$accounts" \
    "${transport[@]}" --server-pid "$server_pid" --timeout-secs "$TIMEOUT_SECS" \
    presence --contacts "$CONTACTS" --native "$NATIVE" --changes "$CHANGES" \
    --in-flight "$IN_FLIGHT" --login-in-flight "$LOGIN_IN_FLIGHT") || status=1
stop_server
if [[ -s $tmp/server.log ]]; then
    say "server log:"
    tail -n 20 "$tmp/server.log" >&2
fi
exit $status
