# Shared by the bench scripts: release build, a scratch directory, free ports, and starting and
# stopping a throwaway Verona. Source it after `set -euo pipefail`; it sets:
#   bin   the release binaries        tmp   a scratch directory, removed on exit
#   hard  the hard open-file limit    server_pid   the running server, if any
# A script with more to clean up sets `on_exit` to a function run before the scratch dir goes.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${CARGO_TARGET_DIR:-target}/release
hard=$(ulimit -Hn)
server_pid=
on_exit=

tmp=$(mktemp -d)
# Peers run as their own users and must reach their files inside.
chmod 711 "$tmp"
bench_cleanup() {
    [[ -z $on_exit ]] || "$on_exit"
    stop_server
    rm -rf "$tmp"
}
trap bench_cleanup EXIT

bench_build() {
    cargo build --release -p verona -p verona-bench
}

# Says something to the person running the script, on stderr.
say() {
    echo "${0##*/}: $*" >&2
}

# A port below the ephemeral range (so no client socket takes it) that nothing listens on and
# that is not among the arguments.
free_port() {
    local candidate
    for _ in $(seq 50); do
        candidate=$((20000 + RANDOM % 10000))
        if [[ " $* " != *" $candidate "* && -z $(ss -Htln "sport = :$candidate") ]]; then
            echo "$candidate"
            return
        fi
    done
    say "no free port found"
    return 1
}

# Waits up to 30 s until something listens on PORT, as long as process PID lives; on failure
# shows LOG.
wait_listening() {
    local port=$1 pid=$2 log=$3
    for _ in $(seq 300); do
        [[ -n $(ss -Htln "sport = :$port") ]] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    say "the server (pid $pid) is not listening on port $port:"
    tail -n 30 "$log" >&2
    return 1
}

# Waits up to SECS for process PID to end; fails if it is still there.
wait_exit() {
    local pid=$1 secs=$2
    for _ in $(seq $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# Asks process PID to stop (SIGTERM), waits up to SECS (default 10), then insists (SIGKILL).
stop_pid() {
    local pid=$1 secs=${2:-10}
    if kill -TERM "$pid" 2>/dev/null && ! wait_exit "$pid" "$secs"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Reaps it when it is this shell's child.
    wait "$pid" 2>/dev/null || true
}

stop_server() {
    # Verona allows its streams 5 s to close; give it a little more.
    [[ -z $server_pid ]] || stop_pid "$server_pid" 10
    server_pid=
}

# Writes a Verona config: FILE PORT DATA_DIR, then `tls` (STARTTLS required) or `plain` (no TLS
# required, PLAIN allowed without it), then optionally the DOMAIN (default localhost).
verona_config() {
    local file=$1 port=$2 data=$3 encryption=true insecure_auth=false domain=${5:-localhost}
    if [[ $4 == plain ]]; then
        encryption=false
        insecure_auth=true
    fi
    cat >"$file" <<EOF
domain = "$domain"
data_dir = "$data"
[c2s]
listen = ["127.0.0.1:$port"]
direct_tls_listen = []
websocket_tls_listen = []
require_encryption = $encryption
allow_insecure_auth = $insecure_auth
[limits]
unauthenticated_timeout_secs = 600
# The load generator is one address: the per-address guard would be the bottleneck.
unauthenticated_per_address = 1000000
connections_per_address = 1000000
new_connections_per_minute = 0
read_bytes_per_sec = 0
account_read_bytes_per_sec = 0
# The login and idle scenarios spread thousands of sessions over a few accounts.
max_sessions_per_account = 1000000
# The chat scenario has each account send hundreds of kept messages a second.
kept_messages_per_minute = 0
# The muc and fan-out scenarios have each account post to rooms and publish far past what one
# person would; peers' shapers are off too.
broadcast_bytes_per_sec = 0
[log]
filter = "warn"
EOF
}

# Creates accounts bench0..bench{N-1} with passwords pw0..: CONFIG N [DOMAIN].
verona_accounts() {
    local config=$1 count=$2 domain=${3:-localhost}
    say "creating $count Verona accounts at $domain..."
    for ((i = 0; i < count; i++)); do
        "$bin/verona" --config "$config" user add "bench$i@$domain" --password "pw$i" >/dev/null
    done
}

# Starts Verona in the background with CONFIG, stderr to LOG, optionally pinned with taskset to
# CPUS; waits until it listens on PORT. Sets server_pid.
start_verona() {
    local config=$1 log=$2 port=$3 cpus=${4:-}
    local pin=()
    [[ -z $cpus ]] || pin=(taskset -c "$cpus")
    (ulimit -n "$hard" && exec "${pin[@]}" "$bin/verona" --config "$config" serve) 2>"$log" &
    server_pid=$!
    wait_listening "$port" "$server_pid" "$log" || return 1
    say "verona (pid $server_pid) listening on 127.0.0.1:$port"
}
