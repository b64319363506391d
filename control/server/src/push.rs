//! The QUIC service nodes connect to: joins, the sync stream (snapshots out, ACK/NACK in) and bundle downloads.
//!
//! One task per connection accepts its streams; each stream gets its own small task.
//! A connection with a node certificate is recognized by the certificate's SHA-256;
//! one without may only send a single [`Request::Join`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use outpost_proto::BundleHash;
use outpost_proto::Snapshot;
use outpost_proto::wire;
use outpost_proto::wire::NodeMessage;
use outpost_proto::wire::Request;
use outpost_proto::wire::Response;
use quinn::RecvStream;
use quinn::SendStream;
use quinn::VarInt;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tracing::debug;
use tracing::info;
use tracing::warn;

use crate::LOG_TARGET;
use crate::credentials::sha256_hex;
use crate::error::ControlError;
use crate::pki::Ca;
use crate::run_blocking;
use crate::store::NodeRecord;
use crate::store::Store;

/// Largest message a connection without a certificate may send (a join request).
const MAX_ANONYMOUS_FRAME: usize = 64 * 1024;

/// Largest message a node sends (hello, request, ACK, NACK with its reason).
const MAX_NODE_FRAME: usize = 1024 * 1024;

/// How long a connection without a certificate has to send its join request.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long control waits for a peer to take its last answer before closing.
const LINGER: Duration = Duration::from_secs(5);

/// What the connection tasks share.
pub(crate) struct PushService {
    store: Arc<Store>,
    ca: Arc<Ca>,
    /// The newest connection of each node, so an old connection ending late does not
    /// mark a reconnected node disconnected.
    connections: Mutex<HashMap<String, u64>>,
    next_connection: AtomicU64,
}

/// Control → node on the sync stream, serialized like [`wire::ControlMessage`] without
/// cloning the snapshot for every node.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Outgoing<'a> {
    Snapshot { snapshot: &'a Snapshot },
}

impl PushService {
    pub(crate) fn new(store: Arc<Store>, ca: Arc<Ca>) -> PushService {
        PushService {
            store,
            ca,
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
        }
    }

    async fn store<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T, ControlError> + Send + 'static,
    ) -> Result<T, ControlError> {
        let store = self.store.clone();
        run_blocking(move || call(&store)).await
    }
}

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept(endpoint: quinn::Endpoint, service: Arc<PushService>) {
    while let Some(incoming) = endpoint.accept().await {
        let service = service.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => serve_connection(connection, service).await,
                Err(error) => {
                    warn!(target: LOG_TARGET, %remote, %error, "QUIC handshake failed");
                }
            }
        });
    }
}

async fn serve_connection(connection: quinn::Connection, service: Arc<PushService>) {
    let remote = connection.remote_address();
    let certificate = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().map(|cert| sha256_hex(cert)));
    let Some(fingerprint) = certificate else {
        serve_joining(connection, service).await;
        return;
    };
    match service
        .store(move |store| store.node_by_cert(&fingerprint))
        .await
    {
        Ok(Some(node)) => serve_node(connection, node, service).await,
        Ok(None) => {
            let reason = "stale or unknown node certificate";
            warn!(target: LOG_TARGET, %remote, reason, "refused node connection");
            connection.close(
                VarInt::from_u32(wire::close::UNKNOWN_NODE),
                reason.as_bytes(),
            );
        }
        Err(error) => {
            warn!(target: LOG_TARGET, %remote, %error, "cannot look up the node certificate");
            connection.close(
                VarInt::from_u32(wire::close::SHUTDOWN),
                b"control cannot check the certificate now",
            );
        }
    }
}

/// A connection without a certificate: one join request, one answer.
async fn serve_joining(connection: quinn::Connection, service: Arc<PushService>) {
    let remote = connection.remote_address();
    let (mut send, mut recv) = match tokio::time::timeout(JOIN_TIMEOUT, connection.accept_bi())
        .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            debug!(target: LOG_TARGET, %remote, %error, "connection without a certificate ended");
            return;
        }
        Err(_) => {
            warn!(target: LOG_TARGET, %remote, "connection without a certificate sent no join request");
            connection.close(
                VarInt::from_u32(wire::close::PROTOCOL),
                b"expected a join request",
            );
            return;
        }
    };
    let message = read_frame(&mut recv, MAX_ANONYMOUS_FRAME).await;
    let (response, joined) = match message {
        Ok(Some(value)) if message_type(&value) == Some("join") => {
            match serde_json::from_value::<Request>(value) {
                Ok(Request::Join {
                    token,
                    name,
                    csr_pem,
                }) => match join(&service, &token, &name, csr_pem, remote).await {
                    Ok(response) => (response, true),
                    Err(error) => {
                        warn!(target: LOG_TARGET, %remote, %error, "refused join");
                        (error_response(&error), false)
                    }
                },
                Ok(_) | Err(_) => {
                    warn!(target: LOG_TARGET, %remote, "refused malformed join request");
                    (
                        Response::Error {
                            message: "malformed join request".into(),
                        },
                        false,
                    )
                }
            }
        }
        Ok(Some(value)) => {
            let kind = message_type(&value).unwrap_or("?").to_owned();
            warn!(
                target: LOG_TARGET,
                %remote,
                kind = %kind,
                "refused a connection without a node certificate: only a join request is allowed"
            );
            (
                Response::Error {
                    message:
                        "this connection has no node certificate: only a join request is allowed"
                            .into(),
                },
                false,
            )
        }
        Ok(None) => return,
        Err(error) => {
            warn!(target: LOG_TARGET, %remote, %error, "unreadable request on a connection without a certificate");
            (
                Response::Error {
                    message: format!("unreadable request: {error}"),
                },
                false,
            )
        }
    };
    let _ = answer(&mut send, &response).await;
    if joined {
        // The node closes once it has its certificate.
        let _ = tokio::time::timeout(LINGER, connection.closed()).await;
        connection.close(VarInt::from_u32(wire::close::SHUTDOWN), b"joined");
    } else {
        connection.close(
            VarInt::from_u32(wire::close::PROTOCOL),
            b"only a join request is allowed without a node certificate",
        );
    }
}

async fn join(
    service: &Arc<PushService>,
    token: &str,
    name: &str,
    csr_pem: String,
    remote: SocketAddr,
) -> Result<Response, ControlError> {
    let parts = outpost_proto::tls::parse_join_token(token)
        .map_err(|error| ControlError::Denied(error.to_string()))?;
    if parts.ca_sha256 != service.ca.sha256() {
        return Err(ControlError::Denied(
            "the join token was made for another control CA".into(),
        ));
    }
    let ca = service.ca.clone();
    let display_name = name.to_owned();
    let (id, cert) = service
        .store(move |store| {
            store.join(&parts.secret, &display_name, |id| {
                ca.issue_node_cert(id, &csr_pem)
            })
        })
        .await?;
    info!(target: LOG_TARGET, node = %id, %name, %remote, "node joined");
    Ok(Response::Joined {
        node_id: id,
        cert_pem: cert.cert_pem,
        ca_pem: service.ca.pem().to_owned(),
    })
}

/// A joined node: serves its streams until the connection ends.
async fn serve_node(connection: quinn::Connection, node: NodeRecord, service: Arc<PushService>) {
    let remote = connection.remote_address();
    let generation = service.next_connection.fetch_add(1, Ordering::Relaxed);
    service
        .connections
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(node.id.clone(), generation);
    let id = node.id.clone();
    let address = remote.to_string();
    if let Err(error) = service
        .store(move |store| store.node_connected(&id, &address))
        .await
    {
        warn!(target: LOG_TARGET, node = %node.id, %error, "cannot record the connection");
    }
    info!(target: LOG_TARGET, node = %node.id, name = %node.name, %remote, "node connected");
    let reason = loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                let service = service.clone();
                let node = node.clone();
                tokio::spawn(async move { serve_stream(send, recv, node, service).await });
            }
            Err(error) => break error,
        }
    };
    let latest = {
        let mut connections = service
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if connections.get(&node.id) == Some(&generation) {
            connections.remove(&node.id);
            true
        } else {
            false
        }
    };
    if latest {
        let id = node.id.clone();
        if let Err(error) = service
            .store(move |store| store.node_disconnected(&id))
            .await
        {
            warn!(target: LOG_TARGET, node = %node.id, %error, "cannot record the disconnection");
        }
    }
    info!(target: LOG_TARGET, node = %node.id, name = %node.name, %remote, %reason, "node disconnected");
}

/// One stream of a joined node; its first message says what it is.
async fn serve_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    node: NodeRecord,
    service: Arc<PushService>,
) {
    let first = match read_frame(&mut recv, MAX_NODE_FRAME).await {
        Ok(Some(value)) => value,
        Ok(None) => return,
        Err(error) => {
            warn!(target: LOG_TARGET, node = %node.id, %error, "unreadable message");
            let _ = answer(
                &mut send,
                &Response::Error {
                    message: format!("unreadable message: {error}"),
                },
            )
            .await;
            return;
        }
    };
    match message_type(&first) {
        Some("hello") => match serde_json::from_value::<NodeMessage>(first) {
            Ok(NodeMessage::Hello { name, applied }) => {
                sync(send, recv, node, name, applied, service).await;
            }
            _ => {
                let _ = answer(
                    &mut send,
                    &Response::Error {
                        message: "malformed hello".into(),
                    },
                )
                .await;
            }
        },
        Some("bundle") => match serde_json::from_value::<Request>(first) {
            Ok(Request::Bundle { hash }) => {
                if let Err(error) = send_bundle(&mut send, &hash, &service).await {
                    debug!(target: LOG_TARGET, node = %node.id, %hash, %error, "bundle download failed");
                }
            }
            _ => {
                let _ = answer(
                    &mut send,
                    &Response::Error {
                        message: "malformed bundle request".into(),
                    },
                )
                .await;
            }
        },
        Some("join") => {
            let _ = answer(
                &mut send,
                &Response::Error {
                    message: "this node has joined already".into(),
                },
            )
            .await;
        }
        other => {
            let kind = other.unwrap_or("?").to_owned();
            warn!(target: LOG_TARGET, node = %node.id, kind = %kind, "unexpected first message on a stream");
            let _ = answer(
                &mut send,
                &Response::Error {
                    message: format!("unexpected message {kind:?}"),
                },
            )
            .await;
        }
    }
}

/// The sync stream: the published snapshot whenever its version differs from what the
/// node has, ACKs and NACKs recorded as they come.
async fn sync(
    mut send: SendStream,
    recv: RecvStream,
    node: NodeRecord,
    name: String,
    applied: Option<u64>,
    service: Arc<PushService>,
) {
    let id = node.id.clone();
    if let Err(error) = service
        .store(move |store| store.node_hello(&id, &name))
        .await
    {
        warn!(target: LOG_TARGET, node = %node.id, %error, "cannot record the hello");
    }
    debug!(target: LOG_TARGET, node = %node.id, ?applied, "sync stream opened");
    let mut snapshots = service.store.subscribe();
    let mut reader = tokio::spawn(read_replies(recv, node.clone(), service.clone()));
    let mut sent = applied;
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        if sent != Some(snapshot.version) {
            let bytes = match serde_json::to_vec(&Outgoing::Snapshot {
                snapshot: &snapshot,
            }) {
                Ok(bytes) => bytes,
                Err(error) => {
                    warn!(target: LOG_TARGET, %error, "cannot serialize the snapshot");
                    break;
                }
            };
            if let Err(error) = wire::write_bytes(&mut send, &bytes).await {
                debug!(target: LOG_TARGET, node = %node.id, %error, "sync stream closed while pushing");
                break;
            }
            debug!(target: LOG_TARGET, node = %node.id, version = snapshot.version, "pushed snapshot");
            sent = Some(snapshot.version);
        }
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = &mut reader => break,
        }
    }
    reader.abort();
}

/// Reads ACKs and NACKs from the sync stream until it ends.
async fn read_replies(mut recv: RecvStream, node: NodeRecord, service: Arc<PushService>) {
    loop {
        let message = match read_frame(&mut recv, MAX_NODE_FRAME).await {
            Ok(Some(value)) => serde_json::from_value::<NodeMessage>(value),
            Ok(None) => return,
            Err(error) => {
                debug!(target: LOG_TARGET, node = %node.id, %error, "sync stream ended");
                return;
            }
        };
        let id = node.id.clone();
        let recorded = match message {
            Ok(NodeMessage::Ack { version }) => {
                info!(target: LOG_TARGET, node = %node.id, version, "node applied snapshot");
                service
                    .store(move |store| store.node_acked(&id, version))
                    .await
            }
            Ok(NodeMessage::Nack { version, error }) => {
                warn!(target: LOG_TARGET, node = %node.id, version, reason = %error, "node refused snapshot");
                service
                    .store(move |store| store.node_nacked(&id, version, &error))
                    .await
            }
            Ok(NodeMessage::Hello { .. }) | Err(_) => {
                warn!(target: LOG_TARGET, node = %node.id, "unexpected message on the sync stream");
                Ok(())
            }
        };
        if let Err(error) = recorded {
            warn!(target: LOG_TARGET, node = %node.id, %error, "cannot record the node's reply");
        }
    }
}

/// Answers a bundle request: `Response::Bundle` and one raw frame streamed from disk.
async fn send_bundle(
    send: &mut SendStream,
    hash: &BundleHash,
    service: &PushService,
) -> Result<(), wire::WireError> {
    let path = service.store.bundle_path(hash);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return answer(
                send,
                &Response::Error {
                    message: format!("unknown bundle {hash}"),
                },
            )
            .await;
        }
        Err(error) => {
            warn!(target: LOG_TARGET, path = %path.display(), %error, "cannot read a bundle");
            return answer(
                send,
                &Response::Error {
                    message: format!("bundle {hash} is unreadable on control"),
                },
            )
            .await;
        }
    };
    let size = file.metadata().await?.len();
    let Some(length) = u32::try_from(size)
        .ok()
        .filter(|&length| length as usize <= wire::MAX_FRAME_BYTES)
    else {
        return answer(
            send,
            &Response::Error {
                message: format!("bundle {hash} is too large to send"),
            },
        )
        .await;
    };
    wire::write_message(send, &Response::Bundle).await?;
    send.write_all(&length.to_be_bytes())
        .await
        .map_err(std::io::Error::from)?;
    let copied = tokio::io::copy(&mut (&mut file).take(u64::from(length)), send).await?;
    if copied != u64::from(length) {
        return Err(wire::WireError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the bundle file shrank while sending",
        )));
    }
    let _ = send.finish();
    Ok(())
}

/// Sends one response and finishes the stream, waiting (briefly) until the peer has it.
async fn answer(send: &mut SendStream, response: &Response) -> Result<(), wire::WireError> {
    wire::write_message(send, response).await?;
    let _ = send.finish();
    let _ = tokio::time::timeout(LINGER, send.stopped()).await;
    Ok(())
}

fn error_response(error: &ControlError) -> Response {
    let message = if error.is_client_error() {
        error.to_string()
    } else {
        "control failed to complete the request; try again".to_owned()
    };
    Response::Error { message }
}

fn message_type(value: &serde_json::Value) -> Option<&str> {
    value.get("type").and_then(serde_json::Value::as_str)
}

/// Reads one JSON frame of at most `limit` bytes; `None` when the stream ended before it.
async fn read_frame(
    recv: &mut RecvStream,
    limit: usize,
) -> Result<Option<serde_json::Value>, wire::WireError> {
    let mut length = [0u8; 4];
    match recv.read_exact(&mut length).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(error) => return Err(wire::WireError::Io(std::io::Error::other(error))),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > limit {
        return Err(wire::WireError::TooLarge(length));
    }
    let mut bytes = vec![0u8; length];
    recv.read_exact(&mut bytes)
        .await
        .map_err(|error| wire::WireError::Io(std::io::Error::other(error)))?;
    Ok(Some(serde_json::from_slice(&bytes)?))
}
