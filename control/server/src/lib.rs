//! Outpost control service: SQLite state, the admin HTTP API and the QUIC (mutual TLS) service that pushes snapshots (and KV invalidations) to edge nodes and answers their KV requests.
//!
//! A data directory holds everything: `control.db` (SQLite, WAL), `bundles/<sha256>`,
//! the CA (`ca.pem`, `ca.key.pem`) and control's QUIC certificate (`control.pem`,
//! `control.key.pem`). [`init`] creates it, [`start`] serves it.

mod api;
mod credentials;
mod error;
mod names;
mod pki;
mod push;
mod release;
mod route_order;
mod store;

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::ControlError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;
use tracing::warn;

use crate::pki::Ca;
use crate::store::Store;

/// The `tracing` target of every control log line.
pub const LOG_TARGET: &str = "outpost::control";

/// Default admin API listen address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7070";

/// Default QUIC listen address.
pub const DEFAULT_QUIC_LISTEN: &str = "127.0.0.1:7071";

/// How long [`RunningControl::shutdown`] waits for in-flight work.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often expired KV entries are removed from the database (they are never returned
/// in between: every read filters them).
const KV_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// What [`init`] hands out once: neither token can be shown again.
#[derive(Clone)]
pub struct InitInfo {
    /// The admin API bearer token (only its SHA-256 is stored).
    pub admin_token: String,
    /// A one-time join token for the first node.
    pub join_token: String,
}

impl fmt::Debug for InitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitInfo")
            .field("admin_token", &"<redacted>")
            .field("join_token", &"<redacted>")
            .finish()
    }
}

/// Creates a data directory: database, CA, control's QUIC certificate, admin token and a
/// first join token. Refuses a directory that already holds a database.
pub fn init(data_dir: &Path) -> Result<InitInfo, ControlError> {
    if data_dir.join(store::DB_FILE).exists() {
        return Err(ControlError::AlreadyInitialized(data_dir.to_owned()));
    }
    create_private_dir(data_dir)?;
    // Leftovers of an interrupted init (no database yet) are replaced.
    for file in [
        pki::CA_CERT_FILE,
        pki::CA_KEY_FILE,
        pki::SERVER_CERT_FILE,
        pki::SERVER_KEY_FILE,
    ] {
        let path = data_dir.join(file);
        if path.exists() {
            fs::remove_file(&path).map_err(ControlError::io(&path))?;
        }
    }
    let ca = Ca::generate()?;
    ca.save(data_dir)?;
    ca.issue_server_cert(data_dir)?;
    let admin_token = credentials::new_admin_token();
    let conn = store::create(data_dir, &credentials::sha256_hex(admin_token.as_bytes()))?;
    let secret = credentials::new_join_secret();
    store::add_join_token(&conn, &secret)?;
    info!(target: LOG_TARGET, data_dir = %data_dir.display(), "initialized control");
    Ok(InitInfo {
        admin_token,
        join_token: credentials::join_token(&secret, ca.sha256()),
    })
}

/// Creates a new one-time join token (works while control is serving).
pub fn create_join_token(data_dir: &Path) -> Result<String, ControlError> {
    let conn = store::open_existing(data_dir)?;
    let ca_pem = fs::read_to_string(data_dir.join(pki::CA_CERT_FILE))
        .map_err(ControlError::io(data_dir.join(pki::CA_CERT_FILE)))?;
    let ca_sha256 = outpost_proto::tls::ca_sha256(&ca_pem)
        .map_err(|error| ControlError::Corrupt(error.to_string()))?;
    let secret = credentials::new_join_secret();
    store::add_join_token(&conn, &secret)?;
    Ok(credentials::join_token(&secret, &ca_sha256))
}

/// Revokes a node: its certificate is refused from its next connection on.
pub fn revoke_node(data_dir: &Path, node_id: &str) -> Result<(), ControlError> {
    store::revoke_node(&store::open_existing(data_dir)?, node_id)
}

/// Where [`start`] finds its state and listens.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The directory [`init`] created.
    pub data_dir: PathBuf,
    /// Admin HTTP API address (port 0 picks a free one).
    pub api_listen: SocketAddr,
    /// QUIC address nodes connect to (port 0 picks a free one).
    pub quic_listen: SocketAddr,
}

/// A serving control; stop it with [`RunningControl::shutdown`].
pub struct RunningControl {
    api_addr: SocketAddr,
    quic_addr: SocketAddr,
    endpoint: quinn::Endpoint,
    stop_api: oneshot::Sender<()>,
    api_task: JoinHandle<()>,
    accept_task: JoinHandle<()>,
    purge_task: JoinHandle<()>,
    store: Arc<Store>,
}

impl fmt::Debug for RunningControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningControl")
            .field("api_addr", &self.api_addr)
            .field("quic_addr", &self.quic_addr)
            .finish_non_exhaustive()
    }
}

/// Opens the data directory, binds the admin API and the QUIC endpoint, and returns once
/// both listen.
pub async fn start(config: ServeConfig) -> Result<RunningControl, ControlError> {
    // Several rustls providers are compiled into the workspace: pick ring explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = config.data_dir.clone();
    let (store, ca, quic_config) = run_blocking(move || {
        let store = Store::open(&dir)?;
        let ca = Ca::load(&dir)?;
        let quic_config = ca.server_config(&dir)?;
        Ok((Arc::new(store), Arc::new(ca), quic_config))
    })
    .await?;
    let admin_token_sha256: Arc<str> = store.admin_token_hash()?.into();

    let endpoint = quinn::Endpoint::server(quic_config, config.quic_listen).map_err(|source| {
        ControlError::Listen {
            addr: config.quic_listen,
            source,
        }
    })?;
    let quic_addr = endpoint
        .local_addr()
        .map_err(|source| ControlError::Listen {
            addr: config.quic_listen,
            source,
        })?;
    let listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .map_err(|source| ControlError::Listen {
            addr: config.api_listen,
            source,
        })?;
    let api_addr = listener
        .local_addr()
        .map_err(|source| ControlError::Listen {
            addr: config.api_listen,
            source,
        })?;

    let purge_task = tokio::spawn(purge_expired_kv(store.clone()));
    let service = Arc::new(push::PushService::new(store.clone(), ca.clone()));
    let accept_task = tokio::spawn(push::accept(endpoint.clone(), service));
    let router = api::router(api::ApiState {
        store: store.clone(),
        ca,
        admin_token_sha256,
    });
    let (stop_api, stopped) = oneshot::channel::<()>();
    let api_task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = served {
            warn!(target: LOG_TARGET, %error, "admin API stopped");
        }
    });
    info!(
        target: LOG_TARGET,
        api = %api_addr,
        quic = %quic_addr,
        snapshot_version = store.current().version,
        "control is serving"
    );
    Ok(RunningControl {
        api_addr,
        quic_addr,
        endpoint,
        stop_api,
        api_task,
        accept_task,
        purge_task,
        store,
    })
}

/// Removes expired KV entries every [`KV_PURGE_INTERVAL`] until aborted.
async fn purge_expired_kv(store: Arc<Store>) {
    let mut interval = tokio::time::interval(KV_PURGE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match with_store(&store, |store| store.kv_purge_expired(store::unix_now())).await {
            Ok(0) => {}
            Ok(purged) => info!(target: LOG_TARGET, purged, "purged expired KV entries"),
            Err(error) => warn!(target: LOG_TARGET, %error, "cannot purge expired KV entries"),
        }
    }
}

impl RunningControl {
    /// The admin API's bound address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The QUIC endpoint's bound address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// Stops serving: closes every node connection at once (code
    /// [`outpost_proto::wire::close::SHUTDOWN`]), then the admin API.
    pub async fn shutdown(self) {
        self.purge_task.abort();
        self.endpoint.close(
            quinn::VarInt::from_u32(outpost_proto::wire::close::SHUTDOWN),
            b"control is shutting down",
        );
        let _ = self.stop_api.send(());
        let mut api_task = self.api_task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut api_task)
            .await
            .is_err()
        {
            api_task.abort();
        }
        let mut accept_task = self.accept_task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut accept_task)
            .await
            .is_err()
        {
            accept_task.abort();
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.endpoint.wait_idle()).await;
        drop(self.endpoint);
        wait_until_udp_port_is_free(self.quic_addr).await;
        if let Err(error) = with_store(&self.store, Store::all_disconnected).await {
            warn!(target: LOG_TARGET, %error, "cannot record nodes as disconnected");
        }
        info!(target: LOG_TARGET, "control stopped");
    }
}

/// quinn's endpoint driver releases the UDP socket on its next poll after the last
/// endpoint handle is dropped; wait for that (briefly) so a control restarted on the same
/// address can bind it.
async fn wait_until_udp_port_is_free(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    loop {
        tokio::task::yield_now().await;
        if std::net::UdpSocket::bind(addr).is_ok() || tokio::time::Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs blocking work (SQLite, files, key generation) off the async threads.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ControlError::Task(error.to_string()))?
}

/// Runs a store call on the blocking pool.
pub(crate) async fn with_store<T: Send + 'static>(
    store: &Arc<Store>,
    call: impl FnOnce(&Store) -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ControlError> {
    let store = store.clone();
    run_blocking(move || call(&store)).await
}

fn create_private_dir(dir: &Path) -> Result<(), ControlError> {
    fs::create_dir_all(dir).map_err(ControlError::io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(ControlError::io(dir))?;
    }
    Ok(())
}
