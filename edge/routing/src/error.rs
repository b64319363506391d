//! Typed validation errors returned when compiling a route table.

use thiserror::Error;

/// Why a configured [`RouteRule`](crate::RouteRule) was rejected by
/// [`RouteTable::new`](crate::RouteTable::new).
///
/// Every variant carries the 0-based `index` of the offending rule; the
/// `Display` output also shows it 1-based as "route #N" for humans.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    /// None of `function`, `origin` or `bypass = true` was set.
    #[error(
        "route #{} (index {index}): no target; set `function`, `origin` or `bypass = true`",
        .index + 1
    )]
    NoTarget {
        /// 0-based position of the rule in the config.
        index: usize,
    },

    /// `bypass = true` was combined with `function` or `origin`.
    #[error(
        "route #{} (index {index}): `bypass = true` cannot be combined with `{field}`",
        .index + 1
    )]
    BypassWithTarget {
        /// 0-based position of the rule in the config.
        index: usize,
        /// The conflicting field (`"function"` or `"origin"`).
        field: &'static str,
    },

    /// `function` or `origin` was set to an empty (or all-whitespace) name.
    #[error("route #{} (index {index}): `{field}` must not be empty", .index + 1)]
    EmptyName {
        /// 0-based position of the rule in the config.
        index: usize,
        /// The empty field (`"function"` or `"origin"`).
        field: &'static str,
    },

    /// The `host` pattern is malformed.
    #[error(
        "route #{} (index {index}): invalid host pattern {pattern:?}: {reason}",
        .index + 1
    )]
    InvalidHost {
        /// 0-based position of the rule in the config.
        index: usize,
        /// The pattern as written in the config.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The `path` pattern is malformed.
    #[error(
        "route #{} (index {index}): invalid path pattern {pattern:?}: {reason}",
        .index + 1
    )]
    InvalidPath {
        /// 0-based position of the rule in the config.
        index: usize,
        /// The pattern as written in the config.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An entry of `methods` is not a valid HTTP method token.
    #[error(
        "route #{} (index {index}): invalid method {method:?}: {reason}",
        .index + 1
    )]
    InvalidMethod {
        /// 0-based position of the rule in the config.
        index: usize,
        /// The method as written in the config.
        method: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The rule names a function that is not configured.
    #[error(
        "route #{} refers to function {name:?}, which is not configured",
        .index + 1
    )]
    UnknownFunction {
        /// 0-based position of the rule in the config.
        index: usize,
        /// The missing function.
        name: String,
    },

    /// The rule names an origin that is not configured.
    #[error(
        "route #{} refers to origin {name:?}, which is not configured",
        .index + 1
    )]
    UnknownOrigin {
        /// 0-based position of the rule in the config.
        index: usize,
        /// The missing origin.
        name: String,
    },
}

impl RouteError {
    /// The 0-based index of the rule this error is about, for callers that
    /// want to point at the offending config entry.
    pub fn index(&self) -> usize {
        match self {
            Self::NoTarget { index }
            | Self::BypassWithTarget { index, .. }
            | Self::EmptyName { index, .. }
            | Self::InvalidHost { index, .. }
            | Self::InvalidPath { index, .. }
            | Self::InvalidMethod { index, .. }
            | Self::UnknownFunction { index, .. }
            | Self::UnknownOrigin { index, .. } => *index,
        }
    }
}
