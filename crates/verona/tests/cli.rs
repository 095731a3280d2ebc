//! The `verona` command line, run as a real process: the forms other tools rely on.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn verona(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_verona"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn write_config(dir: &Path, extra: &str) -> String {
    let path = dir.join("verona.toml");
    let data = dir.join("data");
    std::fs::write(
        &path,
        format!("domain = \"capulet.lit\"\ndata_dir = {data:?}\n{extra}"),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn user_management_with_config_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let c = config.as_str();

    let out = verona(
        &[
            "--config",
            c,
            "user",
            "add",
            "juliet@capulet.lit",
            "--password",
            "r0meo",
        ],
        None,
    );
    assert_eq!(stdout(&out).trim(), "created juliet@capulet.lit");
    // Password from standard input, config after the subcommand.
    let out = verona(
        &["user", "add", "Romeo@Capulet.lit", "--config", c],
        Some("j'adore\n"),
    );
    assert_eq!(stdout(&out).trim(), "created romeo@capulet.lit");
    let out = verona(&["user", "list", "--config", c], None);
    assert_eq!(stdout(&out), "juliet@capulet.lit\nromeo@capulet.lit\n");

    let out = verona(
        &[
            "--config",
            c,
            "user",
            "add",
            "juliet@capulet.lit",
            "--password",
            "x",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = verona(
        &[
            "--config",
            c,
            "user",
            "add",
            "paris@verona.lit",
            "--password",
            "x",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not hosted here"));

    let out = verona(
        &["user", "passwd", "juliet@capulet.lit", "--config", c],
        Some("balcony\n"),
    );
    assert_eq!(
        stdout(&out).trim(),
        "password changed for juliet@capulet.lit"
    );
    let out = verona(&["--config", c, "user", "del", "romeo@capulet.lit"], None);
    assert_eq!(stdout(&out).trim(), "deleted romeo@capulet.lit");
    let out = verona(&["--config", c, "user", "del", "romeo@capulet.lit"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = verona(&["--config", c, "user", "list"], None);
    assert_eq!(stdout(&out), "juliet@capulet.lit\n");
}

#[test]
fn unknown_config_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[c2s]\nlisten_on = []\n");
    let out = verona(&["--config", &config, "user", "list"], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen_on"), "{stderr}");
}

/// `serve` starts on the configured listeners, answers XMPP, and exits cleanly on SIGTERM.
#[test]
fn serve_runs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "[c2s]\nlisten = [\"127.0.0.1:{port}\"]\ndirect_tls_listen = []\nwebsocket_tls_listen = []\n"
        ),
    );
    let (mut guard, mut stream) = serve(&config, port);
    stream
        .write_all(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='capulet.lit' version='1.0'>")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("</stream:features>") {
        let n = std::io::Read::read(&mut stream, &mut buf).unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&received).contains("starttls"));
    assert!(
        dir.path().join("data/tls/cert.pem").exists(),
        "certificate generated"
    );

    let child = guard.0.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    // The start-up line says which build runs (operators' audit: nothing did).
    let started = log.lines().find(|line| line.contains("Verona is running"));
    let version = format!("version={}", env!("CARGO_PKG_VERSION"));
    assert!(started.is_some_and(|line| line.contains(&version)), "{log}");
    // The open stream was closed with a stream error and </stream:stream>.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("system-shutdown") && rest.ends_with("</stream:stream>"),
        "{rest}"
    );
}

/// `verona serve` with `config`, once it listens on `port`, and a connection to it.
fn serve(config: &str, port: u16) -> (KillOnDrop, std::net::TcpStream) {
    let child = Command::new(env!("CARGO_BIN_EXE_verona"))
        .args(["serve", "--config", config])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(Some(child));
    for _ in 0..100 {
        if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            return (guard, stream);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server does not listen");
}

/// A second `serve`, or `user add` or `user list`, from a newer build left the running
/// server's database as it is: they upgraded its schema before finding the server running, and
/// broke it (operators' audit). The running server is made an older build's by taking this
/// build's last migration off its database's record.
#[test]
fn the_database_of_a_running_server_is_not_upgraded_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "[c2s]\nlisten = [\"127.0.0.1:{port}\"]\ndirect_tls_listen = []\nwebsocket_tls_listen = []\n"
        ),
    );
    stdout(&verona(
        &[
            "--config",
            &config,
            "user",
            "add",
            "romeo@capulet.lit",
            "--password",
            "pw",
        ],
        None,
    ));
    let (_server, _stream) = serve(&config, port);
    let database = format!("sqlite://{}", dir.path().join("data/verona.db").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run = |sql: &'static str| {
        runtime.block_on(async {
            use sqlx::Connection;
            let mut db = sqlx::SqliteConnection::connect(&database).await.unwrap();
            let rows: Vec<i64> = sqlx::query_scalar(sql).fetch_all(&mut db).await.unwrap();
            db.close().await.unwrap();
            rows
        })
    };
    run(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations) RETURNING version",
    );
    let recorded = || run("SELECT version FROM _sqlx_migrations ORDER BY version");
    let older = recorded();
    for (args, refusal) in [
        (&["serve"][..], "another Verona server is running on"),
        (
            &["user", "add", "tybalt@capulet.lit", "--password", "pw"],
            "stop the running server first",
        ),
        (&["user", "list"], "stop the running server first"),
    ] {
        let output = verona(&[&["--config", &config][..], args].concat(), None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(refusal),
            "{args:?}: {stderr}"
        );
        assert_eq!(recorded(), older, "{args:?}");
    }
}

/// Ends the server if the test fails before stopping it itself.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// At a terminal, `user add` asks for the password twice, without showing it (as
/// `prosodyctl adduser` does), and two that differ create nothing. An account that exists
/// (`add`) or does not (`passwd`) is said before the password is asked for, not after it was
/// typed twice, and Ctrl-D at the first prompt gives up (operators' audit).
#[test]
fn a_password_typed_at_a_terminal_is_asked_twice_and_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let cases: [(&[&str], &[&str], bool, &str); 5] = [
        (
            &["add", "tybalt@capulet.lit"],
            &["sekrit\n", "sekrit\n"],
            true,
            "",
        ),
        (
            &["add", "mercutio@capulet.lit"],
            &["uno\n", "dos\n"],
            false,
            "the two passwords differ",
        ),
        (
            &["add", "tybalt@capulet.lit"],
            &[],
            false,
            "tybalt@capulet.lit already exists",
        ),
        (
            &["passwd", "benvolio@capulet.lit"],
            &[],
            false,
            "benvolio@capulet.lit does not exist",
        ),
        (
            &["add", "mercutio@capulet.lit"],
            &["\x04"],
            false,
            "no password given",
        ),
    ];
    for (command, typed, succeeds, said) in cases {
        let args = [&["--config", &config, "user"][..], command].concat();
        let Some((success, screen)) = at_terminal(&args, typed) else {
            eprintln!("no pseudo-terminal to be had here: the terminal test is skipped");
            return;
        };
        assert_eq!(success, succeeds, "{command:?}: {screen}");
        assert!(screen.contains(said), "{command:?}: {screen}");
        // Asked once for each line typed, and never again.
        let prompts = ["Password: ", "Again: "];
        for (n, prompt) in prompts.iter().enumerate() {
            assert_eq!(
                screen.contains(prompt),
                n < typed.len(),
                "{command:?}: {screen}"
            );
        }
        for line in typed {
            let line = line.trim();
            assert!(line.len() < 2 || !screen.contains(line), "shown: {screen}");
        }
    }
    let listed = stdout(&verona(&["--config", &config, "user", "list"], None));
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["tybalt@capulet.lit"]);
}

/// Runs `verona args` at a terminal, typing each of `typed` once the prompt for it shows:
/// whether it succeeded, and all the terminal showed. `None` without a pseudo-terminal.
fn at_terminal(args: &[&str], typed: &[&str]) -> Option<(bool, String)> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let (name, settings, size) = (std::ptr::null_mut(), std::ptr::null(), std::ptr::null());
    // SAFETY: openpty fills in two descriptors, which the files then own.
    if unsafe { libc::openpty(&mut master, &mut slave, name, settings, size) } != 0 {
        return None;
    }
    let (mut master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_verona"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(slave.try_clone().unwrap())
        .stdout(Stdio::piped())
        .stderr(slave)
        .spawn()
        .unwrap();
    // What the terminal shows, read as it comes (with a deadline, not a hang), until the
    // child, holding the terminal's last descriptor, exits.
    let (shown_tx, shown) = std::sync::mpsc::channel();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 256];
        while let Ok(n @ 1..) = reader.read(&mut buffer) {
            if shown_tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = String::new();
    for (prompt, line) in ["Password: ", "Again: "].into_iter().zip(typed) {
        while !screen.contains(prompt) {
            let bytes = shown.recv_timeout(Duration::from_secs(10)).unwrap();
            screen.push_str(&String::from_utf8_lossy(&bytes));
        }
        master.write_all(line.as_bytes()).unwrap();
    }
    loop {
        match shown.recv_timeout(Duration::from_secs(10)) {
            Ok(bytes) => screen.push_str(&String::from_utf8_lossy(&bytes)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            // Waiting for more than was typed: a failure, not a hang.
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                screen.push_str("[still waiting: killed]");
                child.kill().unwrap();
            }
        }
    }
    Some((child.wait().unwrap().success(), screen))
}

/// `verona user passwd` and `user del` beside a running server go through it, as
/// `prosodyctl` and `ejabberdctl` do, instead of asking for the server to be stopped: the
/// account's sessions end (`not-authorized`), the old password no longer logs in and the new
/// one does, a deleted account logs in no more. Anything else on the control socket is
/// refused and changes nothing.
#[tokio::test]
async fn passwd_and_del_go_through_a_running_server() {
    use common::process::{Process, add_users, login_at};
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), &["juliet", "romeo"]);
    let server = Process::start(dir.path()).await;
    let config = dir.path().join("verona.toml");
    let config = config.to_str().unwrap();
    let cert = dir.path().join("data/tls/cert.pem");
    let logs_in = async |user: &str, password: &str| {
        let mut c = common::Client::connect(server.addr).await;
        c.open().await;
        c.starttls(&cert).await;
        c.open().await;
        (c.auth_scram(verona_auth::ScramHash::Sha256, user, password)
            .await)
            .is_ok()
    };
    let mut juliet = login_at(server.addr, &cert, "juliet", "balcony").await;
    let mut romeo = login_at(server.addr, &cert, "romeo", "orchard").await;

    let out = verona(
        &["--config", config, "user", "passwd", "juliet@localhost"],
        Some("nurse\n"),
    );
    assert_eq!(stdout(&out), "password changed for juliet@localhost\n");
    assert_eq!(juliet.expect_stream_error().await, "not-authorized");
    assert!(!logs_in("juliet", "pw").await);
    assert!(logs_in("juliet", "nurse").await);

    // An unknown account is said before a password is asked for.
    let out = verona(
        &["--config", config, "user", "passwd", "tybalt@localhost"],
        Some("x\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("does not exist"),
        "{stderr}"
    );

    let out = verona(
        &["--config", config, "user", "del", "romeo@localhost"],
        None,
    );
    assert_eq!(stdout(&out), "deleted romeo@localhost\n");
    assert_eq!(romeo.expect_stream_error().await, "not-authorized");
    assert!(!logs_in("romeo", "pw").await);
    let out = verona(
        &["--config", config, "user", "del", "romeo@localhost"],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("does not exist"),
        "{stderr}"
    );
    let out = verona(&["--config", config, "user", "list"], None);
    assert_eq!(stdout(&out), "juliet@localhost\n");

    // Added beside the running server, an account logs in at once, even a name the server
    // had been asked for before it existed (it remembered "no such account" until a
    // restart).
    assert!(!logs_in("nurse", "pw").await);
    let out = verona(
        &["--config", config, "user", "add", "nurse@localhost"],
        Some("herbs\n"),
    );
    assert_eq!(stdout(&out), "created nurse@localhost\n");
    assert!(logs_in("nurse", "herbs").await);
    let out = verona(
        &[
            "--config",
            config,
            "user",
            "add",
            "nurse@localhost",
            "--password",
            "x",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("already exists"),
        "{stderr}"
    );

    // A password too long for the socket is refused before anything is sent, not cut.
    let long = "x".repeat(70_000);
    let out = verona(
        &[
            "--config",
            config,
            "user",
            "passwd",
            "nurse@localhost",
            "--password",
            &long,
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("too long"),
        "{stderr}"
    );
    assert!(logs_in("nurse", "herbs").await);

    let socket = dir.path().join("data").join(verona::control::SOCKET);
    // A connection that sends nothing holds up no other command (answered in turn, it held
    // up those below for 10 s).
    let _idle = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    for junk in [
        "drop juliet@localhost\n",
        "del\n",
        "passwd juliet@localhost ***\n",
    ] {
        let mut control = tokio::net::UnixStream::connect(&socket).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut control, junk.as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut control, &mut answer)
            .await
            .unwrap();
        assert_eq!(answer, "error not a command\n", "{junk:?}");
    }
    assert!(logs_in("juliet", "nurse").await);
    drop(server);
}
