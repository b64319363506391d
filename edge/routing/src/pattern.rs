//! Compiled host, path and method matchers used on the request hot path.

use std::fmt;

/// A compiled host pattern. Stored lowercase; matched case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// `*` or no pattern: any host.
    Any,
    /// `example.com`: exactly this host.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any subdomain, not the apex.
    Suffix(String),
}

impl HostPattern {
    /// Compiles a host pattern from config, returning a reason on error.
    pub(crate) fn compile(pattern: &str) -> Result<Self, &'static str> {
        if pattern.is_empty() {
            return Err("must not be empty");
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters");
        }
        if pattern == "*" {
            return Ok(Self::Any);
        }
        let lower = pattern.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower),
        };
        validate_host_name(name)?;
        Ok(if wildcard {
            Self::Suffix(format!(".{name}"))
        } else {
            Self::Exact(name.to_owned())
        })
    }

    /// Whether an already-normalized request host (see [`normalize_host`])
    /// matches this pattern. Does not allocate.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => host.eq_ignore_ascii_case(exact),
            Self::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host
                        .as_bytes()
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(exact) => f.write_str(exact),
            Self::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// Checks the non-wildcard part of a host pattern (already lowercased, with
/// any trailing dot and leading `*.` removed).
fn validate_host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("wildcard needs a domain after `*.`");
    }
    if name.contains('*') {
        return Err("`*` is only allowed as the whole pattern or as a leading `*.` label");
    }
    if name.contains(['/', '?', '#', '@', '\\']) {
        return Err("must be a bare host name (no scheme, path, query or userinfo)");
    }
    if let Some(inner) = name.strip_prefix('[') {
        // IPv6 literal such as `[::1]`.
        let Some(addr) = inner.strip_suffix(']') else {
            return Err("IPv6 literal must be `[address]` without a port");
        };
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err("malformed IPv6 literal");
        }
        return Ok(());
    }
    if name.contains(['[', ']']) {
        return Err("`[` and `]` are only allowed around an IPv6 literal");
    }
    if name.contains(':') {
        return Err("must not include a port (ports are ignored when matching)");
    }
    if name.split('.').any(str::is_empty) {
        return Err("must not contain empty labels");
    }
    Ok(())
}

/// Reduces a request `Host` value to the form patterns are matched against:
/// drops a trailing `:port` (keeping IPv6 literals like `[::1]` intact) and a
/// trailing dot. Case is left alone; matching is case-insensitive.
pub(crate) fn normalize_host(host: &str) -> &str {
    let without_port = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            // Exactly one colon: `name:port`. Several colons without
            // brackets is a bare IPv6 address, which has no port to strip.
            Some(colon) if !host[..colon].contains(':') => &host[..colon],
            _ => host,
        }
    };
    without_port.strip_suffix('.').unwrap_or(without_port)
}

/// A compiled path pattern. Matched case-sensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPattern {
    /// `*`, `/*` or no pattern: any path.
    Any,
    /// `/about`: exactly this path.
    Exact(String),
    /// `/api/*`, stored as `/api`: `/api` itself and anything under `/api/`.
    Prefix(String),
}

impl PathPattern {
    /// Compiles a path pattern from config, returning a reason on error.
    pub(crate) fn compile(pattern: &str) -> Result<Self, &'static str> {
        if pattern == "*" || pattern == "/*" {
            return Ok(Self::Any);
        }
        if !pattern.starts_with('/') {
            return Err("must start with `/` (or be `*`)");
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters");
        }
        if pattern.contains(['?', '#']) {
            return Err("must not contain a query (`?`) or fragment (`#`)");
        }
        let (prefix, base) = match pattern.strip_suffix("/*") {
            Some(base) => (true, base),
            None => (false, pattern),
        };
        if base.contains('*') {
            return Err("`*` is only allowed as a trailing `/*`");
        }
        Ok(if prefix {
            Self::Prefix(base.to_owned())
        } else {
            Self::Exact(base.to_owned())
        })
    }

    /// Whether a request path (query already removed) matches. Does not
    /// allocate.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => path == exact,
            Self::Prefix(base) => {
                path.starts_with(base.as_str())
                    && matches!(path.as_bytes().get(base.len()), None | Some(b'/'))
            }
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(exact) => f.write_str(exact),
            Self::Prefix(base) => write!(f, "{base}/*"),
        }
    }
}

/// Drops a query string (from the first `?` on) from a request path.
pub(crate) fn strip_query(path: &str) -> &str {
    match path.find('?') {
        Some(q) => &path[..q],
        None => path,
    }
}

/// Validates an HTTP method from config and returns it uppercased.
pub(crate) fn compile_method(method: &str) -> Result<String, &'static str> {
    if method.is_empty() {
        return Err("must not be empty");
    }
    if !method.bytes().all(is_token_byte) {
        return Err("not an HTTP token (RFC 9110 tchar)");
    }
    Ok(method.to_ascii_uppercase())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_host_strips_port_and_dot() {
        assert_eq!(normalize_host("example.com"), "example.com");
        assert_eq!(normalize_host("example.com:8080"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("example.com.:443"), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("::1"), "::1");
        assert_eq!(normalize_host("[::1"), "[::1");
        assert_eq!(normalize_host(""), "");
    }

    #[test]
    fn strip_query_only_cuts_at_question_mark() {
        assert_eq!(strip_query("/a/b?x=1?y"), "/a/b");
        assert_eq!(strip_query("/a/b"), "/a/b");
        assert_eq!(strip_query("?"), "");
    }

    #[test]
    fn method_tokens() {
        assert_eq!(compile_method("get"), Ok("GET".to_owned()));
        assert_eq!(compile_method("M-SEARCH"), Ok("M-SEARCH".to_owned()));
        assert!(compile_method("").is_err());
        assert!(compile_method("GE T").is_err());
        assert!(compile_method("GET(").is_err());
        assert!(compile_method("GÉT").is_err());
    }

    #[test]
    fn host_pattern_display_round_trips_normalized_form() {
        let cases = [
            ("*", "*"),
            ("Example.COM.", "example.com"),
            ("*.Example.com", "*.example.com"),
            ("[::1]", "[::1]"),
        ];
        for (input, shown) in cases {
            assert_eq!(
                HostPattern::compile(input).map(|p| p.to_string()),
                Ok(shown.to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn path_pattern_display() {
        let cases = [("*", "*"), ("/*", "*"), ("/a", "/a"), ("/a/b/*", "/a/b/*")];
        for (input, shown) in cases {
            assert_eq!(
                PathPattern::compile(input).map(|p| p.to_string()),
                Ok(shown.to_owned()),
                "{input}"
            );
        }
    }
}
