//! slixmpp, a Python XMPP library many bots and clients are built on, as a user's client
//! against a real Verona: a subscription both ways, chat with carbons, the archive and
//! offline storage, a room, PEP, blocking, and stream management acknowledging all of it
//! (`tests/slixmpp/client.py`, which checks each step with slixmpp's own parsing). `.ci/run`
//! installs slixmpp; without it the test says so and passes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{JULIET_PASSWORD, ROMEO, TestServer};

/// The checks the script makes, each of which must say "ok".
const CHECKS: &[&str] = &[
    "roster: subscribed both ways",
    "chat: delivered from the sender's full JID",
    "chat: stanza-id by the account",
    "carbons: a received copy",
    "carbons: a sent copy",
    "mam: the conversation in order",
    "chat: ten lines to a new resource",
    "offline: both, in order, delayed",
    "muc: a message from the speaker's nick",
    "muc: reflected to the speaker",
    "muc: history for a late joiner, delayed",
    "muc: the occupant list",
    "muc: a private message from the occupant",
    "muc: the room's archive",
    "pep: a mood notification",
    "blocking: the list",
    "blocking: nothing arrives",
    "sm: juliet@localhost/balcony still connected",
    "sm: juliet@localhost/garden still connected",
    "sm: romeo@localhost/orchard still connected",
    "sm: romeo@localhost/tablet still connected",
    "sm: nurse@localhost/chamber still connected",
];

fn slixmpp_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import slixmpp"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn slixmpp_chats_archives_joins_a_room_and_acknowledges() {
    if !slixmpp_installed() {
        eprintln!("slixmpp is not installed (.ci/run installs it): skipped");
        return;
    }
    let server = TestServer::start().await;
    // One password for all three, as the script takes one.
    server
        .create_account("nurse@localhost", JULIET_PASSWORD)
        .await;
    let romeo = server.server.accounts().parse_jid(ROMEO).unwrap();
    server
        .server
        .accounts()
        .set_password(&romeo, JULIET_PASSWORD)
        .await
        .expect("romeo's password");
    let port = server.server.c2s_addrs()[0].port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slixmpp/client.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(JULIET_PASSWORD)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let passed: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("ok "))
        .collect();
    assert!(
        out.status.success() && passed == CHECKS,
        "slixmpp's checks: {}\n{stdout}\n{stderr}",
        out.status
    );
    server.shutdown().await;
}
