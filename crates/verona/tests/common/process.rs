//! A `verona` process of its own, for what only a real process shows: `kill -9` with nothing
//! flushed, and the `verona` command's account administration.

use super::Client;

/// A `verona serve` process on a free port over the given data directory.
pub struct Process {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl Process {
    pub async fn start(dir: &std::path::Path) -> Process {
        Process::start_with(dir, "").await
    }

    /// With `extra` configuration lines appended (TOML tables).
    pub async fn start_with(dir: &std::path::Path, extra: &str) -> Process {
        let port = super::free_port();
        let config = dir.join("verona.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\n[c2s]\nlisten = [\"127.0.0.1:{port}\"]\ndirect_tls_listen = []\nwebsocket_tls_listen = []\n[log]\nfilter = \"warn\"\n{extra}",
                dir.join("data")
            ),
        )
        .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_verona"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // From here on, Drop ends the process even if the test fails.
        let process = Process {
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(process.addr).await.is_ok() {
                return process;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("verona did not start");
    }

    pub async fn login(&self, dir: &std::path::Path, user: &str, resource: &str) -> Client {
        login_at(self.addr, &dir.join("data/tls/cert.pem"), user, resource).await
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill_9(self) {
        drop(self);
    }
}

pub async fn login_at(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
    user: &str,
    resource: &str,
) -> Client {
    let mut c = Client::connect(addr).await;
    c.open().await;
    c.starttls(cert).await;
    c.open().await;
    c.auth_scram(verona_auth::ScramHash::Sha256, user, "pw")
        .await
        .unwrap();
    c.open().await;
    c.bind(Some(resource)).await;
    c
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Accounts with password `pw`, added with the `verona` command.
pub fn add_users(dir: &std::path::Path, users: &[&str]) {
    let config = dir.join("verona.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", dir.join("data"))).unwrap();
    for user in users {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_verona"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "user",
                "add",
                &format!("{user}@localhost"),
                "--password",
                "pw",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
}
