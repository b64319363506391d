//! Reconnect delays: exponential with full jitter, so a fleet does not reconnect in lockstep after control restarts.

use std::time::Duration;

/// Delays between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, doubling per failure up to `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay: uniform in [0, min(max, base·2^attempt)], with `unit` in [0, 1)
    /// supplied by the caller (randomness stays out of the policy).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Back to `base` after a healthy connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A number in [0, 1) from the process's random hasher keys.
pub fn jitter_unit() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_ceiling_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let full: Vec<Duration> = (0..7).map(|_| backoff.next_delay(1.0)).collect();
        assert_eq!(full[0], Duration::from_millis(100));
        assert_eq!(full[1], Duration::from_millis(200));
        assert_eq!(full[4], Duration::from_millis(1600));
        assert_eq!(full[6], Duration::from_secs(2));
        backoff.reset();
        assert_eq!(backoff.next_delay(0.5), Duration::from_millis(50));
    }

    #[test]
    fn jitter_spreads_within_the_ceiling() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(0.0), Duration::ZERO);
        for _ in 0..100 {
            let unit = jitter_unit();
            assert!((0.0..1.0).contains(&unit));
        }
        let mut huge = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(huge.next_delay(0.99) <= Duration::from_secs(30));
        }
    }
}
