//! Messages on the node ↔ control QUIC connection and their framing (u32 big-endian length, then JSON or raw bytes).
//!
//! A node opens one long-lived bidirectional *sync stream*: it sends [`NodeMessage::Hello`],
//! control answers with a [`ControlMessage::Snapshot`] whenever the published version
//! differs from what the node last saw, and the node replies [`NodeMessage::Ack`] or
//! [`NodeMessage::Nack`] for each. Everything else is a one-shot *request stream*: the node
//! sends one [`Request`], control sends one [`Response`] (and, for a bundle, one raw frame
//! with the archive bytes) and finishes the stream.
//!
//! KV requests are request streams too:
//!
//! | Node sends | Control answers |
//! |---|---|
//! | [`Request::KvGet`] | [`Response::KvEntry`], then one raw frame with the value when `found` |
//! | [`Request::KvPut`], then one raw frame with the value | [`Response::KvDone`] once committed |
//! | [`Request::KvDelete`] | [`Response::KvDone`] once committed (also for a missing key) |
//! | [`Request::KvList`] | [`Response::KvKeys`] |
//!
//! Any of them may instead get [`Response::Error`] (a limit broken, an unknown
//! namespace), whose message is meant for the handler. Control checks the
//! [`kv`](crate::kv) limits and that the namespace exists; whether the calling
//! function binds the namespace is the node's to check. An expired key is never
//! returned. After every committed write control sends [`ControlMessage::KvInvalidate`]
//! on every connected node's sync stream (the writer's included). Invalidations missed
//! while disconnected are not replayed, so a node drops its whole KV cache whenever it
//! (re)connects; a node too slow to take them is closed with [`close::RESYNC`].

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;

use crate::bundle::BundleHash;
use crate::bundle::MAX_BUNDLE_BYTES;
use crate::kv::KvKey;
use crate::snapshot::Snapshot;

/// Largest frame either side accepts: a bundle plus headroom for JSON.
pub const MAX_FRAME_BYTES: usize = MAX_BUNDLE_BYTES + 1024 * 1024;

/// Application error codes control closes a QUIC connection with.
pub mod close {
    /// Control is shutting down; reconnect with backoff.
    pub const SHUTDOWN: u32 = 0;
    /// The node's certificate is unknown to control or revoked: join again.
    pub const UNKNOWN_NODE: u32 = 1;
    /// The peer broke the protocol, e.g. a connection without a certificate asked for
    /// something other than [`Request::Join`](super::Request::Join).
    pub const PROTOCOL: u32 = 2;
    /// The node fell behind on KV invalidations and missed some: reconnect and drop
    /// every cached KV entry.
    pub const RESYNC: u32 = 3;
}

/// Node → control, on the sync stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeMessage {
    /// First message: who the node is and what it serves now.
    Hello {
        /// The node's display name.
        name: String,
        /// The snapshot version the node serves (from disk), if any.
        applied: Option<u64>,
    },
    /// The snapshot is validated and now serving.
    Ack {
        /// Its version.
        version: u64,
    },
    /// The snapshot was refused; the node keeps serving its previous one.
    Nack {
        /// Its version.
        version: u64,
        /// Why, e.g. the function whose bundle does not boot, with file and line.
        error: String,
    },
}

/// Control → node, on the sync stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// A newer snapshot to validate and apply.
    Snapshot {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// These keys changed (written or deleted): drop them from the node's cache.
    KvInvalidate {
        /// The namespace.
        namespace: String,
        /// The keys; empty means every key of the namespace (it was deleted).
        keys: Vec<String>,
    },
}

/// Node → control, alone on a request stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Exchange a one-time join token for a node certificate (the only request a
    /// connection without a certificate may make).
    Join {
        /// The join token printed by `outpost-control init` or created through the API.
        token: String,
        /// The node's display name.
        name: String,
        /// PEM certificate signing request for the node's own key.
        csr_pem: String,
    },
    /// The archive bytes of a bundle.
    Bundle {
        /// Its hash.
        hash: BundleHash,
    },
    /// The live entry under a key: answered by [`Response::KvEntry`].
    KvGet {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// Store a value; ONE raw frame with the value's bytes follows this message.
    /// Answered by [`Response::KvDone`] once committed.
    KvPut {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// Absolute expiration, Unix seconds (the node turns `expirationTtl` into one,
        /// after checking it with [`kv::resolve_expiration`](crate::kv::resolve_expiration)).
        /// Control tolerates one up to a minute in the past (clock skew) and stores it as
        /// already expired, i.e. the put then acts as a delete.
        #[serde(default)]
        expiration: Option<u64>,
        /// JSON metadata stored with the value.
        #[serde(default)]
        metadata: Option<serde_json::Value>,
    },
    /// Remove a key (removing a missing key succeeds): answered by [`Response::KvDone`].
    KvDelete {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// One page of live keys in byte order: answered by [`Response::KvKeys`].
    KvList {
        /// The namespace.
        namespace: String,
        /// Only keys starting with this.
        #[serde(default)]
        prefix: Option<String>,
        /// Page size, 1..=1000 (default 1000).
        #[serde(default)]
        limit: Option<u32>,
        /// The previous page's cursor.
        #[serde(default)]
        cursor: Option<String>,
    },
}

/// Control → node, the answer on a request stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// The node's identity.
    Joined {
        /// Node id assigned by control.
        node_id: String,
        /// The node's certificate, PEM.
        cert_pem: String,
        /// The CA that signs node and control certificates, PEM.
        ca_pem: String,
    },
    /// A raw frame with the bundle's archive bytes follows.
    Bundle,
    /// The answer to [`Request::KvGet`]; when `found`, one raw frame with the value follows.
    KvEntry {
        /// Whether the key holds a live value.
        found: bool,
        /// When it expires, Unix seconds.
        #[serde(default)]
        expiration: Option<u64>,
        /// Its metadata.
        #[serde(default)]
        metadata: Option<serde_json::Value>,
    },
    /// A [`Request::KvPut`] or [`Request::KvDelete`] is committed.
    KvDone,
    /// The answer to [`Request::KvList`].
    KvKeys {
        /// Live keys in byte order.
        keys: Vec<KvKey>,
        /// No more keys after these.
        list_complete: bool,
        /// Continues the listing when not complete.
        #[serde(default)]
        cursor: Option<String>,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// A frame that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The stream failed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// A frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// A frame is not the expected JSON message.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Writes one raw frame.
pub async fn write_bytes<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
) -> Result<(), WireError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let length = u32::try_from(bytes.len()).map_err(|_| WireError::TooLarge(bytes.len()))?;
    writer.write_all(&length.to_be_bytes()).await?;
    writer.write_all(bytes).await?;
    Ok(())
}

/// Reads one raw frame; `None` when the stream ended cleanly before it.
pub async fn read_bytes<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, WireError> {
    read_bytes_within(reader, MAX_FRAME_BYTES).await
}

/// Reads one raw frame of at most `limit` bytes (refused before allocating); `None` when
/// the stream ended cleanly before it.
pub async fn read_bytes_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > limit {
        return Err(WireError::TooLarge(length));
    }
    let mut bytes = vec![0u8; length];
    reader.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

/// Writes one JSON message frame.
pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    message: &T,
) -> Result<(), WireError> {
    write_bytes(writer, &serde_json::to_vec(message)?).await
}

/// Reads one JSON message frame; `None` when the stream ended cleanly before it.
pub async fn read_message<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
) -> Result<Option<T>, WireError> {
    match read_bytes(reader).await? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip_through_a_stream() -> Result<(), WireError> {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let hello = NodeMessage::Hello {
            name: "pop-1".into(),
            applied: Some(4),
        };
        write_message(&mut a, &hello).await?;
        write_bytes(&mut a, b"raw").await?;
        drop(a);
        assert_eq!(read_message::<_, NodeMessage>(&mut b).await?, Some(hello));
        assert_eq!(read_bytes(&mut b).await?, Some(b"raw".to_vec()));
        assert_eq!(read_message::<_, NodeMessage>(&mut b).await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_allocating() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let length = u32::try_from(MAX_FRAME_BYTES + 1).unwrap_or(u32::MAX);
        let _ = a.write_all(&length.to_be_bytes()).await;
        assert!(matches!(
            read_bytes(&mut b).await,
            Err(WireError::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn garbage_is_a_malformed_message() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let _ = write_bytes(&mut a, b"{not json").await;
        assert!(matches!(
            read_message::<_, NodeMessage>(&mut b).await,
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn messages_are_tagged_json() -> Result<(), serde_json::Error> {
        let ack = serde_json::to_string(&NodeMessage::Ack { version: 3 })?;
        assert_eq!(ack, r#"{"type":"ack","version":3}"#);
        Ok(())
    }

    #[test]
    fn kv_messages_are_tagged_json() -> Result<(), serde_json::Error> {
        let put = Request::KvPut {
            namespace: "cache".into(),
            key: "a".into(),
            expiration: Some(9),
            metadata: Some(serde_json::json!({ "v": 1 })),
        };
        let text = serde_json::to_string(&put)?;
        assert_eq!(
            text,
            r#"{"type":"kv_put","namespace":"cache","key":"a","expiration":9,"metadata":{"v":1}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text)?, put);
        // Optional fields may be left out.
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"type":"kv_list","namespace":"cache"}"#)?,
            Request::KvList {
                namespace: "cache".into(),
                prefix: None,
                limit: None,
                cursor: None
            }
        );
        let invalidate = ControlMessage::KvInvalidate {
            namespace: "cache".into(),
            keys: vec!["a".into()],
        };
        assert_eq!(
            serde_json::to_string(&invalidate)?,
            r#"{"type":"kv_invalidate","namespace":"cache","keys":["a"]}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::KvDone)?,
            r#"{"type":"kv_done"}"#
        );
        Ok(())
    }
}
