#!/usr/bin/env bash
# Verona side by side with Prosody and ejabberd, in one command:
#   bench/compare.sh [--write-docs]
# Installs prosody and ejabberd from Debian's packages when missing (their system services are
# stopped and disabled again: this script runs its own instances), builds Verona in release mode,
# then runs each scenario (login, idle, fanout, chat, presence, and the group chat runs muc,
# muc-rooms, muc-native) against each server in turn, each run on a fresh instance on its own
# loopback port: domain `localhost`, SASL PLAIN without TLS, pubsub at `pubsub.localhost`, group
# chat at `chat.localhost`. With two cores or more the server is pinned to core 0 and the
# generator to core 1. Prints markdown sections on stdout: "Side by side" for the first five
# scenarios (medians, Verona/peer ratios, bytes on the wire), "Group chat" for the muc runs; with
# --write-docs, replaces those sections of docs/benchmarks.md (only those that ran). Progress and
# each run's own table go to stderr.
#
# Settings (environment, with defaults):
#   SERVERS="verona prosody ejabberd"
#   SCENARIOS="login idle fanout chat presence muc muc-rooms muc-native"
#   REPEAT=1                runs of each scenario on each server; the table shows medians
#   ACCOUNTS=500            client n logs in as bench{n % ACCOUNTS}, password pw{n % ACCOUNTS}
#   HASHING=defaults        how the peers keep passwords: `defaults` (as packaged: ejabberd in
#                           plain text, Prosody with 10,000 PBKDF2 rounds) or `4096` (ejabberd as
#                           SCRAM, Prosody with 4,096 rounds, as Verona): like for like for the
#                           PBKDF2 a PLAIN login costs
#   LOGIN_CLIENTS=2000
#   IDLE_CLIENTS=5000       lowered to fit the open-file limit
#   HOLD_SECS=5             how long the idle sessions are held
#   FANOUT_SUBSCRIBERS=500
#   FANOUT_PUBLISHES=200    100-byte items, 16 publishes in flight, persistent node
#   CHAT_PAIRS=100
#   CHAT_MESSAGES=500       per pair (enough for Verona's CPU to span many 10 ms clock ticks)
#   CHAT_WINDOW=10          messages in flight per pair
#   PRESENCE_CONTACTS=499   subscribers of one user (account 0), so at most ACCOUNTS - 1
#   PRESENCE_CHANGES=100    presence changes of the user
#   PRESENCE_IN_FLIGHT=10   changes not yet received by every contact
#   MUC_ROOMS=1             muc: rooms, each with MUC_OCCUPANTS occupants; occupant 0 of each
#   MUC_OCCUPANTS=1000        room creates it and says MUC_MESSAGES messages (100-byte bodies),
#   MUC_MESSAGES=200          at most MUC_IN_FLIGHT not yet received by every occupant
#   MUC_IN_FLIGHT=4
#   MUC_ROOMS_ROOMS=100     muc-rooms: the same with more, smaller rooms
#   MUC_ROOMS_OCCUPANTS=50
#   MUC_NATIVE=500          muc-native (Verona only): muc with occupants 1..=MUC_NATIVE of each
#                           room joining natively (XEP-0207 §5) and receiving pubsub events
#                           Client n logs in as account n % ACCOUNTS with resource r{n}, so an
#                           account has several sessions in a room (2 of 1,000 with 500 accounts)
#   IN_FLIGHT=50            logins (and room joins) in progress at once
#   TIMEOUT_SECS=300        bound on each run
#   RESULTS_DIR=bench/results/<UTC time>   where the raw JSON reports and load averages are kept
set -euo pipefail

SERVERS=${SERVERS:-verona prosody ejabberd}
SCENARIOS=${SCENARIOS:-login idle fanout chat presence muc muc-rooms muc-native}
REPEAT=${REPEAT:-1}
ACCOUNTS=${ACCOUNTS:-500}
LOGIN_CLIENTS=${LOGIN_CLIENTS:-2000}
IDLE_CLIENTS=${IDLE_CLIENTS:-5000}
HOLD_SECS=${HOLD_SECS:-5}
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-500}
FANOUT_PUBLISHES=${FANOUT_PUBLISHES:-200}
CHAT_PAIRS=${CHAT_PAIRS:-100}
CHAT_MESSAGES=${CHAT_MESSAGES:-500}
CHAT_WINDOW=${CHAT_WINDOW:-10}
PRESENCE_CONTACTS=${PRESENCE_CONTACTS:-499}
PRESENCE_CHANGES=${PRESENCE_CHANGES:-100}
PRESENCE_IN_FLIGHT=${PRESENCE_IN_FLIGHT:-10}
MUC_ROOMS=${MUC_ROOMS:-1}
MUC_OCCUPANTS=${MUC_OCCUPANTS:-1000}
MUC_MESSAGES=${MUC_MESSAGES:-200}
MUC_IN_FLIGHT=${MUC_IN_FLIGHT:-4}
MUC_ROOMS_ROOMS=${MUC_ROOMS_ROOMS:-100}
MUC_ROOMS_OCCUPANTS=${MUC_ROOMS_OCCUPANTS:-50}
MUC_NATIVE=${MUC_NATIVE:-500}
IN_FLIGHT=${IN_FLIGHT:-50}
TIMEOUT_SECS=${TIMEOUT_SECS:-300}
HASHING=${HASHING:-defaults}
case $HASHING in
    defaults) prosody_rounds=10000 ejabberd_passwords=plain ;;
    4096) prosody_rounds=4096 ejabberd_passwords=scram ;;
    *) echo "HASHING is 'defaults' or '4096'" >&2; exit 2 ;;
esac

write_docs=false
case ${1:-} in
    --write-docs) write_docs=true ;;
    "") ;;
    *) echo "usage: $0 [--write-docs]" >&2; exit 2 ;;
esac

source "$(dirname "$0")/lib.sh"
on_exit=stop_everything
problems=()
# The group chat runs get their own section, hence their own reports.
mkdir -p "$tmp/results" "$tmp/muc-results"

# Server and generator each hold one descriptor per connection, plus a few of their own.
if [[ $hard != unlimited ]] && ((hard < IDLE_CLIENTS + 100)); then
    say "the hard open-file limit is $hard: holding $((hard - 100)) idle clients, not $IDLE_CLIENTS"
    IDLE_CLIENTS=$((hard - 100))
fi

server_cpu=
server_pin=()
generator_pin=()
if (($(nproc) >= 2)); then
    server_cpu=0
    server_pin=(taskset -c 0)
    generator_pin=(taskset -c 1)
fi

# Notes a problem for the report, and says it now.
problem() {
    problems+=("$*")
    say "$*"
}

# ---- Peers' packages ----

# Installs the missing peers; a peer that cannot be had is reported and left out.
install_peers() {
    local wanted=() missing=() package
    [[ " $SERVERS " != *" prosody "* ]] || wanted+=(prosody)
    [[ " $SERVERS " != *" ejabberd "* ]] || wanted+=(ejabberd)
    for package in "${wanted[@]}"; do
        dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
            missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]} from Debian's packages..."
    # A machine whose package lists are missing or stale needs them fetched first.
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$tmp/apt.log" 2>&1 &&
        ! { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; } \
            >"$tmp/apt.log" 2>&1; then
        problem "apt-get install ${missing[*]} failed:" \
            "$(grep -m1 '^E:' "$tmp/apt.log" || tail -n1 "$tmp/apt.log")"
        for package in "${missing[@]}"; do
            SERVERS=${SERVERS//$package/}
        done
        return 0
    fi
    # The packages enable their services (and start them where policy allows): undo both.
    local units=()
    for package in "${missing[@]}"; do
        units+=("$package.service")
        [[ $package != ejabberd ]] || units+=(epmd.service epmd.socket)
        invoke-rc.d "$package" stop >/dev/null 2>&1 || true
    done
    systemctl disable --now "${units[@]}" >/dev/null 2>&1 || true
}

# ---- Verona ----

verona_dir=$tmp/verona

prepare_verona() {
    mkdir -p "$verona_dir"
    verona_config "$verona_dir/verona.toml" "$verona_port" "$verona_dir/data" plain
    verona_accounts "$verona_dir/verona.toml" "$ACCOUNTS" || return 1
    mv "$verona_dir/data" "$verona_dir/template"
}

start_verona_fresh() {
    rm -rf "$verona_dir/data"
    cp -a "$verona_dir/template" "$verona_dir/data"
    start_verona "$verona_dir/verona.toml" "$verona_dir/server.log" "$verona_port" "$server_cpu"
}

stop_verona() {
    stop_server
}

# ---- Prosody ----

prosody_dir=$tmp/prosody
as_prosody=(setpriv --reuid=prosody --regid=prosody --init-groups)

prepare_prosody() {
    mkdir -p "$prosody_dir/data" "$prosody_dir/certs"
    cat >"$prosody_dir/prosody.cfg.lua" <<EOF
-- One benchmark instance of bench/compare.sh, on loopback only.
data_path = "$prosody_dir/data"
certificates = "$prosody_dir/certs"
log = { { levels = { min = "warn" }, to = "file", filename = "$prosody_dir/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { $prosody_port }
-- mod_limits is not loaded, so c2s is not rate-limited; Nagle's delay would add ~40 ms to
-- every exchange that waits for an answer.
network_settings = { nagle = false }
-- mod_mam archives every one-to-one message, as Verona does (its default policy is to archive
-- all); mod_offline keeps them for accounts that are away.
modules_enabled = { "roster", "saslauth", "disco", "pep", "ping", "mam", "offline" }
modules_disabled = { "s2s" }
-- Only admins may create nodes on Prosody's pubsub service; the fan-out node's owner is bench0.
admins = { "bench0@localhost" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
default_iteration_count = $prosody_rounds
storage = "internal"
VirtualHost "localhost"
Component "pubsub.localhost" "pubsub"
    -- The fan-out node asks for pubsub#max_items 1000; the default cap is 256.
    pubsub_max_items = 10000
Component "chat.localhost" "muc"
    -- Anyone may create a room (new rooms stay locked until their creator submits the
    -- instant-room form, which verona-bench does). 0.12 has no cap on occupants and no rate
    -- limit in mod_muc; it keeps 100 rooms in memory by default, muc-rooms needs 100.
    restrict_room_creation = false
    muc_room_cache_size = 10000
EOF
    chown -R prosody:prosody "$prosody_dir"
    say "creating $ACCOUNTS Prosody accounts..."
    if ! seq 0 $((ACCOUNTS - 1)) | xargs -P 4 -I{} "${as_prosody[@]}" \
        prosodyctl --config "$prosody_dir/prosody.cfg.lua" register bench{} localhost pw{} \
        >>"$prosody_dir/prosodyctl.log" 2>&1; then
        problem "prosody: prosodyctl register failed: $(grep -v '^$' "$prosody_dir/prosodyctl.log" | tail -n 1)"
        return 1
    fi
    mv "$prosody_dir/data" "$prosody_dir/template"
}

start_prosody_fresh() {
    rm -rf "$prosody_dir/data"
    cp -a "$prosody_dir/template" "$prosody_dir/data"
    # /usr/bin/prosody is a script that execs lua: the PID is the server's.
    (ulimit -n "$hard" && exec "${server_pin[@]}" "${as_prosody[@]}" \
        prosody --config "$prosody_dir/prosody.cfg.lua") >"$prosody_dir/console.log" 2>&1 &
    server_pid=$!
    wait_listening "$prosody_port" "$server_pid" "$prosody_dir/console.log" || return 1
    say "prosody (pid $server_pid) listening on 127.0.0.1:$prosody_port"
}

stop_prosody() {
    stop_server
}

# ---- ejabberd ----

ejabberd_dir=$tmp/ejabberd
ejabberd_ctl=(env HOME="$ejabberd_dir/home" setpriv --reuid=ejabberd --regid=ejabberd --init-groups
    ejabberdctl --config-dir "$ejabberd_dir" --config "$ejabberd_dir/ejabberd.yml"
    --ctl-config "$ejabberd_dir/ejabberdctl.cfg" --logs "$ejabberd_dir/logs"
    --spool "$ejabberd_dir/spool")
# ejabberdctl itself, parent of the beam.smp that is measured.
ejabberd_wrapper=
epmd_was_running=

prepare_ejabberd() {
    mkdir -p "$ejabberd_dir/home" "$ejabberd_dir/logs" "$ejabberd_dir/spool"
    touch "$ejabberd_dir/inetrc"
    cat >"$ejabberd_dir/ejabberdctl.cfg" <<EOF
ERLANG_NODE=verona_bench_$$@localhost
ERL_EPMD_ADDRESS=127.0.0.1
INET_DIST_INTERFACE=127.0.0.1
ERL_MAX_PORTS=65536
EOF
    cat >"$ejabberd_dir/ejabberd.yml" <<EOF
# One benchmark instance of bench/compare.sh, on loopback only.
hosts: [localhost]
loglevel: warning
certfiles: []
acme:
  auto: false
listen:
  - port: $ejabberd_port
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
    starttls_required: false
    shaper: none
    max_stanza_size: 262144
    backlog: 1024
max_fsm_queue: 1000000
auth_method: internal
auth_password_format: $ejabberd_passwords
shaper_rules:
  max_user_sessions: 1000000
  c2s_shaper: none
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
modules:
  mod_caps: {}
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  # Every one-to-one message archived, as Verona does (ejabberd archives none by default).
  mod_mam:
    default: always
  mod_offline: {}
  mod_pubsub:
    hosts: [pubsub.localhost]
    access_createnode: local
    plugins: [flat, pep]
    max_items_node: 10000
  # Rooms of 1,000: max_users defaults to 200 (service and room), max_users_presence to 1000
  # (beyond it joins are not broadcast); no shapers, no minimum interval between messages.
  mod_muc:
    hosts: [chat.localhost]
    access_create: local
    max_users: 10000
    max_users_presence: 10000
    max_user_conferences: 10000
    min_message_interval: 0
    min_presence_interval: 0
    room_shaper: none
    user_message_shaper: none
    user_presence_shaper: none
    default_room_options:
      max_users: 10000
EOF
    # ejabberdctl register starts an Erlang VM per account (~0.35 s each); one XEP-0227 import
    # through ejabberdctl creates them all at once.
    {
        echo "<?xml version='1.0' encoding='UTF-8'?>"
        echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>"
        for ((i = 0; i < ACCOUNTS; i++)); do
            echo "<user name='bench$i' password='pw$i'/>"
        done
        echo "</host></server-data>"
    } >"$ejabberd_dir/accounts.xml"
    chown -R ejabberd:ejabberd "$ejabberd_dir"
    if pgrep -x epmd >/dev/null; then epmd_was_running=yes; fi
    if ! start_ejabberd_fresh; then
        problem "ejabberd: did not start: $(tail -n 3 "$ejabberd_dir/console.log" | tr '\n' ' ')"
        return 1
    fi
    say "importing $ACCOUNTS ejabberd accounts..."
    local registered
    timeout 120 "${ejabberd_ctl[@]}" import_piefxis "$ejabberd_dir/accounts.xml" >&2 || true
    registered=$(timeout 60 "${ejabberd_ctl[@]}" registered_users localhost | wc -l)
    stop_ejabberd
    if ((registered != ACCOUNTS)); then
        problem "ejabberd: ejabberdctl import_piefxis made $registered accounts, not $ACCOUNTS"
        return 1
    fi
    mv "$ejabberd_dir/spool" "$ejabberd_dir/template"
}

start_ejabberd_fresh() {
    if [[ -d $ejabberd_dir/template ]]; then
        rm -rf "$ejabberd_dir/spool"
        cp -a "$ejabberd_dir/template" "$ejabberd_dir/spool"
    fi
    (ulimit -n "$hard" && exec "${server_pin[@]}" "${ejabberd_ctl[@]}" foreground) \
        >"$ejabberd_dir/console.log" 2>&1 &
    ejabberd_wrapper=$!
    wait_listening "$ejabberd_port" "$ejabberd_wrapper" "$ejabberd_dir/console.log" || return 1
    server_pid=$(pgrep -P "$ejabberd_wrapper" -x beam.smp) || return 1
    say "ejabberd (beam.smp pid $server_pid) listening on 127.0.0.1:$ejabberd_port"
}

stop_ejabberd() {
    [[ -n $ejabberd_wrapper ]] || return 0
    timeout 60 "${ejabberd_ctl[@]}" stop >/dev/null 2>&1 || true
    if [[ -n $server_pid ]] && ! wait_exit "$server_pid" 30; then
        stop_pid "$server_pid" 10
    fi
    stop_pid "$ejabberd_wrapper" 5
    server_pid=
    ejabberd_wrapper=
}

# ---- Runs ----

stop_everything() {
    stop_ejabberd
    stop_server
    # Erlang started epmd for ejabberd's node; stop it if it was not there before.
    if [[ -z $epmd_was_running ]] && pgrep -x epmd >/dev/null; then
        epmd -kill >/dev/null 2>&1 || true
    fi
}

# Runs SCENARIO (run REP) against the server just started, keeping its JSON report.
run_scenario() {
    local server=$1 scenario=$2 rep=$3 port=$4
    local args results=$tmp/results status=0
    [[ $scenario != muc* ]] || results=$tmp/muc-results
    local report=$results/$server.$scenario.$rep.json
    local muc=(--messages "$MUC_MESSAGES" --in-flight "$MUC_IN_FLIGHT" --payload-bytes 100
        --login-in-flight "$IN_FLIGHT")
    case $scenario in
        login) args=(login --clients "$LOGIN_CLIENTS" --in-flight "$IN_FLIGHT") ;;
        idle) args=(idle --clients "$IDLE_CLIENTS" --in-flight "$IN_FLIGHT" --hold-secs "$HOLD_SECS") ;;
        fanout) args=(fanout --subscribers "$FANOUT_SUBSCRIBERS" --publishes "$FANOUT_PUBLISHES"
            --in-flight 16 --payload-bytes 100 --login-in-flight "$IN_FLIGHT") ;;
        chat) args=(chat --pairs "$CHAT_PAIRS" --messages "$CHAT_MESSAGES" --window "$CHAT_WINDOW"
            --login-in-flight "$IN_FLIGHT") ;;
        presence) args=(presence --contacts "$PRESENCE_CONTACTS" --changes "$PRESENCE_CHANGES"
            --in-flight "$PRESENCE_IN_FLIGHT" --login-in-flight "$IN_FLIGHT") ;;
        muc) args=(muc --rooms "$MUC_ROOMS" --occupants "$MUC_OCCUPANTS" "${muc[@]}") ;;
        muc-rooms) args=(muc --rooms "$MUC_ROOMS_ROOMS" --occupants "$MUC_ROOMS_OCCUPANTS" "${muc[@]}") ;;
        muc-native) args=(muc --rooms "$MUC_ROOMS" --occupants "$MUC_OCCUPANTS" --native "$MUC_NATIVE"
            "${muc[@]}") ;;
    esac
    say "$server: $scenario, run $rep of $REPEAT"
    (ulimit -n "$hard" && exec timeout $((TIMEOUT_SECS + 60)) "${generator_pin[@]}" \
        "$bin/verona-bench" --port "$port" --no-tls --mechanism PLAIN --accounts "$ACCOUNTS" \
        --server-pid "$server_pid" --timeout-secs "$TIMEOUT_SECS" "${args[@]}") \
        >"$report.out" 2>"$tmp/bench.err" || status=$?
    cat "$tmp/bench.err" >&2
    # A report is written even when some clients failed (status 1); not when the run could not
    # be done at all (2) or was cut off.
    [[ ! -s $report.out ]] || mv "$report.out" "$report"
    if ((status != 0)); then
        local first
        first=$(grep -o '"first":"[^"]*"' "$report" 2>/dev/null || tail -n 1 "$tmp/bench.err")
        problem "$server $scenario run $rep: verona-bench exited with status $status: $first"
    fi
}

install_peers
say "building Verona (release)..."
bench_build >&2
# What was built, for the report: the tree may change while the runs go on.
verona_built="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' with local changes')"

verona_port=$(free_port)
prosody_port=$(free_port "$verona_port")
ejabberd_port=$(free_port "$verona_port" "$prosody_port")

ready=()
for server in $SERVERS; do
    if "prepare_$server"; then
        ready+=("$server")
    else
        problem "$server: could not be set up, left out"
        "stop_$server"
    fi
done
for ((rep = 1; rep <= REPEAT; rep++)); do
    ((${#ready[@]})) || break
    # The servers take turns going first, so that none always runs right after the same one.
    turn=$(((rep - 1) % ${#ready[@]}))
    order=("${ready[@]:turn}" "${ready[@]:0:turn}")
    for scenario in $SCENARIOS; do
        for server in "${order[@]}"; do
            # Joining natively is XEP-0207, Verona's alone.
            [[ $scenario != muc-native || $server == verona ]] || continue
            if ! "start_${server}_fresh"; then
                problem "$server $scenario run $rep: the server did not start"
                "stop_$server"
                continue
            fi
            # What else the machine was doing, for the report.
            echo "$server $scenario $rep $(cut -d' ' -f1-3 /proc/loadavg)" >>"$tmp/load.txt"
            port_var=${server}_port
            run_scenario "$server" "$scenario" "$rep" "${!port_var}"
            "stop_$server"
        done
    done
done
# The raw reports stay, for whoever wants more than the tables.
results_dir=${RESULTS_DIR:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$results_dir"
cp -r "$tmp/results" "$tmp/muc-results" "$results_dir/"
[[ ! -f $tmp/load.txt ]] || cp "$tmp/load.txt" "$results_dir/"
say "raw reports in $results_dir"

# The machine's load average (1, 5, 15 min) before the runs of a section, lowest to highest of
# the 1-minute figure: SCENARIO_PATTERN selects the runs.
load_line() {
    local pattern=$1
    [[ -f $tmp/load.txt ]] || return 0
    awk -v pat="$pattern" '$2 ~ pat { n++; if (n == 1 || $4 < lo) lo = $4; if ($4 > hi) hi = $4 }
        END { if (n) printf "Load average (1 min) before each run: %s to %s.\n", lo, hi }' "$tmp/load.txt"
}

version() {
    dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "not installed"
}

# Whether DIR holds any report.
has_reports() {
    compgen -G "$1/*.json" >/dev/null
}

sections=()
pinning=$( ((${#server_pin[@]})) && echo "server pinned to core 0 and generator to core 1" || echo "no pinning (one core)")
if has_reports "$tmp/results"; then
    sections+=("$tmp/section.md")
    {
        echo "## Side by side: Verona, Prosody, ejabberd"
        echo
        echo "Command: \`bench/compare.sh --write-docs\` (REPEAT=$REPEAT; medians when more than one run)."
        echo "Measured $(date -u +%Y-%m-%d): Verona $verona_built,"
        echo "Prosody $(version prosody) and ejabberd $(version ejabberd) from Debian's packages. Each"
        echo "scenario ran on a fresh instance of each server (data copied from a template with $ACCOUNTS"
        echo "accounts; client *n* logs in as \`bench{n % $ACCOUNTS}\`) on loopback, SASL PLAIN without TLS,"
        echo "domain \`localhost\`, pubsub at \`pubsub.localhost\`, each server in its packaged defaults except"
        echo "limits and shapers off (and Nagle off for Prosody); $pinning."
        echo "Sizes: login $LOGIN_CLIENTS clients ($IN_FLIGHT in flight); idle $IDLE_CLIENTS sessions held ${HOLD_SECS} s;"
        echo "fanout $FANOUT_SUBSCRIBERS subscribers x $FANOUT_PUBLISHES publishes (100 B, 16 in flight, persistent items);"
        echo "chat $CHAT_PAIRS pairs x $CHAT_MESSAGES messages ($CHAT_WINDOW in flight per pair); presence: $PRESENCE_CONTACTS"
        echo "contacts subscribe (RFC 6121) to one user, who then changes its presence $PRESENCE_CHANGES times ($PRESENCE_IN_FLIGHT"
        echo "changes in flight, each to reach every contact). Ratios are Verona's"
        echo "figure divided by the peer's; \"better\" says which way is good. CPU is the server process's"
        echo "user+system time from /proc in 10 ms ticks (Prosody's lua, ejabberd's beam.smp); other work"
        echo "on the machine shares its two cores, so rates vary between runs more than CPU per operation"
        echo "does. Where the generator is near 100 % of its core, rates and latencies are the generator's."
        if [[ $HASHING == 4096 ]]; then
            echo "Passwords like for like (HASHING=4096): a PLAIN login costs a 4,096-round PBKDF2 derivation on"
            echo "all three (ejabberd with \`auth_password_format: scram\`, Prosody with \`default_iteration_count = 4096\`)."
        else
            echo "PLAIN logins cost a PBKDF2 derivation on Verona (4,096 rounds) and Prosody (10,000 rounds,"
            echo "\`internal_hashed\`); ejabberd stores passwords in plain text (HASHING=4096 compares like for like)."
        fi
        echo "Prosody lets only admins create pubsub nodes, so the"
        echo "fan-out owner \`bench0\` is one there. Every chat message is archived on all three (Verona's"
        echo "conversations; Prosody's \`mod_mam\` and ejabberd's \`mod_mam\` with \`default: always\`, offline"
        echo "storage on). With REPEAT above 1, the servers take turns going first, each cell is the"
        echo "median with the lowest and highest run in brackets, and a generator row marked"
        echo "\"generator-bound\" (median above 70 % of its core) says that row's rates are the generator's."
        load_line '^(login|idle|fanout|chat|presence)$'
        echo
        "$bin/verona-bench" summarize "$tmp/results"
        echo
        echo "### Bytes on the wire: one presence broadcast"
        echo
        "$bin/verona-bench" wire
    } >"$tmp/section.md"
fi
if has_reports "$tmp/muc-results"; then
    sections+=("$tmp/muc-section.md")
    {
        echo "## Group chat: Verona, Prosody, ejabberd"
        echo
        echo "Command: \`SCENARIOS=\"muc muc-rooms muc-native\" bench/compare.sh --write-docs\` (REPEAT=$REPEAT; medians"
        echo "when more than one run). Measured $(date -u +%Y-%m-%d): Verona $verona_built,"
        echo "Prosody $(version prosody) and ejabberd $(version ejabberd) from Debian's packages, set up as for the"
        echo "side-by-side comparison (a fresh instance per run, $ACCOUNTS accounts, SASL PLAIN without TLS, $pinning)."
        echo "Group chat at \`chat.localhost\`: Verona's as it ships; Prosody's and ejabberd's \`mod_muc\` with"
        echo "anyone allowed to create rooms, no cap on occupants, no shaper and no minimum message interval."
        echo "Runs: muc, $MUC_ROOMS room(s) of $MUC_OCCUPANTS occupants; muc-rooms, $MUC_ROOMS_ROOMS rooms of $MUC_ROOMS_OCCUPANTS; muc-native"
        echo "(Verona only), as muc with occupants 1..$MUC_NATIVE of each room joining natively (XEP-0207 §5: a"
        echo "pubsub subscription with a \`roomnick\`) and receiving pubsub events. Client *n* is occupant"
        echo "\`occ{n % O}\` of room \`bench-room-{n / O}\` and logs in as \`bench{n % $ACCOUNTS}\` with resource"
        echo "\`r{n}\`, so an account has several sessions, each its own occupant. Occupant 0 of each room"
        echo "creates it and submits an instant-room form; then the others join with XEP-0045 presence"
        echo "asking for no history ($IN_FLIGHT joins at a time over all rooms), each done at its own presence"
        echo "and the subject. Once every room is full, occupant 0 of each room says $MUC_MESSAGES messages (100-byte"
        echo "bodies carrying a number and the send time), at most $MUC_IN_FLIGHT of them not yet received by every"
        echo "occupant of its room, its own reflected copy included. A delivery is one occupant receiving"
        echo "one message; server CPU (user+system from /proc, 10 ms ticks) runs from the first message to"
        echo "the last delivery and is divided by the deliveries. Joining is not measured. Ratios are"
        echo "Verona's figure divided by the peer's. With REPEAT above 1, each cell is the median with the"
        echo "lowest and highest run in brackets; \"generator-bound\" marks a generator above 70 % of its core."
        load_line '^muc'
        echo
        "$bin/verona-bench" summarize "$tmp/muc-results"
    } >"$tmp/muc-section.md"
fi
if ((${#problems[@]})) && ((${#sections[@]})); then
    {
        echo
        echo "Problems in this run:"
        echo
        printf -- '- %s\n' "${problems[@]}"
    } >>"${sections[-1]}"
fi
for section in "${sections[@]}"; do
    cat "$section"
    echo
done

if $write_docs; then
    docs=docs/benchmarks.md
    for section in "${sections[@]}"; do
        # Replace the section (up to the next level-2 heading) or append it.
        awk -v title="$(head -n 1 "$section")" -v section="$section" '
            function insert(  line) { while ((getline line < section) > 0) print line; done = 1 }
            $0 == title { insert(); skipping = 1; next }
            skipping && /^## / { skipping = 0; print "" }
            !skipping { print }
            END { if (!done) { print ""; insert() } }
        ' "$docs" >"$tmp/benchmarks.md"
        cp "$tmp/benchmarks.md" "$docs"
        say "wrote \"$(head -n 1 "$section")\" into $docs"
    done
fi
