//! Pure route matching for Outpost edge nodes: host/path/method rules to targets, no IO.
//!
//! Config rules ([`RouteRule`]) are validated and compiled once by
//! [`RouteTable::new`]; [`RouteTable::find`] then runs on every request
//! without allocating. The first matching rule, in config order, wins.

mod error;
mod pattern;

use serde::Deserialize;
use serde::Serialize;

pub use error::RouteError;
use pattern::{HostPattern, PathPattern};

/// One rule as written in config (e.g. a `[[routes]]` TOML table).
///
/// Exactly one target must be chosen: `function` (optionally with `origin` as
/// its fallback), `origin` alone, or `bypass = true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Host pattern; `None` means any host. `example.com` matches exactly,
    /// `*.example.com` matches any subdomain (one or more labels) but not the
    /// apex, and `*` matches any host. Compared case-insensitively; request
    /// ports and trailing dots are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path pattern; `None` means any path. `/about` matches exactly,
    /// `/api/*` matches `/api` and anything under `/api/`, and `/*` or `*`
    /// match any path. Compared case-sensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP methods the rule applies to; `None` or empty means any method.
    /// Compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Name of the function that handles matching requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// With `function`: the origin used by `ctx.passThroughOnException()`.
    /// Without `function`: the origin matching requests are proxied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `true`: matching stops here and no function runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass: Option<bool>,
}

/// What a matched request should be handed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Run a function.
    Function {
        /// The function's name.
        name: String,
        /// The origin to pass through to on exception, if configured.
        fallback_origin: Option<String>,
    },
    /// Proxy straight to an origin without running a function.
    Origin {
        /// The origin's name.
        name: String,
    },
    /// Run no function; the caller treats the request as unrouted.
    Bypass,
}

/// One validated, compiled rule of a [`RouteTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// 0-based position of the rule in the config it came from.
    pub index: usize,
    /// What matching requests are handed to.
    pub target: RouteTarget,
    host: HostPattern,
    path: PathPattern,
    /// Uppercased; empty means any method.
    methods: Box<[String]>,
}

impl Route {
    /// Human-readable summary of what this route matches, for logs and
    /// diagnostics, e.g. `host=*.example.com path=/api/* methods=GET,POST`
    /// (`*` stands for "any").
    pub fn describe(&self) -> String {
        let mut out = format!("host={} path={} methods=", self.host, self.path);
        if self.methods.is_empty() {
            out.push('*');
        } else {
            for (i, method) in self.methods.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(method);
            }
        }
        out
    }

    /// Whether a request matches this route. `host` may carry a port and
    /// `path` a query string; both are ignored. Does not allocate.
    pub fn matches(&self, host: &str, path: &str, method: &str) -> bool {
        self.matches_normalized(
            pattern::normalize_host(host),
            pattern::strip_query(path),
            method,
        )
    }

    fn matches_normalized(&self, host: &str, path: &str, method: &str) -> bool {
        self.host.matches(host)
            && self.path.matches(path)
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }

    fn compile(index: usize, rule: RouteRule) -> Result<Self, RouteError> {
        let target = compile_target(index, &rule)?;
        let host = match rule.host.as_deref() {
            None => HostPattern::Any,
            Some(pattern) => {
                HostPattern::compile(pattern).map_err(|reason| RouteError::InvalidHost {
                    index,
                    pattern: pattern.to_owned(),
                    reason,
                })?
            }
        };
        let path = match rule.path.as_deref() {
            None => PathPattern::Any,
            Some(pattern) => {
                PathPattern::compile(pattern).map_err(|reason| RouteError::InvalidPath {
                    index,
                    pattern: pattern.to_owned(),
                    reason,
                })?
            }
        };
        let mut methods: Vec<String> = Vec::new();
        for method in rule.methods.unwrap_or_default() {
            let upper =
                pattern::compile_method(&method).map_err(|reason| RouteError::InvalidMethod {
                    index,
                    method: method.clone(),
                    reason,
                })?;
            if !methods.contains(&upper) {
                methods.push(upper);
            }
        }
        Ok(Self {
            index,
            target,
            host,
            path,
            methods: methods.into_boxed_slice(),
        })
    }
}

/// Works out a rule's target, rejecting missing, conflicting or empty ones.
fn compile_target(index: usize, rule: &RouteRule) -> Result<RouteTarget, RouteError> {
    let name = |field: &'static str, value: &str| {
        if value.trim().is_empty() {
            Err(RouteError::EmptyName { index, field })
        } else {
            Ok(value.to_owned())
        }
    };
    if rule.bypass == Some(true) {
        if rule.function.is_some() {
            return Err(RouteError::BypassWithTarget {
                index,
                field: "function",
            });
        }
        if rule.origin.is_some() {
            return Err(RouteError::BypassWithTarget {
                index,
                field: "origin",
            });
        }
        return Ok(RouteTarget::Bypass);
    }
    match (rule.function.as_deref(), rule.origin.as_deref()) {
        (Some(function), origin) => Ok(RouteTarget::Function {
            name: name("function", function)?,
            fallback_origin: origin.map(|o| name("origin", o)).transpose()?,
        }),
        (None, Some(origin)) => Ok(RouteTarget::Origin {
            name: name("origin", origin)?,
        }),
        (None, None) => Err(RouteError::NoTarget { index }),
    }
}

/// A validated, compiled, immutable list of routes, matched in order.
///
/// Cheap to share across threads (`Send + Sync`); clone it to hand a copy to
/// another owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Box<[Route]>,
}

impl RouteTable {
    /// Validates and compiles config rules, keeping their order. Fails on the
    /// first invalid rule; the error names its index.
    pub fn new(rules: Vec<RouteRule>) -> Result<Self, RouteError> {
        let routes = rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| Route::compile(index, rule))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            routes: routes.into_boxed_slice(),
        })
    }

    /// The first route (in config order) matching the request, if any.
    ///
    /// `host` is the request's `Host`/authority (a `:port` and trailing dot
    /// are ignored); `path` should exclude the query string, but anything
    /// from a `?` on is ignored anyway. Does not allocate.
    pub fn find(&self, host: &str, path: &str, method: &str) -> Option<&Route> {
        let host = pattern::normalize_host(host);
        let path = pattern::strip_query(path);
        self.routes
            .iter()
            .find(|route| route.matches_normalized(host, path, method))
    }

    /// Number of routes in the table.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no routes (so [`find`](Self::find) never matches).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// All routes in match order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Names of every function referenced, in route order (may repeat), for
    /// checking them against the configured functions.
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().filter_map(|route| match &route.target {
            RouteTarget::Function { name, .. } => Some(name.as_str()),
            RouteTarget::Origin { .. } | RouteTarget::Bypass => None,
        })
    }

    /// Checks that every function and origin a route names exists (`has_function`,
    /// `has_origin` answer for the configured ones); the error names the first route
    /// that refers to something missing.
    pub fn check_targets(
        &self,
        has_function: impl Fn(&str) -> bool,
        has_origin: impl Fn(&str) -> bool,
    ) -> Result<(), RouteError> {
        for route in self.routes.iter() {
            let (function, origin) = match &route.target {
                RouteTarget::Function {
                    name,
                    fallback_origin,
                } => (Some(name), fallback_origin.as_ref()),
                RouteTarget::Origin { name } => (None, Some(name)),
                RouteTarget::Bypass => (None, None),
            };
            if let Some(name) = function.filter(|name| !has_function(name)) {
                return Err(RouteError::UnknownFunction {
                    index: route.index,
                    name: name.clone(),
                });
            }
            if let Some(name) = origin.filter(|name| !has_origin(name)) {
                return Err(RouteError::UnknownOrigin {
                    index: route.index,
                    name: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Names of every origin referenced, both proxy targets and function
    /// fallback origins, in route order (may repeat), for checking them
    /// against the configured origins.
    pub fn origin_names(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().filter_map(|route| match &route.target {
            RouteTarget::Origin { name } => Some(name.as_str()),
            RouteTarget::Function {
                fallback_origin, ..
            } => fallback_origin.as_deref(),
            RouteTarget::Bypass => None,
        })
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
mod tests {
    use super::*;

    fn function(name: &str) -> RouteRule {
        RouteRule {
            function: Some(name.to_owned()),
            ..RouteRule::default()
        }
    }

    fn rule(host: Option<&str>, path: Option<&str>, target: &str) -> RouteRule {
        RouteRule {
            host: host.map(str::to_owned),
            path: path.map(str::to_owned),
            ..function(target)
        }
    }

    fn table(rules: Vec<RouteRule>) -> RouteTable {
        RouteTable::new(rules).unwrap()
    }

    /// Name of the function that `find` picks, if any.
    fn hit<'a>(t: &'a RouteTable, host: &str, path: &str, method: &str) -> Option<&'a str> {
        t.find(host, path, method).map(|r| match &r.target {
            RouteTarget::Function { name, .. } | RouteTarget::Origin { name } => name.as_str(),
            RouteTarget::Bypass => "<bypass>",
        })
    }

    fn err(rule: RouteRule) -> RouteError {
        RouteTable::new(vec![function("ok"), rule]).unwrap_err()
    }

    #[test]
    fn first_match_wins_in_config_order() {
        let t = table(vec![
            rule(Some("example.com"), Some("/api/*"), "api"),
            rule(Some("example.com"), None, "site"),
            rule(None, Some("/api/*"), "other-api"),
            rule(None, None, "catch-all"),
        ]);
        assert_eq!(hit(&t, "example.com", "/api/x", "GET"), Some("api"));
        assert_eq!(hit(&t, "example.com", "/", "GET"), Some("site"));
        assert_eq!(hit(&t, "other.org", "/api/x", "GET"), Some("other-api"));
        assert_eq!(hit(&t, "other.org", "/", "GET"), Some("catch-all"));
        assert_eq!(t.find("example.com", "/", "GET").unwrap().index, 1);

        // Reversed order: the catch-all shadows everything.
        let t = table(vec![
            rule(None, None, "catch-all"),
            rule(Some("example.com"), None, "site"),
        ]);
        assert_eq!(hit(&t, "example.com", "/", "GET"), Some("catch-all"));
    }

    #[test]
    fn empty_table_matches_nothing() {
        let t = table(vec![]);
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert!(t.find("example.com", "/", "GET").is_none());
    }

    #[test]
    fn exact_host() {
        let t = table(vec![rule(Some("example.com"), None, "f")]);
        assert_eq!(hit(&t, "example.com", "/", "GET"), Some("f"));
        assert_eq!(hit(&t, "www.example.com", "/", "GET"), None);
        assert_eq!(hit(&t, "example.co", "/", "GET"), None);
        assert_eq!(hit(&t, "example.com.evil", "/", "GET"), None);
        assert_eq!(hit(&t, "xexample.com", "/", "GET"), None);
        assert_eq!(hit(&t, "", "/", "GET"), None);
    }

    #[test]
    fn wildcard_host_matches_subdomains_not_apex() {
        let t = table(vec![rule(Some("*.example.com"), None, "f")]);
        assert_eq!(hit(&t, "a.example.com", "/", "GET"), Some("f"));
        assert_eq!(hit(&t, "a.b.example.com", "/", "GET"), Some("f"));
        assert_eq!(hit(&t, "example.com", "/", "GET"), None);
        assert_eq!(hit(&t, ".example.com", "/", "GET"), None);
        assert_eq!(hit(&t, "badexample.com", "/", "GET"), None);
        assert_eq!(hit(&t, "a.example.org", "/", "GET"), None);
    }

    #[test]
    fn star_host_and_missing_host_match_anything() {
        for host in [Some("*"), None] {
            let t = table(vec![rule(host, None, "f")]);
            assert_eq!(hit(&t, "anything.test", "/", "GET"), Some("f"));
            assert_eq!(hit(&t, "[::1]:80", "/", "GET"), Some("f"));
            assert_eq!(hit(&t, "", "/", "GET"), Some("f"));
        }
    }

    #[test]
    fn host_port_and_trailing_dot_are_ignored() {
        let t = table(vec![
            rule(Some("example.com"), None, "name"),
            rule(Some("[::1]"), None, "v6"),
            rule(Some("127.0.0.1"), None, "v4"),
        ]);
        assert_eq!(hit(&t, "example.com:8080", "/", "GET"), Some("name"));
        assert_eq!(hit(&t, "example.com.", "/", "GET"), Some("name"));
        assert_eq!(hit(&t, "example.com.:443", "/", "GET"), Some("name"));
        assert_eq!(hit(&t, "[::1]:8080", "/", "GET"), Some("v6"));
        assert_eq!(hit(&t, "[::1]", "/", "GET"), Some("v6"));
        assert_eq!(hit(&t, "[::2]:8080", "/", "GET"), None);
        assert_eq!(hit(&t, "127.0.0.1:3000", "/", "GET"), Some("v4"));
        // A port must not be mistaken for part of the host.
        assert_eq!(hit(&t, "example.comx:80", "/", "GET"), None);
    }

    #[test]
    fn wildcard_host_with_port() {
        let t = table(vec![rule(Some("*.example.com"), None, "f")]);
        assert_eq!(hit(&t, "a.example.com:8443", "/", "GET"), Some("f"));
        assert_eq!(hit(&t, "example.com:8443", "/", "GET"), None);
    }

    #[test]
    fn host_and_method_are_case_insensitive_path_is_not() {
        let t = table(vec![
            RouteRule {
                methods: Some(vec!["post".to_owned()]),
                ..rule(Some("Example.COM"), Some("/Api/*"), "exact")
            },
            rule(Some("*.EXAMPLE.com"), None, "wild"),
        ]);
        assert_eq!(hit(&t, "EXAMPLE.com", "/Api/x", "Post"), Some("exact"));
        assert_eq!(hit(&t, "example.com", "/Api", "POST"), Some("exact"));
        assert_eq!(hit(&t, "example.com", "/api/x", "POST"), None);
        assert_eq!(hit(&t, "WWW.Example.Com", "/", "GET"), Some("wild"));
    }

    #[test]
    fn exact_path_is_exact() {
        let t = table(vec![rule(None, Some("/about"), "f")]);
        assert_eq!(hit(&t, "h", "/about", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/about?x=1", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/about/", "GET"), None);
        assert_eq!(hit(&t, "h", "/about/team", "GET"), None);
        assert_eq!(hit(&t, "h", "/aboutx", "GET"), None);
        assert_eq!(hit(&t, "h", "/", "GET"), None);
    }

    #[test]
    fn prefix_path_matches_base_and_below_only() {
        let t = table(vec![rule(None, Some("/api/*"), "f")]);
        assert_eq!(hit(&t, "h", "/api", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/api/", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/api/x", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/api/x/y", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/api?q=1", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/apix", "GET"), None);
        assert_eq!(hit(&t, "h", "/apix/y", "GET"), None);
        assert_eq!(hit(&t, "h", "/ap", "GET"), None);
        assert_eq!(hit(&t, "h", "/", "GET"), None);
        assert_eq!(hit(&t, "h", "/v1/api/x", "GET"), None);
    }

    #[test]
    fn nested_prefix_path() {
        let t = table(vec![rule(None, Some("/a/b/*"), "f")]);
        assert_eq!(hit(&t, "h", "/a/b", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/a/b/c", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/a", "GET"), None);
        assert_eq!(hit(&t, "h", "/a/bc", "GET"), None);
    }

    #[test]
    fn any_path_patterns() {
        for path in [Some("*"), Some("/*"), None] {
            let t = table(vec![rule(None, path, "f")]);
            assert_eq!(hit(&t, "h", "/", "GET"), Some("f"), "{path:?}");
            assert_eq!(hit(&t, "h", "/deep/x?y", "GET"), Some("f"), "{path:?}");
            assert_eq!(hit(&t, "h", "", "GET"), Some("f"), "{path:?}");
        }
    }

    #[test]
    fn query_is_ignored_from_question_mark_on() {
        let t = table(vec![rule(None, Some("/search"), "f")]);
        assert_eq!(hit(&t, "h", "/search?q=/x", "GET"), Some("f"));
        assert_eq!(hit(&t, "h", "/search/?q", "GET"), None);
    }

    #[test]
    fn methods_filter() {
        let t = table(vec![
            RouteRule {
                methods: Some(vec!["GET".to_owned(), "head".to_owned()]),
                ..function("read")
            },
            RouteRule {
                methods: Some(vec![]),
                ..function("any")
            },
        ]);
        assert_eq!(hit(&t, "h", "/", "GET"), Some("read"));
        assert_eq!(hit(&t, "h", "/", "get"), Some("read"));
        assert_eq!(hit(&t, "h", "/", "HEAD"), Some("read"));
        assert_eq!(hit(&t, "h", "/", "POST"), Some("any"));
        assert_eq!(hit(&t, "h", "/", "GETX"), Some("any"));
        assert_eq!(hit(&t, "h", "/", ""), Some("any"));

        let only_post = table(vec![RouteRule {
            methods: Some(vec!["POST".to_owned()]),
            ..function("f")
        }]);
        assert_eq!(hit(&only_post, "h", "/", "GET"), None);
    }

    #[test]
    fn bypass_stops_matching() {
        let t = table(vec![
            RouteRule {
                path: Some("/static/*".to_owned()),
                bypass: Some(true),
                ..RouteRule::default()
            },
            function("app"),
        ]);
        let r = t.find("h", "/static/app.js", "GET").unwrap();
        assert_eq!(r.target, RouteTarget::Bypass);
        assert_eq!(r.index, 0);
        // The catch-all function after it is not consulted for bypassed paths.
        assert_eq!(hit(&t, "h", "/static", "GET"), Some("<bypass>"));
        assert_eq!(hit(&t, "h", "/index.html", "GET"), Some("app"));
    }

    #[test]
    fn function_with_fallback_origin_and_origin_route() {
        let t = table(vec![
            RouteRule {
                origin: Some("backend".to_owned()),
                ..rule(None, Some("/app/*"), "app")
            },
            RouteRule {
                origin: Some("legacy".to_owned()),
                ..RouteRule::default()
            },
        ]);
        assert_eq!(
            t.find("h", "/app/x", "GET").unwrap().target,
            RouteTarget::Function {
                name: "app".to_owned(),
                fallback_origin: Some("backend".to_owned()),
            }
        );
        assert_eq!(
            t.find("h", "/other", "GET").unwrap().target,
            RouteTarget::Origin {
                name: "legacy".to_owned()
            }
        );
        assert_eq!(
            table(vec![function("plain")]).routes()[0].target,
            RouteTarget::Function {
                name: "plain".to_owned(),
                fallback_origin: None,
            }
        );
        // `bypass = false` is the same as not setting it.
        assert_eq!(
            table(vec![RouteRule {
                bypass: Some(false),
                ..function("f")
            }])
            .routes()[0]
                .target,
            RouteTarget::Function {
                name: "f".to_owned(),
                fallback_origin: None,
            }
        );
    }

    #[test]
    fn function_and_origin_names() {
        let t = table(vec![
            RouteRule {
                origin: Some("o1".to_owned()),
                ..function("f1")
            },
            RouteRule {
                origin: Some("o2".to_owned()),
                ..RouteRule::default()
            },
            RouteRule {
                bypass: Some(true),
                ..RouteRule::default()
            },
            function("f2"),
        ]);
        assert_eq!(t.function_names().collect::<Vec<_>>(), ["f1", "f2"]);
        assert_eq!(t.origin_names().collect::<Vec<_>>(), ["o1", "o2"]);
        assert_eq!(t.len(), 4);
        assert!(!t.is_empty());
        let indexes: Vec<usize> = t.routes().iter().map(|r| r.index).collect();
        assert_eq!(indexes, [0, 1, 2, 3]);
    }

    #[test]
    fn describe_shows_normalized_patterns() {
        let t = table(vec![
            RouteRule {
                methods: Some(vec!["get".to_owned(), "POST".to_owned(), "GET".to_owned()]),
                ..rule(Some("*.Example.com"), Some("/api/*"), "f")
            },
            function("g"),
            rule(Some("Example.com."), Some("/about"), "h"),
        ]);
        assert_eq!(
            t.routes()[0].describe(),
            "host=*.example.com path=/api/* methods=GET,POST"
        );
        assert_eq!(t.routes()[1].describe(), "host=* path=* methods=*");
        assert_eq!(
            t.routes()[2].describe(),
            "host=example.com path=/about methods=*"
        );
    }

    #[test]
    fn route_matches_directly() {
        let t = table(vec![rule(Some("example.com"), Some("/a/*"), "f")]);
        let r = &t.routes()[0];
        assert!(r.matches("EXAMPLE.com:1", "/a/b?c", "GET"));
        assert!(!r.matches("example.com", "/b", "GET"));
    }

    #[test]
    fn table_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
        assert_traits::<RouteTable>();
        let t = table(vec![function("f")]);
        assert_eq!(t.clone(), t);
    }

    #[test]
    fn error_no_target() {
        assert_eq!(err(RouteRule::default()), RouteError::NoTarget { index: 1 });
        assert_eq!(
            err(RouteRule {
                bypass: Some(false),
                host: Some("example.com".to_owned()),
                ..RouteRule::default()
            }),
            RouteError::NoTarget { index: 1 }
        );
    }

    #[test]
    fn error_bypass_with_target() {
        assert_eq!(
            err(RouteRule {
                bypass: Some(true),
                ..function("f")
            }),
            RouteError::BypassWithTarget {
                index: 1,
                field: "function"
            }
        );
        assert_eq!(
            err(RouteRule {
                bypass: Some(true),
                origin: Some("o".to_owned()),
                ..RouteRule::default()
            }),
            RouteError::BypassWithTarget {
                index: 1,
                field: "origin"
            }
        );
    }

    #[test]
    fn error_empty_names() {
        assert_eq!(
            err(function("")),
            RouteError::EmptyName {
                index: 1,
                field: "function"
            }
        );
        assert_eq!(
            err(function("  ")),
            RouteError::EmptyName {
                index: 1,
                field: "function"
            }
        );
        assert_eq!(
            err(RouteRule {
                origin: Some(String::new()),
                ..RouteRule::default()
            }),
            RouteError::EmptyName {
                index: 1,
                field: "origin"
            }
        );
        assert_eq!(
            err(RouteRule {
                origin: Some(String::new()),
                ..function("f")
            }),
            RouteError::EmptyName {
                index: 1,
                field: "origin"
            }
        );
    }

    #[test]
    fn error_bad_host_patterns() {
        for bad in [
            "",
            "exa mple.com",
            "*example.com",
            "*.",
            "a.*.example.com",
            "example.*",
            "**",
            "*.*.example.com",
            "example.com:8080",
            "https://example.com",
            "example..com",
            ".example.com",
            "[::1]:80",
            "[zz]",
        ] {
            match err(rule(Some(bad), None, "f")) {
                RouteError::InvalidHost { index, pattern, .. } => {
                    assert_eq!(index, 1, "{bad:?}");
                    assert_eq!(pattern, bad);
                }
                other => panic!("{bad:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn error_bad_path_patterns() {
        for bad in [
            "", "api", "api/*", "/api*", "/*/x", "/a/*/b", "/a b", "/a?x=1", "/a/**", "**",
        ] {
            match err(rule(None, Some(bad), "f")) {
                RouteError::InvalidPath { index, pattern, .. } => {
                    assert_eq!(index, 1, "{bad:?}");
                    assert_eq!(pattern, bad);
                }
                other => panic!("{bad:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn error_bad_methods() {
        for bad in ["", "GE T", "GET,POST", "PÖST", "(GET)"] {
            match err(RouteRule {
                methods: Some(vec!["GET".to_owned(), bad.to_owned()]),
                ..function("f")
            }) {
                RouteError::InvalidMethod { index, method, .. } => {
                    assert_eq!(index, 1, "{bad:?}");
                    assert_eq!(method, bad);
                }
                other => panic!("{bad:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn error_message_names_route_number_and_index() {
        let e = RouteTable::new(vec![
            function("a"),
            function("b"),
            rule(Some("*.bad.*"), None, "c"),
        ])
        .unwrap_err();
        assert_eq!(e.index(), 2);
        let msg = e.to_string();
        assert!(msg.starts_with("route #3 (index 2): "), "{msg}");
        assert!(msg.contains("\"*.bad.*\""), "{msg}");

        let msg = err(RouteRule::default()).to_string();
        assert!(msg.starts_with("route #2 (index 1): no target"), "{msg}");
    }

    #[test]
    fn first_invalid_rule_is_reported() {
        let e =
            RouteTable::new(vec![function("ok"), RouteRule::default(), function("")]).unwrap_err();
        assert_eq!(e, RouteError::NoTarget { index: 1 });
    }

    #[derive(Debug, Deserialize)]
    struct Config {
        routes: Vec<RouteRule>,
    }

    #[test]
    fn parses_rules_from_toml() {
        let config: Config = toml::from_str(
            r#"
            [[routes]]
            host = "*.example.com"
            path = "/api/*"
            methods = ["get", "POST"]
            function = "api"
            origin = "api-backend"

            [[routes]]
            path = "/static/*"
            bypass = true

            [[routes]]
            host = "example.com"
            origin = "www"

            [[routes]]
            function = "default"
            "#,
        )
        .unwrap();
        assert_eq!(
            config.routes[0],
            RouteRule {
                host: Some("*.example.com".to_owned()),
                path: Some("/api/*".to_owned()),
                methods: Some(vec!["get".to_owned(), "POST".to_owned()]),
                function: Some("api".to_owned()),
                origin: Some("api-backend".to_owned()),
                bypass: None,
            }
        );
        let t = RouteTable::new(config.routes).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            t.find("a.example.com", "/api/v1", "GET").unwrap().target,
            RouteTarget::Function {
                name: "api".to_owned(),
                fallback_origin: Some("api-backend".to_owned()),
            }
        );
        assert_eq!(
            t.find("a.example.com", "/api/v1", "DELETE").unwrap().index,
            3
        );
        assert_eq!(
            t.find("example.com", "/static/x.css", "GET")
                .unwrap()
                .target,
            RouteTarget::Bypass
        );
        assert_eq!(
            t.find("example.com:443", "/", "GET").unwrap().target,
            RouteTarget::Origin {
                name: "www".to_owned()
            }
        );
        assert_eq!(
            t.routes()[0].describe(),
            "host=*.example.com path=/api/* methods=GET,POST"
        );
    }

    #[test]
    fn toml_rejects_unknown_fields_and_invalid_rules() {
        let unknown = toml::from_str::<Config>(
            r#"
            [[routes]]
            function = "f"
            funtcion = "typo"
            "#,
        );
        assert!(unknown.is_err());

        let config: Config = toml::from_str(
            r#"
            [[routes]]
            function = "f"

            [[routes]]
            path = "api/*"
            function = "g"
            "#,
        )
        .unwrap();
        assert!(matches!(
            RouteTable::new(config.routes),
            Err(RouteError::InvalidPath { index: 1, .. })
        ));
    }
}
