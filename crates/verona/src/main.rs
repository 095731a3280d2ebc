//! The `verona` command: run the server, manage accounts.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use verona::accounts::{AccountError, Accounts};
use verona::{Config, RunningServer, control};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "verona",
    version,
    about = "An XMPP server in which publish-subscribe is the only model"
)]
struct Cli {
    /// Configuration file (TOML). Without it: domain `localhost`, data in `./verona-data`.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until SIGINT or SIGTERM.
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from standard input unless given.
    Add {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account.
    Del { jid: String },
    /// Change an account's password; read from standard input unless given.
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// List accounts.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("verona: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::User(command) => user(config, command).await,
        }
    });
    // Everything is shut down and stored by now; a certificate reload still reading a path
    // that blocks (a FIFO) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verona: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not for log files and journals.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = RunningServer::start(config).await?;
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        domain = server.domain(),
        cert = %server.cert_path().display(),
        "Verona is running"
    );
    let mut signals = Signals::new()?;
    let failed = loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Stop => break None,
                Signal::Reload => server.reload_certificate(),
            },
            reason = server.failed() => break Some(reason),
        }
    };
    tracing::info!("shutting down");
    server.shutdown().await;
    match failed {
        Some(reason) => Err(anyhow::anyhow!("stopped: {reason}")),
        None => Ok(()),
    }
}

enum Signal {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP, which operators send after renewing a certificate (as to Prosody).
    Reload,
}

/// The signals the server acts on, listened to for as long as it runs: one that comes while
/// another is acted on waits its turn instead of being lost.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("installing a {name} handler"))
        };
        Ok(Signals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT")?,
            terminate: listen(SignalKind::terminate(), "SIGTERM")?,
            hangup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}

async fn user(config: Config, command: UserCommand) -> anyhow::Result<()> {
    // A running server holds what adding or deleting an account or changing a password must
    // also change (resident services, sessions, the credentials it remembers): those go
    // through it, over its control socket. Listing goes on beside it, on its database as it
    // is: upgrading that under it (this build newer) would break it.
    let lock = verona::lock_data_dir(&config)?;
    let store = match (&lock, &command) {
        (Some(_), _) => verona::open_store(&config).await?,
        (None, UserCommand::Del { jid }) => {
            let jid = jid.clone();
            return through_running_server(&config, control::Command::Delete { jid }).await;
        }
        (None, UserCommand::Add { jid, password } | UserCommand::Passwd { jid, password }) => {
            let adding = matches!(command, UserCommand::Add { .. });
            let jid = known_to_running_server(&config, jid, adding).await?;
            let password = password_or_stdin(password.clone())?;
            let request = match adding {
                true => control::Command::Add { jid, password },
                false => control::Command::Password { jid, password },
            };
            return through_running_server(&config, request).await;
        }
        (None, UserCommand::List) => verona::open_running_store(&config).await?,
    };
    // Listing needs the lock no longer than the upgrade.
    let _lock = lock.filter(|_| !matches!(command, UserCommand::List));
    let accounts = Accounts::new(
        store.clone(),
        config.normalized_domain(),
        config.auth.scram_iterations,
    );
    let archive: (&dyn verona_storage::PubsubStore, String) = (store.as_ref(), config.pubsub_jid());
    let result = run_user_command(&accounts, archive, command).await;
    accounts.store().close().await;
    result
}

/// A `verona user` command beside a running server: the server does it
/// ([`verona::control`]), and says what it did.
async fn through_running_server(config: &Config, request: control::Command) -> anyhow::Result<()> {
    println!("{}", control::send(&config.data_dir, &request).await?);
    Ok(())
}

/// `jid`, normalised, once it is known not to exist (`adding`) or to exist: said before the
/// password is asked for, as with the server stopped.
async fn known_to_running_server(
    config: &Config,
    jid: &str,
    adding: bool,
) -> anyhow::Result<String> {
    let store = verona::open_running_store(config).await?;
    let accounts = Accounts::new(
        store.clone(),
        config.normalized_domain(),
        config.auth.scram_iterations,
    );
    let known = match accounts.parse_jid(jid) {
        Ok(jid) => accounts.credentials(&jid).await.map(|c| (jid, c.is_some())),
        Err(e) => Err(e),
    };
    accounts.store().close().await;
    match known? {
        (jid, true) if adding => Err(AccountError::Exists(jid.to_string()).into()),
        (jid, false) if !adding => Err(AccountError::NotFound(jid.to_string()).into()),
        (jid, _) => Ok(jid.to_string()),
    }
}

/// `archive`: the store and `pubsub.<domain>`, where the account's conversations are.
async fn run_user_command(
    accounts: &Accounts,
    archive: (&dyn verona_storage::PubsubStore, String),
    command: UserCommand,
) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { jid, password } => {
            let jid = accounts.parse_jid(&jid)?;
            // Said before the password is asked for (twice, at a terminal), not after.
            if accounts.credentials(&jid).await?.is_some() {
                return Err(AccountError::Exists(jid.to_string()).into());
            }
            let password = password_or_stdin(password)?;
            accounts.create(&jid, &password).await?;
            println!("created {jid}");
        }
        UserCommand::Del { jid } => {
            let jid = accounts.parse_jid(&jid)?;
            verona::delete_account_while_stopped(accounts, archive.0, &archive.1, &jid).await?;
            println!("deleted {jid}");
        }
        UserCommand::Passwd { jid, password } => {
            let jid = accounts.parse_jid(&jid)?;
            if accounts.credentials(&jid).await?.is_none() {
                return Err(AccountError::NotFound(jid.to_string()).into());
            }
            let password = password_or_stdin(password)?;
            accounts.set_password(&jid, &password).await?;
            println!("password changed for {jid}");
        }
        UserCommand::List => {
            for jid in accounts.list().await? {
                println!("{jid}");
            }
        }
    }
    Ok(())
}

/// The first line of standard input, so scripts can pipe a password in; at a terminal, asked
/// for twice without showing it (as `prosodyctl adduser` does).
fn password_or_stdin(password: Option<String>) -> anyhow::Result<String> {
    if let Some(password) = password {
        return Ok(password);
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Ok(read_line()?.unwrap_or_default());
    }
    // Ctrl-D (end of input) at either prompt gives up, as at a shell's.
    let given = || anyhow::anyhow!("no password given");
    let first = unechoed("Password: ")?.ok_or_else(given)?;
    let again = unechoed("Again: ")?.ok_or_else(given)?;
    if first != again {
        anyhow::bail!("the two passwords differ");
    }
    Ok(first)
}

/// A line of standard input, `None` at its end.
fn read_line() -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok((read > 0).then(|| line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// A line read from the terminal with its echo off, after `prompt`. The echo goes off
/// before the prompt shows, so a line typed (or pasted) the moment it shows is not echoed.
fn unechoed(prompt: &str) -> anyhow::Result<Option<String>> {
    // SAFETY: termios calls on standard input with a struct they fill in.
    let mut terminal: libc::termios = unsafe { std::mem::zeroed() };
    let saved = unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut terminal) } == 0;
    if saved {
        let mut silent = terminal;
        silent.c_lflag &= !libc::ECHO;
        // SAFETY: as above, with a copy of the settings just read.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &silent) };
    }
    eprint!("{prompt}");
    let line = read_line();
    if saved {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &terminal) };
    }
    eprintln!();
    line
}
