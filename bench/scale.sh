#!/usr/bin/env bash
# Scale benchmark of Verona (DESIGN §5a), in one command:
#   bench/scale.sh
# For each database size in SIZES: writes an account database with `verona-bench populate`
# (every account with its presence node and CONTACTS approved subscribers, every tenth naming
# them in its roster), starts Verona on it and reports the start-up time (until it listens)
# and its RSS with nobody online, then logs STORM of those users in (STARTTLS, SCRAM-SHA-256,
# bind, initial presence, so each login fans out to its online contacts and fetches their
# presence) and holds them, reporting logins/s, server CPU per login and RSS per online user.
# A baseline database with no contacts gives the connection's own share of that RSS.
#
# Settings (environment, with defaults):
#   SIZES="10000 100000"   accounts per database (1000000 works; populating it takes a while)
#   CONTACTS=50            approved subscribers per account
#   STORM=10000            users logged in (accounts 0..STORM-1 get their pw{n} password)
#   IN_FLIGHT=50           logins in progress at once
#   SHARDS=2               [pubsub] shards
#   DATA=                  keep the databases under this directory (reused when present)
#   TIMEOUT_SECS=900
set -euo pipefail

SIZES=${SIZES:-10000 100000}
CONTACTS=${CONTACTS:-50}
STORM=${STORM:-10000}
IN_FLIGHT=${IN_FLIGHT:-50}
SHARDS=${SHARDS:-2}
DATA=${DATA:-}
TIMEOUT_SECS=${TIMEOUT_SECS:-900}

source "$(dirname "$0")/lib.sh"
bench_build
store=${DATA:-$tmp}
mkdir -p "$store"

if [[ $hard != unlimited ]] && ((hard < STORM + 100)); then
    say "the hard open-file limit is $hard, too low for $STORM sessions"
    exit 1
fi

# Writes the database of ACCOUNTS × CONTACTS into DIR unless it is there.
populate() {
    local accounts=$1 contacts=$2 dir=$3
    if [[ -f $dir/verona.db ]]; then
        say "reusing $dir"
        return
    fi
    mkdir -p "$dir"
    local passwords=$((STORM < accounts ? STORM : accounts))
    "$bin/verona-bench" --accounts "$accounts" populate --data-dir "$dir" \
        --contacts "$contacts" --passwords "$passwords" >"$dir/populate.json"
}

# Starts Verona on DIR; sets port, server_pid, secs (until it listens) and rss (KiB, one
# second later, nobody online).
start_on() {
    local dir=$1
    port=$(free_port)
    verona_config "$tmp/verona.toml" "$port" "$dir" tls
    printf '[pubsub]\nshards = %s\n' "$SHARDS" >>"$tmp/verona.toml"
    local started=$EPOCHREALTIME
    (ulimit -n "$hard" && exec "$bin/verona" --config "$tmp/verona.toml" serve) 2>"$tmp/server.log" &
    server_pid=$!
    until [[ -n $(ss -Htln "sport = :$port") ]]; do
        kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$tmp/server.log" >&2; return 1; }
        sleep 0.01
    done
    secs=$(echo "$EPOCHREALTIME - $started" | bc)
    sleep 1
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status")
}

storm() {
    local port=$1 accounts=$2
    "$bin/verona-bench" --port "$port" --accounts "$accounts" --server-pid "$server_pid" \
        --timeout-secs "$TIMEOUT_SECS" idle --clients "$STORM" --in-flight "$IN_FLIGHT" --hold-secs 2
}

say "baseline: $STORM accounts without contacts"
populate "$STORM" 0 "$store/base-$STORM"
start_on "$store/base-$STORM"
storm "$port" "$STORM" >"$tmp/base.json"
stop_server

printf '| accounts × contacts | start-up | RSS, nobody online | logins/s | server CPU/login | RSS/online user | of which pubsub/presence |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
base=$(jq -r '.server_rss_per_connection_kib' "$tmp/base.json")
for size in $SIZES; do
    say "$size accounts × $CONTACTS contacts"
    populate "$size" "$CONTACTS" "$store/scale-$size"
    start_on "$store/scale-$size"
    storm "$port" "$size" >"$tmp/scale-$size.json"
    stop_server
    jq -r --arg size "$size" --arg contacts "$CONTACTS" --arg secs "$secs" --arg rss "$rss" \
        --argjson base "$base" \
        '"| \($size) × \($contacts) | \($secs | tonumber * 100 | round / 100) s | \($rss | tonumber / 1024 | round) MiB | \(.logins_per_s | round) | \(.server_cpu_us_per_login | round) µs | \(.server_rss_per_connection_kib * 10 | round / 10) KiB | \((.server_rss_per_connection_kib - $base) * 10 | round / 10) KiB |"' \
        "$tmp/scale-$size.json"
done
say "baseline RSS per online user without contacts: $base KiB"
