//! The `verona-bench` command. Each load run prints one JSON line on stdout and a readable table
//! on stderr; the exit status is 1 if any client failed (or, in fanout, chat, presence and muc,
//! a stanza was lost or duplicated), 2 if the run could not be done. `wire`, `handshake` and `summarize` print markdown on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgAction, Args, Parser, Subcommand};
use verona_bench::client::{Mechanism, Target};
use verona_bench::populate::PopulateOptions;
use verona_bench::scenarios::Setup;
use verona_bench::scenarios::chat::{self, ChatOptions, Receivers};
use verona_bench::scenarios::fanout::{self, FanoutOptions};
use verona_bench::scenarios::idle::{self, IdleOptions};
use verona_bench::scenarios::login::{self, LoginOptions};
use verona_bench::scenarios::muc::{self, MucOptions};
use verona_bench::scenarios::presence::{self, PresenceOptions};
use verona_bench::scenarios::soak::{self, Mix, Shares, SoakOptions};
use verona_bench::stats::ServerProbe;

/// How long the idle scenario lets the server settle before sampling its memory.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(name = "verona-bench", version, about = "XMPP load generator")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Load(Scenario),
    /// Bytes on the wire of one presence broadcast, classic and as an XEP-0207 notification
    /// (no server needed).
    Wire,
    /// Server CPU per TLS handshake with Verona's TLS configuration, in memory (no server
    /// needed).
    Handshake {
        #[arg(long, default_value_t = 6)]
        rounds: usize,
        #[arg(long, default_value_t = 1500)]
        handshakes: usize,
    },
    /// The side-by-side markdown table of the JSON reports in DIR, named SERVER.*.json.
    Summarize { dir: PathBuf },
    /// Writes a Verona account database (no server needed): --accounts accounts named by
    /// --user-pattern, each with its presence node and CONTACTS approved subscribers.
    Populate {
        /// The server's data directory (its verona.db must not exist yet).
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 50)]
        contacts: usize,
        /// Every N-th account names its contacts in its roster (0: none).
        #[arg(long, default_value_t = 10)]
        annotate_every: usize,
        /// Accounts 0..N get their --password-pattern password [default: all]; the others
        /// share the credentials of a random password.
        #[arg(long)]
        passwords: Option<usize>,
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Commit latency of the SQLite store with WRITERS committing one item at a time at once,
    /// as the server's pubsub shards do (no server needed).
    Commits {
        /// A directory for the database (its verona.db must not exist yet).
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 2)]
        writers: usize,
        /// Commits per writer.
        #[arg(long, default_value_t = 2000)]
        commits: usize,
    },
}

#[derive(Args)]
struct Common {
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, global = true, default_value_t = 5222)]
    port: u16,
    /// The XMPP domain of the accounts.
    #[arg(long, global = true, default_value = "localhost")]
    domain: String,
    /// Local part of client n's account; `{n}` is the account number.
    #[arg(long, global = true, default_value = "bench{n}")]
    user_pattern: String,
    #[arg(long, global = true, default_value = "pw{n}")]
    password_pattern: String,
    /// Number of accounts: client n uses account n % accounts.
    #[arg(long, global = true, default_value_t = 50)]
    accounts: usize,
    /// STARTTLS before authenticating (the default).
    #[arg(long, global = true, overrides_with = "no_tls")]
    tls: bool,
    /// Stay on plain TCP.
    #[arg(long, global = true, overrides_with = "tls")]
    no_tls: bool,
    #[arg(long, global = true, value_enum, default_value = "SCRAM-SHA-256")]
    mechanism: Mechanism,
    /// Sample this server process's CPU time and memory from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Give up on the whole run after this long.
    #[arg(long, global = true, default_value_t = 600)]
    timeout_secs: u64,
    /// Give up on one login, or one close, after this long.
    #[arg(long, global = true, default_value_t = 30)]
    op_timeout_secs: u64,
}

#[derive(Subcommand)]
enum Scenario {
    /// Clients log in (STARTTLS, SASL, bind, presence) and out, K at a time.
    Login {
        #[arg(long, default_value_t = 2000)]
        clients: usize,
        #[arg(long, default_value_t = 50)]
        in_flight: usize,
        /// Keep every session until all have logged in.
        #[arg(long)]
        keep: bool,
    },
    /// Log clients in, hold them idle, report the server's memory per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        #[arg(long, default_value_t = 50)]
        in_flight: usize,
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
    },
    /// Subscribers follow an open pubsub node (XEP-0060) that one owner publishes to.
    Fanout {
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 200)]
        publishes: usize,
        /// Publish iqs awaiting their answer at once.
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
        /// Subscriber logins, then subscriptions, in progress at once.
        #[arg(long, default_value_t = 50)]
        login_in_flight: usize,
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// The pubsub service [default: pubsub.DOMAIN].
        #[arg(long)]
        pubsub_service: Option<String>,
        /// The node, replaced if it exists [default: a new name per run].
        #[arg(long)]
        node: Option<String>,
        /// pubsub#persist_items
        #[arg(long, default_value_t = true, action = ArgAction::Set)]
        persist: bool,
        /// Publish the next item only once every subscriber has the last one, and report
        /// publish→last notification (overrides --in-flight).
        #[arg(long)]
        settle: bool,
        /// pubsub#max_items
        #[arg(long, default_value_t = 1000)]
        max_items: usize,
    },
    /// Sender→receiver pairs exchange one-to-one chat messages.
    Chat {
        #[arg(long, default_value_t = 100)]
        pairs: usize,
        /// Messages each sender sends.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Messages per pair sent but not yet received.
        #[arg(long, default_value_t = 10)]
        window: usize,
        #[arg(long, default_value_t = 50)]
        login_in_flight: usize,
        /// Receivers log in to this other server (federation: every message crosses a
        /// server-to-server stream), e.g. 127.0.0.1:15322.
        #[arg(long)]
        receivers_addr: Option<std::net::SocketAddr>,
        /// The receivers' domain, with --receivers-addr.
        #[arg(long, default_value = "montague.localhost")]
        receivers_domain: String,
        /// The receivers' server process, whose CPU counts too.
        #[arg(long)]
        receivers_server_pid: Option<u32>,
    },
    /// Contacts subscribe to one user's presence (RFC 6121), then the user changes it.
    Presence {
        /// Accounts 1..=C; must be below --accounts, account 0 being the user.
        #[arg(long, default_value_t = 100)]
        contacts: usize,
        /// The first N contacts are native XEP-0207 clients: they subscribe and publish over
        /// pubsub and receive the changes as events. Verona only.
        #[arg(long, default_value_t = 0)]
        native: usize,
        #[arg(long, default_value_t = 100)]
        changes: usize,
        /// Changes sent that some contact has not received yet.
        #[arg(long, default_value_t = 10)]
        in_flight: usize,
        #[arg(long, default_value_t = 50)]
        login_in_flight: usize,
    },
    /// Rooms of occupants on a group chat service (XEP-0045); in each, one occupant says
    /// messages that every occupant receives. Client n is occupant n % O of room n / O.
    Muc {
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Occupants per room, the sender included.
        #[arg(long, default_value_t = 1000)]
        occupants: usize,
        /// Messages said in each room.
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Messages per room sent that some occupant of the room has not received yet.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        /// Logins, then joins, in progress at once.
        #[arg(long, default_value_t = 50)]
        login_in_flight: usize,
        /// The group chat service [default: chat.DOMAIN].
        #[arg(long)]
        service: Option<String>,
        /// Occupants 1..=N of each room join natively (XEP-0207 §5, a pubsub subscription
        /// with a roomnick) and receive pubsub events. Verona only.
        #[arg(long, default_value_t = 0)]
        native: usize,
    },
    /// Good clients, then good and hostile ones together (garbage, slow readers, stalled
    /// writers, floods, huge stanzas), against a server with its default limits. Needs
    /// --accounts for one account per good client and the hostile ones' (it says how many).
    Soak {
        /// Good and hostile connections together.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Percent of the connections that are active good clients, timing round trips; the
        /// idle good clients are what the shares leave.
        #[arg(long, default_value_t = 3.0)]
        active: f64,
        /// Percent sending garbage.
        #[arg(long, default_value_t = 2.0)]
        garbage: f64,
        /// Percent reading slowly.
        #[arg(long, default_value_t = 2.0)]
        slow: f64,
        /// Percent stopping mid-header or mid-stanza.
        #[arg(long, default_value_t = 3.0)]
        stalled: f64,
        /// Percent flooding (0.2 % of 10,000 is one account's 20 sessions).
        #[arg(long, default_value_t = 0.2)]
        flood: f64,
        /// Percent sending stanzas over the limits.
        #[arg(long, default_value_t = 2.0)]
        huge: f64,
        /// The baseline: good clients alone.
        #[arg(long, default_value_t = 60)]
        quiet_secs: u64,
        /// Good and hostile clients together.
        #[arg(long, default_value_t = 600)]
        secs: u64,
        /// Each active client publishes, messages and pings once per interval.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        #[arg(long, default_value_t = 50)]
        login_in_flight: usize,
        /// Good clients per source address (127.1.*.*) at most.
        #[arg(long, default_value_t = 64)]
        per_good_address: usize,
        /// Source addresses (127.2.KIND.*) of each hostile kind.
        #[arg(long, default_value_t = 4)]
        attack_addresses: usize,
        /// pubsub#max_items of the active clients' nodes.
        #[arg(long, default_value_t = 1000)]
        max_items: usize,
        /// Seconds between samples of the server's memory, files and CPU.
        #[arg(long, default_value_t = 5)]
        sample_secs: u64,
        /// Bytes a slow reader reads per second.
        #[arg(long, default_value_t = 256)]
        slow_read_bytes: usize,
        /// Seconds a slow reader reads slowly before it looks whether it was disconnected.
        #[arg(long, default_value_t = 90)]
        slow_hold_secs: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("verona-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the scenario; `Ok(false)` when some client failed.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let scenario = match cli.command {
        Command::Load(scenario) => scenario,
        Command::Wire => {
            print!("{}", verona_bench::wire::measure().table());
            return Ok(true);
        }
        Command::Handshake { rounds, handshakes } => {
            let rows = verona_bench::handshake::measure(rounds, handshakes)?;
            print!(
                "{}",
                verona_bench::handshake::table(&rows, rounds, handshakes)
            );
            return Ok(true);
        }
        Command::Summarize { dir } => {
            print!("{}", verona_bench::summary::Runs::load(&dir)?.table());
            return Ok(true);
        }
        Command::Populate {
            data_dir,
            contacts,
            annotate_every,
            passwords,
            iterations,
            seed,
        } => {
            let common = cli.common;
            let options = PopulateOptions {
                data_dir,
                domain: common.domain,
                user_pattern: common.user_pattern,
                password_pattern: common.password_pattern,
                accounts: common.accounts,
                contacts,
                annotate_every,
                passwords: passwords.unwrap_or(common.accounts),
                iterations,
                seed,
            };
            let report = verona_bench::populate::run(options).await?;
            eprint!("{}", report.table());
            println!("{}", serde_json::to_string(&report)?);
            return Ok(true);
        }
        Command::Commits {
            data_dir,
            writers,
            commits,
        } => {
            let options = verona_bench::commits::CommitsOptions {
                data_dir,
                writers,
                commits,
            };
            let report = verona_bench::commits::run(options).await?;
            eprint!("{}", report.table());
            println!("{}", serde_json::to_string(&report)?);
            return Ok(true);
        }
    };
    let common = cli.common;
    if let Err(e) = verona_bench::raise_fd_limit() {
        eprintln!("verona-bench: cannot raise the open-file limit: {e}");
    }
    let addr = tokio::net::lookup_host((common.host.as_str(), common.port))
        .await
        .with_context(|| format!("resolving {}", common.host))?
        .next()
        .with_context(|| format!("{} has no address", common.host))?;
    let setup = Setup {
        target: Target {
            addr,
            domain: common.domain.clone(),
            tls: common.tls || !common.no_tls,
            mechanism: common.mechanism,
        },
        user_pattern: common.user_pattern,
        password_pattern: common.password_pattern,
        accounts: common.accounts,
        op_timeout: Duration::from_secs(common.op_timeout_secs),
    };
    let server = ServerProbe(common.server_pid);
    let limit = Duration::from_secs(common.timeout_secs);
    let scenario = async {
        match scenario {
            Scenario::Login {
                clients,
                in_flight,
                keep,
            } => {
                let options = LoginOptions {
                    clients,
                    in_flight,
                    keep,
                };
                let report = login::run(&setup, &options, server).await;
                eprint!("{}", report.table());
                println!("{}", serde_json::to_string(&report)?);
                Ok(report.errors.total == 0)
            }
            Scenario::Idle {
                clients,
                in_flight,
                hold_secs,
            } => {
                let options = IdleOptions {
                    clients,
                    in_flight,
                    hold: Duration::from_secs(hold_secs),
                    settle: SETTLE,
                };
                let report = idle::run(&setup, &options, server).await;
                eprint!("{}", report.table());
                println!("{}", serde_json::to_string(&report)?);
                Ok(report.errors.total == 0)
            }
            Scenario::Fanout {
                subscribers,
                publishes,
                in_flight,
                login_in_flight,
                payload_bytes,
                pubsub_service,
                node,
                persist,
                settle,
                max_items,
            } => {
                let options = FanoutOptions {
                    subscribers,
                    publishes,
                    in_flight: if settle { 1 } else { in_flight },
                    settle,
                    login_in_flight,
                    payload_bytes,
                    service: pubsub_service.unwrap_or_else(|| format!("pubsub.{}", common.domain)),
                    node: node.unwrap_or_else(unique_node),
                    persist,
                    max_items,
                };
                let report = fanout::run(&setup, &options, server).await;
                eprint!("{}", report.table());
                println!("{}", serde_json::to_string(&report)?);
                Ok(report.ok())
            }
            Scenario::Chat {
                pairs,
                messages,
                window,
                login_in_flight,
                receivers_addr,
                receivers_domain,
                receivers_server_pid,
            } => {
                let options = ChatOptions {
                    pairs,
                    messages,
                    window,
                    login_in_flight,
                    receivers: receivers_addr.map(|addr| Receivers {
                        addr,
                        domain: receivers_domain,
                        server_pid: receivers_server_pid,
                    }),
                };
                let report = chat::run(&setup, &options, server).await;
                eprint!("{}", report.table());
                println!("{}", serde_json::to_string(&report)?);
                Ok(report.ok())
            }
            Scenario::Presence {
                contacts,
                native,
                changes,
                in_flight,
                login_in_flight,
            } => {
                if contacts >= setup.accounts {
                    bail!(
                        "--contacts {contacts} needs --accounts above it (account 0 is the user)"
                    );
                }
                if native > contacts {
                    bail!("--native {native} is more than --contacts {contacts}");
                }
                let options = PresenceOptions {
                    contacts,
                    native,
                    changes,
                    in_flight,
                    login_in_flight,
                };
                let report = presence::run(&setup, &options, server).await;
                eprint!("{}", report.table());
                println!("{}", serde_json::to_string(&report)?);
                Ok(report.ok())
            }
            Scenario::Muc {
                rooms,
                occupants,
                messages,
                in_flight,
                payload_bytes,
                login_in_flight,
                service,
                native,
            } => {
                if rooms == 0 || occupants == 0 {
                    bail!("--rooms and --occupants must be at least 1");
                }
                if native >= occupants {
                    bail!(
                        "--native {native} must be below --occupants {occupants}: occupant 0 \
                         creates the room and speaks, classically"
                    );
                }
                let options = MucOptions {
                    rooms,
                    occupants,
                    messages,
                    in_flight,
                    payload_bytes,
                    login_in_flight,
                    service: service.unwrap_or_else(|| format!("chat.{}", common.domain)),
                    native,
                };
                let report = muc::run(&setup, &options, server).await;
                eprint!("{}", report.table());
                println!("{}", serde_json::to_string(&report)?);
                Ok(report.ok())
            }
            Scenario::Soak {
                connections,
                active,
                garbage,
                slow,
                stalled,
                flood,
                huge,
                quiet_secs,
                secs,
                interval_ms,
                login_in_flight,
                per_good_address,
                attack_addresses,
                max_items,
                sample_secs,
                slow_read_bytes,
                slow_hold_secs,
            } => {
                let shares = Shares {
                    active,
                    garbage,
                    slow,
                    stalled,
                    flood,
                    huge,
                };
                let mix = Mix::of(connections, &shares).map_err(anyhow::Error::msg)?;
                if setup.accounts < mix.accounts() {
                    bail!(
                        "the soak needs --accounts {} (one per good client, then the hostile \
                         ones'), not {}",
                        mix.accounts(),
                        setup.accounts
                    );
                }
                let options = SoakOptions {
                    connections,
                    shares,
                    quiet_secs,
                    secs,
                    interval_ms,
                    login_in_flight,
                    per_good_address,
                    attack_addresses,
                    max_items,
                    sample_secs,
                    slow_read_bytes,
                    slow_hold_secs,
                };
                let report = soak::run(&setup, &options, mix, server).await;
                eprint!("{}", report.table());
                println!("{}", serde_json::to_string(&report)?);
                Ok(report.ok())
            }
        }
    };
    match tokio::time::timeout(limit, scenario).await {
        Ok(result) => result,
        Err(_) => bail!(
            "the run took longer than --timeout-secs {}",
            common.timeout_secs
        ),
    }
}

/// A node name no earlier run used: this process and the current time.
fn unique_node() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("verona-bench-{}-{}", std::process::id(), now.as_millis())
}
