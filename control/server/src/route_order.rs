//! The order control publishes routes in: most specific first, so "first match wins" picks the most specific rule.

use std::cmp::Reverse;

use outpost_routing::RouteRule;

/// How specific a rule's host pattern is; smaller sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HostRank {
    /// `example.com`.
    Exact,
    /// `*.example.com`; a longer domain is more specific.
    Wildcard(Reverse<usize>),
    /// `*` or no host.
    Any,
}

/// How specific a rule's path pattern is; smaller sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PathRank {
    /// `/about`.
    Exact,
    /// `/api/*`; a longer prefix is more specific.
    Prefix(Reverse<usize>),
    /// `*`, `/*` or no path.
    Any,
}

fn host_rank(host: Option<&str>) -> HostRank {
    match host {
        None | Some("*") => HostRank::Any,
        Some(host) => match host.strip_prefix("*.") {
            Some(domain) => HostRank::Wildcard(Reverse(domain.trim_end_matches('.').len())),
            None => HostRank::Exact,
        },
    }
}

fn path_rank(path: Option<&str>) -> PathRank {
    match path {
        None | Some("*") | Some("/*") => PathRank::Any,
        Some(path) => match path.strip_suffix("/*") {
            Some(base) => PathRank::Prefix(Reverse(base.len())),
            None => PathRank::Exact,
        },
    }
}

/// Sorts `(owner, rule)` pairs most specific first: exact host, then `*.` wildcard hosts
/// (longer domain first), then any host; within each, exact path, then `/prefix/*`
/// (longer first), then any path. The sort is stable, so rules of equal specificity keep
/// the order they come in, which callers make (owner name, declared order).
pub(crate) fn sort_most_specific_first<T>(routes: &mut [(T, RouteRule)]) {
    routes.sort_by_key(|(_, rule)| {
        (
            host_rank(rule.host.as_deref()),
            path_rank(rule.path.as_deref()),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(host: Option<&str>, path: Option<&str>) -> RouteRule {
        RouteRule {
            host: host.map(str::to_owned),
            path: path.map(str::to_owned),
            function: Some("f".into()),
            ..RouteRule::default()
        }
    }

    fn order(rules: Vec<(&'static str, RouteRule)>) -> Vec<&'static str> {
        let mut rules = rules;
        sort_most_specific_first(&mut rules);
        rules.into_iter().map(|(label, _)| label).collect()
    }

    #[test]
    fn hosts_exact_then_wildcard_then_any() {
        assert_eq!(
            order(vec![
                ("any", rule(None, None)),
                ("star", rule(Some("*"), None)),
                ("wild", rule(Some("*.example.com"), None)),
                ("wild-deeper", rule(Some("*.api.example.com"), None)),
                ("exact", rule(Some("example.com"), None)),
            ]),
            ["exact", "wild-deeper", "wild", "any", "star"]
        );
    }

    #[test]
    fn paths_exact_then_longer_prefix_then_any() {
        assert_eq!(
            order(vec![
                ("any", rule(None, Some("/*"))),
                ("short", rule(None, Some("/api/*"))),
                ("none", rule(None, None)),
                ("long", rule(None, Some("/api/v1/*"))),
                ("exact", rule(None, Some("/api/v1/health"))),
            ]),
            ["exact", "long", "short", "any", "none"]
        );
    }

    #[test]
    fn host_outranks_path() {
        assert_eq!(
            order(vec![
                ("any-host-exact-path", rule(None, Some("/login"))),
                ("wild-host-any-path", rule(Some("*.example.com"), None)),
                ("exact-host-any-path", rule(Some("example.com"), None)),
                (
                    "exact-host-prefix",
                    rule(Some("example.com"), Some("/api/*"))
                ),
            ]),
            [
                "exact-host-prefix",
                "exact-host-any-path",
                "wild-host-any-path",
                "any-host-exact-path"
            ]
        );
    }

    #[test]
    fn ties_keep_the_incoming_order() {
        assert_eq!(
            order(vec![
                ("a-first", rule(None, Some("/x/*"))),
                ("a-second", rule(None, Some("/y/*"))),
                ("b-first", rule(None, Some("/z/*"))),
                ("catch-all", rule(None, None)),
                ("a-exact", rule(None, Some("/x"))),
            ]),
            ["a-exact", "a-first", "a-second", "b-first", "catch-all"]
        );
    }
}
