//! Starting and stopping the server: storage, TLS, listeners, and the state all connections share.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;
use verona_storage::{AccountStore, OfflineStore, PubsubStore, SqliteStore};

use crate::accounts::Accounts;
use crate::c2s::{self, Listener};
use crate::config::Config;
use crate::eventing::caps::CapsCache;
use crate::host::{self, PubsubHandle};
use crate::router::Router;
use crate::slots::{Proof, Slots};
use crate::throttle::AuthThrottle;
use crate::tls;

/// How long shutdown waits for streams to close before it stops waiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// State shared by every connection.
pub struct Shared {
    pub config: Config,
    pub domain: String,
    pub accounts: Accounts,
    pub router: Arc<Router>,
    /// `pubsub.<domain>` and the accounts' PEP services.
    pub pubsub: PubsubHandle,
    /// The stored services, read directly for an account's archive (`mam`).
    pub archive: Arc<dyn PubsubStore>,
    /// XEP-0198 sessions that may be resumed.
    pub(crate) resumable: crate::c2s::Resumable,
    pub throttle: Arc<AuthThrottle>,
    /// Verified XEP-0115 capabilities, by hash.
    pub caps: CapsCache,
    pub starttls: TlsAcceptor,
    pub direct_tls: TlsAcceptor,
    pub websocket_tls: TlsAcceptor,
    /// Other servers, when `[s2s] listen` is set.
    pub federation: Option<Arc<crate::s2s::Federation>>,
    pub shutdown: watch::Receiver<bool>,
    /// Why the server stopped, when a part of it failed (see [`Supervisor`]).
    pub failure: watch::Receiver<Option<String>>,
    /// When the server started (XEP-0012: its uptime).
    pub started: std::time::Instant,
    /// The stream features streams are offered, serialized.
    pub features: crate::c2s::FeaturesCache,
}

/// Stops the server when a part that every client depends on fails (a panicking pubsub
/// shard), rather than leaving clients waiting for answers that never come: every stream is
/// closed with `internal-server-error` and [`RunningServer::failed`] resolves.
#[derive(Clone)]
pub struct Supervisor {
    shutdown: Arc<watch::Sender<bool>>,
    failure: Arc<watch::Sender<Option<String>>>,
}

/// What a long-lived task of the server holds: the shutdown signal, the supervisor to report
/// its failure to, and a token that keeps shutdown waiting until the task has finished.
#[derive(Clone)]
pub struct Lifecycle {
    pub shutdown: watch::Receiver<bool>,
    pub supervisor: Supervisor,
    pub alive: mpsc::Sender<()>,
}

impl Supervisor {
    pub fn fail(&self, reason: String) {
        tracing::error!("{reason}: stopping the server");
        // The reason first: streams closing on the shutdown signal read it.
        self.failure.send_replace(Some(reason));
        self.shutdown.send_replace(true);
    }
}

/// A server that is accepting connections.
pub struct RunningServer {
    shared: Arc<Shared>,
    c2s_addrs: Vec<SocketAddr>,
    direct_tls_addrs: Vec<SocketAddr>,
    websocket_addrs: Vec<SocketAddr>,
    websocket_tls_addrs: Vec<SocketAddr>,
    s2s_addrs: Vec<SocketAddr>,
    component_addrs: Vec<SocketAddr>,
    cert_path: PathBuf,
    certificate: Arc<crate::tls::Certificate>,
    supervisor: Supervisor,
    /// Held while the server runs.
    _lock: DataDirLock,
    /// Every connection and listener task holds a clone; all dropped = all finished.
    alive: mpsc::Sender<()>,
    finished: mpsc::Receiver<()>,
    /// The same for other servers' listeners and streams, which close after the clients'
    /// (see [`RunningServer::shutdown`]).
    federation_alive: mpsc::Sender<()>,
    federation_finished: mpsc::Receiver<()>,
    /// The services' shards stop when this is set, once the streams are closed.
    services_stop: watch::Sender<bool>,
    /// Every shard holds a sender; all dropped = all stopped, their last batches committed.
    services_finished: mpsc::Receiver<()>,
}

/// The data directory held by one process: a running server, or a command that changes
/// accounts behind its back. Released when dropped (or when the process dies).
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock (creating the directory); `None` if another process holds
/// it.
pub fn lock_data_dir(config: &Config) -> anyhow::Result<Option<DataDirLock>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join("verona.lock");
    let file =
        std::fs::File::create(&path).with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(DataDirLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Opens the store in the data directory (creating it), bringing its schema up to date: only
/// under the data directory's lock, or a running server (perhaps an older build) would find
/// its database changed under it.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<SqliteStore>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join("verona.db");
    // The data directory's `secret` is written at the first start, after the schema: an empty
    // database beside it (and no log holding its pages) was emptied since, and starting anew
    // would lose every account without a word (found by audit round 27).
    let empty = |path: &std::path::Path| std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
    let wal = config.data_dir.join("verona.db-wal");
    let no_log = !wal.exists() || empty(&wal);
    if empty(&path) && no_log && config.data_dir.join("secret").exists() {
        anyhow::bail!(
            "{} is empty, but this data directory has been used before: restore the database \
             from a backup (or, to start with no accounts, remove it and the directory's \
             `secret`)",
            path.display()
        );
    }
    // Created readable by the server's user only, like the TLS key; SQLite gives its journal
    // files the database's mode. An existing file keeps the mode its operator chose.
    let mut create = std::fs::OpenOptions::new();
    create.create(true).append(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    create
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let store = SqliteStore::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Opens the store of the server running on the data directory, as it is: refused unless its
/// schema is this build's (upgrading it would break that server).
pub async fn open_running_store(config: &Config) -> anyhow::Result<Arc<SqliteStore>> {
    let path = config.data_dir.join("verona.db");
    match SqliteStore::open_as_is(&path).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(verona_storage::StorageError::Schema(found)) => anyhow::bail!(
            "a Verona server of another version is running on {} ({found}): stop the running server first",
            config.data_dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
    }
}

/// The data directory's lock, or an error saying a server holds it.
fn lock_for_server(config: &Config) -> anyhow::Result<DataDirLock> {
    match lock_data_dir(config)? {
        Some(lock) => Ok(lock),
        None => anyhow::bail!(
            "another Verona server is running on {}",
            config.data_dir.display()
        ),
    }
}

/// The stores a server runs on: SQLite in the data directory ([`open_store`]), or any other
/// implementation of the storage traits (tests inject stores that fail on demand).
#[derive(Clone)]
pub struct Stores {
    pub accounts: Arc<dyn AccountStore>,
    pub pubsub: Arc<dyn PubsubStore>,
    pub offline: Arc<dyn OfflineStore>,
}

impl From<Arc<SqliteStore>> for Stores {
    fn from(store: Arc<SqliteStore>) -> Self {
        Stores {
            accounts: store.clone(),
            pubsub: store.clone(),
            offline: store,
        }
    }
}

impl RunningServer {
    /// Opens storage in the data directory, then [`RunningServer::start_with_stores`].
    /// The lock comes first: a second server must not upgrade the database under the first.
    pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
        let lock = lock_for_server(&config)?;
        let store = open_store(&config).await?;
        Self::start_locked(config, Stores::from(store), lock).await
    }

    /// Loads or generates the certificate, binds every listener and starts accepting, on the
    /// given stores. Listening on port 0 picks free ports; see [`RunningServer::c2s_addrs`].
    pub async fn start_with_stores(
        config: Config,
        stores: Stores,
    ) -> anyhow::Result<RunningServer> {
        let lock = lock_for_server(&config)?;
        Self::start_locked(config, stores, lock).await
    }

    async fn start_locked(
        config: Config,
        stores: Stores,
        lock: DataDirLock,
    ) -> anyhow::Result<RunningServer> {
        let tls = tls::load(&config)?;
        let domain = config.normalized_domain();
        let secret = server_secret(&config.data_dir)?;
        let accounts = Accounts::new(
            stores.accounts.clone(),
            domain.clone(),
            config.auth.scram_iterations,
        )
        .with_secret(&secret);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (failure_tx, failure_rx) = watch::channel(None);
        let supervisor = Supervisor {
            shutdown: Arc::new(shutdown_tx),
            failure: Arc::new(failure_tx),
        };
        let (alive, finished) = mpsc::channel(1);
        let (federation_alive, federation_finished) = mpsc::channel(1);
        let router = Arc::new(Router::default());
        router.expect_components(config.components.secrets.keys().cloned());
        // The services stop after the streams: what a stream hands them as it ends (the
        // messages its session did not deliver, for offline storage) is still taken.
        let (services_stop, services_stopped) = watch::channel(false);
        let (services_alive, services_finished) = mpsc::channel(1);
        let lifecycle = Lifecycle {
            shutdown: services_stopped,
            supervisor: supervisor.clone(),
            alive: services_alive,
        };
        let archive = stores.pubsub.clone();
        let pubsub = start_services(&config, stores, router.clone(), lifecycle).await?;
        let throttle = Arc::new(
            AuthThrottle::new(
                config.auth.failures_before_delay,
                Duration::from_secs(config.auth.failure_window_secs),
                config.limits.unauthenticated_per_address,
                config.limits.connections_per_address,
                config.registration.per_address_per_hour,
            )
            .with_connection_rate(
                config.limits.new_connections_per_minute,
                config.limits.new_connections_burst,
            )
            .with_server_connections(config.limits.server_connections_per_address)
            .with_verification_rate(config.limits.server_verifications_per_minute),
        );
        let c2s_listeners = bind_listeners(&config)?;
        let identity = tls.certificate.clone();
        let federation = crate::s2s::Federation::new(&config, &router, identity)?;
        let mut s2s_listeners = Vec::new();
        for addr in &config.s2s.listen {
            s2s_listeners.push(bind(*addr, &config)?);
        }
        let mut component_listeners = Vec::new();
        for addr in &config.components.listen {
            component_listeners.push(bind(*addr, &config)?);
        }
        let shared = Arc::new(Shared {
            domain,
            accounts,
            router,
            pubsub,
            archive,
            resumable: Default::default(),
            throttle,
            caps: CapsCache::default(),
            starttls: TlsAcceptor::from(tls.starttls),
            direct_tls: TlsAcceptor::from(tls.direct),
            websocket_tls: TlsAcceptor::from(tls.websocket),
            federation: federation.clone(),
            shutdown: shutdown_rx,
            failure: failure_rx,
            started: std::time::Instant::now(),
            features: Default::default(),
            config,
        });
        let mut server = RunningServer {
            shared: shared.clone(),
            c2s_addrs: Vec::new(),
            direct_tls_addrs: Vec::new(),
            websocket_addrs: Vec::new(),
            websocket_tls_addrs: Vec::new(),
            s2s_addrs: Vec::new(),
            component_addrs: Vec::new(),
            cert_path: tls.cert_path,
            certificate: tls.certificate,
            supervisor,
            _lock: lock,
            alive: alive.clone(),
            finished,
            federation_alive: federation_alive.clone(),
            federation_finished,
            services_stop,
            services_finished,
        };
        for (socket, listener) in c2s_listeners {
            let addr = socket.local_addr()?;
            match listener {
                Listener::Starttls => server.c2s_addrs.push(addr),
                Listener::DirectTls => server.direct_tls_addrs.push(addr),
                Listener::WebSocket => server.websocket_addrs.push(addr),
                Listener::WebSocketTls => server.websocket_tls_addrs.push(addr),
            }
            tracing::info!(%addr, ?listener, "listening for clients");
            tokio::spawn(accept_loop(shared.clone(), socket, listener, alive.clone()));
        }
        let (bounces, mut bounced) = tokio::sync::mpsc::channel(256);
        (shared.router).bounce_rooms_to(shared.pubsub.rooms_jid().to_owned(), bounces);
        // Weak: the router holding the sender is the server's; this must not keep it.
        let rooms = Arc::downgrade(&shared);
        let mut shutdown = shared.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let error = tokio::select! {
                    error = bounced.recv() => error,
                    _ = shutdown.changed() => None,
                };
                let (Some(error), Some(shared)) = (error, rooms.upgrade()) else {
                    break;
                };
                let from = error.attr("from").and_then(|f| jid::Jid::new(f).ok());
                if let Some(from) = from {
                    shared.pubsub.room_error(from, error).await;
                }
            }
        });
        if let Some(federation) = federation {
            for listener in s2s_listeners {
                let addr = listener.local_addr()?;
                server.s2s_addrs.push(addr);
                tracing::info!(%addr, "listening for servers");
                let closing = federation.closing();
                let federation = federation.clone();
                let slots = shared.config.s2s.max_incoming;
                let serve = move |shared, tcp, peer, proof| {
                    crate::s2s::serve(shared, federation.clone(), tcp, peer, proof)
                };
                let accepting = accept_bounded(
                    shared.clone(),
                    listener,
                    (closing, federation_alive.clone()),
                    slots,
                    "s2s-in",
                    serve,
                );
                tokio::spawn(accepting);
            }
        }
        if let Some((listener, path)) = crate::control::bind(&shared.config.data_dir) {
            tokio::spawn(crate::control::serve(
                shared.clone(),
                listener,
                path,
                alive.clone(),
            ));
        }
        for listener in component_listeners {
            let addr = listener.local_addr()?;
            server.component_addrs.push(addr);
            tracing::info!(%addr, "listening for components");
            // Connections still in their handshake or connected, at most.
            const MAX_COMPONENT_CONNECTIONS: usize = 64;
            tokio::spawn(accept_bounded(
                shared.clone(),
                listener,
                (shared.shutdown.clone(), alive.clone()),
                MAX_COMPONENT_CONNECTIONS,
                "component",
                crate::component::serve,
            ));
        }
        Ok(server)
    }

    /// Addresses of the listeners for XEP-0114 components.
    pub fn component_addrs(&self) -> &[SocketAddr] {
        &self.component_addrs
    }

    /// Addresses of the listeners for other servers.
    pub fn s2s_addrs(&self) -> &[SocketAddr] {
        &self.s2s_addrs
    }

    /// Addresses of the STARTTLS listeners.
    pub fn c2s_addrs(&self) -> &[SocketAddr] {
        &self.c2s_addrs
    }

    /// Addresses of the direct TLS listeners.
    pub fn direct_tls_addrs(&self) -> &[SocketAddr] {
        &self.direct_tls_addrs
    }

    /// Addresses of the WebSocket listeners on plain HTTP.
    pub fn websocket_addrs(&self) -> &[SocketAddr] {
        &self.websocket_addrs
    }

    /// Addresses of the WebSocket listeners on HTTPS.
    pub fn websocket_tls_addrs(&self) -> &[SocketAddr] {
        &self.websocket_tls_addrs
    }

    /// The certificate served, for clients that need to trust it.
    pub fn cert_path(&self) -> &std::path::Path {
        &self.cert_path
    }

    /// Reads the certificate and key files again (SIGHUP), on a thread of its own (a path
    /// that blocks holds nothing else up), and logs what came of it: new connections get
    /// what they hold now; on an error the certificate in use stays.
    pub fn reload_certificate(&self) {
        let (certificate, path) = (self.certificate.clone(), self.cert_path.clone());
        tokio::task::spawn_blocking(move || match certificate.reload() {
            Ok(()) => tracing::info!(cert = %path.display(), "certificate reloaded"),
            Err(e) => tracing::error!("reloading the certificate: {e:#}; the one in use stays"),
        });
    }

    pub fn domain(&self) -> &str {
        &self.shared.domain
    }

    pub fn accounts(&self) -> &Accounts {
        &self.shared.accounts
    }

    /// Resolves when a part of the server failed and the server stopped serving (see
    /// [`Supervisor`]), with the reason; never while it runs well.
    pub async fn failed(&self) -> String {
        let mut failure = self.shared.failure.clone();
        match failure.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    /// Closes the clients' and components' streams (`system-shutdown`) and waits for them;
    /// waits for the services to have sent on what the sessions' ends left them (their
    /// unavailable presence, to other servers' contacts too); lets the streams to other
    /// servers write it and closes them, then the streams from other servers; then stops the
    /// services and waits for their last commits, then closes storage.
    pub async fn shutdown(self) {
        let RunningServer {
            shared,
            supervisor,
            alive,
            mut finished,
            federation_alive,
            mut federation_finished,
            services_stop,
            mut services_finished,
            ..
        } = self;
        supervisor.shutdown.send_replace(true);
        drop(alive);
        if tokio::time::timeout(SHUTDOWN_GRACE, finished.recv())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close in time");
        }
        crate::c2s::Resumable::end_all_parked(&shared).await;
        if let Some(federation) = &shared.federation {
            if tokio::time::timeout(SHUTDOWN_GRACE, shared.pubsub.drained())
                .await
                .is_err()
            {
                tracing::warn!("the services did not hand on the sessions' ends in time");
            }
            // Bounded within: a stream that cannot write in time is given up.
            federation.stop().await;
        }
        drop(federation_alive);
        if tokio::time::timeout(SHUTDOWN_GRACE, federation_finished.recv())
            .await
            .is_err()
        {
            tracing::warn!("some server connections did not close in time");
        }
        services_stop.send_replace(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, services_finished.recv())
            .await
            .is_err()
        {
            tracing::warn!("some services did not stop in time");
        }
        shared.accounts.store().close().await;
        tracing::info!("shut down");
    }
}

/// The server's secret: 32 random bytes made at the first start and kept in the data
/// directory (readable by the server's user only), from which it derives identifiers that
/// must stay the same across restarts and reveal nothing (XEP-0421 occupant ids).
pub fn server_secret(data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    const BYTES: usize = 32;
    let path = data_dir.join("secret");
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    match create.open(&path) {
        Ok(mut file) => {
            let mut secret = vec![0u8; BYTES];
            getrandom::fill(&mut secret).expect("the OS random source works");
            std::io::Write::write_all(&mut file, &secret)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let secret =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if secret.len() < BYTES {
                anyhow::bail!(
                    "{} holds {} bytes, not {BYTES}: restore it from a backup, or remove it \
                     (occupant ids in rooms will change)",
                    path.display(),
                    secret.len()
                );
            }
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// `pubsub.<domain>` and the accounts' PEP services, as configured.
async fn start_services(
    config: &Config,
    stores: Stores,
    router: Arc<Router>,
    lifecycle: Lifecycle,
) -> anyhow::Result<PubsubHandle> {
    host::start(
        host::Addresses {
            server: config.domain.clone(),
            domain: config.pubsub_jid(),
            rooms: config.rooms_jid(),
        },
        host::Configs {
            domain: config.pubsub_service(),
            rooms: crate::eventing::groupchat::rooms_config(
                config.rooms_limits(),
                jid::BareJid::new(&config.rooms_jid())?,
            ),
            pep_limits: config.pep_limits(),
            max_blocklist: config.limits.max_blocklist,
            max_rooms_per_session: config.limits.max_rooms_per_session,
            offline: host::OfflineBounds {
                messages: config.limits.max_offline_messages,
                bytes: config.limits.max_offline_bytes,
                share_percent: config.limits.offline_share_percent,
            },
            archive_bytes: config.limits.conversation_archive_bytes,
            occupant_ids: crate::eventing::groupchat::OccupantIds::new(&server_secret(
                &config.data_dir,
            )?),
        },
        host::Hosting {
            shards: config.pubsub_shards(),
            resident_services: config.limits.resident_services,
            queue_bytes: config.limits.pubsub_queue_bytes,
            account_bytes: config.limits.pubsub_account_bytes,
            account_requests: config.limits.pubsub_account_requests,
            account_read_per_sec: config.limits.account_read_bytes_per_sec,
            account_read_burst: config.limits.account_read_burst_bytes,
            domain_read_per_sec: config.s2s.read_bytes_per_sec,
            domain_read_burst: config.s2s.read_burst_bytes,
            kept_per_minute: config.limits.kept_messages_per_minute,
            kept_burst: config.limits.kept_messages_burst,
            presence_per_minute: config.limits.presence_per_minute,
            presence_burst: config.limits.presence_burst,
            broadcast_per_sec: config.limits.broadcast_bytes_per_sec,
            broadcast_burst: config.limits.broadcast_burst_bytes,
            remote_conversations_per_minute: config.limits.remote_conversations_per_minute,
            remote_conversations_burst: config
                .limits
                .remote_conversations_per_minute
                .saturating_mul(crate::config::REMOTE_CONVERSATIONS_BURST),
        },
        stores,
        router,
        lifecycle,
    )
    .await
}

/// Every client listener, and what it speaks.
fn bind_listeners(config: &Config) -> anyhow::Result<Vec<(TcpListener, Listener)>> {
    let c2s = &config.c2s;
    let kinds = [
        (&c2s.listen, Listener::Starttls),
        (&c2s.direct_tls_listen, Listener::DirectTls),
        (&c2s.websocket_listen, Listener::WebSocket),
        (&c2s.websocket_tls_listen, Listener::WebSocketTls),
    ];
    let mut listeners = Vec::new();
    for (addrs, kind) in kinds {
        for addr in addrs {
            listeners.push((bind(*addr, config)?, kind));
        }
    }
    Ok(listeners)
}

fn bind(addr: SocketAddr, config: &Config) -> anyhow::Result<TcpListener> {
    listen(addr, config).with_context(|| format!("listening on {addr}"))
}

/// A listener on `addr`, as [`TcpListener::bind`] makes it. An IPv6 address that the
/// configuration pairs with an IPv4 one on the same port (`0.0.0.0:P` and `[::]:P`) takes IPv6
/// alone (`IPV6_V6ONLY`): Linux lets `[::]` take IPv4 too by default, and the second of the
/// pair failed with "Address already in use". Alone, `[::]:P` keeps taking both.
fn listen(addr: SocketAddr, config: &Config) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let c2s = &config.c2s;
    let every = [
        &c2s.listen,
        &c2s.direct_tls_listen,
        &c2s.websocket_listen,
        &c2s.websocket_tls_listen,
        &config.s2s.listen,
        &config.components.listen,
    ];
    // Port 0 picks a free port for each listener: those never collide.
    let paired = addr.port() != 0
        && every
            .into_iter()
            .flatten()
            .any(|other| other.is_ipv4() && other.port() == addr.port());
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() && paired {
        socket.set_only_v6(true)?;
    }
    // As TcpListener::bind: a restarted server binds while the last one's connections linger.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// `peer` with an IPv4-mapped address (`::ffff:a.b.c.d`, how a `[::]` listener sees IPv4
/// clients) made the IPv4 address it is: the per-address limits count, and `trusted_proxies`
/// match, the client's own address, not the /64 every IPv4 client shares.
fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

async fn accept_loop(
    shared: Arc<Shared>,
    socket: TcpListener,
    listener: Listener,
    alive: mpsc::Sender<()>,
) {
    static CONNECTION_ID: AtomicU64 = AtomicU64::new(1);
    let mut shutdown = shared.shutdown.clone();
    let mut failing = FailingAccepts::default();
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let peer = canonical(peer);
                    let _ = tcp.set_nodelay(true);
                    let send_buffer = shared.config.c2s.send_buffer_bytes;
                    if send_buffer > 0 {
                        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(send_buffer);
                    }
                    let id = CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
                    // `client`: the one a trusted proxy forwards for, once its request names it.
                    let span = tracing::info_span!(
                        "c2s",
                        conn = id,
                        %peer,
                        client = tracing::field::Empty
                    );
                    let alive = alive.clone();
                    let shared = shared.clone();
                    tokio::spawn(
                        async move {
                            c2s::serve(shared, tcp, peer, listener).await;
                            drop(alive);
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    failing.failed(&e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Failed accepts (out of file descriptors, say) logged at most once per
/// [`FailingAccepts::EVERY`], with how many failed since: each was a line, 35 a second while
/// a flood held every descriptor.
#[derive(Default)]
struct FailingAccepts {
    since: u64,
    logged: Option<tokio::time::Instant>,
}

impl FailingAccepts {
    const EVERY: Duration = Duration::from_secs(10);

    fn failed(&mut self, error: &std::io::Error) {
        self.since += 1;
        let now = tokio::time::Instant::now();
        if self.logged.is_none_or(|at| now >= at + Self::EVERY) {
            tracing::warn!(failed = self.since, "accepting connections failed: {error}");
            self.since = 0;
            self.logged = Some(now);
        }
    }
}

/// Accepts connections of one kind, at most `slots` at once and the throttle's share per
/// address (more are closed as they arrive), each served by `serve` in a task of its own,
/// until `stop` is set; the listener and each connection hold `alive`.
async fn accept_bounded<F, Fut>(
    shared: Arc<Shared>,
    listener: TcpListener,
    (mut stop, alive): (watch::Receiver<bool>, mpsc::Sender<()>),
    slots: usize,
    kind: &'static str,
    serve: F,
) where
    F: Fn(Arc<Shared>, tokio::net::TcpStream, SocketAddr, Proof) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    static CONNECTION_ID: AtomicU64 = AtomicU64::new(1);
    let slots = Slots::new(slots);
    let serve = Arc::new(serve);
    let mut failing = FailingAccepts::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let peer = canonical(peer);
                    let admission = match shared.throttle.admit_server(peer.ip()) {
                        Ok(admission) => admission,
                        Err(limit) => {
                            tracing::warn!(%peer, kind, limit, "too many connections from this address; refused");
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let id = CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
                    let span = tracing::info_span!("conn", kind, conn = id, %peer);
                    let serve = serve.clone();
                    let (shared, alive) = (shared.clone(), alive.clone());
                    // Taken here, in the order connections come; waiting for a slot given up
                    // (`slots.rs`) is the connection's task's.
                    let taking = slots.take();
                    tokio::spawn(
                        async move {
                            let Some(mut slot) = taking.await else {
                                tracing::warn!("too many connections of this kind; refused");
                                return;
                            };
                            let served = serve(shared, tcp, peer, slot.proof());
                            tokio::select! {
                                () = served => {}
                                () = slot.evicted() => {
                                    tracing::info!("ended unproved: its slot went to a newer connection");
                                }
                            }
                            drop((slot, admission, alive));
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    failing.failed(&e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::server_secret;

    #[test]
    fn the_server_secret_is_made_once_kept_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = server_secret(&data).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(
            server_secret(&data).unwrap(),
            first,
            "read back, not made anew"
        );
        let file = data.join("secret");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&file, b"short").unwrap();
        let refused = server_secret(&data).unwrap_err().to_string();
        assert!(refused.contains("holds 5 bytes"), "{refused}");
    }
}
