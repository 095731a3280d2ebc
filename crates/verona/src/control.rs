//! The operator's way in while the server runs. `verona user add`, `del` and `passwd` find
//! the data directory locked by the server and send their command to it over a Unix socket
//! in that directory, which only the server's own user (or root) may use. A running server
//! holds what these commands change (sessions, resident services, remembered credentials:
//! an account added behind its back stayed unknown to it until a restart), so they go
//! through the code the account's own XEP-0077 requests take.
//!
//! One request per connection, one line each way: `add JID PASSWORD`, `del JID` or
//! `passwd JID PASSWORD`, the password in base64 (it may hold spaces); the answer is
//! `ok TEXT` or `error TEXT`. Commands run one at a time, each to its end, whatever becomes
//! of the connection that asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, Semaphore, mpsc};

use crate::accounts::AccountError;
use crate::router::CloseReason;
use crate::server::Shared;

/// The socket's name in the data directory.
pub const SOCKET: &str = "control.sock";
/// A request is a JID and a password: far below this (a password that would pass it is
/// refused by the command before anything is sent).
const MAX_REQUEST: usize = 64 * 1024;
/// How long a client has to connect and send its request, and the server to write its
/// answer.
const EXCHANGE_TIME: Duration = Duration::from_secs(10);
/// Connections being read or answered at once; more wait to be accepted.
const CONNECTIONS: usize = 8;

/// What the command line asks of a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Add { jid: String, password: String },
    Delete { jid: String },
    Password { jid: String, password: String },
}

impl Command {
    fn encode(&self) -> String {
        match self {
            Command::Add { jid, password } => format!("add {jid} {}\n", BASE64.encode(password)),
            Command::Delete { jid } => format!("del {jid}\n"),
            Command::Password { jid, password } => {
                format!("passwd {jid} {}\n", BASE64.encode(password))
            }
        }
    }

    /// A whole line: one cut short by the size bound is no command.
    fn decode(line: &str) -> Option<Command> {
        let mut words = line.strip_suffix('\n')?.split(' ');
        let password = |text: &str| String::from_utf8(BASE64.decode(text).ok()?).ok();
        let command = match (words.next()?, words.next()?, words.next()) {
            ("add", jid, Some(text)) => Command::Add {
                jid: jid.to_owned(),
                password: password(text)?,
            },
            ("del", jid, None) => Command::Delete {
                jid: jid.to_owned(),
            },
            ("passwd", jid, Some(text)) => Command::Password {
                jid: jid.to_owned(),
                password: password(text)?,
            },
            _ => return None,
        };
        words.next().is_none().then_some(command)
    }
}

/// Sends `command` to the server running on `data_dir`; its answer's text when it succeeded.
/// Waits as long as the command takes (deleting an account with a large archive takes a
/// while); Ctrl-C gives up waiting, not the command.
pub async fn send(data_dir: &Path, command: &Command) -> anyhow::Result<String> {
    let path = data_dir.join(SOCKET);
    let request = command.encode();
    if request.len() > MAX_REQUEST {
        anyhow::bail!("the password is too long");
    }
    let connect = tokio::time::timeout(EXCHANGE_TIME, UnixStream::connect(&path));
    let mut stream = match connect.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => anyhow::bail!(
            "a Verona server is running on {} but does not answer on {} ({e}): stop it first",
            data_dir.display(),
            path.display()
        ),
        Err(_) => anyhow::bail!("the running server did not take the command in time"),
    };
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_REQUEST as u64))
        .read_line(&mut answer)
        .await?;
    let answer = answer.trim_end();
    match answer.split_once(' ') {
        Some(("ok", text)) => Ok(text.to_owned()),
        Some(("error", text)) => anyhow::bail!("{text}"),
        _ if answer.is_empty() => {
            anyhow::bail!("the running server closed the connection without answering: see its log")
        }
        _ => anyhow::bail!("the running server answered {answer:?}"),
    }
}

/// Binds the socket in the data directory, readable and writable by the server's user only.
/// The server holds the directory's lock, so a socket file already there is a dead server's.
/// `None` (logged) when it cannot be bound: the server runs without it.
pub(crate) fn bind(data_dir: &Path) -> Option<(UnixListener, PathBuf)> {
    let path = data_dir.join(SOCKET);
    let bound = (|| {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        // Other users are refused by their uid in the moment before this too ([`answer`]).
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok(listener)
    })();
    match bound {
        Ok(listener) => Some((listener, path)),
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                "cannot listen for `verona user add`, `del` and `passwd` ({e}): they will ask for the server to be stopped"
            );
            None
        }
    }
}

/// Reads and answers commands until shutdown, then removes the socket. Each connection has
/// its own task (one that sends nothing holds up no other); the commands themselves run one
/// at a time, each to its end.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: UnixListener,
    path: PathBuf,
    alive: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.clone();
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    let one_at_a_time = Arc::new(Mutex::new(()));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            _ = shutdown.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (shared, turn, alive) =
                        (shared.clone(), one_at_a_time.clone(), alive.clone());
                    tokio::spawn(async move {
                        answer(&shared, stream, &turn).await;
                        drop((slot, alive));
                    });
                }
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    let _ = std::fs::remove_file(&path);
    drop(alive);
}

async fn answer(shared: &Shared, mut stream: UnixStream, one_at_a_time: &Mutex<()>) {
    // The socket's mode already keeps other users out; the peer's user is checked too, in
    // case the operator loosened the directory's or the socket's permissions.
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
    match stream.peer_cred() {
        Ok(peer) if peer.uid() == own || peer.uid() == 0 => {}
        Ok(peer) => {
            tracing::warn!(uid = peer.uid(), "control socket: refused another user");
            return;
        }
        Err(e) => {
            tracing::warn!("control socket: the peer's user is unknown ({e}); refused");
            return;
        }
    }
    let mut line = String::new();
    let read = tokio::time::timeout(
        EXCHANGE_TIME,
        BufReader::new((&mut stream).take(MAX_REQUEST as u64)).read_line(&mut line),
    )
    .await;
    let reply = match read {
        Ok(Ok(_)) => match Command::decode(&line) {
            Some(command) => {
                // To its end even if the asker goes: a deletion stopped halfway left the
                // shards refusing the name until a restart.
                let _turn = one_at_a_time.lock().await;
                match perform(shared, command).await {
                    Ok(text) => format!("ok {text}\n"),
                    Err(text) => format!("error {text}\n"),
                }
            }
            None => "error not a command\n".to_owned(),
        },
        Ok(Err(_)) | Err(_) => return,
    };
    let _ = tokio::time::timeout(EXCHANGE_TIME, stream.write_all(reply.as_bytes())).await;
}

async fn perform(shared: &Shared, command: Command) -> Result<String, String> {
    let accounts = &shared.accounts;
    let (Command::Add { jid, .. } | Command::Delete { jid } | Command::Password { jid, .. }) =
        &command;
    let jid = accounts.parse_jid(jid).map_err(|e| e.to_string())?;
    if let Command::Add { password, .. } = &command {
        accounts
            .create(&jid, password)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(%jid, "account created by the operator");
        return Ok(format!("created {jid}"));
    }
    match accounts.credentials(&jid).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(AccountError::NotFound(jid.to_string()).to_string()),
        Err(e) => return Err(e.to_string()),
    }
    if let Command::Password { password, .. } = &command {
        accounts
            .set_password(&jid, password)
            .await
            .map_err(|e| e.to_string())?;
        // Whoever knew the old password is out (issue #11 H3).
        shared
            .router
            .close_account(&jid, CloseReason::AccountChanged);
        tracing::info!(%jid, "password changed by the operator");
        return Ok(format!("password changed for {jid}"));
    }
    crate::iq::remove_account(shared, &jid)
        .await
        .map_err(|_| format!("deleting {jid} failed; see the server's log"))?;
    shared
        .router
        .close_account(&jid, CloseReason::AccountDeleted);
    tracing::info!(%jid, "account deleted by the operator");
    Ok(format!("deleted {jid}"))
}

#[cfg(test)]
mod tests {
    use super::Command;

    #[test]
    fn commands_survive_their_encoding() {
        let commands = [
            Command::Add {
                jid: "nurse@capulet.lit".into(),
                password: "pw".into(),
            },
            Command::Delete {
                jid: "juliet@capulet.lit".into(),
            },
            Command::Password {
                jid: "romeo@montague.lit".into(),
                password: "j@dore toi\tet ton nom ☀".into(),
            },
            Command::Password {
                jid: "romeo@montague.lit".into(),
                password: String::new(),
            },
        ];
        for command in commands {
            assert_eq!(Command::decode(&command.encode()), Some(command));
        }
    }

    #[test]
    fn anything_else_is_not_a_command() {
        for line in [
            "",
            "\n",
            "del\n",
            "del a@b c\n",
            "del a@b",
            "passwd a@b\n",
            "passwd a@b !!notbase64\n",
            "passwd a@b cHc= extra\n",
            // Cut short by the size bound: no newline.
            "passwd a@b cHc=",
            "add a@b\n",
            "drop a@b\n",
            "del  a@b\n",
        ] {
            assert_eq!(Command::decode(line), None, "{line:?}");
        }
    }
}
