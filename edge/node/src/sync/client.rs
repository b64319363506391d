//! The QUIC side of sync: joining, the long-lived sync stream (snapshot in, ACK/NACK out), bundle fetches, reconnects.

use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use outpost_proto::BundleHash;
use outpost_proto::CONTROL_SERVER_NAME;
use outpost_proto::Snapshot;
use outpost_proto::wire;
use outpost_proto::wire::ControlMessage;
use outpost_proto::wire::NodeMessage;
use outpost_proto::wire::Request;
use outpost_proto::wire::Response;

use crate::kv::RemoteKv;
use crate::sync::Applier;
use crate::sync::Backoff;
use crate::sync::SyncConfig;
use crate::sync::backoff::jitter_unit;
use crate::sync::disk::Identity;
use crate::sync::disk::NodeStore;

/// Why talking to control failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The address does not resolve or the socket cannot be opened.
    #[error("control address {0}")]
    Address(String),
    /// TLS material is unusable (bad join token, bad certificate).
    #[error("tls: {0}")]
    Tls(String),
    /// The QUIC connection failed or was closed.
    #[error("connection: {0}")]
    Connection(String),
    /// A message could not be read or written.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// Control answered with an error.
    #[error("control refused: {0}")]
    Refused(String),
}

impl SyncError {
    fn connection(error: impl std::fmt::Display) -> SyncError {
        SyncError::Connection(error.to_string())
    }
}

/// Exchanges a one-time join token for the node's identity.
pub async fn join(control: &str, token: &str, name: &str) -> Result<Identity, SyncError> {
    let parts = outpost_proto::tls::parse_join_token(token)
        .map_err(|error| SyncError::Tls(error.to_string()))?;
    let key = outpost_proto::tls::new_node_key(name)
        .map_err(|error| SyncError::Tls(error.to_string()))?;
    let config = outpost_proto::tls::join_client_config(&parts.ca_sha256)
        .map_err(|error| SyncError::Tls(error.to_string()))?;
    let (endpoint, connection) = connect(control, config).await?;
    let request = Request::Join {
        token: token.to_string(),
        name: name.to_string(),
        csr_pem: key.csr_pem,
    };
    let response = ask(&connection, &request).await;
    connection.close(0u32.into(), b"joined");
    endpoint.wait_idle().await;
    match response?.0 {
        Response::Joined {
            node_id,
            cert_pem,
            ca_pem,
        } => {
            let ca = outpost_proto::tls::ca_sha256(&ca_pem)
                .map_err(|error| SyncError::Tls(error.to_string()))?;
            if ca != parts.ca_sha256 {
                return Err(SyncError::Tls(
                    "control sent a CA that does not match the join token".into(),
                ));
            }
            Ok(Identity {
                node_id,
                key_pem: key.key_pem,
                cert_pem,
                ca_pem,
            })
        }
        other => Err(unexpected(other)),
    }
}

/// Sends one request on its own stream and reads control's answer (an error answer
/// becomes [`SyncError::Refused`]); the stream stays open for data that follows it.
pub(crate) async fn ask(
    connection: &quinn::Connection,
    request: &Request,
) -> Result<(Response, quinn::RecvStream), SyncError> {
    ask_with(connection, request, None).await
}

/// [`ask`], with one raw frame (`body`) sent after the request.
pub(crate) async fn ask_with(
    connection: &quinn::Connection,
    request: &Request,
    body: Option<&[u8]>,
) -> Result<(Response, quinn::RecvStream), SyncError> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(SyncError::connection)?;
    wire::write_message(&mut send, request).await?;
    if let Some(body) = body {
        wire::write_bytes(&mut send, body).await?;
    }
    let _ = send.finish();
    match wire::read_message::<_, Response>(&mut recv).await? {
        Some(Response::Error { message }) => Err(SyncError::Refused(message)),
        Some(response) => Ok((response, recv)),
        None => Err(SyncError::Refused("control closed the stream".into())),
    }
}

pub(crate) fn unexpected(response: Response) -> SyncError {
    SyncError::Refused(format!("unexpected answer {response:?}"))
}

/// Opens a QUIC connection to control.
async fn connect(
    control: &str,
    config: quinn::ClientConfig,
) -> Result<(quinn::Endpoint, quinn::Connection), SyncError> {
    let address = tokio::net::lookup_host(control)
        .await
        .map_err(|error| SyncError::Address(format!("{control:?}: {error}")))?
        .next()
        .ok_or_else(|| SyncError::Address(format!("{control:?} does not resolve")))?;
    let bind: SocketAddr = match address {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => (std::net::Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let endpoint = quinn::Endpoint::client(bind)
        .map_err(|error| SyncError::Address(format!("binding {bind}: {error}")))?;
    let connection = endpoint
        .connect_with(config, address, CONTROL_SERVER_NAME)
        .map_err(SyncError::connection)?
        .await
        .map_err(SyncError::connection)?;
    Ok((endpoint, connection))
}

/// Follows control for the life of the process.
pub struct SyncClient {
    config: SyncConfig,
    identity: Identity,
    store: NodeStore,
    applier: Applier,
    kv: RemoteKv,
    applied: Option<u64>,
}

impl SyncClient {
    /// A client that reports `applied` (restored from disk) in its first hello.
    pub fn new(
        config: SyncConfig,
        identity: Identity,
        store: NodeStore,
        applier: Applier,
        kv: RemoteKv,
        applied: Option<u64>,
    ) -> SyncClient {
        SyncClient {
            config,
            identity,
            store,
            applier,
            kv,
            applied,
        }
    }

    /// Connects, follows, and reconnects with backoff and jitter, forever.
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
        loop {
            let started = Instant::now();
            let session = self.session().await;
            self.kv.disconnected();
            match session {
                Ok(()) => {
                    tracing::warn!(target: "outpost::sync", "control closed the connection; serving the last good snapshot")
                }
                Err(error) => {
                    tracing::warn!(target: "outpost::sync", "control unreachable: {error}; serving the last good snapshot")
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                backoff.reset();
            }
            tokio::time::sleep(backoff.next_delay(jitter_unit())).await;
        }
    }

    async fn session(&mut self) -> Result<(), SyncError> {
        let tls = outpost_proto::tls::node_client_config(
            &self.identity.ca_pem,
            &self.identity.cert_pem,
            &self.identity.key_pem,
        )
        .map_err(|error| SyncError::Tls(error.to_string()))?;
        let (_endpoint, connection) = connect(&self.config.control, tls).await?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(SyncError::connection)?;
        wire::write_message(
            &mut send,
            &NodeMessage::Hello {
                name: self.config.name.clone(),
                applied: self.applied,
            },
        )
        .await?;
        self.kv.connected(connection.clone());
        tracing::info!(target: "outpost::sync", control = %self.config.control, applied = ?self.applied, "connected to control");
        loop {
            let message = match wire::read_message::<_, ControlMessage>(&mut recv).await {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(()),
                Err(error) => {
                    // A closed connection surfaces as a stream error; say why it closed.
                    if let Some(reason) = connection.close_reason() {
                        return Err(SyncError::connection(reason));
                    }
                    return Err(error.into());
                }
            };
            let snapshot = match message {
                ControlMessage::Snapshot { snapshot } => snapshot,
                ControlMessage::KvInvalidate { namespace, keys } => {
                    self.kv.invalidate(&namespace, &keys);
                    continue;
                }
            };
            let version = snapshot.version;
            let reply = match self.receive(&connection, snapshot).await {
                Ok(()) => {
                    tracing::info!(target: "outpost::sync", version, "snapshot applied");
                    NodeMessage::Ack { version }
                }
                Err(error) => {
                    tracing::error!(target: "outpost::sync", version, "snapshot refused, still serving the previous one: {error}");
                    NodeMessage::Nack { version, error }
                }
            };
            wire::write_message(&mut send, &reply).await?;
        }
    }

    /// Fetches missing bundles, applies the snapshot and records it on disk.
    async fn receive(
        &mut self,
        connection: &quinn::Connection,
        snapshot: Snapshot,
    ) -> Result<(), String> {
        if self.applied == Some(snapshot.version) {
            return Ok(());
        }
        for hash in snapshot.bundles() {
            if !self.store.has_bundle(hash) {
                let bytes = fetch_bundle(connection, hash)
                    .await
                    .map_err(|error| format!("fetching bundle {hash}: {error}"))?;
                self.store.save_bundle(hash, &bytes)?;
            }
        }
        self.applier.apply(&snapshot, &self.store).await?;
        self.applied = Some(snapshot.version);
        if let Err(error) = self.store.save_snapshot(&snapshot) {
            tracing::error!(target: "outpost::sync", version = snapshot.version, "serving, but could not save the snapshot to disk: {error}");
        }
        self.store.prune_bundles(snapshot.bundles());
        Ok(())
    }
}

async fn fetch_bundle(
    connection: &quinn::Connection,
    hash: &BundleHash,
) -> Result<Vec<u8>, SyncError> {
    match ask(connection, &Request::Bundle { hash: hash.clone() }).await? {
        (Response::Bundle, mut recv) => wire::read_bytes(&mut recv)
            .await?
            .ok_or_else(|| SyncError::Refused("the bundle stream ended early".into())),
        (other, _) => Err(unexpected(other)),
    }
}
