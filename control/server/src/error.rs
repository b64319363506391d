//! The control service's error type, classified so the admin API and the QUIC service can answer precisely.

use std::net::SocketAddr;
use std::path::PathBuf;

use outpost_proto::SnapshotError;
use outpost_proto::kv::KvLimitError;

/// Everything that can go wrong in the control service.
///
/// The first variants are the caller's fault (bad input, missing thing, conflicting
/// state, refused credentials); the rest are the service's own (disk, database,
/// certificates, sockets).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request is malformed or names something invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The function, version, secret, bundle or node does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change does not fit the current state (e.g. promote without a split).
    #[error("{0}")]
    Conflict(String),
    /// A token or certificate was refused.
    #[error("{0}")]
    Denied(String),
    /// A body is larger than allowed (e.g. a KV value over 25 MiB).
    #[error("{0}")]
    TooLarge(String),
    /// The change would publish a snapshot that fails [`Snapshot::check`](outpost_proto::Snapshot::check).
    #[error("refused: the resulting snapshot is inconsistent: {0}")]
    Inconsistent(#[from] SnapshotError),
    /// `init` found an existing database.
    #[error("{} already holds a control database", .0.display())]
    AlreadyInitialized(PathBuf),
    /// The data directory was never initialized.
    #[error("{} holds no control database; run `outpost-control init --data-dir {}` first", .0.display(), .0.display())]
    NotInitialized(PathBuf),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    /// A key or certificate could not be made or read.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS or QUIC configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// Stored data does not parse (a damaged database or data directory).
    #[error("stored state is unreadable: {0}")]
    Corrupt(String),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl ControlError {
    /// Wraps an IO error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ControlError {
        let path = path.into();
        move |source| ControlError::Io { path, source }
    }

    /// Whether the caller (not the service) is at fault.
    pub(crate) fn is_client_error(&self) -> bool {
        matches!(
            self,
            ControlError::BadRequest(_)
                | ControlError::NotFound(_)
                | ControlError::Conflict(_)
                | ControlError::Denied(_)
                | ControlError::TooLarge(_)
                | ControlError::Inconsistent(_)
        )
    }
}

impl From<KvLimitError> for ControlError {
    fn from(error: KvLimitError) -> Self {
        match error {
            KvLimitError::ValueTooLarge(_) => ControlError::TooLarge(error.to_string()),
            _ => ControlError::BadRequest(error.to_string()),
        }
    }
}
