//! Per-function resource limits: the typed policy, its documented defaults, and validation.

use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

/// What one function may use. Enforced from outside the isolate: a watchdog thread
/// terminates JavaScript that runs past `cpu_ms`, a near-heap-limit callback retires an
/// isolate that outgrows `heap_mb`, the engine fails requests that outlive `wall_ms`,
/// and the runtime counts `fetch()` calls against `subrequests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// CPU time one uninterrupted run of the handler's JavaScript may take, in
    /// milliseconds (a run ends whenever the handler awaits I/O or a timer).
    pub cpu_ms: u64,
    /// Wall-clock time from the request entering the isolate until the response head
    /// is sent and every `ctx.waitUntil()` promise has settled, in milliseconds.
    pub wall_ms: u64,
    /// V8 heap one isolate may grow to, in MiB.
    pub heap_mb: u64,
    /// `fetch()` calls one request may make.
    pub subrequests: u32,
    /// CPU time the bundle's top-level code may take when an isolate boots, in milliseconds.
    pub startup_cpu_ms: u64,
}

impl Limits {
    /// The defaults, written once: 50 ms CPU, 30 s wall, 128 MiB heap, 50 subrequests,
    /// 1 s of startup CPU.
    pub const DEFAULT: Limits = Limits {
        cpu_ms: 50,
        wall_ms: 30_000,
        heap_mb: 128,
        subrequests: 50,
        startup_cpu_ms: 1_000,
    };

    /// The smallest heap V8 can boot the runtime in, in MiB.
    pub const MIN_HEAP_MB: u64 = 16;

    /// Checks that every limit is usable; the error names the offending key.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.cpu_ms == 0 {
            return Err(LimitsError {
                key: "cpu_ms",
                reason: "must be at least 1".into(),
            });
        }
        if self.startup_cpu_ms == 0 {
            return Err(LimitsError {
                key: "startup_cpu_ms",
                reason: "must be at least 1".into(),
            });
        }
        if self.wall_ms < self.cpu_ms {
            return Err(LimitsError {
                key: "wall_ms",
                reason: format!("must be at least cpu_ms ({})", self.cpu_ms),
            });
        }
        if self.heap_mb < Self::MIN_HEAP_MB {
            return Err(LimitsError {
                key: "heap_mb",
                reason: format!("must be at least {}", Self::MIN_HEAP_MB),
            });
        }
        Ok(())
    }

    /// CPU budget of one run of JavaScript.
    pub fn cpu(&self) -> Duration {
        Duration::from_millis(self.cpu_ms)
    }

    /// CPU budget of a bundle's top-level code.
    pub fn startup_cpu(&self) -> Duration {
        Duration::from_millis(self.startup_cpu_ms)
    }

    /// Wall-clock budget of one request.
    pub fn wall(&self) -> Duration {
        Duration::from_millis(self.wall_ms)
    }

    /// Heap limit in bytes.
    pub fn heap_bytes(&self) -> usize {
        usize::try_from(self.heap_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A limit that cannot be enforced as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limits.{key} {reason}")]
pub struct LimitsError {
    /// The config key, e.g. `cpu_ms`.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let limits = Limits::default();
        assert_eq!(
            limits,
            Limits {
                cpu_ms: 50,
                wall_ms: 30_000,
                heap_mb: 128,
                subrequests: 50,
                startup_cpu_ms: 1_000
            }
        );
        assert_eq!(limits.validate(), Ok(()));
        assert_eq!(limits.heap_bytes(), 128 * 1024 * 1024);
        assert_eq!(limits.cpu(), Duration::from_millis(50));
    }

    #[test]
    fn zero_cpu_is_rejected_by_key() {
        let error = Limits {
            cpu_ms: 0,
            ..Limits::DEFAULT
        }
        .validate();
        assert_eq!(error.map_err(|e| e.key), Err("cpu_ms"));
    }

    #[test]
    fn wall_shorter_than_cpu_is_rejected() {
        let error = Limits {
            cpu_ms: 100,
            wall_ms: 50,
            ..Limits::DEFAULT
        }
        .validate();
        assert_eq!(error.map_err(|e| e.key), Err("wall_ms"));
    }

    #[test]
    fn tiny_heap_is_rejected() {
        let error = Limits {
            heap_mb: 1,
            ..Limits::DEFAULT
        }
        .validate();
        assert_eq!(
            error.map_err(|e| e.to_string()),
            Err("limits.heap_mb must be at least 16".to_string())
        );
    }

    #[test]
    fn partial_config_keeps_other_defaults() -> Result<(), serde_json::Error> {
        let limits: Limits = serde_json::from_str(r#"{"cpu_ms": 10}"#)?;
        assert_eq!(
            limits,
            Limits {
                cpu_ms: 10,
                ..Limits::DEFAULT
            }
        );
        assert!(
            serde_json::from_str::<Limits>(r#"{"cpu": 10}"#).is_err(),
            "unknown keys are errors"
        );
        Ok(())
    }
}
