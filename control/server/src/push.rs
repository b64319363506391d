//! The QUIC service nodes connect to: joins, the sync stream (snapshots and KV invalidations out, ACK/NACK in), bundle downloads and KV requests.
//!
//! One task per connection accepts its streams; each stream gets its own small task.
//! A connection with a node certificate is recognized by the certificate's SHA-256;
//! one without may only send a single [`Request::Join`].
//!
//! KV: each node connection subscribes to the store's invalidations as soon as it is
//! accepted (before any of its requests is served), and its sync stream forwards them
//! as `KvInvalidate` next to snapshots. A node whose sync stream falls more than the
//! backlog behind has missed invalidations; control then closes its connection with
//! [`wire::close::RESYNC`], and the node reconnects and drops its KV cache (as it does on
//! every reconnect, since nothing missed while disconnected is replayed). KV requests
//! are checked against the limits and need an existing namespace; whether the calling
//! function binds the namespace is the node's to check, since control does not know
//! which function a request serves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use outpost_proto::BundleHash;
use outpost_proto::kv;
use outpost_proto::kv::KvLimitError;
use outpost_proto::kv::MAX_VALUE_BYTES;
use outpost_proto::wire;
use outpost_proto::wire::NodeMessage;
use outpost_proto::wire::Request;
use outpost_proto::wire::Response;
use quinn::RecvStream;
use quinn::SendStream;
use quinn::VarInt;
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;
use tracing::debug;
use tracing::info;
use tracing::warn;

use crate::LOG_TARGET;
use crate::credentials::sha256_hex;
use crate::error::ControlError;
use crate::pki::Ca;
use crate::store::KvInvalidation;
use crate::store::KvRecord;
use crate::store::NodeRecord;
use crate::store::Store;
use crate::store::unix_now;
use crate::with_store;

/// Largest message a connection without a certificate may send (a join request).
const MAX_ANONYMOUS_FRAME: usize = 64 * 1024;

/// Largest message a node sends (hello, request, ACK, NACK with its reason).
const MAX_NODE_FRAME: usize = 1024 * 1024;

/// How long a connection without a certificate has to send its join request.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long control waits for a peer to take its last answer before closing.
const LINGER: Duration = Duration::from_secs(5);

/// How far in the past a node's KV expiration may be and still be accepted (stored as
/// already expired, i.e. never returned): the node resolved it against its own clock,
/// which may lag control's a little.
const KV_CLOCK_SKEW: u64 = 60;

/// What the connection tasks share.
pub(crate) struct PushService {
    store: Arc<Store>,
    ca: Arc<Ca>,
    /// The newest connection of each node, so an old connection ending late does not
    /// mark a reconnected node disconnected.
    connections: Mutex<HashMap<String, u64>>,
    next_connection: AtomicU64,
}

/// One node connection, as its streams share it.
struct NodeSession {
    node: NodeRecord,
    connection: quinn::Connection,
    /// Invalidations since the connection was accepted, for its first sync stream.
    invalidations: Mutex<Option<broadcast::Receiver<KvInvalidation>>>,
}

impl NodeSession {
    /// The receiver made when the connection was accepted, or (for a later sync stream
    /// on the same connection) a fresh one.
    fn take_invalidations(&self, store: &Store) -> broadcast::Receiver<KvInvalidation> {
        self.invalidations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| store.subscribe_kv())
    }
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
    match with_store(&service.store, move |store| {
        store.node_by_cert(&fingerprint)
    })
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
    let outcome = match read_frame(&mut recv, MAX_ANONYMOUS_FRAME).await {
        Ok(Some(request)) => answer_join(request, &service, remote).await,
        Ok(None) => return,
        Err(error) => {
            warn!(target: LOG_TARGET, %remote, %error, "unreadable request on a connection without a certificate");
            Err(refusal(format!("unreadable request: {error}")))
        }
    };
    let (response, joined) = match outcome {
        Ok(joined) => (joined, true),
        Err(refused) => (refused, false),
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

/// The answer to the one request a connection without a certificate may make; `Err`
/// is a refusal.
async fn answer_join(
    request: serde_json::Value,
    service: &PushService,
    remote: SocketAddr,
) -> Result<Response, Response> {
    if message_type(&request) != Some("join") {
        let kind = message_type(&request).unwrap_or("?");
        warn!(
            target: LOG_TARGET,
            %remote,
            kind,
            "refused a connection without a node certificate: only a join request is allowed"
        );
        return Err(refusal(
            "this connection has no node certificate: only a join request is allowed",
        ));
    }
    let Ok(Request::Join {
        token,
        name,
        csr_pem,
    }) = serde_json::from_value(request)
    else {
        warn!(target: LOG_TARGET, %remote, "refused malformed join request");
        return Err(refusal("malformed join request"));
    };
    join(service, &token, &name, csr_pem, remote)
        .await
        .map_err(|error| {
            warn!(target: LOG_TARGET, %remote, %error, "refused join");
            error_response(&error)
        })
}

async fn join(
    service: &PushService,
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
    let (id, cert) = with_store(&service.store, move |store| {
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
    // Subscribed before any request is served: a write committed after a read the node
    // makes on this connection is always announced to it.
    let session = Arc::new(NodeSession {
        node: node.clone(),
        connection: connection.clone(),
        invalidations: Mutex::new(Some(service.store.subscribe_kv())),
    });
    let id = node.id.clone();
    let address = remote.to_string();
    if let Err(error) = with_store(&service.store, move |store| {
        store.node_connected(&id, &address)
    })
    .await
    {
        warn!(target: LOG_TARGET, node = %node.id, %error, "cannot record the connection");
    }
    info!(target: LOG_TARGET, node = %node.id, name = %node.name, %remote, "node connected");
    let reason = loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                let service = service.clone();
                let session = session.clone();
                tokio::spawn(async move { serve_stream(send, recv, session, service).await });
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
        if let Err(error) =
            with_store(&service.store, move |store| store.node_disconnected(&id)).await
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
    session: Arc<NodeSession>,
    service: Arc<PushService>,
) {
    let node = &session.node;
    let first = match read_frame(&mut recv, MAX_NODE_FRAME).await {
        Ok(Some(value)) => value,
        Ok(None) => return,
        Err(error) => {
            warn!(target: LOG_TARGET, node = %node.id, %error, "unreadable message");
            let _ = answer(&mut send, &refusal(format!("unreadable message: {error}"))).await;
            return;
        }
    };
    let refused = match message_type(&first) {
        Some("hello") => match serde_json::from_value(first) {
            Ok(NodeMessage::Hello { name, applied }) => {
                return sync(send, recv, &session, name, applied, service).await;
            }
            _ => refusal("malformed hello"),
        },
        Some("bundle") => match serde_json::from_value(first) {
            Ok(Request::Bundle { hash }) => {
                if let Err(error) = send_bundle(&mut send, &hash, &service).await {
                    debug!(target: LOG_TARGET, node = %node.id, %hash, %error, "bundle download failed");
                }
                return;
            }
            _ => refusal("malformed bundle request"),
        },
        Some("kv_get" | "kv_put" | "kv_delete" | "kv_list") => {
            match serde_json::from_value(first) {
                Ok(request) => {
                    return serve_kv(&mut send, &mut recv, request, node, &service).await;
                }
                Err(error) => refusal(format!("malformed KV request: {error}")),
            }
        }
        Some("join") => refusal("this node has joined already"),
        other => {
            let kind = other.unwrap_or("?");
            warn!(target: LOG_TARGET, node = %node.id, kind, "unexpected first message on a stream");
            refusal(format!("unexpected message {kind:?}"))
        }
    };
    let _ = answer(&mut send, &refused).await;
}

/// What the sync stream waits for.
enum SyncEvent {
    Snapshot,
    Invalidate(KvInvalidation),
    Lagged(u64),
    Stop,
}

/// The sync stream: the published snapshot whenever its version differs from what the
/// node has, KV invalidations as they are committed, ACKs and NACKs recorded as they
/// come.
async fn sync(
    mut send: SendStream,
    recv: RecvStream,
    session: &NodeSession,
    name: String,
    applied: Option<u64>,
    service: Arc<PushService>,
) {
    let node = &session.node;
    let mut invalidations = session.take_invalidations(&service.store);
    let id = node.id.clone();
    if let Err(error) = with_store(&service.store, move |store| store.node_hello(&id, &name)).await
    {
        warn!(target: LOG_TARGET, node = %node.id, %error, "cannot record the hello");
    }
    debug!(target: LOG_TARGET, node = %node.id, ?applied, "sync stream opened");
    let mut snapshots = service.store.subscribe();
    let mut reader = tokio::spawn(read_replies(recv, node.clone(), service.clone()));
    let mut sent = applied;
    loop {
        let published = snapshots.borrow_and_update().clone();
        let version = published.snapshot.version;
        if sent != Some(version) {
            if let Err(error) = wire::write_bytes(&mut send, &published.message).await {
                debug!(target: LOG_TARGET, node = %node.id, %error, "sync stream closed while pushing");
                break;
            }
            debug!(target: LOG_TARGET, node = %node.id, version, "pushed snapshot");
            sent = Some(version);
        }
        let event = tokio::select! {
            biased;
            changed = snapshots.changed() => match changed {
                Ok(()) => SyncEvent::Snapshot,
                Err(_) => SyncEvent::Stop,
            },
            received = invalidations.recv() => match received {
                Ok(invalidation) => SyncEvent::Invalidate(invalidation),
                Err(broadcast::error::RecvError::Lagged(missed)) => SyncEvent::Lagged(missed),
                Err(broadcast::error::RecvError::Closed) => SyncEvent::Stop,
            },
            _ = &mut reader => SyncEvent::Stop,
        };
        match event {
            SyncEvent::Snapshot => {}
            SyncEvent::Invalidate(message) => {
                if let Err(error) = wire::write_bytes(&mut send, &message).await {
                    debug!(target: LOG_TARGET, node = %node.id, %error, "sync stream closed while invalidating");
                    break;
                }
            }
            SyncEvent::Lagged(missed) => {
                warn!(
                    target: LOG_TARGET,
                    node = %node.id,
                    missed,
                    "node fell behind on KV invalidations; closing its connection so it resyncs"
                );
                session.connection.close(
                    VarInt::from_u32(wire::close::RESYNC),
                    b"missed KV invalidations; reconnect and drop the KV cache",
                );
                break;
            }
            SyncEvent::Stop => break,
        }
    }
    reader.abort();
}

/// Answers a KV request stream (see the table in [`wire`]).
async fn serve_kv(
    send: &mut SendStream,
    recv: &mut RecvStream,
    request: Request,
    node: &NodeRecord,
    service: &PushService,
) {
    let outcome = kv_request(recv, request, service).await;
    let written = match outcome {
        Ok((response, value)) => answer_with_value(send, &response, value.as_deref()).await,
        Err(error) => {
            if error.is_client_error() {
                debug!(target: LOG_TARGET, node = %node.id, %error, "refused KV request");
            } else {
                warn!(target: LOG_TARGET, node = %node.id, %error, "KV request failed");
            }
            answer(send, &error_response(&error)).await
        }
    };
    if let Err(error) = written {
        debug!(target: LOG_TARGET, node = %node.id, %error, "KV answer not delivered");
    }
}

/// Runs one KV request: the response and, for a found entry, the value frame.
async fn kv_request(
    recv: &mut RecvStream,
    request: Request,
    service: &PushService,
) -> Result<(Response, Option<Vec<u8>>), ControlError> {
    let now = unix_now();
    match request {
        Request::KvGet { namespace, key } => {
            let found = with_store(&service.store, move |store| {
                store.kv_get(&namespace, &key, now)
            })
            .await?;
            Ok(match found {
                Some(record) => (
                    Response::KvEntry {
                        found: true,
                        expiration: record.expiration,
                        metadata: record.metadata,
                    },
                    Some(record.value),
                ),
                None => (
                    Response::KvEntry {
                        found: false,
                        expiration: None,
                        metadata: None,
                    },
                    None,
                ),
            })
        }
        Request::KvPut {
            namespace,
            key,
            expiration,
            metadata,
        } => {
            // Refuse what the limits refuse before taking the value.
            if let Err(error) = check_put(&key, metadata.as_ref(), expiration, now) {
                let _ = recv.stop(VarInt::from_u32(0));
                return Err(error.into());
            }
            let value = match wire::read_bytes_within(recv, MAX_VALUE_BYTES).await {
                Ok(Some(value)) => value,
                Ok(None) => {
                    return Err(ControlError::BadRequest(
                        "a KV put must be followed by one frame with the value".into(),
                    ));
                }
                Err(wire::WireError::TooLarge(size)) => {
                    let _ = recv.stop(VarInt::from_u32(0));
                    return Err(KvLimitError::ValueTooLarge(size).into());
                }
                Err(error) => {
                    return Err(ControlError::BadRequest(format!(
                        "cannot read the KV value: {error}"
                    )));
                }
            };
            let record = KvRecord {
                key,
                value,
                expiration,
                metadata,
            };
            with_store(&service.store, move |store| {
                store.kv_put(&namespace, record)
            })
            .await?;
            Ok((Response::KvDone, None))
        }
        Request::KvDelete { namespace, key } => {
            with_store(&service.store, move |store| {
                store.kv_delete(&namespace, &key, now)
            })
            .await?;
            Ok((Response::KvDone, None))
        }
        Request::KvList {
            namespace,
            prefix,
            limit,
            cursor,
        } => {
            let limit = kv::list_limit(limit.map(u64::from))?;
            let listed = with_store(&service.store, move |store| {
                store.kv_list(
                    &namespace,
                    prefix.as_deref().unwrap_or(""),
                    limit,
                    cursor.as_deref().filter(|cursor| !cursor.is_empty()),
                    now,
                )
            })
            .await?;
            Ok((
                Response::KvKeys {
                    keys: listed.keys,
                    list_complete: listed.list_complete,
                    cursor: listed.cursor,
                },
                None,
            ))
        }
        Request::Join { .. } | Request::Bundle { .. } => {
            Err(ControlError::BadRequest("not a KV request".into()))
        }
    }
}

/// Checks a node's put before its value is read: key, metadata, and an expiration at
/// most [`KV_CLOCK_SKEW`] in the past (a refusal names control's clock, not the
/// tolerance).
fn check_put(
    key: &str,
    metadata: Option<&serde_json::Value>,
    expiration: Option<u64>,
    now: u64,
) -> Result<(), KvLimitError> {
    kv::check_key(key)?;
    if let Some(metadata) = metadata {
        kv::check_metadata(metadata)?;
    }
    if let Some(expiration) = expiration {
        kv::check_expiration(expiration, now.saturating_sub(KV_CLOCK_SKEW)).map_err(|error| {
            match error {
                KvLimitError::ExpirationPassed { expiration, .. } => {
                    KvLimitError::ExpirationPassed { expiration, now }
                }
                other => other,
            }
        })?;
    }
    Ok(())
}

/// Sends one response and, when given, one raw frame; finishes the stream and waits
/// (briefly) until the peer has them.
async fn answer_with_value(
    send: &mut SendStream,
    response: &Response,
    value: Option<&[u8]>,
) -> Result<(), wire::WireError> {
    wire::write_message(send, response).await?;
    if let Some(value) = value {
        wire::write_bytes(send, value).await?;
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(LINGER, send.stopped()).await;
    Ok(())
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
                with_store(&service.store, move |store| store.node_acked(&id, version)).await
            }
            Ok(NodeMessage::Nack { version, error }) => {
                warn!(target: LOG_TARGET, node = %node.id, version, reason = %error, "node refused snapshot");
                with_store(&service.store, move |store| {
                    store.node_nacked(&id, version, &error)
                })
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
            return answer(send, &refusal(format!("unknown bundle {hash}"))).await;
        }
        Err(error) => {
            warn!(target: LOG_TARGET, path = %path.display(), %error, "cannot read a bundle");
            let message = format!("bundle {hash} is unreadable on control");
            return answer(send, &refusal(message)).await;
        }
    };
    let size = file.metadata().await?.len();
    let Some(length) = u32::try_from(size)
        .ok()
        .filter(|&length| length as usize <= wire::MAX_FRAME_BYTES)
    else {
        return answer(
            send,
            &refusal(format!("bundle {hash} is too large to send")),
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
    answer_with_value(send, response, None).await
}

/// A refusal with its reason.
fn refusal(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

/// The refusal for a failed request: the error itself when it is the node's doing.
fn error_response(error: &ControlError) -> Response {
    if error.is_client_error() {
        refusal(error.to_string())
    } else {
        refusal("control failed to complete the request; try again")
    }
}

fn message_type(value: &serde_json::Value) -> Option<&str> {
    value.get("type").and_then(serde_json::Value::as_str)
}

/// Reads one JSON frame of at most `limit` bytes; `None` when the stream ended before it.
async fn read_frame(
    recv: &mut RecvStream,
    limit: usize,
) -> Result<Option<serde_json::Value>, wire::WireError> {
    match wire::read_bytes_within(recv, limit).await? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}
